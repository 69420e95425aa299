// Attention maps as pictures: colormaps, head selection, DINO-style
// thresholding, and drawing a patch grid over the image.

// matplotlib's colormaps, its own 256-entry tables: the same the CLI's overlay PNG indexes (src/explain/colormap.rs).
import COLORMAPS from './colormaps.json' with { type: 'json' };

export { COLORMAPS };

/** The colour of `t` in [0, 1] on colormap `name`, as [r, g, b]: entry ⌊t·256⌋, as matplotlib picks it. */
export function colour(t, name = 'viridis') {
  const table = COLORMAPS[name] ?? COLORMAPS.viridis;
  return table[Math.min(table.length - 1, Math.floor(Math.min(1, Math.max(0, t)) * table.length))];
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
 * `values` as RGBA pixels: min-max normalised (a flat map at `flat`), then
 * coloured; the page's one normalisation (the CLI's is
 * src/explain/overlay.rs, on the same tables).
 * @param {ArrayLike<number>} values
 * @param {string} colormap
 * @param {number} [flat]
 */
export function colourPixels(values, colormap, flat = 0) {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < values.length; i++) { lo = Math.min(lo, values[i]); hi = Math.max(hi, values[i]); }
  const out = new Uint8ClampedArray(values.length * 4);
  for (let i = 0; i < values.length; i++) {
    out.set(colour(hi > lo ? (values[i] - lo) / (hi - lo) : flat, colormap), i * 4);
    out[i * 4 + 3] = 255;
  }
  return out;
}

/**
 * Draws `map` ([rows, cols]) min-max normalised in a colormap onto `canvas`.
 * `smooth` interpolates between patch centres, otherwise each patch is a
 * flat block. With `mask`, the patches in it are left clear and the others
 * covered in black (always blocky).
 */
export function drawMap(canvas, map, [rows, cols], { colormap = 'viridis', smooth = true, mask = null } = {}) {
  const small = new OffscreenCanvas(cols, rows);
  const ctx = small.getContext('2d');
  const img = ctx.createImageData(cols, rows);
  if (mask) {
    // Thresholded: kept patches stay clear, the rest is covered.
    mask.forEach((keep, i) => img.data.set([0, 0, 0, keep ? 0 : 255], i * 4));
  } else {
    img.data.set(colourPixels(map, colormap));
  }
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
