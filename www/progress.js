// A model load's progress, stage by stage: the file read (bytes), its
// weights converted to float32 (bytes), laid out or uploaded to the GPU
// (weights), then one warm-up run. Pure helpers, shared by the page and its
// Node tests.

/** The stages in order, each with its share of the progress bar. */
export const STAGES = ['reading', 'converting', 'building', 'warm-up'];
// A download from the Hub takes the reading's share (it is the reading).
const SHARE = { downloading: [0, 0.4], reading: [0, 0.4], converting: [0.4, 0.75], building: [0.75, 0.9], 'warm-up': [0.9, 1] };

/** Loads quicker than this show only the bar; longer ones also say what is happening. */
export const SHOW_AFTER_MS = 500;

const mb = (bytes) => (bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0);
const millions = (n) => (n / 1e6).toFixed(n < 1e7 ? 1 : 0);

/** "120 / 346 MB", or "120 MB" when the size is not known. */
function amount(done, total, unit, scale) {
  return total > 0 ? `${scale(done)} / ${scale(total)} ${unit}` : `${scale(done)} ${unit}`;
}

/**
 * Where the bar stands and what to say for `stage` at `done` of `total`:
 * `{ value, text }`. `name` is the file's, `gpu` whether the weights go to a
 * GPU (uploading and compiling shaders) rather than stay in WebAssembly memory.
 */
export function describeProgress(stage, done, total, { name = 'the weights', gpu = false, file = '', rate = 0, left = null } = {}) {
  const [from, to] = SHARE[stage] ?? [0, 0];
  const fraction = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  const value = from + (to - from) * fraction;
  const text = {
    downloading: () => `Downloading ${name}${file ? `’s ${file}` : ''}: ${amount(done, total, 'MB', mb)}`
      + (rate > 0 ? `, ${mb(rate)} MB/s` : '') + (left !== null && Number.isFinite(left) ? `, ${Math.ceil(left)} s left` : ''),
    reading: () => `Reading ${name}: ${amount(done, total, 'MB', mb)}`,
    converting: () => `Checking the weights: ${amount(done, total, 'MB', mb)}`,
    building: () => `${gpu ? 'Uploading the weights to the GPU' : 'Laying out the weights'}: ${amount(done, total, 'M weights', millions)}`,
    'warm-up': () => (gpu ? 'Warming up: a first run on a blank image, compiling the GPU’s shaders' : 'Warming up: a first run on a blank image'),
  }[stage];
  return { value, text: text ? text() : '' };
}

/**
 * Reads a stream of `total` bytes (0: not known) into one ArrayBuffer,
 * telling `onProgress(done, total)` after each chunk.
 */
export async function readStream(stream, total, onProgress) {
  const reader = stream.getReader();
  let buffer = new Uint8Array(total > 0 ? total : 1 << 20);
  let done = 0;
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    if (done + value.length > buffer.length) {
      // More than announced (or no size given): grow by doubling.
      const bigger = new Uint8Array(Math.max(buffer.length * 2, done + value.length));
      bigger.set(buffer.subarray(0, done));
      buffer = bigger;
    }
    buffer.set(value, done);
    done += value.length;
    onProgress(done, total);
  }
  return done === buffer.length ? buffer.buffer : buffer.slice(0, done).buffer;
}

/** A File or Blob's bytes, with progress (a dropped 600 MB checkpoint takes seconds). */
export function readBlob(blob, onProgress) {
  if (typeof blob.stream !== 'function') return blob.arrayBuffer();
  return readStream(blob.stream(), blob.size, onProgress);
}
