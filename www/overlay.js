// Attention maps as pictures: colormaps, head selection, DINO-style
// thresholding, and drawing a patch grid over the image.

// matplotlib's colormaps at 17 evenly spaced points (viridis is the same table as src/explain.rs).
export const COLORMAPS = {
  viridis: [[68, 1, 84], [72, 24, 106], [71, 45, 123], [66, 64, 134], [59, 82, 139], [51, 99, 141],
    [44, 114, 142], [38, 130, 142], [33, 145, 140], [31, 160, 136], [40, 174, 128], [63, 188, 115],
    [94, 201, 98], [132, 212, 75], [173, 220, 48], [216, 226, 25], [253, 231, 37]],
  magma: [[0, 0, 4], [10, 8, 34], [29, 17, 71], [54, 16, 107], [81, 18, 124], [106, 28, 129],
    [131, 38, 129], [156, 46, 127], [183, 55, 121], [208, 65, 111], [231, 82, 99], [245, 107, 92],
    [252, 137, 97], [254, 167, 114], [254, 196, 136], [253, 226, 163], [252, 253, 191]],
  inferno: [[0, 0, 4], [11, 7, 36], [33, 12, 74], [61, 9, 101], [87, 16, 110], [113, 25, 110],
    [138, 34, 106], [163, 44, 97], [188, 55, 84], [210, 70, 68], [228, 90, 49], [241, 115, 29],
    [249, 142, 9], [252, 172, 17], [249, 203, 53], [242, 234, 105], [252, 255, 164]],
  cividis: [[0, 34, 78], [0, 46, 106], [26, 56, 111], [50, 67, 109], [67, 78, 108], [83, 90, 109],
    [97, 101, 111], [111, 112, 115], [125, 124, 120], [140, 136, 120], [155, 148, 118], [171, 160, 114],
    [188, 174, 108], [205, 187, 99], [222, 201, 88], [240, 216, 70], [254, 232, 56]],
  gray: Array.from({ length: 17 }, (_, i) => Array(3).fill(Math.min(255, i * 16))),
};

/** The colour of `t` in [0, 1] on colormap `name`, as [r, g, b]. */
export function colour(t, name = 'viridis') {
  const table = COLORMAPS[name] ?? COLORMAPS.viridis;
  const x = Math.min(1, Math.max(0, t)) * (table.length - 1);
  const i = Math.min(Math.floor(x), table.length - 2);
  const f = x - i;
  return table[i].map((a, c) => Math.round(a + (table[i + 1][c] - a) * f));
}

/** The map of one head (or the mean over heads) of one layer from the [L, H, N] CLS attention. */
export function headMap(cls, heads, n, layer, head) {
  if (head !== 'mean') return cls.slice((layer * heads + head) * n, (layer * heads + head + 1) * n);
  const out = new Float32Array(n);
  for (let h = 0; h < heads; h++) {
    const off = (layer * heads + h) * n;
    for (let j = 0; j < n; j++) out[j] += cls[off + j] / heads;
  }
  return out;
}

/**
 * What one patch attends to: row `1 + patch` of a layer's [H, T, T] attention
 * (T = N + 1), without the class-token column, for one head or the mean.
 */
export function patchRow(layerAttention, heads, n, patch, head) {
  const t = n + 1;
  const out = new Float32Array(n);
  const hs = head === 'mean' ? Array.from({ length: heads }, (_, h) => h) : [head];
  for (const h of hs) {
    const off = (h * t + 1 + patch) * t + 1;
    for (let j = 0; j < n; j++) out[j] += layerAttention[off + j] / hs.length;
  }
  return out;
}

/**
 * DINO's visualize_attention threshold: a 0/1 mask of the patches that
 * together hold the top `mass` fraction of the attention.
 */
export function thresholdMask(map, mass) {
  const total = map.reduce((a, b) => a + b, 0);
  const order = Array.from(map.keys()).sort((a, b) => map[b] - map[a]);
  const keep = new Uint8Array(map.length);
  let sum = 0;
  for (const i of order) {
    if (sum >= mass * total) break;
    keep[i] = 1;
    sum += map[i];
  }
  return keep;
}

/**
 * Draws `map` ([rows, cols]) min-max normalised in a colormap onto `canvas`.
 * `smooth` interpolates between patch centres, otherwise each patch is a
 * flat block. With `mask`, the patches in it are left clear and the others
 * covered in black (always blocky).
 */
export function drawMap(canvas, map, [rows, cols], { colormap = 'viridis', smooth = true, mask = null } = {}) {
  let lo = Infinity, hi = -Infinity;
  for (const v of map) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const small = new OffscreenCanvas(cols, rows);
  const ctx = small.getContext('2d');
  const img = ctx.createImageData(cols, rows);
  map.forEach((v, i) => {
    // Thresholded: kept patches stay clear, the rest is covered.
    const rgba = mask ? [0, 0, 0, mask[i] ? 0 : 255] : [...colour(hi > lo ? (v - lo) / (hi - lo) : 0, colormap), 255];
    img.data.set(rgba, i * 4);
  });
  ctx.putImageData(img, 0, 0);
  const out = canvas.getContext('2d');
  out.clearRect(0, 0, canvas.width, canvas.height);
  out.imageSmoothingEnabled = smooth && !mask;
  out.imageSmoothingQuality = 'high';
  out.drawImage(small, 0, 0, canvas.width, canvas.height);
}

/** Outlines patch `patch` of a [rows, cols] grid on `canvas` (cleared first); -1 clears only. */
export function drawPatchCursor(canvas, patch, [rows, cols]) {
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (patch < 0) return;
  const w = canvas.width / cols, h = canvas.height / rows;
  const x = (patch % cols) * w, y = Math.floor(patch / cols) * h;
  ctx.lineWidth = 3;
  ctx.strokeStyle = 'white';
  ctx.strokeRect(x + 1.5, y + 1.5, w - 3, h - 3);
  ctx.lineWidth = 1;
  ctx.strokeStyle = 'black';
  ctx.strokeRect(x + 0.5, y + 0.5, w - 1, h - 1);
}

/** The model's [C, H, W] input as a picture (W×H): mean and std put back, grayscale for one channel. */
export function inputPicture(input, { input_size: [c, h, w], mean, std }) {
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) {
      const ch = c === 1 ? 0 : k;
      img.data[i * 4 + k] = Math.round((input[ch * h * w + i] * std[ch] + mean[ch]) * 255);
    }
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}
