// Attention maps as pictures: viridis colours and a smooth overlay of a patch grid.

// matplotlib's viridis at 17 evenly spaced points (the same table as src/explain.rs).
const VIRIDIS = [[68, 1, 84], [72, 24, 106], [71, 45, 123], [66, 64, 134], [59, 82, 139], [51, 99, 141],
  [44, 114, 142], [38, 130, 142], [33, 145, 140], [31, 160, 136], [40, 174, 128], [63, 188, 115],
  [94, 201, 98], [132, 212, 75], [173, 220, 48], [216, 226, 25], [253, 231, 37]];

export function viridis(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - i;
  return VIRIDIS[i].map((a, c) => Math.round(a + (VIRIDIS[i + 1][c] - a) * f));
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

/** Draws `map` ([rows, cols]) min-max normalised in viridis, smoothly upscaled to the canvas. */
export function drawMap(canvas, map, [rows, cols]) {
  let lo = Infinity, hi = -Infinity;
  for (const v of map) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const small = new OffscreenCanvas(cols, rows);
  const ctx = small.getContext('2d');
  const img = ctx.createImageData(cols, rows);
  map.forEach((v, i) => {
    const [r, g, b] = viridis(hi > lo ? (v - lo) / (hi - lo) : 0);
    img.data.set([r, g, b, 255], i * 4);
  });
  ctx.putImageData(img, 0, 0);
  const out = canvas.getContext('2d');
  out.clearRect(0, 0, canvas.width, canvas.height);
  out.imageSmoothingEnabled = true;
  out.imageSmoothingQuality = 'high';
  out.drawImage(small, 0, 0, canvas.width, canvas.height);
}
