// @ts-check
// Figures the papers show, on the loaded model and the image shown: each
// token's length after a block ("Vision Transformers Need Registers",
// Darcet et al. 2024: a few long background patches are the artefacts
// registers absorb), the registers' share of the class token's attention,
// how alike the patches' position embeddings are (the ViT paper's Figure
// 7, centre) and the patch embedding's principal components (its left). The numbers come from the model (Rust); this module
// only words and draws them, asking the worker once per image while the
// panel is open.
import { colour, drawMap } from './overlay.js';
import { onUpdate, state } from './store.js';
import { $ } from './dom.js';

/** @typedef {import('./vitrine').Figures} Figures */

const fixed = (/** @type {number} */ x) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));
/** A share as a percentage, small ones to a hundredth. */
const percent = (/** @type {number} */ s) => `${(100 * s).toFixed(s < 0.01 ? 2 : 0)}%`;

/**
 * Layer `layer`'s token norms in numbers: the row [T], the patches' [N],
 * their median, the longest patch, its ratio to the median, and how many
 * patches are over 4× the median (Darcet et al.'s outliers are about ten
 * times the others' norm). `names` are the prefix tokens'.
 * @param {Float32Array} norms [L, T]
 * @param {string[]} names
 * @param {number} layer
 * @param {[number, number]} grid
 */
export function normStats(norms, names, layer, [rows, cols]) {
  const n = rows * cols;
  const t = names.length + n;
  const row = norms.subarray(layer * t, (layer + 1) * t);
  const patches = row.subarray(names.length);
  const sorted = Float32Array.from(patches).sort();
  const median = sorted[Math.floor(n / 2)];
  let longest = 0;
  for (let i = 1; i < n; i++) if (patches[i] > patches[longest]) longest = i;
  const outliers = patches.filter((v) => v > 4 * median).length;
  return { row, patches, median, longest, ratio: patches[longest] / median, outliers };
}

/**
 * What layer `layer`'s token norms say, in this model's own numbers: the
 * patches' lengths [N] and a sentence. `names` are the prefix tokens'.
 * @param {Float32Array} norms [L, T]
 * @param {string[]} names
 * @param {number} layer
 * @param {[number, number]} grid
 */
export function describeNorms(norms, names, layer, grid) {
  const { row, patches, median, longest, ratio, outliers } = normStats(norms, names, layer, grid);
  const cols = grid[1];
  const prefix = names.map((name, i) => `${name} ${fixed(row[i])}`).join(', ');
  const text = `After block ${layer + 1}: the patches' median length is ${fixed(median)}; the longest, `
    + `at row ${Math.floor(longest / cols) + 1}, column ${(longest % cols) + 1}, is ${ratio.toFixed(1)}× that. `
    + (outliers ? `${outliers} patch${outliers === 1 ? ' is' : 'es are'} over 4× the median: `
      + 'artefacts of the kind registers absorb, where a model stores what it gathered from the whole image. '
      : 'No patch is over 4× the median: no artefacts of the registers paper\'s kind at this block. ')
    + (prefix ? `Prefix tokens: ${prefix}.` : '');
  return { patches, text };
}

/**
 * The registers' share of the class token's attention per layer (mean of
 * the heads), and a sentence; null for a model without registers.
 * @param {Float32Array} share [L, H]
 * @param {number} depth
 */
export function describeShare(share, depth) {
  if (!share.length) return null;
  const heads = share.length / depth;
  const perLayer = Array.from({ length: depth }, (_, l) => share.subarray(l * heads, (l + 1) * heads).reduce((a, b) => a + b, 0) / heads);
  const last = perLayer[depth - 1];
  const text = `In the last block the registers take ${percent(last)} of the class token's attention `
    + `(mean of ${heads} heads); across the blocks, ${perLayer.map(percent).join(', ')}.`;
  return { perLayer, text };
}

/**
 * Figure 7 (centre) of the ViT paper: one small map per patch, its
 * position embedding's cosine similarity with every patch's, from −1
 * (dark) to 1 (bright), a pixel between the maps.
 * @param {HTMLCanvasElement} canvas
 * @param {Float32Array} similarity [N, N]
 * @param {[number, number]} grid
 */
export function drawSimilarity(canvas, similarity, [rows, cols]) {
  const [w, h] = [cols * (cols + 1) - 1, rows * (rows + 1) - 1];
  canvas.width = w;
  canvas.height = h;
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
  const img = ctx.createImageData(w, h);
  for (let p = 0; p < rows * cols; p++) {
    const [top, left] = [Math.floor(p / cols) * (rows + 1), (p % cols) * (cols + 1)];
    for (let q = 0; q < rows * cols; q++) {
      const at = ((top + Math.floor(q / cols)) * w + left + (q % cols)) * 4;
      img.data.set(colour((similarity[p * rows * cols + q] + 1) / 2), at);
      img.data[at + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

/**
 * Figure 7 (left) of the ViT paper: the patch embedding's principal
 * components, seven to a row, each a P×P picture of its C channels
 * (min-max normalised on its own), a pixel between them. Returns the
 * sentence that reads them.
 * @param {HTMLCanvasElement} canvas
 * @param {Float32Array} filters [k, P·P·C]
 * @param {Float32Array} variance [k]
 * @param {number} patch P
 * @param {number} channels C
 */
export function drawFilters(canvas, filters, variance, patch, channels) {
  const len = patch * patch * channels;
  const k = variance.length;
  const across = Math.min(7, k);
  const rows = Math.ceil(k / across);
  canvas.width = across * (patch + 1) - 1;
  canvas.height = rows * (patch + 1) - 1;
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
  const img = ctx.createImageData(canvas.width, canvas.height);
  for (let i = 0; i < k; i++) {
    const c = filters.subarray(i * len, (i + 1) * len);
    let lo = Infinity, hi = -Infinity;
    for (const v of c) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const [top, left] = [Math.floor(i / across) * (patch + 1), (i % across) * (patch + 1)];
    for (let y = 0; y < patch; y++) {
      for (let x = 0; x < patch; x++) {
        const at = ((top + y) * canvas.width + left + x) * 4;
        for (let ch = 0; ch < 3; ch++) {
          const v = c[(y * patch + x) * channels + Math.min(ch, channels - 1)];
          img.data[at + ch] = hi > lo ? Math.round((255 * (v - lo)) / (hi - lo)) : 128;
        }
        img.data[at + 3] = 255;
      }
    }
  }
  ctx.putImageData(img, 0, 0);
  const sum = variance.reduce((a, b) => a + b, 0);
  return `The first ${k} components explain ${(100 * sum).toFixed(0)}% of the variance of the ${channels === 1 ? '' : 'colour '}`
    + `filters (the first alone ${(100 * variance[0]).toFixed(1)}%). A trained ViT's look like smooth basis functions `
    + "(stripes, blobs, colour contrasts) for the fine structure within a patch (the ViT paper's Figure 7, left); "
    + 'random weights give noise, each component explaining about as much as the next.';
}

/**
 * Wires the panel: asked once per image shown, while open. `onBlock(b)`
 * hears the block shown (from 1; 0 when the panel closes), for the address;
 * `open(b)` opens the panel at block `b`.
 * @param {{ run: (m: any) => Promise<any>, onBlock?: (block: number) => void }} options
 */
export function setupFigures({ run, onBlock = () => {} }) {
  const panel = /** @type {HTMLDetailsElement} */ ($('figures'));
  const layerPicker = /** @type {HTMLSelectElement} */ ($('figures-layer'));
  /** @type {{ figures: Figures, current: any, info: any } | null} */
  let shown = null;
  let asking = null;
  let wanted = 0; // a block to show once the figures come (a link's)
  const block = () => (panel.open && shown ? Number(layerPicker.value) + 1 : 0);

  const draw = () => {
    if (!shown) return;
    const { figures, info } = shown;
    const layer = Number(layerPicker.value);
    const { patches, text } = describeNorms(figures.tokenNorms, info.prefixTokens, layer, info.grid);
    drawMap($('figures-norms'), patches, info.grid, { smooth: false });
    $('figures-norms-text').textContent = text;
    const share = describeShare(figures.registerShare, info.config.depth);
    $('figures-share-row').hidden = !share;
    if (share) {
      $('figures-share-text').textContent = share.text;
      $('figures-share').replaceChildren(...share.perLayer.map((s, l) => {
        const li = document.createElement('li');
        const bar = document.createElement('span');
        bar.className = 'bar';
        bar.style.width = `${(100 * s).toFixed(1)}%`;
        li.append(`Block ${l + 1} `, bar, ` ${percent(s)}`);
        return li;
      }));
    }
    drawSimilarity($('figures-similarity'), figures.positionSimilarity, info.grid);
    const c = info.config;
    $('figures-filters-text').textContent = drawFilters($('figures-filters'), figures.filters, figures.filterVariance, c.patch_size, c.in_chans);
  };

  const ask = async () => {
    const { current, info } = state;
    if (!panel.open || !current || !info || shown?.current === current || asking === current) return;
    asking = current;
    $('figures-status').textContent = 'Computing…';
    try {
      const { figures } = await run({ type: 'figures' });
      if (state.current !== current) return; // a newer image: asked again for it
      const depth = info.config.depth;
      // The block asked for (a link's), else the one shown before (the same model), else the last.
      const before = shown?.info === info ? Number(layerPicker.value) : depth - 1;
      const at = Math.min(wanted ? wanted - 1 : before, depth - 1);
      wanted = 0;
      shown = { figures, current, info };
      window.vitrineFigures = figures;
      document.body.dataset.figures = String(current.id); // the image they are of: for tests
      layerPicker.replaceChildren(...Array.from({ length: depth }, (_, l) => new Option(`block ${l + 1}`, String(l))));
      layerPicker.value = String(at);
      $('figures-status').textContent = '';
      draw();
      onBlock(block());
    } catch (e) {
      $('figures-status').textContent = `The figures could not be computed: ${e.message}.`;
    } finally {
      if (asking === current) asking = null;
    }
  };

  panel.addEventListener('toggle', () => {
    onBlock(block());
    ask();
  });
  layerPicker.addEventListener('change', () => {
    draw();
    onBlock(block());
  });
  onUpdate((s, changed) => {
    if ('current' in changed || 'info' in changed) ask();
  });
  return {
    /** Opens the panel at block `b` (from 1). */
    open(/** @type {number} */ b) {
      if (panel.open && shown?.current === state.current) {
        layerPicker.value = String(Math.min(b, shown.info.config.depth) - 1);
        draw();
        onBlock(block());
        return;
      }
      wanted = b;
      panel.open = true; // its toggle asks for the figures
    },
  };
}
