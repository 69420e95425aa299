// The model worker and the models it runs: starting it (and restarting it
// on the CPU when a backend fails), loading the site's model, a dropped
// checkpoint, or the one in use again with other options, each with its
// progress shown. The newest load asked for wins.
import { fetchSiteModel } from './manifest.js';
import { describeProgress, SHOW_AFTER_MS } from './progress.js';
import { connect } from './rpc.js';
import { notify, sentence, state, update } from './store.js';
import { $ } from './dom.js';

const params = new URLSearchParams(location.search);
// ?f16=keep|widen: an f16 checkpoint's weight matrices kept in f16 on the
// CPU backend (half the memory, the same results, a little slower) or
// widened to f32, whatever the model's size; by default only a model whose
// f32 weights would not fit keeps them.
const keepF16 = { keep: true, widen: false, __proto__: null }[params.get('f16')];

let worker = null; // the connection to worker.js (rpc.js)

/**
 * A fresh worker on `requested` (or its own choice), or `started`, one
 * already under way; what the old one had pending fails.
 * @param {string | null} requested
 * @param {ReturnType<typeof connect>} [started]
 */
export async function startWorker(requested, started) {
  worker?.close();
  worker = started ?? connect(requested, params.get('simd'));
  let data;
  try {
    data = await worker.ready;
  } catch (e) {
    notify({ error: `vitrine could not start: ${e.message}` });
    throw e;
  }
  const cpu = data.simd === 'relaxed' ? 'CPU (WebAssembly, relaxed SIMD)' : 'CPU (WebAssembly, SIMD128)';
  $('backend').textContent = `Backend: ${data.backend === 'webgpu' ? 'WebGPU' : cpu}, because ${data.reason}.`;
  document.body.dataset.backend = data.backend;
  document.body.dataset.simd = data.simd;
  update({ backend: data.backend });
}

let turn = Promise.resolve();

/**
 * Runs `fn` with the worker to itself: `fn(request)` sends requests
 * directly, and the page's other requests (run) wait until it is done.
 * @template T
 * @param {(request: (message: import('./protocol.js').Request) => Promise<any>) => Promise<T>} fn
 * @returns {Promise<T>}
 */
export function exclusive(fn) {
  const done = turn.then(() => fn((message) => worker.request(message)));
  turn = done.then(() => {}, () => {});
  return done;
}

/**
 * Runs a worker request; when the backend itself failed (a lost GPU, a shader
 * that did not compile, a crash), restarts on the CPU backend, reloads the
 * model and tries once more.
 */
export async function run(message, onProgress) {
  await turn; // the worker is lent out (exclusive) meanwhile
  try {
    return await worker.request(message, onProgress);
  } catch (e) {
    if (!e.fatal) throw e;
    const warning = `The ${state.backend === 'webgpu' ? 'WebGPU' : 'CPU'} backend failed (${e.message}), so vitrine restarted on the CPU backend.`;
    await startWorker('cpu');
    const { source } = state;
    if (source) await worker.request({ type: 'load', files: source.files, seq: source.seq }, onProgress);
    if (message.type !== 'classify') throw new Error(warning);
    notify({ warning });
    return worker.request(message);
  }
}

/**
 * The progress of one load, on the bar and, once it has taken longer than
 * half a second, in words (reading, converting, uploading, warming up).
 * `report(stage, done, total)` takes every report; `end()` clears it. Only
 * the newest load is shown.
 */
let shownLoad = 0;
export function loadProgress(name, seq) {
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
  const report = (stage, done, total, more = {}) => {
    if (!mine()) return;
    const now = describeProgress(stage, done, total, { name, gpu: state.backend === 'webgpu', ...more });
    // A download of unknown size: an indeterminate bar.
    if (stage === 'downloading' && !(total > 0)) $('progress').removeAttribute('value');
    else $('progress').value = Math.min(now.value, 0.999); // 1 hides the bar: that is end()'s
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

/** The number of a new load, taken when it is asked for. */
export function nextLoad() {
  update({ loads: state.loads + 1 });
  return state.loads;
}

/**
 * Loads `files` as model `name` (or the name `name(info)` gives it), load
 * number `seq` (from `nextLoad`, taken when the load was asked for). The newest load asked for wins whatever
 * order they finish in: the user's checkpoint, dropped while the site's
 * default model is still downloading, is not replaced by it. Returns the
 * model's info, or null when a newer load has already taken its place.
 * `progress` comes from `loadProgress`; `origin` says where the files came
 * from (the Hub's repo@commit, on the model's line) and `link` how the
 * address names the model (null: it cannot, as for a dropped file).
 */
export async function loadModel(name, files, seq, progress, origin = null, link = null) {
  const onProgress = ({ stage, done, total }) => progress?.report(stage, done, total);
  files.keepF16 = keepF16;
  const { info, superseded } = await run({ type: 'load', files, seq }, onProgress);
  if (superseded || seq < state.applied) return null;
  if (typeof name === 'function') name = name(info);
  update({
    applied: seq,
    source: { name, files, seq, origin, link },
    info: { ...info, name, ...(origin ? { origin } : {}) }, // the page's own fields beside the handle's
    notices: { ...state.notices, error: '', modelNotes: info.notes.map(sentence) },
  });
  return info;
}

/** A weights file's name: safetensors, or what torch.save writes (read without running its pickle). */
export const isWeights = (name) => /\.(safetensors|pth|pt|bin)$/i.test(name);

/**
 * Loads a checkpoint the user dropped or picked: its weights
 * (model.safetensors, a .pth, pytorch_model.bin) with config.json (and
 * preprocessor_config.json). It is named as its config names it (timm's
 * architecture, transformers' repo: the loader's `name`), else by its file.
 */
export async function loadDroppedModel(list) {
  const find = (pred) => list.find((f) => pred(f.name.toLowerCase()));
  const weights = find(isWeights);
  const config = find((n) => n.endsWith('config.json') && !n.startsWith('preprocessor'));
  const preprocessor = find((n) => n === 'preprocessor_config.json');
  const seq = nextLoad();
  notify({ error: '' });
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
    await loadModel((info) => info.name ?? weights.name, files, seq, progress);
  } catch (e) {
    notify({ error: `Could not load “${weights.name}”: ${e.message}. The previous model is still in use.` });
  } finally {
    progress.end();
  }
}

/**
 * Loads the site's model as load number `seq`: from `fetched` (a
 * fetchSiteModel begun earlier), else fetched now.
 * @param {number} seq
 * @param {ReturnType<typeof fetchSiteModel>} [fetched]
 */
export async function loadSiteModel(seq, fetched) {
  const progress = loadProgress('the model', seq);
  try {
    const { name, isDefault, files } = await (fetched ?? fetchSiteModel(params.get('model'), (done, total) => progress.report('reading', done, total)));
    if (!name || !files) {
      notify({ error: 'No model is bundled with this site: drop a checkpoint (model.safetensors with its config.json).' });
      return;
    }
    if (seq < state.loads) return; // the user's own checkpoint came first: it wins
    // The address names a model of the site other than its default.
    await loadModel(name, files, seq, progress, null, isDefault ? null : name);
  } catch (e) {
    if (seq === state.loads) notify({ error: `Could not load the model: ${e.message}` });
  } finally {
    progress.end();
  }
}

/**
 * The checkpoint in use loaded again from the bytes the page has, with
 * `change` to its files; `control` is disabled meanwhile. On failure the
 * error is `fail(error)` and `undo()` puts the control back. True when
 * it loaded.
 */
export async function reloadModel(change, control, fail, undo) {
  const { source, info } = state;
  if (!source || !info) return false;
  control.disabled = true;
  const seq = nextLoad();
  const progress = loadProgress(source.name, seq);
  try {
    await loadModel(source.name, { ...source.files, ...change }, seq, progress, source.origin, source.link);
    return true;
  } catch (e) {
    notify({ error: fail(e) });
    undo();
    control.disabled = false;
    return false;
  } finally {
    progress.end();
  }
}
