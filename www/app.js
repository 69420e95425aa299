// The page: input, results and attention maps. The model itself runs in worker.js.
import { drawMap, drawPatchCursor, headMap, inputPicture, patchRow, thresholdMask } from './overlay.js';
import { setupLearn } from './learn.js';
import { fetchModelFiles, parseManifest } from './manifest.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

/** Largest side handed to the model; bigger images are scaled down here, before wasm. */
const MAX_SIDE = 1024;

let worker = null;
let backend = null; // 'webgpu' or 'cpu', as the worker chose
let info = null; // the loaded model's description
let source = null; // { name, files }: what to reload if the worker has to restart
let latest = 0; // id of the newest classification request: older results are dropped
let given = null; // { blob, truth }: the newest image the user gave, classified again when the model changes
let loads = 0; // number of the newest model load asked for
let applied = 0; // number of the load whose model is in use: a load that finishes later but was asked for earlier is dropped
let inflight = false; // a classification is running in the worker
let queued = null; // the newest classification waiting for it; older waiting ones are dropped
let current = null; // { result, bitmap, viewBox, rows: { [layer]: Float32Array }, truth }
let patch = -1; // the patch pointed at, or -1 for the class token
const pending = new Map();

// ---- the worker ---------------------------------------------------------------

function startWorker(requested) {
  worker?.terminate();
  for (const p of pending.values()) p.reject(new Error('the model worker restarted'));
  pending.clear();
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  const ready = new Promise((resolve) => {
    worker.onmessage = ({ data }) => {
      if (data.type === 'ready') {
        backend = data.backend;
        const cpu = data.simd === 'relaxed' ? 'CPU (WebAssembly, relaxed SIMD)' : 'CPU (WebAssembly, SIMD128)';
        $('backend').textContent = `Backend: ${backend === 'webgpu' ? 'WebGPU' : cpu}, because ${data.reason}.`;
        document.body.dataset.backend = backend;
        document.body.dataset.simd = data.simd;
        resolve();
        return;
      }
      if (data.during === 'init') {
        showMessage(`vitrine could not start: ${data.message}`);
        return;
      }
      const p = pending.get(data.id);
      if (!p) return;
      pending.delete(data.id);
      if (data.type === 'error') p.reject(Object.assign(new Error(data.message), { fatal: data.fatal }));
      else p.resolve(data);
    };
  });
  // A crash inside the worker (not an error the model reported) fails every pending request.
  worker.onerror = (e) => {
    e.preventDefault();
    for (const p of pending.values()) p.reject(Object.assign(new Error(e.message || 'the model worker crashed'), { fatal: true }));
    pending.clear();
  };
  worker.postMessage({ type: 'init', backend: requested, simd: params.get('simd') });
  return ready;
}

function request(message) {
  const id = ++request.n;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage({ ...message, id });
  });
}
request.n = 0;

/**
 * Runs a worker request; when the backend itself failed (a lost GPU, a shader
 * that did not compile, a crash), restarts on the CPU backend, reloads the
 * model and tries once more.
 */
async function run(message) {
  try {
    return await request(message);
  } catch (e) {
    if (!e.fatal) throw e;
    const note = `the ${backend === 'webgpu' ? 'WebGPU' : 'CPU'} backend failed (${e.message}), so vitrine restarted on the CPU backend`;
    await startWorker('cpu');
    if (source) await request({ type: 'load', files: source.files, seq: source.seq });
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

function describeModel(name, c) {
  const [h, w] = c.img_size;
  const n = (h / c.patch_size) * (w / c.patch_size);
  const d = c.embed_dim, m = c.mlp_hidden;
  const block = 4 * d + 3 * d * d + (c.qkv_bias ? 3 * d : 0) + d * d + d + d * m + m + m * d + d;
  const params = c.patch_size ** 2 * c.in_chans * d + d + d + (n + 1) * d + c.depth * block + 2 * d + d * c.num_classes + c.num_classes;
  const count = params >= 1e6 ? `${(params / 1e6).toFixed(1)} M` : `${Math.round(params / 1e3)} k`;
  return `Model “${name}”: ${h}×${w}×${c.in_chans} input → ${n} patches of ${c.patch_size}×${c.patch_size}, `
    + `D = ${d}, ${c.depth} layers × ${c.num_heads} heads, ${c.num_classes} classes, ${count} parameters.`;
}

function setModel(loaded, name) {
  info = loaded;
  const c = info.config;
  $('layer').max = c.depth - 1;
  $('layer').value = c.depth - 1;
  $('layer-out').textContent = c.depth - 1;
  $('head').replaceChildren(new Option('mean of heads', 'mean'), new Option('rollout (all layers)', 'rollout'),
    ...Array.from({ length: c.num_heads }, (_, h) => new Option(`head ${h}`, h)));
  $('model-info').textContent = describeModel(name, c); // names are text, never HTML
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

function clearResults() {
  for (const id of ['top', 'heads']) $(id).replaceChildren();
  for (const id of ['timings', 'truth', 'caption']) $(id).textContent = '';
  for (const id of ['image', 'overlay', 'cursor']) $(id).getContext('2d').clearRect(0, 0, 448, 448);
}

// ---- models ---------------------------------------------------------------------

/**
 * Loads `files` as model `name`, load number `seq` (from `++loads`, taken
 * when the load was asked for). The newest load asked for wins whatever
 * order they finish in: the user's checkpoint, dropped while the site's
 * default model is still downloading, is not replaced by it. Returns the
 * model's info, or null when a newer load has already taken its place.
 */
async function loadModel(name, files, seq) {
  const { info: loaded, superseded } = await run({ type: 'load', files, seq });
  if (superseded || seq < applied) return null;
  applied = seq;
  source = { name, files, seq };
  setModel(loaded, name);
  return loaded;
}

/** Loads a checkpoint the user dropped or picked: model.safetensors with config.json (and preprocessor_config.json). */
async function loadDroppedModel(list) {
  const find = (pred) => list.find((f) => pred(f.name.toLowerCase()));
  const weights = find((n) => n.endsWith('.safetensors'));
  const config = find((n) => n.endsWith('config.json') && !n.startsWith('preprocessor'));
  const preprocessor = find((n) => n === 'preprocessor_config.json');
  const seq = ++loads;
  showMessage('');
  $('progress').value = 0.3;
  try {
    const files = {
      weights: await weights.arrayBuffer(),
      config: await config?.arrayBuffer(),
      preprocessor: await preprocessor?.arrayBuffer(),
    };
    const loaded = await loadModel(weights.name, files, seq);
    if (loaded?.notes.length) showMessage(`Model loaded. Note: ${loaded.notes.join(' ')}`);
  } catch (e) {
    showMessage(`Could not load “${weights.name}”: ${e.message}. The previous model is still in use.`);
  } finally {
    $('progress').value = 1;
  }
}

/** Loads the site's model (`?model=` or the manifest's default) as load number `seq`. */
async function loadSiteModel(seq) {
  try {
    $('progress').value = 0.2;
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
    const files = await fetchModelFiles(entry);
    $('progress').value = 0.6;
    if (seq < loads) return; // the user's own checkpoint came first: it wins
    await loadModel(name, files, seq);
  } catch (e) {
    if (seq === loads) showMessage(`Could not load the model: ${e.message}`);
  } finally {
    $('progress').value = 1;
  }
}

// ---- images -----------------------------------------------------------------------

/** The image format a file's first bytes announce, whatever its name says. */
function sniff(head) {
  const starts = (...bytes) => bytes.every((b, i) => head[i] === b);
  const ascii = (from, text) => [...text].every((ch, i) => head[from + i] === ch.charCodeAt(0));
  if (starts(0x89, 0x50, 0x4e, 0x47)) return 'PNG';
  if (starts(0xff, 0xd8, 0xff)) return 'JPEG';
  if (ascii(0, 'GIF8')) return 'GIF';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'WebP';
  if (ascii(0, 'BM')) return 'BMP';
  if (starts(0x49, 0x49, 0x2a, 0) || starts(0x4d, 0x4d, 0, 0x2a)) return 'TIFF';
  if (ascii(4, 'ftyp')) return 'ISO media (AVIF or HEIC)';
  return null;
}

/** Why a PNG or JPEG stops before its image does (a truncated download, a cut file), or null. */
async function truncation(blob, format) {
  if (format !== 'PNG' && format !== 'JPEG') return null;
  const tail = new Uint8Array(await blob.slice(Math.max(0, blob.size - 4096)).arrayBuffer());
  if (format === 'JPEG') {
    for (let i = tail.length - 2; i >= 0; i--) if (tail[i] === 0xff && tail[i + 1] === 0xd9) return null;
    return 'its JPEG data stops before the end-of-image marker';
  }
  const iend = [0x49, 0x45, 0x4e, 0x44];
  for (let i = tail.length - 4; i >= 0; i--) if (iend.every((b, k) => tail[i + k] === b)) return null;
  return 'its PNG data stops before the closing IEND chunk';
}

/** Decodes a file or blob upright (EXIF orientation applied), or says why it cannot be. */
async function decode(blob, name) {
  const format = sniff(new Uint8Array(await blob.slice(0, 16).arrayBuffer()));
  if (format === 'TIFF') throw new Error(`${name} is a TIFF image, which browsers cannot decode. Save it as PNG or JPEG and try again.`);
  const cut = await truncation(blob, format);
  if (cut) throw new Error(`${name} is truncated or corrupt: ${cut}.`);
  try {
    return await createImageBitmap(blob, { imageOrientation: 'from-image' });
  } catch {
    throw new Error(format
      ? `${name} looks like a ${format} image, but this browser could not decode it: the file is corrupt, or too large for this browser.`
      : `${name} is not an image this browser can decode (PNG, JPEG, GIF, WebP, BMP and AVIF work).`);
  }
}

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
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const w = Math.max(1, Math.round(bitmap.width * scale));
  const h = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0, w, h);
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
    const { result } = await run({ type: 'classify', rgba, width: w, height: h });
    // Show only the newest image, and only as the model in use answered it.
    if (id !== latest || model !== applied) return;
    current = { result, bitmap: canvas, viewBox: Array.from(result.viewBox), rows: {}, truth, id };
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
  if (files.some((f) => f.name.toLowerCase().endsWith('.safetensors'))) loadDroppedModel(files);
  else if (files.some((f) => f.name.toLowerCase().endsWith('.json'))) {
    showMessage('A config.json alone is not a model: drop it together with its model.safetensors.');
  } else if (files.length) {
    const note = files.length > 1 ? `${files.length} images were given; vitrine shows one at a time: the first, “${files[0].name}”.` : '';
    classifyBlob(files[0], null, note);
  }
}

// ---- drawing ------------------------------------------------------------------------

const layerNow = () => Number($('layer').value);
const headNow = () => ($('head').value === 'mean' || $('head').value === 'rollout' ? $('head').value : Number($('head').value));
const style = () => ({
  colormap: $('colormap').value,
  smooth: document.querySelector('input[name="upsample"]:checked').value === 'smooth',
});

/** The map now chosen: a CLS row, the rollout, or the pointed patch's row. */
function chosenMap() {
  const { result, rows } = current;
  const [gr, gc] = result.grid;
  const n = gr * gc;
  const layer = layerNow();
  const head = headNow();
  if (patch >= 0 && rows[layer]) {
    const h = head === 'rollout' ? 'mean' : head;
    return { map: patchRow(rows[layer], result.heads, n, patch, h), what: patchCaption(layer, h) };
  }
  if (head === 'rollout') return { map: result.rollout, what: 'Attention rollout over all layers: what the class token draws on, through every layer.' };
  return {
    map: headMap(result.cls, result.heads, n, layer, head),
    what: `Layer ${layer}, ${head === 'mean' ? 'mean of the heads' : `head ${head}`}: where the class token looks.`,
  };
}

function patchCaption(layer, head) {
  const cols = current.result.grid[1];
  return `Layer ${layer}, ${head === 'mean' ? 'mean of the heads' : `head ${head}`}: where the patch at row ${Math.floor(patch / cols)}, column ${patch % cols} looks.`;
}

function render() {
  if (!current || !info) return;
  const { result, bitmap, viewBox } = current;
  const [x0, y0, x1, y1] = viewBox;
  const img = $('image');
  const ctx = img.getContext('2d');
  ctx.fillStyle = 'black';
  ctx.fillRect(0, 0, img.width, img.height);
  if (document.querySelector('input[name="picture"]:checked').value === 'input') {
    // The tensor the model received, its normalisation undone: pixel for pixel.
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(inputPicture(result.input, info.preprocess), 0, 0, img.width, img.height);
    ctx.imageSmoothingEnabled = true;
  } else {
    // Show exactly what the model saw: its crop of the image, scaled to the canvas.
    ctx.drawImage(bitmap, x0, y0, x1 - x0, y1 - y0, 0, 0, img.width, img.height);
  }

  const { map, what } = chosenMap();
  const mask = $('threshold').checked ? thresholdMask(map, Number($('mass').value)) : null;
  drawMap($('overlay'), map, result.grid, { ...style(), mask });
  $('overlay').style.opacity = $('opacity').value;
  drawPatchCursor($('cursor'), patch, result.grid);
  $('caption').textContent = what + (mask ? ` Only the patches holding ${Math.round($('mass').value * 100)}% of it are left uncovered.` : '');
  renderHeads();

  const order = Array.from(result.probabilities.keys()).sort((a, b) => result.probabilities[b] - result.probabilities[a]);
  $('top').replaceChildren(...order.slice(0, 5).map((i) => {
    const li = document.createElement('li');
    const p = result.probabilities[i];
    const label = document.createElement('span');
    label.textContent = `${info.labels[i]} — ${(p * 100).toFixed(1)}%`; // labels are text, never HTML
    const bar = document.createElement('span');
    bar.className = 'bar';
    bar.style.width = `${(p * 100).toFixed(1)}%`;
    li.append(label, bar);
    li.dataset.index = i;
    return li;
  }));
  $('truth').textContent = current.truth ? `True label: ${current.truth}` : '';
  const t = result.timings;
  $('timings').textContent = `${backend === 'webgpu' ? 'WebGPU' : 'CPU'}: preprocess ${t.preprocess.toFixed(1)} ms · `
    + `forward ${t.forward.toFixed(1)} ms · read-back ${t.readback.toFixed(1)} ms`;
}

/** Small maps of every head of the chosen layer, plus the mean and the rollout; each selects itself. */
function renderHeads() {
  const { result } = current;
  const [gr, gc] = result.grid;
  const layer = layerNow();
  const choices = [['mean', 'mean'], ['rollout', 'rollout'], ...Array.from({ length: result.heads }, (_, h) => [String(h), `head ${h}`])];
  $('heads').replaceChildren(...choices.map(([value, text]) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'head';
    button.setAttribute('aria-pressed', String($('head').value === value));
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 72;
    const map = value === 'rollout' ? result.rollout
      : headMap(result.cls, result.heads, gr * gc, layer, value === 'mean' ? 'mean' : Number(value));
    drawMap(canvas, map, result.grid, style());
    const caption = document.createElement('span');
    caption.textContent = text;
    button.append(canvas, caption);
    button.addEventListener('click', () => { $('head').value = value; render(); });
    return button;
  }));
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
      const { layerAttention } = await run({ type: 'attention', layer });
      mine.rows[layer] = layerAttention;
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
$('opacity').addEventListener('input', render);
for (const r of document.querySelectorAll('input[name="upsample"], input[name="picture"]')) r.addEventListener('change', render);

const learn = setupLearn({ run, state: () => ({ info, current, name: document.body.dataset.model }) });
/** The worker's memory (wasm bytes, the device's pools): for tests and the curious. */
window.vitrineMemory = () => run({ type: 'memory' });
loadGallery();
// The site's model is load number 1, taken now: a checkpoint the user drops
// while the worker is still starting comes later, and wins.
const siteLoad = ++loads;
startWorker(params.get('backend')).then(() => loadSiteModel(siteLoad));
// A file picked before this script ran is not lost.
if ($('file').files.length) handleFiles($('file').files);
