// Attention maps as pictures: colormaps, head selection, DINO-style
// thresholding, and drawing a patch grid over the image.

// matplotlib's colormaps at 17 evenly spaced points: the same table the CLI's overlay PNG uses (src/explain/colormap.rs).
import COLORMAPS from './colormaps.json' with { type: 'json' };

export { COLORMAPS };

/** The colour of `t` in [0, 1] on colormap `name`, as [r, g, b]. */
export function colour(t, name = 'viridis') {
  const table = COLORMAPS[name] ?? COLORMAPS.viridis;
  const x = Math.min(1, Math.max(0, t)) * (table.length - 1);
  const i = Math.min(Math.floor(x), table.length - 2);
  const f = x - i;
  return table[i].map((a, c) => Math.round(a + (table[i + 1][c] - a) * f));
}

// The maps themselves are computed in Rust (src/explain/); these only pick rows.

/**
 * The CLS map of one head, or the mean over heads, of one layer: a row of
 * the [L, H, N] `cls` or of the [L, N] `clsMean` a classification returns.
 */
export function headMap({ cls, clsMean, heads }, n, layer, head) {
  if (head === 'mean') return clsMean.subarray(layer * n, (layer + 1) * n);
  return cls.subarray((layer * heads + head) * n, (layer * heads + head + 1) * n);
}

/**
 * What one patch attends to: row `prefix + patch` of a layer's [H, T, T]
 * attention (T = prefix + N: the class, distillation and register tokens
 * first) or of its [T, T] mean over heads, without the prefix tokens' columns.
 */
export function patchRow({ layerAttention, layerMean }, n, patch, head, prefix = 1) {
  const t = n + prefix;
  const off = head === 'mean' ? (prefix + patch) * t + prefix : (head * t + prefix + patch) * t + prefix;
  return (head === 'mean' ? layerMean : layerAttention).subarray(off, off + n);
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
