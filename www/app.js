// The page: input, results and attention maps. The model itself runs in worker.js.
import { drawMap, headMap } from './overlay.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });

/** Largest side handed to the model; bigger images are scaled down here, before wasm. */
const MAX_SIDE = 1024;

let info = null;
let latest = 0; // id of the newest classification request: older results are dropped
let current = null; // { result, bitmap, viewBox }
const pending = new Map();

function request(message, transfer = []) {
  const id = ++request.n;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage({ ...message, id }, transfer);
  });
}
request.n = 0;

worker.onmessage = ({ data }) => {
  if (data.type === 'ready') {
    $('backend').textContent = `Backend: ${data.backend === 'webgpu' ? 'WebGPU' : 'CPU (WebAssembly)'} — ${data.reason}.`;
    $('backend').dataset.backend = data.backend;
    loadDefaultModel();
    return;
  }
  const p = pending.get(data.id);
  if (!p) return;
  pending.delete(data.id);
  if (data.type === 'error') p.reject(new Error(data.message));
  else p.resolve(data);
};

function showMessage(text) {
  $('message').textContent = text;
}

async function fetchBytes(url, optional = false) {
  const r = await fetch(url);
  if (!r.ok) {
    if (optional) return undefined;
    throw new Error(`${url}: HTTP ${r.status}`);
  }
  return r.arrayBuffer();
}

/** Loads a checkpoint the user dropped or picked: model.safetensors with config.json (and preprocessor_config.json). */
async function loadDroppedModel(files) {
  const find = (pred) => files.find((f) => pred(f.name.toLowerCase()));
  const weights = find((n) => n.endsWith('.safetensors'));
  const config = find((n) => n === 'config.json');
  const preprocessor = find((n) => n === 'preprocessor_config.json');
  showMessage('');
  $('progress').value = 0.3;
  try {
    const buffers = {
      weights: await weights.arrayBuffer(),
      config: await config?.arrayBuffer(),
      preprocessor: await preprocessor?.arrayBuffer(),
    };
    const { info: loaded } = await request({ type: 'load', files: buffers }, Object.values(buffers).filter(Boolean));
    setModel(loaded, weights.name);
    if (loaded.notes.length) showMessage(`Model loaded. Note: ${loaded.notes.join(' ')}`);
  } catch (e) {
    showMessage(`Could not load “${weights.name}”: ${e.message}. The previous model is still in use.`);
  } finally {
    $('progress').value = 1;
  }
}

/** Files from a drop or the picker: a checkpoint switches the model, anything else is classified. */
function handleFiles(list) {
  const files = [...list];
  if (files.some((f) => f.name.toLowerCase().endsWith('.safetensors'))) loadDroppedModel(files);
  else if (files.length) classifyBlob(files[0]);
}

async function loadDefaultModel() {
  try {
    $('progress').value = 0.2;
    const manifest = await (await fetch('models/manifest.json')).json();
    const name = params.get('model') ?? manifest.default;
    if (!name) {
      showMessage('No model is bundled with this site yet: drop a checkpoint (model.safetensors with its config.json).');
      return;
    }
    const entry = manifest.models.find((m) => m.name === name);
    if (!entry) throw new Error(`no model named "${name}" in models/manifest.json`);
    const base = `models/${entry.path}`;
    const files = {
      weights: await fetchBytes(`${base}model.safetensors`),
      config: await fetchBytes(`${base}config.json`, true),
      preprocessor: await fetchBytes(`${base}preprocessor_config.json`, true),
    };
    $('progress').value = 0.6;
    const { info: loaded } = await request({ type: 'load', files }, Object.values(files).filter(Boolean));
    setModel(loaded, name);
  } catch (e) {
    showMessage(`Could not load the model: ${e.message}`);
  } finally {
    $('progress').value = 1;
  }
}

function setModel(loaded, name) {
  info = loaded;
  const c = info.config;
  $('layer').max = c.depth - 1;
  $('layer').value = c.depth - 1;
  $('layer-out').textContent = c.depth - 1;
  $('head').replaceChildren(new Option('mean of heads', 'mean'), new Option('rollout (all layers)', 'rollout'),
    ...Array.from({ length: c.num_heads }, (_, h) => new Option(`head ${h}`, h)));
  document.body.dataset.model = name;
  document.body.dataset.ready = 'true';
}

/** Decodes a file or blob upright (EXIF orientation applied) and classifies it. */
async function classifyBlob(blob) {
  showMessage('');
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { imageOrientation: 'from-image' });
  } catch {
    showMessage(`“${blob.name ?? 'pasted image'}” is not an image this browser can decode.`);
    return;
  }
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const w = Math.max(1, Math.round(bitmap.width * scale));
  const h = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0, w, h);
  const rgba = ctx.getImageData(0, 0, w, h).data.buffer;
  const id = ++latest;
  try {
    const { result, viewBox } = await request({ type: 'classify', rgba, width: w, height: h }, [rgba]);
    if (id !== latest) return; // a newer image was dropped meanwhile
    current = { result, bitmap: canvas, viewBox };
    window.vitrineLast = result; // for tests and the curious: the raw outputs
    render();
  } catch (e) {
    if (id === latest) showMessage(e.message);
  }
}

function render() {
  if (!current || !info) return;
  const { result, bitmap, viewBox } = current;
  const [x0, y0, x1, y1] = viewBox;
  const img = $('image');
  const ctx = img.getContext('2d');
  ctx.fillStyle = 'black';
  ctx.fillRect(0, 0, img.width, img.height);
  // Show exactly what the model saw: the crop, scaled to the canvas.
  ctx.drawImage(bitmap, x0, y0, x1 - x0, y1 - y0, 0, 0, img.width, img.height);

  const layer = Number($('layer').value);
  const choice = $('head').value;
  const [rows, cols] = result.grid;
  const map = choice === 'rollout' ? result.rollout
    : headMap(result.cls, result.heads, rows * cols, layer, choice === 'mean' ? 'mean' : Number(choice));
  drawMap($('overlay'), map, result.grid);
  $('overlay').style.opacity = $('opacity').value;

  const order = Array.from(result.probabilities.keys()).sort((a, b) => result.probabilities[b] - result.probabilities[a]);
  $('top').replaceChildren(...order.slice(0, 5).map((i) => {
    const li = document.createElement('li');
    const p = result.probabilities[i];
    li.textContent = `${info.labels[i]} — ${(p * 100).toFixed(1)}%`; // labels are text, never HTML
    const bar = document.createElement('span');
    bar.className = 'bar';
    bar.style.width = `${(p * 100).toFixed(1)}%`;
    li.append(bar);
    li.dataset.index = i;
    return li;
  }));
  const t = result.timings;
  $('timings').textContent =
    `preprocess ${t.preprocess.toFixed(1)} ms · forward ${t.forward.toFixed(1)} ms · read-back ${t.readback.toFixed(1)} ms`;
  document.body.dataset.classified = String(latest);
}

$('file').addEventListener('change', (e) => handleFiles(e.target.files));
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
$('layer').addEventListener('input', () => { $('layer-out').textContent = $('layer').value; render(); });
$('head').addEventListener('change', render);
$('opacity').addEventListener('input', render);

worker.postMessage({ type: 'init', backend: params.get('backend') });
