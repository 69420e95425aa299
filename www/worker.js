// @ts-check
// The model runs here, off the main thread: the page never freezes. The
// requests and answers are protocol.js's; the wasm handle's results are
// typed by its generated declaration (pkg/vitrine.d.ts), which names
// vitrine.d.ts's types. The page chooses the backend and its wasm module
// (backend.js) and hands it over compiled.
import { eachChunk } from './progress.js';
import { ANSWERS, checkRequest } from './protocol.js';

const clock = () => performance.timeOrigin + performance.now();
const started = clock();

/** The module's exports, once it is started. @type {typeof import('./pkg/vitrine.js')} */
let wasm;
/** @type {import('./pkg/vitrine.js').Vitrine | null} */
let model = null;
let modelSeq = -1; // the page's number for the load that gave `model`: a later-numbered load wins
let backend = 'cpu';
let ready = null;
/** @type {any} */
let adapter = null; // the WebGPU adapter in use, for its limits
/** @type {WebAssembly.Memory | null} */
let memory = null; // the wasm module's memory, for the bench page
let keptImage = null; // the page's id of the image the model keeps (the last classified)

/**
 * Loads a checkpoint. The page numbers its loads: one that arrives after a
 * later-numbered one (the site's default model, fetched slowly, after the
 * user's own checkpoint) is freed at once and reported as superseded.
 */
async function load(files, seq, id) {
  const bytes = (b) => (b ? new Uint8Array(b) : undefined);
  const limit = adapter ? Math.min(adapter.limits.maxStorageBufferBindingSize, adapter.limits.maxBufferSize) : undefined;
  // Progress goes to the page while the wasm call runs: at each change of
  // stage, at the end of one, and at most every 50 ms in between.
  let last = { stage: null, at: 0 };
  const report = (stage, done, total) => {
    const now = performance.now();
    if (stage === last.stage && done < total && now - last.at < 50) return;
    last = { stage, at: now };
    self.postMessage({ type: 'progress', id, stage, done, total });
  };
  // files.imageSize: run at another input size than the checkpoint's own;
  // files.key: which state dict of a training checkpoint (DINO's teacher or student);
  // files.keepF16: keep (true) or widen (false) an f16 file's matrices on the
  // CPU whatever the size; unset, they stay f16 only when f32 would not fit.
  const weights = await gather(files, report);
  const loading = wasm.Vitrine.load(backend, weights, bytes(files.config), bytes(files.preprocessor), limit,
    files.imageSize, files.name, files.key, report, files.keepF16);
  const next = await loading;
  const info = next.info();
  if (info.labelsFile) await fetchLabels(info);
  if (seq < modelSeq) {
    next.free();
    return { info, superseded: true };
  }
  // Warm up: the shaders compile now, while the page still shows loading progress.
  report('warm-up', 0, 1);
  try {
    await next.warmUp();
  } catch (e) {
    try { next.free(); } catch { /* a trapped module frees nothing */ }
    throw e;
  }
  model?.free(); // the old model's weights go back to the allocator (or the GPU's pools)
  model = next;
  keptImage = null; // a new model keeps no image
  modelSeq = seq;
  return { info, superseded: false };
}

/**
 * The weights, gathered into WebAssembly memory chunk by chunk, so that no
 * script here holds a whole copy: a Blob (a dropped File, which reports its
 * reading; a kept or site download, read already) read as a stream; a
 * stream (a download under way, whose progress the page shows; `files.bytes`
 * its size when known); or bytes.
 */
async function gather(files, report) {
  const { weights } = files;
  if (!weights) throw new Error(`${files.name ?? 'the weights file'} was not kept in this browser: load the model again`);
  if (!(weights instanceof Blob) && !(weights instanceof ReadableStream)) {
    const all = new Uint8Array(weights);
    const gathered = new wasm.FileBytes(all.length);
    gathered.push(all);
    return gathered;
  }
  const blob = weights instanceof Blob;
  const total = blob ? weights.size : files.bytes ?? 0;
  const gathered = new wasm.FileBytes(total);
  const reading = weights instanceof File;
  try {
    await eachChunk(blob ? weights.stream() : weights, (chunk, done) => {
      gathered.push(chunk);
      if (reading) report('reading', done, total);
    });
  } catch (e) {
    gathered.free();
    if (!blob) throw e; // the download's own error, which the page words
    throw new Error(`${files.name ?? 'the weights file'} could not be read (was it moved or changed since it was given?): ${e.message}`);
  }
  return gathered;
}

/**
 * An ImageNet-21k classifier's names, which the module does not carry:
 * fetched from the site's own `labels/` (half a megabyte, only for such a
 * model) in place of the placeholders. Without them (a host that left the
 * file out, a visit offline) the classes stay numbered and a note says why.
 */
async function fetchLabels(info) {
  try {
    const res = await fetch(info.labelsFile);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const names = (await res.text()).split('\n');
    if (names.at(-1) === '') names.pop();
    if (names.length !== info.labels.length) throw new Error(`${names.length} names for ${info.labels.length} classes`);
    info.labels = names;
  } catch (e) {
    info.notes.push(`its class names (${info.labelsFile}) could not be fetched (${e.message}): the classes are numbered`);
  }
}

// One message at a time, in the order they came: a load never runs in the
// middle of a classification, and the model they see is the one in use.
let queue = Promise.resolve();
/** The page's compiled module, which comes out of turn: init waits for it. */
let moduleGiven = (/** @type {WebAssembly.Module | null} */ _m) => {};
const given = new Promise((resolve) => { moduleGiven = resolve; });
self.onmessage = (event) => {
  if (event.data?.type === 'module') return moduleGiven(event.data.module);
  queue = queue.then(() => handle(event));
};

/** Needs a model: the requests about an image. */
function loaded() {
  if (!model) throw new Error('no model is loaded yet');
  return model;
}

/** Each request of protocol.js, answered with the fields of its answer. */
const handlers = {
  load: async (data) => load(data.files, data.seq ?? 0, data.id),
  classify: async (data) => {
    const m = loaded();
    // The model keeps the prepared image for the questions below. Until
    // this classification succeeds, the image the model keeps is not known
    // for sure (a failure after preprocessing keeps the new one).
    keptImage = null;
    // `forRelevance`: the page shows "why this class", so the forward pass
    // is kept for the relevance map that follows.
    const result = await m.classify(new Uint8Array(data.rgba), data.width, data.height, undefined, data.forRelevance ?? false);
    keptImage = data.image;
    return { result };
  },
  // The forward pass step by step on the last image (the teaching view).
  walkthrough: async (data) => ({ walk: await loaded().walkthrough(Uint32Array.from(data.patches), data.layer, data.head) }),
  figures: async () => ({ figures: await loaded().figures() }),
  featurePca: async (data) => ({ pca: await loaded().featurePca(data.images, data.foreground) }),
  // Why this class: a backward pass, only when asked, on the kept image if
  // it is still the one the page means.
  relevance: async (data) => {
    const m = loaded();
    if (data.image !== keptImage) return { stale: true };
    return { relevance: await m.relevance(data.class, data.discardRatio) };
  },
  // One layer's full [H, N+1, N+1] attention (and its head mean) for the
  // last image, read back only on request.
  attention: async (data) => {
    const { layerAttention, layerMean } = await loaded().attention(data.layer);
    return { layerAttention, layerMean };
  },
  memory: async () => ({ wasmBytes: memory.buffer.byteLength, device: model?.memory() ?? null }),
  // The model's weights freed (Compare runs two models in turn where the
  // memory holds only one): the page loads it again after.
  unload: async () => {
    model?.free();
    model = null;
    keptImage = null;
    return {};
  },
};

async function handle({ data }) {
  try {
    if (data.type === 'init') {
      ready = (async () => {
        const { choice } = data;
        backend = choice.backend;
        if (backend === 'webgpu') {
          // The page found the adapter; the worker asks for its own, for its limits.
          adapter = await self.navigator.gpu?.requestAdapter().catch(() => null);
          if (!adapter) throw new Error('the WebGPU adapter the page found is not available to its worker');
        }
        wasm = await import(`./${choice.dir}/vitrine.js`);
        const imported = clock();
        const compiled = (await given) ?? new URL(`./${choice.dir}/${choice.file}`, import.meta.url);
        memory = (await wasm.default({ module_or_path: compiled })).memory;
        return { backend, reason: choice.reason, simd: choice.simd, timing: { started, imported, instantiated: clock() } };
      })();
      self.postMessage({ type: 'ready', ...(await ready) });
      return;
    }
    checkRequest(data);
    await ready;
    const answer = await handlers[data.type](data);
    self.postMessage({ type: ANSWERS[data.type], id: data.id, ...answer });
  } catch (e) {
    // A trap (a Rust panic aborts) or a lost device leaves this worker unusable: say so.
    const fatal = e instanceof WebAssembly.RuntimeError || /device (was )?lost|unreachable/i.test(String(e?.message ?? e));
    self.postMessage({ type: 'error', id: data.id, during: data.type, fatal, message: String(e?.message ?? e) });
  }
}
