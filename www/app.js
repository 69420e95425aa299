// The page: input, results and attention maps. The model itself runs in worker.js.
import { setupLearn } from './learn.js';
import { fetchModelFiles, parseManifest } from './manifest.js';
import { connect } from './rpc.js';
import { decode, fitCanvas } from './input.js';
import { describeProgress, SHOW_AFTER_MS } from './progress.js';
import { clearResults, describeModel, layerNow, mapChoices, renderView, showNow, sizeChoices } from './view.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// ?f16=keep|widen: an f16 checkpoint's weight matrices kept in f16 on the
// CPU backend (half the memory, the same results, a little slower) or
// widened to f32, whatever the model's size; by default only a model whose
// f32 weights would not fit keeps them.
const keepF16 = { keep: true, widen: false, __proto__: null }[params.get('f16')];

/** Largest side handed to the model; bigger images are scaled down here, before wasm. */
const MAX_SIDE = 1024;

let worker = null; // the connection to worker.js (rpc.js)
let backend = null; // 'webgpu' or 'cpu', as the worker chose
let info = null; // the loaded model's description
let source = null; // { name, files }: what to reload if the worker has to restart
let latest = 0; // id of the newest classification request: older results are dropped
let given = null; // { blob, truth }: the newest image the user gave, classified again when the model changes
let loads = 0; // number of the newest model load asked for
let applied = 0; // number of the load whose model is in use: a load that finishes later but was asked for earlier is dropped
let inflight = false; // a classification is running in the worker
let queued = null; // the newest classification waiting for it; older waiting ones are dropped
let current = null; // { result, bitmap, viewBox, rows: { [layer]: { layerAttention, layerMean } }, truth, id, why, relevance: { [class]: maps }, failed: { [class]: message }, pending: Map of class → request }
let patch = -1; // the patch pointed at, or -1 for the class token

// ---- the worker ---------------------------------------------------------------

/** A fresh worker on `requested` (or its own choice); what the old one had pending fails. */
async function startWorker(requested) {
  worker?.close();
  worker = connect(requested, params.get('simd'));
  let data;
  try {
    data = await worker.ready;
  } catch (e) {
    showMessage(`vitrine could not start: ${e.message}`);
    throw e;
  }
  backend = data.backend;
  const cpu = data.simd === 'relaxed' ? 'CPU (WebAssembly, relaxed SIMD)' : 'CPU (WebAssembly, SIMD128)';
  $('backend').textContent = `Backend: ${backend === 'webgpu' ? 'WebGPU' : cpu}, because ${data.reason}.`;
  document.body.dataset.backend = backend;
  document.body.dataset.simd = data.simd;
}

const request = (message, onProgress) => worker.request(message, onProgress);

/**
 * Runs a worker request; when the backend itself failed (a lost GPU, a shader
 * that did not compile, a crash), restarts on the CPU backend, reloads the
 * model and tries once more.
 */
async function run(message, onProgress) {
  try {
    return await request(message, onProgress);
  } catch (e) {
    if (!e.fatal) throw e;
    const note = `the ${backend === 'webgpu' ? 'WebGPU' : 'CPU'} backend failed (${e.message}), so vitrine restarted on the CPU backend`;
    await startWorker('cpu');
    if (source) await request({ type: 'load', files: source.files, seq: source.seq }, onProgress);
    if (message.type !== 'classify') throw new Error(note);
    showMessage(`Note: ${note}.`);
    return request(message);
  }
}

// ---- messages and model info ------------------------------------------------------

/** A problem, in red; cleared by the next success. */
function showMessage(text) {
  $('message').textContent = text;
  if (text) $('note').textContent = '';
}

/** Something worth knowing that is not a problem (an image was scaled down, say). */
function showNote(text) {
  $('note').textContent = text;
}

function setModel(loaded, name) {
  info = { ...loaded, name };
  const c = info.config;
  $('layer').max = c.depth - 1;
  $('layer').value = c.depth - 1;
  $('layer-out').textContent = c.depth - 1;
  // "Why this class" needs class scores: a backbone has none.
  const why = document.querySelector('input[name="show"][value="relevance"]');
  why.disabled = !c.num_classes;
  why.parentElement.title = c.num_classes ? '' : 'This model has no classifier (a backbone): there is no class to explain.';
  if (!c.num_classes) document.querySelector('input[name="show"][value="attention"]').checked = true;
  $('head').replaceChildren();
  mapChoices(showNow(), c.num_heads);
  $('model-info').textContent = describeModel(name, info); // names are text, never HTML
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
  document.body.dataset.model = name;
  document.body.dataset.ready = 'true';
  current = null;
  patch = -1;
  clearResults();
  learn.update();
  // The image the user gave last (perhaps before any model was ready) is
  // answered by the model now in use.
  if (given) classifyBlob(given.blob, given.truth);
}

// ---- models ---------------------------------------------------------------------

/**
 * The progress of one load, on the bar and, once it has taken longer than
 * half a second, in words (reading, converting, uploading, warming up).
 * `report(stage, done, total)` takes every report; `end()` clears it. Only
 * the newest load is shown.
 */
let shownLoad = 0;
function loadProgress(name, seq) {
  const start = performance.now();
  shownLoad = seq;
  const stages = [];
  let text = '';
  const mine = () => seq === shownLoad;
  // A stage can last seconds with no new report (a big model's warm-up):
  // the words appear half a second in, whenever the last report came.
  const show = () => { if (mine() && performance.now() - start >= SHOW_AFTER_MS) $('load-status').textContent = text; };
  const timer = setTimeout(show, SHOW_AFTER_MS);
  document.body.dataset.loadStages = '';
  delete document.body.dataset.loadMs;
  const report = (stage, done, total) => {
    if (!mine()) return;
    const now = describeProgress(stage, done, total, { name, gpu: backend === 'webgpu' });
    $('progress').value = Math.min(now.value, 0.999); // 1 hides the bar: that is end()'s
    text = now.text;
    show();
    if (!stages.includes(stage)) stages.push(stage);
    document.body.dataset.loadStages = stages.join(' '); // for tests and the curious
  };
  const end = () => {
    clearTimeout(timer);
    if (!mine()) return;
    $('progress').value = 1;
    $('load-status').textContent = '';
    document.body.dataset.loadMs = String(Math.round(performance.now() - start));
  };
  return { report, end };
}

/**
 * Loads `files` as model `name`, load number `seq` (from `++loads`, taken
 * when the load was asked for). The newest load asked for wins whatever
 * order they finish in: the user's checkpoint, dropped while the site's
 * default model is still downloading, is not replaced by it. Returns the
 * model's info, or null when a newer load has already taken its place.
 */
async function loadModel(name, files, seq, progress) {
  const onProgress = ({ stage, done, total }) => progress?.report(stage, done, total);
  files.keepF16 = keepF16;
  const { info: loaded, superseded } = await run({ type: 'load', files, seq }, onProgress);
  if (superseded || seq < applied) return null;
  applied = seq;
  source = { name, files, seq };
  setModel(loaded, name);
  return loaded;
}

/** A weights file's name: safetensors, or what torch.save writes (read without running its pickle). */
const isWeights = (name) => /\.(safetensors|pth|pt|bin)$/i.test(name);

/** Loads a checkpoint the user dropped or picked: its weights (model.safetensors, a .pth, pytorch_model.bin) with config.json (and preprocessor_config.json). */
async function loadDroppedModel(list) {
  const find = (pred) => list.find((f) => pred(f.name.toLowerCase()));
  const weights = find(isWeights);
  const config = find((n) => n.endsWith('config.json') && !n.startsWith('preprocessor'));
  const preprocessor = find((n) => n === 'preprocessor_config.json');
  const seq = ++loads;
  showMessage('');
  const progress = loadProgress(weights.name, seq);
  try {
    const files = {
      name: weights.name,
      // The File itself: the worker reads it (and reports the reading), so
      // the page never holds a copy of a checkpoint that may be gigabytes.
      weights,
      config: await config?.arrayBuffer(),
      preprocessor: await preprocessor?.arrayBuffer(),
    };
    const loaded = await loadModel(weights.name, files, seq, progress);
    if (loaded?.notes.length) showMessage(`Model loaded. Note: ${loaded.notes.join(' ')}`);
  } catch (e) {
    showMessage(`Could not load “${weights.name}”: ${e.message}. The previous model is still in use.`);
  } finally {
    progress.end();
  }
}

/** Loads the site's model (`?model=` or the manifest's default) as load number `seq`. */
async function loadSiteModel(seq) {
  const progress = loadProgress('the model', seq);
  try {
    const listing = await fetch('models/manifest.json');
    if (!listing.ok) throw new Error(`models/manifest.json: HTTP ${listing.status}`);
    const manifest = parseManifest(await listing.text());
    const name = params.get('model') ?? manifest.default;
    if (!name) {
      showMessage('No model is bundled with this site: drop a checkpoint (model.safetensors with its config.json).');
      return;
    }
    const entry = manifest.models.find((m) => m.name === name);
    if (!entry) {
      throw new Error(`there is no model named “${name}” in models/manifest.json (it lists ${manifest.models.map((m) => m.name).join(', ') || 'none'})`);
    }
    const files = await fetchModelFiles(entry, fetch, (done, total) => progress.report('reading', done, total));
    if (seq < loads) return; // the user's own checkpoint came first: it wins
    await loadModel(name, files, seq, progress);
  } catch (e) {
    if (seq === loads) showMessage(`Could not load the model: ${e.message}`);
  } finally {
    progress.end();
  }
}

// ---- images -----------------------------------------------------------------------

/**
 * Decodes and classifies a file or blob; only the newest one's result is
 * shown. An image given before any model is ready waits for it (and is
 * answered again by each model loaded later).
 */
async function classifyBlob(blob, truth = null, note = '') {
  const name = blob.name ? `“${blob.name}”` : 'The pasted image';
  given = { blob, truth };
  const id = ++latest;
  document.body.dataset.requested = String(id);
  showMessage('');
  showNote('');
  if (!info) {
    showNote(`${name} will be classified as soon as the model is ready.`);
    return;
  }
  let bitmap;
  try {
    bitmap = await decode(blob, name);
  } catch (e) {
    if (given?.blob === blob) given = null; // not worth answering again with the next model
    if (id === latest) showMessage(e.message);
    return;
  }
  if (id !== latest) { bitmap.close(); return; } // a newer image arrived while this one was decoded
  const { canvas, w, h, scale } = fitCanvas(bitmap, MAX_SIDE);
  const size = [bitmap.width, bitmap.height];
  bitmap.close();
  submit({ id, name, truth, note, canvas, size, scale, w, h, model: applied });
}

/**
 * One classification at a time in the worker; while one runs, only the
 * newest image waits, so a burst of images costs two forward passes, not
 * one per image, and the memory of one pending image.
 */
function submit(job) {
  if (inflight) {
    queued = job;
    return;
  }
  inflight = true;
  classifyJob(job).finally(() => {
    inflight = false;
    const next = queued;
    queued = null;
    if (next && next.id === latest) submit(next);
  });
}

async function classifyJob({ id, name, truth, note, canvas, size, scale, w, h, model }) {
  const rgba = canvas.getContext('2d').getImageData(0, 0, w, h).data.buffer;
  try {
    const { result } = await run({ type: 'classify', rgba, width: w, height: h, image: id });
    // Show only the newest image, and only as the model in use answered it.
    if (id !== latest || model !== applied) return;
    const why = result.probabilities.length ? topClass(result.probabilities) : -1;
    current = { result, bitmap: canvas, viewBox: Array.from(result.viewBox), rows: {}, truth, id, why, relevance: {}, failed: {}, pending: new Map() };
    patch = -1;
    window.vitrineLast = result; // for tests and the curious: the raw outputs
    document.body.dataset.imageSize = size.join('x');
    const notes = note ? [note] : [];
    if (scale < 1) notes.push(`${name} is ${size.join('×')} pixels; it was scaled to ${w}×${h} before classification.`);
    if (Math.max(...size) < Math.min(...info.config.img_size)) {
      notes.push(`${name} is only ${size.join('×')} pixels, smaller than the model's ${info.config.img_size.join('×')} input: it was enlarged, so expect a blurry view.`);
    }
    showNote(notes.join(' '));
    render();
    learn.update();
    document.body.dataset.classified = String(id);
    ensureRelevance();
  } catch (e) {
    if (id === latest && model === applied) {
      showMessage(`${name} could not be classified: ${e.message}`);
      document.body.dataset.classified = String(id);
    }
  }
}

/** Files from a drop or the picker: a checkpoint switches the model, anything else is classified. */
function handleFiles(list) {
  const files = [...list];
  if (files.some((f) => isWeights(f.name))) loadDroppedModel(files);
  else if (files.some((f) => f.name.toLowerCase().endsWith('.json'))) {
    showMessage('A config.json alone is not a model: drop it together with its weights (model.safetensors, a .pth or pytorch_model.bin).');
  } else if (files.length) {
    const note = files.length > 1 ? `${files.length} images were given; vitrine shows one at a time: the first, “${files[0].name}”.` : '';
    classifyBlob(files[0], null, note);
  }
}

// ---- drawing (view.js) ------------------------------------------------------------

function render() {
  renderView({ current, info, patch, backend, rerender: render, explain });
}

const topClass = (p) => p.reduce((best, v, i) => (v > p[best] ? i : best), 0);

// ---- why this class -----------------------------------------------------------------

/**
 * Shows why the model scored class `k`: the maps follow its gradient
 * (computed once per image and class, only when asked).
 */
function explain(k) {
  if (!current || !info?.config.num_classes) return;
  current.why = k;
  if (showNow() !== 'relevance') {
    document.querySelector('input[name="show"][value="relevance"]').checked = true;
    mapChoices('relevance', info.config.num_heads);
  }
  ensureRelevance();
  render();
}

/**
 * The relevance maps of class `k` for `mine` (an image's state), asked of
 * the worker once however many callers want them; a failure is kept as its
 * message. The page's "why this class" and the walk-through share them.
 */
function fetchRelevance(mine, k) {
  if (mine.relevance[k] || mine.failed[k]) return Promise.resolve();
  if (!mine.pending.has(k)) {
    mine.pending.set(k, (async () => {
      try {
        // `image` names the classification these maps are for: the worker
        // answers `stale` if it has classified a newer image since.
        const answer = await run({ type: 'relevance', class: k, image: mine.id });
        if (answer.stale) {
          // The worker no longer holds this image (it restarted, or a newer
          // image came in whose result was dropped): say so rather than wait.
          mine.failed[k] = `The model no longer holds this image, so it cannot say why “${info.labels[k]}”: give the image again.`;
        } else {
          mine.relevance[k] = answer.relevance;
          window.vitrineWhy = answer.relevance; // for tests and the curious: the raw maps
        }
      } catch (e) {
        mine.failed[k] = `Could not work out why “${info.labels[k]}”: ${e.message}`;
      } finally {
        mine.pending.delete(k);
      }
    })());
  }
  return mine.pending.get(k);
}

/** Fetches the chosen class's relevance maps if they are wanted and missing, then redraws. */
async function ensureRelevance() {
  const mine = current;
  if (!mine || showNow() !== 'relevance' || mine.why < 0) return;
  const k = mine.why;
  if (mine.relevance[k] || mine.failed[k]) return;
  document.body.dataset.explaining = String(k);
  await fetchRelevance(mine, k);
  if (mine === current) {
    render();
    document.body.dataset.explained = `${mine.id}:${k}`; // for tests: these maps are drawn
  }
}

// ---- pointing at patches --------------------------------------------------------------

/** Fetches the chosen layer's full attention (once per image and layer), then redraws. */
async function showPatch(p) {
  if (!current) return;
  patch = p;
  const layer = layerNow();
  const mine = current;
  if (p >= 0 && !mine.rows[layer]) {
    try {
      const { layerAttention, layerMean } = await run({ type: 'attention', layer });
      mine.rows[layer] = { layerAttention, layerMean };
    } catch (e) {
      showMessage(`Could not read layer ${layer}'s attention: ${e.message}`);
      return;
    }
    if (mine !== current) return;
  }
  render();
}

function patchAt(event) {
  const [rows, cols] = current.result.grid;
  const box = $('stage').getBoundingClientRect();
  const x = Math.floor(((event.clientX - box.left) / box.width) * cols);
  const y = Math.floor(((event.clientY - box.top) / box.height) * rows);
  return x >= 0 && y >= 0 && x < cols && y < rows ? y * cols + x : -1;
}

$('stage').addEventListener('pointermove', (e) => {
  if (!current) return;
  const p = patchAt(e);
  if (p !== patch) showPatch(p);
});
$('stage').addEventListener('pointerleave', () => { if (current && patch >= 0) showPatch(-1); });
$('stage').addEventListener('keydown', (e) => {
  if (!current) return;
  const [rows, cols] = current.result.grid;
  let p = patch < 0 ? Math.floor(rows / 2) * cols + Math.floor(cols / 2) : patch;
  const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  if (e.key === 'Escape') p = -1;
  else if (moves[e.key] && patch >= 0) {
    const [dx, dy] = moves[e.key];
    const x = Math.min(cols - 1, Math.max(0, (p % cols) + dx));
    const y = Math.min(rows - 1, Math.max(0, Math.floor(p / cols) + dy));
    p = y * cols + x;
  } else if (!moves[e.key]) return;
  e.preventDefault();
  showPatch(p);
});

// ---- download -----------------------------------------------------------------------------

$('download').addEventListener('click', async () => {
  if (!current) {
    showMessage('Classify an image first: then its attention overlay can be downloaded.');
    return;
  }
  const out = new OffscreenCanvas($('image').width, $('image').height);
  const ctx = out.getContext('2d');
  ctx.drawImage($('image'), 0, 0);
  ctx.globalAlpha = Number($('opacity').value);
  ctx.drawImage($('overlay'), 0, 0);
  const blob = await out.convertToBlob({ type: 'image/png' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = `vitrine-layer${layerNow()}-${$('head').value}${patch >= 0 ? `-patch${patch}` : ''}.png`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
});

// ---- camera ---------------------------------------------------------------------------------

let stream = null;
function closeCamera() {
  stream?.getTracks().forEach((t) => t.stop());
  stream = null;
  $('camera').hidden = true;
}
if (!navigator.mediaDevices?.getUserMedia) {
  $('camera-open').disabled = true;
  $('camera-open').title = 'This browser (or an http:// page) offers no camera';
}
$('camera-open').addEventListener('click', async () => {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
  } catch (e) {
    showMessage(`The camera is not available: ${e.message}`);
    return;
  }
  $('video').srcObject = stream;
  $('camera').hidden = false;
  await $('video').play();
  $('capture').focus();
});
$('capture').addEventListener('click', async () => {
  const v = $('video');
  if (!v.videoWidth) return;
  const c = new OffscreenCanvas(v.videoWidth, v.videoHeight);
  c.getContext('2d').drawImage(v, 0, 0);
  const blob = await c.convertToBlob({ type: 'image/png' });
  classifyBlob(new File([blob], 'camera picture.png', { type: 'image/png' }));
});
$('camera-close').addEventListener('click', closeCamera);

// ---- gallery --------------------------------------------------------------------------------

async function loadGallery() {
  try {
    const { samples } = await (await fetch('samples/samples.json')).json();
    $('gallery').replaceChildren(...samples.map((s) => {
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = `sample ${s.kind}`;
      button.title = s.truth ? `${s.title} (true label: ${s.truth})` : s.title;
      const img = document.createElement('img');
      img.src = `samples/${s.file}`;
      img.alt = button.title;
      img.width = img.height = 64;
      button.append(img);
      button.addEventListener('click', async () => {
        const blob = await (await fetch(`samples/${s.file}`)).blob();
        classifyBlob(new File([blob], s.file, { type: blob.type }), s.truth);
      });
      li.append(button);
      return li;
    }));
  } catch {
    $('gallery-title').hidden = true;
  }
}

// ---- wiring ---------------------------------------------------------------------------------

$('file').addEventListener('change', (e) => { handleFiles(e.target.files); e.target.value = ''; });
for (const type of ['dragenter', 'dragover']) {
  document.addEventListener(type, (e) => { e.preventDefault(); $('drop').classList.add('over'); });
}
document.addEventListener('dragleave', () => $('drop').classList.remove('over'));
document.addEventListener('drop', (e) => {
  e.preventDefault();
  $('drop').classList.remove('over');
  handleFiles(e.dataTransfer.files);
});
document.addEventListener('paste', (e) => {
  const item = [...e.clipboardData.items].find((i) => i.kind === 'file');
  if (item) classifyBlob(item.getAsFile());
});
$('layer').addEventListener('input', () => {
  $('layer-out').textContent = $('layer').value;
  if (patch >= 0) showPatch(patch);
  else render();
});
$('mass').addEventListener('input', () => { $('mass-out').textContent = `${Math.round($('mass').value * 100)}%`; render(); });
for (const id of ['head', 'colormap', 'threshold']) $(id).addEventListener('change', render);
for (const r of document.querySelectorAll('input[name="show"]')) {
  r.addEventListener('change', () => {
    mapChoices(showNow(), info?.config.num_heads ?? 0);
    ensureRelevance();
    render();
  });
}
$('opacity').addEventListener('input', render);
for (const r of document.querySelectorAll('input[name="upsample"], input[name="picture"]')) r.addEventListener('change', render);

/**
 * The checkpoint in use loaded again from the bytes the page has, with
 * `change` to its files; `control` is disabled meanwhile. On failure the
 * message is `fail(error)` and `undo()` puts the control back. True when
 * it loaded.
 */
async function reloadModel(change, control, fail, undo) {
  if (!source || !info) return false;
  control.disabled = true;
  const seq = ++loads;
  const progress = loadProgress(source.name, seq);
  try {
    await loadModel(source.name, { ...source.files, ...change }, seq, progress);
    return true;
  } catch (e) {
    showMessage(fail(e));
    undo();
    control.disabled = false;
    return false;
  } finally {
    progress.end();
  }
}

// Another input size: its position embeddings interpolated in Rust; the
// image shown is answered again.
$('resolution').addEventListener('change', () => {
  const px = Number($('resolution').value);
  reloadModel({ imageSize: px === info?.nativeSize[0] ? undefined : px }, $('resolution'),
    (e) => `Could not run the model at ${px} px: ${e.message}`,
    () => { $('resolution').value = String(info.config.img_size[0]); }); // the size still in use
});

// Another state dict of the same training checkpoint (DINO's student rather
// than its teacher).
$('weights-key').addEventListener('change', async () => {
  const key = $('weights-key').value;
  const loaded = await reloadModel({ key }, $('weights-key'),
    (e) => `Could not load “${key}”: ${e.message}. The previous weights are still in use.`,
    () => { $('weights-key').value = info.weightsKey; });
  if (loaded) showMessage('');
});

const learn = setupLearn({ run, state: () => ({ info, current, name: document.body.dataset.model }), relevance: fetchRelevance });
/** The worker's memory (wasm bytes, the device's pools): for tests and the curious. */
window.vitrineMemory = () => run({ type: 'memory' });
/** The relevance maps of class `k` for the image shown, computed afresh: for tests and the curious. */
window.vitrineRelevance = (k) => run({ type: 'relevance', class: k, image: current?.id });
loadGallery();
// The site's model is load number 1, taken now: a checkpoint the user drops
// while the worker is still starting comes later, and wins.
const siteLoad = ++loads;
startWorker(params.get('backend')).then(() => loadSiteModel(siteLoad), () => {}); // a failed start is shown
// A file picked before this script ran is not lost.
if ($('file').files.length) handleFiles($('file').files);
