// Drawing the page's results: the picture the model saw, the chosen
// attention map over it, the per-head grid, the top-5 and the timings. The
// maps come computed from Rust; overlay.js draws them.
import { drawMap, drawPatchCursor, headMap, inputPicture, patchRow, thresholdMask } from './overlay.js';
import { headIndex, setView } from './controls.js';
import { $ } from './dom.js';


/** One line about a model's shape and size (`info` as the worker gives it). */
export function describeModel(name, { config: c, grid: [rows, cols], parameters, weightBytes, executor, origin = null }) {
  const [h, w] = c.img_size;
  const n = rows * cols;
  const count = parameters >= 1e6 ? `${(parameters / 1e6).toFixed(1)} M` : `${Math.round(parameters / 1e3)} k`;
  const classes = c.num_classes ? `${c.num_classes} classes` : 'no classifier (a backbone)';
  // Below four bytes a weight, the matrices were kept in the file's f16.
  const mb = (weightBytes / 2 ** 20).toFixed(weightBytes < 10 * 2 ** 20 ? 1 : 0);
  const held = weightBytes && weightBytes < 4 * parameters ? `${mb} MB in memory, matrices in f16` : `${mb} MB in memory`;
  return `Model “${name}”: ${h}×${w}×${c.in_chans} input → ${n} patches of ${c.patch_size}×${c.patch_size}, `
    + `D = ${c.embed_dim}, ${c.depth} layers × ${c.num_heads} heads, ${classes}, ${count} parameters (${held}); `
    + `run by ${executor}.` + (origin ? ` From ${origin}.` : '');
}

/**
 * What the model can answer, in one line beside its predictions: its
 * classes, or that it has none (a backbone shows only where it looks).
 */
export function knows(info) {
  const { labels, config, name } = info;
  if (config.num_classes === 0) {
    return `${name} has no classifier: it is a backbone, so there are no classes to predict; the maps show where it looks.`;
  }
  const some = labels.slice(0, 3).join(', ');
  return `${name} knows ${labels.length} classes (${some}${labels.length > 3 ? ', …' : ''}); anything else gets a guess among them.`;
}

/**
 * Input sizes to offer for a checkpoint whose own size is `native` px with
 * patches of `patch` px: multiples of the patch around it, up to 1024.
 */
export function sizeChoices(native, patch) {
  const sizes = [0.5, 0.75, 1, 1.25, 1.5, 2, 2.5, 3]
    .map((f) => Math.max(2, Math.round((native * f) / patch)) * patch)
    .filter((s) => s <= Math.max(native, 1024));
  return [...new Set([...sizes, native])].sort((a, b) => a - b);
}

/**
 * What depends on the model in use besides the map controls: the input
 * sizes, a training checkpoint's choice of weights, the model line.
 */
export function showModel(info) {
  const c = info.config;
  $('model-info').textContent = describeModel(info.name, info); // names are text, never HTML
  const [native] = info.nativeSize;
  $('resolution').replaceChildren(...sizeChoices(native, c.patch_size).map((px) => {
    const grid = px / c.patch_size;
    return new Option(`${px} px (${grid}×${grid} patches)${px === native ? ', its own' : ''}`, px, false, px === c.img_size[0]);
  }));
  $('resolution').disabled = false;
  // A training checkpoint with more than one model (DINO's teacher and student): choose.
  const keys = info.weightsKeys ?? [];
  $('weights-key-row').hidden = keys.length < 2;
  $('weights-key').replaceChildren(...keys.map((k) => new Option(k, k, false, k === info.weightsKey)));
  $('weights-key').disabled = false;
  document.body.dataset.model = info.name;
  document.body.dataset.ready = 'true';
  clearResults();
}

/**
 * The notices, each kind in its place: a problem in red, a warning, and
 * the notes on the model and the image as sentences.
 */
export function renderNotices({ error, warning, modelNotes, imageNotes }) {
  $('message').textContent = error;
  $('warning').textContent = warning;
  $('note').textContent = [...modelNotes, ...imageNotes].join(' ');
}

/** Empties the result panes. */
export function clearResults() {
  for (const id of ['top', 'heads']) $(id).replaceChildren();
  for (const id of ['timings', 'truth', 'caption', 'knows', 'map-note', 'top-hint']) $(id).textContent = '';
  for (const id of ['image', 'overlay', 'cursor']) $(id).getContext('2d').clearRect(0, 0, 448, 448);
}


/**
 * The class-specific map now chosen: Chefer et al.'s relevance, gradient
 * rollout, or one head's gradient-weighted attention of the chosen layer;
 * `map` is null while it is being computed.
 */
function relevanceMap({ current, info, view }) {
  const k = current.why;
  const label = `“${info.labels[k]}”`;
  const r = current.relevance[k];
  if (!r) return { map: null, what: current.failed[k] ?? `Working out why ${label}: one backward pass through the model…` };
  const [gr, gc] = current.result.grid;
  const n = gr * gc;
  const head = headIndex(view.head);
  const pct = `${(current.result.probabilities[k] * 100).toFixed(1)}%`;
  const why = `Why ${label} (${pct})`;
  if (head === 'chefer' || head === 'mean') {
    return { map: r.chefer, what: `${why}, by Chefer et al.'s relevance: every layer's attention weighted by how much it raised the score of ${label} (its gradient), kept where it helped, accumulated through the layers. Bright patches pushed the model towards ${label}.` };
  }
  if (head === 'grad-rollout' || head === 'rollout') {
    return { map: r.gradRollout, what: `${why}, by gradient-weighted rollout: the attention times its gradient for ${label}, the weakest 90% of each layer dropped, multiplied through the layers.` };
  }
  const { layer } = view;
  const at = (layer * current.result.heads + Number(head)) * n;
  return { map: r.heads.subarray(at, at + n), what: `${why}: layer ${layer}, head ${head}, its attention times its gradient for ${label}, where positive: what this head contributed to the class.` };
}
const style = ({ colormap, smooth }) => ({ colormap, smooth });

/** The map now chosen: a CLS row (or the patches' mean row), the rollout, or the pointed patch's row. */
export function chosenMap({ current, patch, info, view }) {
  const { result, rows } = current;
  const [gr, gc] = result.grid;
  const n = gr * gc;
  const { layer } = view;
  const head = headIndex(view.head);
  if (patch >= 0 && rows[layer]) {
    const h = typeof head === 'number' ? head : 'mean';
    return { map: patchRow(rows[layer], n, patch, h, info.prefixTokens.length), what: patchCaption({ current, patch }, layer, h) };
  }
  // A pointed patch shows its attention once that layer's rows are here.
  if (view.show === 'relevance' && (patch < 0 || !rows[layer])) return relevanceMap({ current, info, view });
  const cls = info.config.class_token;
  if (head === 'rollout') {
    return {
      map: result.rollout,
      what: `Attention rollout over all layers: what ${cls ? 'the class token draws' : 'the patches, on average, draw'} on, through every layer.`,
    };
  }
  return {
    map: headMap(result, n, layer, head),
    what: `Layer ${layer}, ${head === 'mean' ? 'mean of the heads' : `head ${head}`}: ${cls ? 'where the class token looks' : 'the attention each patch receives, averaged over all patches'}.`,
  };
}

function patchCaption({ current, patch }, layer, head) {
  const cols = current.result.grid[1];
  return `Layer ${layer}, ${head === 'mean' ? 'mean of the heads' : `head ${head}`}: where the patch at row ${Math.floor(patch / cols)}, column ${patch % cols} looks.`;
}

/** Draws the current result: the picture, the chosen map, the head grid, the top-5 and timings. */
export function renderView(state) {
  const { current, info, patch, backend, view } = state;
  if (!current || !info) return;
  const { result, bitmap, viewBox } = current;
  const [x0, y0, x1, y1] = viewBox;
  const img = $('image');
  const ctx = img.getContext('2d');
  ctx.fillStyle = 'black';
  ctx.fillRect(0, 0, img.width, img.height);
  if (view.picture === 'input') {
    // The tensor the model received, its normalisation undone: pixel for pixel.
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(inputPicture(result.input, info.preprocess), 0, 0, img.width, img.height);
    ctx.imageSmoothingEnabled = true;
  } else {
    // Show exactly what the model saw: its crop of the image, scaled to the canvas.
    ctx.drawImage(bitmap, x0, y0, x1 - x0, y1 - y0, 0, 0, img.width, img.height);
  }

  const { map, what } = chosenMap(state);
  const mask = map && view.threshold ? thresholdMask(map, view.mass) : null;
  if (map) drawMap($('overlay'), map, result.grid, { ...style(view), mask });
  else $('overlay').getContext('2d').clearRect(0, 0, $('overlay').width, $('overlay').height);
  showOpacity(view);
  drawPatchCursor($('cursor'), patch, result.grid);
  $('caption').textContent = what + (mask ? ` Only the patches holding ${Math.round(view.mass * 100)}% of it are left uncovered.` : '');
  const share = view.show === 'relevance' && patch < 0 ? 'relevance' : 'attention';
  $('mass-what').textContent = `of the ${share}`;
  $('mass').setAttribute('aria-label', `Share of the ${share} kept`);
  renderHeads(state);

  const order = Array.from(result.probabilities.keys()).sort((a, b) => result.probabilities[b] - result.probabilities[a]);
  const explaining = view.show === 'relevance';
  $('top').replaceChildren(...order.slice(0, 5).map((i) => {
    const li = document.createElement('li');
    const p = result.probabilities[i];
    // Each class is a button: choosing one shows why the model scored it so.
    const pick = document.createElement('button');
    pick.type = 'button';
    pick.className = 'class-pick';
    pick.setAttribute('aria-pressed', String(explaining && i === current.why));
    const label = document.createElement('span');
    label.textContent = `${info.labels[i]} — ${(p * 100).toFixed(1)}%`; // labels are text, never HTML
    const bar = document.createElement('span');
    bar.className = 'bar';
    bar.style.width = `${(p * 100).toFixed(1)}%`;
    pick.append(label, bar);
    pick.addEventListener('click', () => state.explain(i));
    li.append(pick);
    li.dataset.index = i;
    return li;
  }));
  $('top-hint').textContent = order.length ? 'Choose a class to see why the model gave it that score.' : '';
  $('truth').textContent = current.truth ? `True label: ${current.truth}` : '';
  $('knows').textContent = knows(info);
  $('map-note').textContent = info.prefixTokens.length === 1 && info.config.class_token ? '' : info.mapNote;
  const t = result.timings;
  $('timings').textContent = `${backend === 'webgpu' ? 'WebGPU' : 'CPU'}: preprocess ${t.preprocess.toFixed(1)} ms · `
    + `forward ${t.forward.toFixed(1)} ms · read-back ${t.readback.toFixed(1)} ms`
    + (explaining && current.relevance[current.why] ? ` · why: ${whyMs(current.relevance[current.why])} ms` : '');
}

const whyMs = ({ timings: t }) => (t.forward + t.readback).toFixed(1);

/**
 * Small maps of every head of the chosen layer, plus the layer-wide ones
 * (mean and rollout, or the two relevance maps); each selects itself.
 */
function renderHeads({ current, view }) {
  const { result } = current;
  const [gr, gc] = result.grid;
  const n = gr * gc;
  const { layer } = view;
  const heads = Array.from({ length: result.heads }, (_, h) => [String(h), `head ${h}`]);
  const r = current.relevance[current.why];
  if (view.show === 'relevance') {
    if (!r) { $('heads').replaceChildren(); return; }
    const at = (h) => r.heads.subarray((layer * result.heads + h) * n, (layer * result.heads + h + 1) * n);
    const maps = { chefer: r.chefer, 'grad-rollout': r.gradRollout };
    return drawChoices([['chefer', 'Chefer'], ['grad-rollout', 'grad rollout'], ...heads],
      (value) => maps[value] ?? at(Number(value)), result.grid, view);
  }
  const choices = [['mean', 'mean'], ['rollout', 'rollout'], ...heads];
  drawChoices(choices, (value) => (value === 'rollout' ? result.rollout
    : headMap(result, n, layer, value === 'mean' ? 'mean' : Number(value))), result.grid, view);
}

function drawChoices(choices, mapOf, grid, view) {
  $('heads').replaceChildren(...choices.map(([value, text]) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'head';
    button.setAttribute('aria-pressed', String(view.head === value));
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 72;
    drawMap(canvas, mapOf(value), grid, style(view));
    const caption = document.createElement('span');
    caption.textContent = text;
    button.append(canvas, caption);
    button.addEventListener('click', () => setView({ head: value }));
    return button;
  }));
}

/** The map's opacity: a style, no redraw. */
export function showOpacity({ opacity }) {
  $('overlay').style.opacity = String(opacity);
}
