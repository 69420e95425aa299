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
 * Hands each chunk of `stream` to `onChunk(chunk, done)`, `done` counting
 * the bytes so far, and resolves with their number once the stream ends.
 * When `onChunk` throws, the stream is cancelled and the error thrown.
 * @param {ReadableStream<Uint8Array>} stream
 * @param {(chunk: Uint8Array, done: number) => void} onChunk
 * @returns {Promise<number>}
 */
export async function eachChunk(stream, onChunk) {
  const reader = stream.getReader();
  let done = 0;
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) return done;
    done += value.length;
    try {
      onChunk(value, done);
    } catch (e) {
      reader.cancel(e).catch(() => {});
      throw e;
    }
  }
}

/**
 * `stream` (of `total` bytes, 0 when not known) as a Blob, which the
 * browser holds rather than script memory, telling `onProgress(done,
 * total)` after each chunk.
 * @param {ReadableStream<Uint8Array>} stream
 * @param {number} total
 * @param {(done: number, total: number) => void} onProgress
 * @returns {Promise<Blob>}
 */
export function streamToBlob(stream, total, onProgress) {
  let done = 0;
  const counted = stream.pipeThrough(new TransformStream({
    transform(chunk, controller) {
      done += chunk.length;
      onProgress(done, total);
      controller.enqueue(chunk);
    },
  }));
  return new Response(counted).blob();
}
