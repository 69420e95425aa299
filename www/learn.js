// The teaching view: the forward pass of the current image step by step,
// with the values the Rust engine computed (worker message 'walkthrough').
import { colour, colourPixels, drawMap, inputPicture } from './overlay.js';
import { LANGUAGES, TEXT } from './learn-text.js';
import { $ } from './dom.js';

let lang = (() => {
  try { return localStorage.getItem('vitrine-lang') ?? 'en'; } catch { return 'en'; }
})();
if (!TEXT[lang]) lang = 'en';

/** A canvas showing `values` as a rows×cols heatmap (min-max normalised), `scale` pixels per cell. */
function heatmap(values, rows, cols, { scale = 4, colormap = 'viridis', label = '' } = {}) {
  const canvas = document.createElement('canvas');
  canvas.width = cols;
  canvas.height = rows;
  canvas.style.width = `${Math.max(1, Math.round(cols * scale))}px`;
  canvas.style.height = `${Math.max(1, Math.round(rows * scale))}px`;
  canvas.className = 'heat';
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', label);
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(cols, rows);
  img.data.set(colourPixels(values, colormap, 0.5));
  ctx.putImageData(img, 0, 0);
  return canvas;
}

function el(tag, props = {}, ...children) {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
}

function figure(caption, ...content) {
  return el('figure', {}, ...content, el('figcaption', { textContent: caption }));
}

/** The model's input (normalisation undone) with the patch grid drawn on it. */
function inputWithGrid(input, pre, [rows, cols], size = 224) {
  const small = inputPicture(input, pre);
  const canvas = el('canvas', { width: size, height: size, className: 'grid-input' });
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, size, size);
  ctx.strokeStyle = 'rgba(255, 200, 0, 0.8)';
  ctx.lineWidth = 1;
  for (let r = 1; r < rows; r++) { ctx.beginPath(); ctx.moveTo(0, (r * size) / rows + 0.5); ctx.lineTo(size, (r * size) / rows + 0.5); ctx.stroke(); }
  for (let q = 1; q < cols; q++) { ctx.beginPath(); ctx.moveTo((q * size) / cols + 0.5, 0); ctx.lineTo((q * size) / cols + 0.5, size); ctx.stroke(); }
  return canvas;
}

/** A map over the patches drawn over the model's input, `size` pixels square. */
function mapOverInput(input, pre, grid, map, size = 160) {
  const picture = inputWithGrid(input, pre, grid, size);
  const over = el('canvas', { width: size, height: size });
  drawMap(over, map, grid, { smooth: false });
  const ctx = picture.getContext('2d');
  ctx.globalAlpha = 0.65;
  ctx.drawImage(over, 0, 0);
  return picture;
}

/** Figure 7 (right): one dot per head, mean attention distance against layer. */
function distancePlot(distances, layers, heads, maxDistance, t) {
  const W = 320, H = 200, m = { l: 44, r: 10, t: 10, b: 34 };
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('width', String(W));
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', t.distanceAxis);
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  const x = (l) => m.l + ((l + 0.5) / layers) * (W - m.l - m.r);
  const y = (d) => H - m.b - (d / maxDistance) * (H - m.t - m.b);
  add('line', { x1: m.l, y1: H - m.b, x2: W - m.r, y2: H - m.b, stroke: 'currentColor' });
  add('line', { x1: m.l, y1: m.t, x2: m.l, y2: H - m.b, stroke: 'currentColor' });
  for (const d of [0, maxDistance / 2, maxDistance]) {
    add('text', { x: m.l - 4, y: y(d) + 4, 'text-anchor': 'end', 'font-size': 10, fill: 'currentColor' }, d.toFixed(0));
  }
  for (let l = 0; l < layers; l++) {
    add('text', { x: x(l), y: H - m.b + 14, 'text-anchor': 'middle', 'font-size': 10, fill: 'currentColor' }, String(l));
    for (let h = 0; h < heads; h++) {
      const [r, g, b] = colour(heads > 1 ? h / (heads - 1) : 0.5);
      add('circle', { cx: x(l), cy: y(distances[l * heads + h]), r: 4, fill: `rgb(${r},${g},${b})`, 'data-layer': l, 'data-head': h });
    }
  }
  add('text', { x: (W + m.l) / 2, y: H - 4, 'text-anchor': 'middle', 'font-size': 11, fill: 'currentColor' }, t.layerAxis);
  add('text', { x: 12, y: (H - m.b) / 2, 'text-anchor': 'middle', 'font-size': 11, fill: 'currentColor', transform: `rotate(-90 12 ${(H - m.b) / 2})` }, t.distanceAxis);
  return svg;
}

/**
 * Wires the view. `run(message)` sends a worker request; `state()` returns
 * { info, current, name }; `relevance(current, k)` fetches class k's
 * relevance maps into `current` (shared with the page's "why this class");
 * `onStep(step)` hears which step is read (0: the view is closed); the
 * view follows the current image and model.
 */
export function setupLearn({ run, state, relevance, onStep = (/** @type {number} */ _step) => {} }) {
  const section = $('learn');
  const focus = { layer: 0, head: 0 };
  let walk = null;
  let shown = null; // the `current` the walk belongs to
  let why = []; // the top two classes, whose relevance step 9 shows

  const langPicker = $('learn-lang');
  langPicker.replaceChildren(...Object.entries(LANGUAGES).map(([k, v]) => new Option(v, k)));
  langPicker.value = lang;
  langPicker.addEventListener('change', () => {
    lang = langPicker.value;
    try { localStorage.setItem('vitrine-lang', lang); } catch { /* private mode: not remembered */ }
    render();
  });
  $('learn-open').addEventListener('click', () => open(1));
  $('learn-close').addEventListener('click', () => {
    section.hidden = true;
    onStep(0);
    $('learn-open').focus();
  });
  // The step read is the one nearest the top of the window.
  const visible = new Set(); // the steps in the top part of the window
  const reading = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const step = Number(e.target.id.replace('step-', ''));
      if (e.isIntersecting) visible.add(step);
      else visible.delete(step);
    }
    if (!section.hidden && visible.size) onStep(Math.min(...visible));
  }, { rootMargin: '0px 0px -60% 0px' });
  let wanted = 0; // a step to bring into view once the walk is drawn

  /** Opens the view at step `step` (1 to 9). */
  function open(step) {
    section.hidden = false;
    wanted = step;
    onStep(step);
    refresh();
    section.scrollIntoView({ behavior: 'smooth' });
    $('learn-heading').focus();
  }

  function sizes() {
    const { info, name } = state();
    const c = info.config;
    const [h, w] = c.img_size;
    const [rows, cols] = info.grid;
    const n = rows * cols;
    const names = info.prefixTokens;
    return {
      name, h, w, c: c.in_chans, p: c.patch_size, rows, cols, n, t: n + names.length, d: c.embed_dim,
      prefix: names.length, names, cls: c.class_token, dist: c.distilled, regs: c.reg_tokens,
      pool: c.global_pool, fcNorm: c.fc_norm, pooled: info.pooledWidth,
      patchLen: c.patch_size * c.patch_size * c.in_chans, layers: c.depth, heads: c.num_heads,
      hd: c.embed_dim / c.num_heads, mlp: c.mlp_hidden, classes: c.num_classes,
      photo: info.preprocess.photo?.invert_light_background || info.preprocess.photo?.fit_object,
      top: why.map((k) => info.labels[k]),
    };
  }

  /** Three patches worth a look: the most attended by the class token, the centre, a corner. */
  function focusPatches(current, s) {
    const last = s.layers - 1;
    const mean = Array.from(current.result.clsMean.subarray(last * s.n, (last + 1) * s.n));
    const top = mean.indexOf(Math.max(...mean));
    const centre = Math.floor(s.rows / 2) * s.cols + Math.floor(s.cols / 2);
    return [...new Set([top, centre, 0])];
  }

  async function refresh() {
    const { info, current } = state();
    if (section.hidden || !info) return;
    if (!current) {
      $('learn-steps').replaceChildren(el('p', { textContent: lang === 'ko' ? '먼저 이미지를 분류하세요.' : 'Classify an image first.' }));
      return;
    }
    const s = sizes();
    focus.layer = Math.min(focus.layer, s.layers - 1);
    focus.head = Math.min(focus.head, s.heads - 1);
    const patches = focusPatches(current, s);
    try {
      const { walk: w } = await run({ type: 'walkthrough', patches, layer: focus.layer, head: focus.head });
      // Step 9: the relevance of the top two classes, kept with the image
      // so the page's "why this class" reuses them.
      const p = current.result.probabilities;
      why = Array.from(p.keys()).sort((a, b) => p[b] - p[a]).slice(0, 2);
      // (one that fails leaves step 9 without it; the other steps stand)
      for (const k of why) await relevance(current, k);
      walk = { ...w, patches };
      shown = current;
      window.vitrineWalk = walk; // for tests and the curious
      render();
    } catch (e) {
      $('learn-steps').replaceChildren(el('p', { className: 'error', textContent: e.message }));
    }
  }

  function render() {
    const t = TEXT[lang];
    document.documentElement.lang = lang;
    $('learn-heading').textContent = t.heading;
    $('learn-close').textContent = t.close;
    $('learn-open').textContent = t.open;
    $('learn-lang-label').textContent = t.language;
    if (!walk || !state().info) return;
    const s = sizes();
    const { info } = state();
    $('learn-intro').textContent = t.intro(s);
    const L = t.labels;
    const steps = [];

    // 1. patches
    steps.push([figure(L.input, inputWithGrid(walk.input, info.preprocess, [s.rows, s.cols]))]);
    // 2. flattened patches and 3. their embeddings
    const names = walk.patches.map((p) => L.vector(p, Math.floor(p / s.cols), p % s.cols));
    steps.push(walk.patches.map((p, k) => figure(`${names[k]}: ${s.patchLen}`,
      heatmap(walk.patchVectors.subarray(k * s.patchLen, (k + 1) * s.patchLen), 1, s.patchLen, { scale: Math.max(1, 480 / s.patchLen), label: names[k] }))));
    steps.push(walk.patches.map((p, k) => figure(`${names[k]} → ${s.d}`,
      heatmap(walk.patchEmbeddings.subarray(k * s.d, (k + 1) * s.d), 1, s.d, { scale: Math.max(1, 480 / s.d), label: names[k] }))));
    // 4. the learned tokens before the patches: class, distillation, registers
    steps.push(s.names.map((name, k) => figure(`${name}: ${s.d}`,
      heatmap(walk.prefixTokens.subarray(k * s.d, (k + 1) * s.d), 1, s.d, { scale: Math.max(1, 480 / s.d), label: `${name} token` }))));
    // 5. position similarity: one small map per position
    const grid = el('div', { className: 'pos-grid' });
    grid.style.gridTemplateColumns = `repeat(${s.cols}, auto)`;
    for (let i = 0; i < s.n; i++) {
      grid.append(heatmap(walk.positionSimilarity.subarray(i * s.n, (i + 1) * s.n), s.rows, s.cols, { scale: 28 / Math.max(s.rows, s.cols), label: L.vector(i, Math.floor(i / s.cols), i % s.cols) }));
    }
    steps.push([grid]);
    // 6. the chosen layer
    const layerPick = el('label', {}, `${t.layer} `, el('select', { id: 'learn-layer' },
      ...Array.from({ length: s.layers }, (_, l) => new Option(String(l), String(l)))));
    const headPick = el('label', {}, `${t.head} `, el('select', { id: 'learn-head' },
      ...Array.from({ length: s.heads }, (_, h) => new Option(String(h), String(h)))));
    layerPick.querySelector('select').value = focus.layer;
    headPick.querySelector('select').value = focus.head;
    layerPick.querySelector('select').addEventListener('change', (e) => { focus.layer = Number(e.target.value); refresh(); });
    headPick.querySelector('select').addEventListener('change', (e) => { focus.head = Number(e.target.value); refresh(); });
    const qkvScale = Math.max(1, Math.min(4, 160 / s.t));
    // The class token's row of the attention matrix (without one, the
    // patches' mean row), over the model's input; and each token's share of it.
    const row = new Float32Array(s.t);
    const looking = s.cls ? [0] : Array.from({ length: s.n }, (_, j) => s.prefix + j);
    for (const i of looking) for (let j = 0; j < s.t; j++) row[j] += walk.attention[i * s.t + j] / looking.length;
    const clsMap = mapOverInput(walk.input, info.preprocess, [s.rows, s.cols], row.subarray(s.prefix));
    const patchShare = row.subarray(s.prefix).reduce((a, b) => a + b, 0);
    const shares = el('table', { className: 'norms shares' },
      el('caption', { textContent: `${t.head} ${focus.head}` }),
      ...s.names.map((name, k) => el('tr', {}, el('th', { scope: 'row', textContent: L.share(name) }), el('td', { textContent: `${(row[k] * 100).toFixed(1)}%` }))),
      el('tr', {}, el('th', { scope: 'row', textContent: L.patchesShare }), el('td', { textContent: `${(patchShare * 100).toFixed(1)}%` })));
    const mean = (from) => walk.tokenNorms.subarray(from * s.t, (from + 1) * s.t).reduce((a, b) => a + b, 0) / s.t;
    const norms = el('table', { className: 'norms' },
      el('caption', { textContent: L.meanNorm }),
      ...[[L.normsBefore, 0], [L.normsAttn, 1], [L.normsMlp, 2]].map(([label, k]) =>
        el('tr', {}, el('th', { scope: 'row', textContent: label }), el('td', { textContent: mean(k).toFixed(2) }))));
    steps.push([
      el('div', { className: 'row' }, layerPick, headPick),
      el('div', { className: 'figures' },
        figure(`${L.q} ${s.t}×${s.hd}`, heatmap(walk.queries, s.t, s.hd, { scale: qkvScale, label: L.q })),
        figure(`${L.k} ${s.t}×${s.hd}`, heatmap(walk.keys, s.t, s.hd, { scale: qkvScale, label: L.k })),
        figure(`${L.v} ${s.t}×${s.hd}`, heatmap(walk.values, s.t, s.hd, { scale: qkvScale, label: L.v })),
        figure(`${L.normed} ${s.t}×${s.d}`, heatmap(walk.normed, s.t, s.d, { scale: Math.min(2, 192 / s.d), label: L.normed })),
        figure(`${L.attention} ${s.t}×${s.t}`, heatmap(walk.attention, s.t, s.t, { scale: Math.max(1, 200 / s.t), label: L.attention })),
        figure(`${L.normed2} ${s.t}×${s.d}`, heatmap(walk.normed2, s.t, s.d, { scale: Math.min(2, 192 / s.d), label: L.normed2 })),
        figure(`${L.mlpOut} ${s.t}×${s.d}`, heatmap(walk.mlpOut, s.t, s.d, { scale: Math.min(2, 192 / s.d), label: L.mlpOut })),
        figure(s.cls ? L.clsRow : L.patchesShare, clsMap),
        ...(s.prefix !== 1 || !s.cls ? [shares] : []),
        norms),
    ]);
    // 7. mean attention distance
    const maxDistance = Math.hypot(s.rows - 1, s.cols - 1) * s.p;
    steps.push([distancePlot(walk.meanDistance, s.layers, s.heads, maxDistance, L)]);
    // 8. head and softmax
    const order = Array.from(walk.probabilities.keys()).sort((a, b) => walk.probabilities[b] - walk.probabilities[a]).slice(0, 5);
    steps.push([
      figure(`${L.pooled}: ${s.pooled}`, heatmap(walk.pooled, 1, s.pooled, { scale: Math.max(1, 480 / s.pooled), label: L.pooled })),
      order.length
        ? figure(L.top, el('ol', {}, ...order.map((i) => el('li', { textContent: `${info.labels[i]}: logit ${walk.logits[i].toFixed(2)} → ${(walk.probabilities[i] * 100).toFixed(1)}%` }))))
        : el('p', { textContent: L.noHead }),
    ]);
    // 9. attention (one map for every class) beside the top classes' relevance
    const over = (map) => mapOverInput(walk.input, info.preprocess, [s.rows, s.cols], map);
    const current = shown; // the image the walk belongs to
    steps.push(s.classes && current ? [
      figure(L.rollout, over(current.result.rollout)),
      ...why.filter((k) => current.relevance[k]).map((k) => figure(L.why(info.labels[k]), over(current.relevance[k].chefer))),
    ] : []);

    $('learn-steps').replaceChildren(...t.steps.map((step, i) => el('section', { className: 'step', id: `step-${i + 1}` },
      el('h3', { textContent: step.title }),
      el('p', { textContent: step.body(s) }),
      el('div', { className: 'figures' }, ...steps[i]))));
    reading.disconnect();
    visible.clear();
    for (const step of $('learn-steps').querySelectorAll('.step')) reading.observe(step);
    if (wanted > 1) document.getElementById(`step-${wanted}`)?.scrollIntoView();
    wanted = 0;
    document.body.dataset.walkthrough = String(Date.now());
  }

  render();
  return {
    /** Called after every classification and model change. */
    update() { if (!section.hidden && state().current !== shown) refresh(); },
    open,
  };
}
