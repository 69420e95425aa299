// @ts-check
// Compare: the image shown, run through a second model from the Hub in a
// worker of its own, its map beside the first one's under the same
// controls: the same relative depth (layer 6 of 12 ↔ layer 12 of 24), the
// same head where it has one (else the mean), the same point of the image
// when pointing; each with its own top-5, each grid over the same image;
// both models' mean attention distances on one plot. The two must fit the
// memory the page gives models' weights, or the page says which does not,
// and why. `?compare=hf:org/name` restores it.
import { connect } from './rpc.js';
import { parseModelRef } from './hub.js';
import { galleryModels, hubEndpoint, hubModelFiles, mb, suggested } from './hubpage.js';
import { keptModels } from './hubcache.js';
import { drawMap, headMap, patchRow, thresholdMask } from './overlay.js';
import { headIndex } from './controls.js';
import { notify, onUpdate, state, update } from './store.js';
import { exclusive } from './models.js';
import { $ } from './dom.js';

/** @typedef {import('./vitrine').ModelInfo} ModelInfo */
/** @typedef {import('./vitrine').Prediction} Prediction */

const params = new URLSearchParams(location.search);

/**
 * The memory the page gives models' weights, all models together: `?memory=MB`,
 * else half of what the browser says the device has (Chromium reports at
 * most 8 GB), else half of 4 GB; `how` says which.
 */
export function weightsBudget() {
  const asked = Number(params.get('memory'));
  if (Number.isFinite(asked) && asked > 0) return { bytes: asked * 1e6, how: 'as ?memory= asks' };
  const device = /** @type {any} */ (navigator).deviceMemory;
  if (device) return { bytes: (device * 1e9) / 2, how: 'half the memory the browser reports; ?memory=MB sets it' };
  return { bytes: 2e9, how: 'half of 4 GB, as this browser does not say how much memory the device has; ?memory=MB sets it' };
}

/**
 * How models of `a` and `b` bytes fit `budget`: both at once (`both`), only
 * one at a time (`turns`: they run in turn), or not at all (`none`: the
 * second alone is too big); `text` says why, naming the one that does not fit.
 * @param {{ name: string, bytes: number }} a the model in use
 * @param {{ name: string, bytes: number }} b the one to compare with
 * @param {{ bytes: number, how: string }} budget from weightsBudget
 * @returns {{ fits: 'both' | 'turns' | 'none', text: string }}
 */
export function budgetFit(a, b, { bytes: budget, how }) {
  const whose = `this page gives models' weights ${mb(budget)} on this device (${how})`;
  if (b.bytes > budget) return { fits: 'none', text: `${b.name} alone needs ${mb(b.bytes)}, and ${whose}.` };
  if (a.bytes + b.bytes > budget) {
    return { fits: 'turns', text: `${a.name} (${mb(a.bytes)}) and ${b.name} (${mb(b.bytes)}) together need ${mb(a.bytes + b.bytes)}, and ${whose}: they run in turn, each image through one, then the other, with one model in memory at a time (slower: each is loaded again for each image).` };
  }
  return { fits: 'both', text: '' };
}

/**
 * The layer of a model `depthB` deep at the same relative depth as layer
 * `layer` of one `depthA` deep (both counted from 0): 5 of 12 ↔ 11 of 24.
 */
export const sameDepth = (/** @type {number} */ layer, /** @type {number} */ depthA, /** @type {number} */ depthB) =>
  Math.max(0, Math.min(depthB - 1, Math.round(((layer + 1) * depthB) / depthA) - 1));

/**
 * Patch `patch` of grid A (its crop `boxA` of the image), as the patch of
 * grid B (crop `boxB`) over the same point of the image; -1 when B's crop
 * does not reach it.
 */
export function samePoint(patch, [rowsA, colsA], boxA, [rowsB, colsB], boxB) {
  const x = boxA[0] + (((patch % colsA) + 0.5) / colsA) * (boxA[2] - boxA[0]);
  const y = boxA[1] + ((Math.floor(patch / colsA) + 0.5) / rowsA) * (boxA[3] - boxA[1]);
  const c = Math.floor(((x - boxB[0]) / (boxB[2] - boxB[0])) * colsB);
  const r = Math.floor(((y - boxB[1]) / (boxB[3] - boxB[1])) * rowsB);
  return c >= 0 && r >= 0 && c < colsB && r < rowsB ? r * colsB + c : -1;
}

/**
 * Wires Compare. `run` sends a request to the first model's worker.
 * @param {{ run: (message: any) => Promise<any> }} options
 */
export function setupCompare({ run }) {
  /** @type {ReturnType<typeof connect> | null} */
  let worker = null;
  /** @type {ModelInfo | null} */
  let info = null;
  let ref = '';
  /** @type {{ image: number, result: Prediction, rows: Record<number, any>, distance: Float32Array | null } | null} */
  let shown = null;
  let asking = 0; // the image whose answer is awaited
  /** @type {AbortController | null} */
  let download = null;
  let generation = 0; // the newest start: an older one stops where it is
  let distanceOf = /** @type {{ image: number, a: Float32Array, b: Float32Array } | null} */ (null);
  /** Running in turn: the second model's files, loaded for each image, and why. */
  let turns = /** @type {{ files: import('./protocol.js').ModelFiles, note: string } | null} */ (null);

  const status = (/** @type {string} */ text) => { $('compare-status').textContent = text; };

  async function fillPicker() {
    const kept = await keptModels().catch(() => []);
    const picker = /** @type {HTMLSelectElement} */ ($('compare-with'));
    const listed = new Map(galleryModels().map((m) => [m.repo, m.title]));
    for (const k of kept) if (k.endpoint === hubEndpoint()) listed.set(k.repo, suggested(k.repo)?.title ?? k.repo);
    const value = picker.value;
    picker.replaceChildren(new Option('nothing', ''), ...[...listed].map(([repo, title]) => new Option(title, `hf:${repo}`)));
    if (ref && !listed.has(parseModelRef(ref).repo)) picker.append(new Option(ref.slice(3), ref));
    picker.value = ref || value;
  }

  function stop() {
    generation += 1;
    download?.abort();
    worker?.close();
    worker = null;
    info = null;
    turns = null;
    ref = '';
    shown = null;
    distanceOf = null;
    $('compare').hidden = true;
    $('compare-stop').hidden = true;
    document.body.classList.remove('comparing');
    delete document.body.dataset.compared;
    if (state.compare) update({ compare: null });
  }

  /** Stops comparing, and says so in the picker. */
  function stopAll() {
    stop();
    /** @type {HTMLSelectElement} */ ($('compare-with')).value = '';
  }

  /** Starts comparing with `text` (`hf:org/name[@rev]`). */
  async function start(/** @type {string} */ text) {
    stop();
    if (!text) return;
    const mine = ++generation; // a newer start (or a stop) supersedes this one
    const stale = () => mine !== generation;
    let repo;
    let revision;
    try {
      ({ repo, revision } = parseModelRef(text));
    } catch (e) {
      status(e.message);
      return;
    }
    ref = text;
    update({ compare: text });
    $('compare').hidden = false;
    $('compare-stop').hidden = false;
    /** @type {HTMLSelectElement} */ ($('compare-with')).value = text;
    document.body.classList.add('comparing');
    delete document.body.dataset.compareRefused;
    clearPicture();
    const title = suggested(repo)?.title ?? repo;
    $('compare-name').textContent = title;
    const budget = weightsBudget();
    const first = { name: state.info?.name ?? 'the model in use', bytes: state.info?.weightBytes ?? 0 };
    const controller = new AbortController();
    download = controller;
    let said = false; // a verdict is shown: the download's progress no longer overwrites it
    try {
      const got = await hubModelFiles(hubEndpoint(), repo, revision, {
        signal: controller.signal,
        onProgress: (p) => { if (!said && !stale()) status(`Downloading ${title}: ${mb(p.done)}${p.total ? ` of ${mb(p.total)}` : ''}…`); },
      });
      if (stale() || !got) {
        if (got?.files.weights instanceof ReadableStream) got.files.weights.cancel().catch(() => {});
        return;
      }
      // Its size before it is loaded: the host's list, the download's, or the browser's copy's.
      const weights = got.files.weights;
      const size = suggested(repo)?.bytes || /** @type {any} */ (got.files).bytes || (weights instanceof Blob ? weights.size : 0);
      let fit = budgetFit(first, { name: title, bytes: size }, budget);
      let loaded = false;
      if (fit.fits === 'both') {
        status(`Loading ${title}…`);
        const w = connect(state.backend, params.get('simd'));
        worker = w;
        await w.ready;
        const answer = await w.request({ type: 'load', files: got.files, seq: 1 });
        loaded = true;
        await Promise.all([got.kept?.catch(() => null), got.ended?.catch(() => null)]);
        if (stale()) return;
        info = answer.info;
        fit = budgetFit(first, { name: title, bytes: answer.info.weightBytes }, budget);
      }
      said = fit.fits !== 'both' || loaded;
      if (fit.fits === 'none') {
        if (!loaded && weights instanceof ReadableStream) controller.abort();
        return refuse(fit.text);
      }
      if (fit.fits === 'turns') {
        worker?.close();
        worker = null;
        // Each turn loads it again: from the browser's copy (a download is kept first).
        if (!loaded && weights instanceof ReadableStream) weights.cancel().catch(() => {});
        if (got.kept) status(`${fit.text} Keeping ${title} in this browser first…`);
        const done = got.kept ? await got.kept : null;
        if (stale()) return;
        turns = { files: { ...got.files, weights: done ? done.files.weights : weights }, note: fit.text };
        if (!(turns.files.weights instanceof Blob)) return refuse(`${fit.text} But ${title} could not be kept in this browser to be loaded again.`);
        const again = state.source?.files.weights;
        if (!(again instanceof Blob || again instanceof ArrayBuffer)) return refuse(`${fit.text} But ${first.name} cannot be loaded again from this page: load it anew first.`);
      }
      said = true;
      status(turns?.note ?? '');
      fillPicker();
      ask();
    } catch (e) {
      said = true;
      controller.abort();
      if (!stale()) refuse(`Could not load ${title} to compare: ${String(e.message ?? e).replace(/\.$/, '')}.`);
    } finally {
      if (download === controller) download = null;
    }
  }

  /** The second picture, its caption and top-5 cleared (a new model, or none). */
  function clearPicture() {
    $('compare-top').replaceChildren();
    $('compare-caption').textContent = '';
    for (const id of ['compare-image', 'compare-overlay']) {
      const c = /** @type {HTMLCanvasElement} */ ($(id));
      c.getContext('2d')?.clearRect(0, 0, c.width, c.height);
    }
  }

  function refuse(/** @type {string} */ why) {
    worker?.close();
    worker = null;
    info = null;
    turns = null;
    status(why);
    clearPicture();
    document.body.dataset.compareRefused = why;
  }

  /** The image shown, through the second model (once per image). */
  async function ask() {
    const { current } = state;
    if (!(worker && info) && !turns) return;
    if (!current || shown?.image === current.id || asking === current.id) return;
    const mine = generation;
    asking = current.id;
    const canvas = /** @type {any} */ (current.bitmap);
    const { width, height } = canvas;
    const rgba = canvas.getContext('2d').getImageData(0, 0, width, height).data.buffer;
    try {
      const answer = turns ? await inTurn(turns, current.id, rgba, width, height) : { result: (await /** @type {any} */ (worker).request({ type: 'classify', rgba, width, height, image: current.id })).result, distance: null };
      if (generation !== mine || state.current !== current) return;
      shown = { image: current.id, result: answer.result, rows: {}, distance: answer.distance };
      draw();
      drawDistance();
    } catch (e) {
      if (generation === mine) status(`${$('compare-name').textContent} could not classify the image: ${e.message}`);
    } finally {
      if (asking === current.id) asking = 0;
    }
  }

  /**
   * One turn, in the first model's own worker (so that the second reuses
   * the memory the first gave back: WebAssembly memory never shrinks): the
   * first model freed, the second loaded for this image (its result and
   * attention distances read) and freed, then the first loaded again and
   * given the image again (so that pointing and "why this class" still
   * work). The page's other requests wait meanwhile.
   */
  function inTurn(/** @type {{ files: any, note: string }} */ turn, /** @type {number} */ image, /** @type {ArrayBuffer} */ rgba, /** @type {number} */ width, /** @type {number} */ height) {
    status(`${turn.note} Now: ${$('compare-name').textContent}…`);
    const { source } = state;
    if (!source) return Promise.reject(new Error('no model is in use'));
    return exclusive(async (request) => {
      await request({ type: 'unload' });
      try {
        info = (await request({ type: 'load', files: turn.files, seq: source.seq })).info;
        const { result } = await request({ type: 'classify', rgba, width, height, image });
        const { walk } = await request({ type: 'walkthrough', patches: [0], layer: 0, head: 0 });
        return { result, distance: walk.meanDistance };
      } finally {
        await request({ type: 'unload' });
        try {
          await request({ type: 'load', files: source.files, seq: source.seq });
          await request({ type: 'classify', rgba, width, height, image, forRelevance: state.view.show === 'relevance' });
          status(turn.note);
        } catch (e) {
          // The first model could not come back: say so, and stop comparing.
          notify({ error: `${source.name} could not be loaded again after ${$('compare-name').textContent}'s turn (${e.message}): load a model again.` });
          stop();
        }
      }
    });
  }

  /** The second model's map under the page's controls, and its top-5. */
  function draw() {
    const { current, view } = state;
    if (!shown || !info || !current || !state.info || shown.image !== current.id) return;
    const { result } = shown;
    const depthA = state.info.config.depth;
    const depth = info.config.depth;
    const heads = info.config.num_heads;
    const layer = sameDepth(view.layer, depthA, depth);
    const [rows, cols] = result.grid;
    const n = rows * cols;
    const asked = headIndex(view.head);
    // The same head where it has one; else the mean (rollout is rollout).
    const head = typeof asked === 'number' ? (asked < heads ? asked : 'mean') : asked === 'rollout' || asked === 'grad-rollout' ? 'rollout' : 'mean';
    const point = state.patch >= 0 ? samePoint(state.patch, current.result.grid, current.viewBox, result.grid, Array.from(result.viewBox)) : -1;
    let map;
    let what;
    const depthText = `layer ${layer} of ${depth}${depth !== depthA ? ` (the depth of layer ${view.layer} of ${depthA})` : ''}`;
    const headText = head === 'mean' ? 'mean of the heads' : head === 'rollout' ? 'rollout' : `head ${head}`;
    if (point >= 0 && head !== 'rollout' && turns) {
      // In turn, the second model is not in memory to read a layer's rows.
      map = headMap(result, n, layer, head === 'mean' ? 'mean' : head);
      what = `${depthText}, ${headText} (pointing shows the class token's map here: the two models run in turn)`;
    } else if (point >= 0 && head !== 'rollout') {
      const rowsOf = shown.rows[layer];
      if (!rowsOf) {
        readRows(layer);
        map = headMap(result, n, layer, head === 'mean' ? 'mean' : head);
        what = 'reading that layer…';
      } else {
        map = patchRow(rowsOf, n, point, head, info.prefixTokens.length);
        what = `${depthText}, ${headText}: where the patch at the same point looks`;
      }
    } else {
      map = head === 'rollout' ? result.rollout : headMap(result, n, layer, head);
      what = `${head === 'rollout' ? 'rollout over all layers' : `${depthText}, ${headText}`}`;
    }
    const img = /** @type {HTMLCanvasElement} */ ($('compare-image'));
    const ctx = /** @type {CanvasRenderingContext2D} */ (img.getContext('2d'));
    const [x0, y0, x1, y1] = result.viewBox;
    ctx.fillStyle = 'black';
    ctx.fillRect(0, 0, img.width, img.height);
    ctx.drawImage(/** @type {any} */ (current.bitmap), x0, y0, x1 - x0, y1 - y0, 0, 0, img.width, img.height);
    const mask = view.threshold ? thresholdMask(map, view.mass) : null;
    drawMap($('compare-overlay'), map, result.grid, { colormap: view.colormap, smooth: view.smooth, mask });
    $('compare-overlay').style.opacity = String(view.opacity);
    const why = view.show === 'relevance' ? ' (it shows where it looks: "why this class" is asked of the first model only)' : '';
    $('compare-caption').textContent = `${$('compare-name').textContent}, ${rows}×${cols} patches: ${what}${why}.`;
    const p = result.probabilities;
    const order = Array.from(p.keys()).sort((a, b) => p[b] - p[a]).slice(0, 5);
    $('compare-top').replaceChildren(...(order.length ? order.map((k) => {
      const li = document.createElement('li');
      li.textContent = `${info?.labels[k]} — ${(p[k] * 100).toFixed(1)}%`;
      li.dataset.index = String(k);
      return li;
    }) : [Object.assign(document.createElement('li'), { textContent: 'A backbone: no classes, only features.', className: 'hint' })]));
    document.body.dataset.compared = `${current.id}:${layer}:${head}:${point}`; // for tests: this is drawn
  }

  /** The second model's full attention of `layer`, for pointing. */
  async function readRows(/** @type {number} */ layer) {
    const mine = shown;
    if (!worker || !mine || mine.rows[layer] === null) return;
    mine.rows[layer] = null; // asked
    try {
      const answer = await worker.request({ type: 'attention', layer });
      mine.rows[layer] = { layerAttention: answer.layerAttention, layerMean: answer.layerMean };
      if (mine === shown) draw();
    } catch (e) {
      delete mine.rows[layer];
      status(`Could not read layer ${layer}'s attention: ${e.message}`);
    }
  }

  /**
   * Both models' mean attention distance, each head of each layer, against
   * relative depth, as a share of each model's input width, on one plot.
   */
  async function drawDistance() {
    const panel = /** @type {HTMLDetailsElement} */ ($('compare-distance'));
    const { current } = state;
    const mine = shown;
    if (!panel.open || !mine || !info || !current || !state.info || distanceOf?.image === current.id || mine.image !== current.id) return;
    const image = current.id;
    /** @type {import('./protocol.js').Request} */
    const walk = { type: 'walkthrough', patches: [0], layer: 0, head: 0 };
    try {
      // In turn, the second model's were read during its turn.
      const [a, b] = await Promise.all([run(walk), mine.distance ?? worker?.request(walk).then((x) => x.walk.meanDistance)]);
      if (state.current?.id !== image || mine !== shown || !b) return;
      distanceOf = { image, a: a.walk.meanDistance, b };
    } catch (e) {
      $('compare-distance-text').textContent = `The distances could not be computed: ${e.message}.`;
      return;
    }
    const models = [
      { name: state.info.name, config: state.info.config, d: distanceOf.a, colour: 'var(--accent)' },
      { name: $('compare-name').textContent, config: info.config, d: distanceOf.b, colour: '#d9480f' },
    ];
    $('compare-plot').replaceChildren(...plot(models));
    const mean = (/** @type {any} */ m, /** @type {number} */ l) => {
      const h = m.config.num_heads;
      return m.d.subarray(l * h, (l + 1) * h).reduce((s, v) => s + v, 0) / h / m.config.img_size[1];
    };
    $('compare-distance-text').textContent = models.map((m) => `${m.name}: from ${(100 * mean(m, 0)).toFixed(0)}% of the image's width in layer 0 to ${(100 * mean(m, m.config.depth - 1)).toFixed(0)}% in layer ${m.config.depth - 1}`).join('; ')
      + '. Each dot is one head, the line the mean of the heads; the paper’s Figure 7 (right) shows the same in pixels for one model.';
    document.body.dataset.compareDistance = String(image); // for tests
  }

  $('compare-with').addEventListener('change', () => start(/** @type {HTMLSelectElement} */ ($('compare-with')).value));
  $('compare-stop').addEventListener('click', stopAll);
  $('compare-distance').addEventListener('toggle', () => drawDistance());
  onUpdate((s, changed) => {
    if ('info' in changed && s.info && ref) {
      // Another first model: the budget is checked again, the second loaded afresh.
      const again = ref;
      queueMicrotask(() => { if (ref === again) start(again); });
    }
    if ('current' in changed) ask();
    if (['current', 'view', 'patch'].some((k) => k in changed)) draw();
  });
  fillPicker();

  return {
    start,
    stop: stopAll,
    refresh: fillPicker,
    /** The second worker's memory: for tests and the curious. */
    memory: () => worker?.request({ type: 'memory' }) ?? Promise.resolve(null),
  };
}

/**
 * The distance plot: x the relative depth (0 to 1), y the share of the
 * input's width; a dot a head, a line through each layer's mean.
 * @param {{ name: string, config: any, d: Float32Array, colour: string }[]} models
 */
function plot(models) {
  const NS = 'http://www.w3.org/2000/svg';
  const [w, h, pad] = [360, 220, 32];
  const el = (/** @type {string} */ tag, /** @type {Record<string, any>} */ attrs) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    return e;
  };
  let top = 0;
  for (const m of models) for (let l = 0; l < m.config.depth; l++) {
    for (let k = 0; k < m.config.num_heads; k++) top = Math.max(top, m.d[l * m.config.num_heads + k] / m.config.img_size[1]);
  }
  top = Math.max(0.05, Math.ceil(top * 10) / 10);
  const x = (/** @type {number} */ f) => pad + f * (w - 2 * pad);
  const y = (/** @type {number} */ f) => h - pad - (f / top) * (h - 2 * pad);
  const svg = el('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': 'Mean attention distance against relative depth, both models' });
  svg.append(el('line', { x1: x(0), y1: y(0), x2: x(1), y2: y(0), stroke: 'currentColor' }), el('line', { x1: x(0), y1: y(0), x2: x(0), y2: y(top), stroke: 'currentColor' }));
  const label = (/** @type {string} */ text, /** @type {Record<string, any>} */ attrs) => {
    const t = el('text', { 'font-size': 10, fill: 'currentColor', ...attrs });
    t.textContent = text;
    return t;
  };
  svg.append(label('relative depth →', { x: x(0.5), y: h - 6, 'text-anchor': 'middle' }),
    label(`${Math.round(top * 100)}%`, { x: 4, y: y(top) + 4 }), label('0', { x: pad - 12, y: y(0) + 4 }));
  models.forEach((m, i) => {
    const { depth, num_heads: heads, img_size: size } = m.config;
    const points = [];
    for (let l = 0; l < depth; l++) {
      const at = x(depth === 1 ? 1 : l / (depth - 1));
      let sum = 0;
      for (let k = 0; k < heads; k++) {
        const v = m.d[l * heads + k] / size[1];
        sum += v;
        svg.append(el('circle', { cx: at, cy: y(v), r: 2, fill: m.colour, opacity: 0.6, class: `dot m${i}` }));
      }
      points.push(`${at},${y(sum / heads)}`);
    }
    svg.append(el('polyline', { points: points.join(' '), fill: 'none', stroke: m.colour, 'stroke-width': 2 }));
    svg.append(label(m.name, { x: x(0) + 6, y: pad - 14 + i * 12, fill: m.colour }));
  });
  return [svg];
}
