// Images, from any source to a classification: decoded and scaled down
// here (input.js), then classified in the worker one at a time, only the
// newest one waiting; only the newest image's answer is shown, and only if
// the model in use gave it.
import { decode, fitCanvas } from './input.js';
import { isWeights, loadDroppedModel, run } from './models.js';
import { notify, state, update } from './store.js';

/** Largest side handed to the model; bigger images are scaled down here, before wasm. */
const MAX_SIDE = 1024;

let inflight = false; // a classification is running in the worker
let queued = null; // the newest classification waiting for it; older waiting ones are dropped

const topClass = (p) => p.reduce((best, v, i) => (v > p[best] ? i : best), 0);

/**
 * Decodes and classifies a file or blob; only the newest one's result is
 * shown. An image given before any model is ready waits for it (and is
 * answered again by each model loaded later). `shown(current)` hears of
 * each image shown.
 */
export async function classifyBlob(blob, truth = null, note = '', sample = null) {
  const name = blob.name ? `“${blob.name}”` : 'The pasted image';
  const id = state.latest + 1;
  update({ given: { blob, truth, sample }, latest: id });
  document.body.dataset.requested = String(id);
  notify({ error: '', warning: '', imageNotes: [] });
  if (!state.info) {
    notify({ imageNotes: [`${name} will be classified as soon as the model is ready.`] });
    return;
  }
  let bitmap;
  try {
    bitmap = await decode(blob, name);
  } catch (e) {
    if (state.given?.blob === blob) update({ given: null }); // not worth answering again with the next model
    if (id === state.latest) notify({ error: e.message });
    return;
  }
  if (id !== state.latest) { bitmap.close(); return; } // a newer image arrived while this one was decoded
  const { canvas, w, h, scale } = fitCanvas(bitmap, MAX_SIDE);
  const size = [bitmap.width, bitmap.height];
  bitmap.close();
  submit({ id, name, truth, note, sample, canvas, size, scale, w, h, model: state.applied });
}

/**
 * Classifies the video's current frame now and resolves once it is shown
 * (true), or at once (false) while no model is ready or another image is
 * being classified: live mode awaits each frame before it takes the next,
 * so frames the camera makes meanwhile are dropped, never queued.
 * @param {HTMLVideoElement} video
 */
export async function classifyFrame(video) {
  if (!state.info || inflight || !video.videoWidth) return false;
  const { canvas, w, h, scale } = fitCanvas(video, MAX_SIDE, [video.videoWidth, video.videoHeight]);
  const id = state.latest + 1;
  update({ given: null, latest: id });
  document.body.dataset.requested = String(id);
  inflight = true;
  try {
    await classifyJob({ id, name: 'The camera frame', truth: null, note: '', sample: null, canvas, size: [video.videoWidth, video.videoHeight], scale, w, h, model: state.applied });
  } finally {
    release();
  }
  return true;
}

/** The worker is free again: the newest image waiting, if any, goes next. */
function release() {
  inflight = false;
  const next = queued;
  queued = null;
  if (next && next.id === state.latest) submit(next);
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
  classifyJob(job).finally(release);
}

async function classifyJob({ id, name, truth, note, sample, canvas, size, scale, w, h, model }) {
  const rgba = canvas.getContext('2d').getImageData(0, 0, w, h).data.buffer;
  try {
    // In "why this class" a relevance map follows: keep the forward pass for it.
    const forRelevance = state.view.show === 'relevance';
    const { result } = await run({ type: 'classify', rgba, width: w, height: h, image: id, forRelevance });
    // Show only the newest image, and only as the model in use answered it.
    if (id !== state.latest || model !== state.applied) return;
    const why = result.probabilities.length ? topClass(result.probabilities) : -1;
    window.vitrineLast = result; // for tests and the curious: the raw outputs
    document.body.dataset.imageSize = size.join('x');
    const notes = note ? [note] : [];
    if (scale < 1) notes.push(`${name} is ${size.join('×')} pixels; it was scaled to ${w}×${h} before classification.`);
    const input = state.info.config.img_size;
    if (Math.max(...size) < Math.min(...input)) {
      notes.push(`${name} is only ${size.join('×')} pixels, smaller than the model's ${input.join('×')} input: it was enlarged, so expect a blurry view.`);
    }
    notify({ imageNotes: notes });
    const current = { result, bitmap: canvas, viewBox: Array.from(result.viewBox), rows: {}, truth, sample, id, why, relevance: {}, failed: {}, pending: new Map(), pendingRows: new Set() };
    update({ current, patch: -1 });
    document.body.dataset.classified = String(id);
  } catch (e) {
    if (id === state.latest && model === state.applied) {
      notify({ error: `${name} could not be classified: ${e.message}` });
      document.body.dataset.classified = String(id);
    }
  }
}

/** Files from a drop or the picker: a checkpoint switches the model, anything else is classified. */
export function handleFiles(list) {
  const files = [...list];
  if (files.some((f) => isWeights(f.name))) loadDroppedModel(files);
  else if (files.some((f) => f.name.toLowerCase().endsWith('.json'))) {
    notify({ error: 'A config.json alone is not a model: drop it together with its weights (model.safetensors, a .pth or pytorch_model.bin).' });
  } else if (files.length) {
    const note = files.length > 1 ? `${files.length} images were given; vitrine shows one at a time: the first, “${files[0].name}”.` : '';
    classifyBlob(files[0], null, note);
  }
}
