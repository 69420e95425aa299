// @ts-check
// The call protocol between a page and worker.js: numbered requests, one
// answer each ({ id, type } or { id, type: 'error', message, fatal }); the
// messages themselves are listed in protocol.js. Used by the app and the
// bench page alike.
import { chooseBackend, compileModule } from './backend.js';
import { checkRequest } from './protocol.js';

/** @typedef {import('./protocol.js').Request} Request */
/** @typedef {import('./protocol.js').Answer} Answer */

/**
 * Starts a worker on `backend` ('webgpu', 'cpu' or null for the page's
 * choice) and wasm module `simd` ('simd128' or null). The page chooses the
 * module (backend.js) and compiles it while the worker's scripts load, then
 * hands it over; requests made before the choice wait for it, in order.
 * `ready` resolves with the choice ({ backend, reason, simd }), or rejects
 * when the worker could not start. A crash inside the worker rejects every
 * pending request as fatal.
 * @param {string | null} backend
 * @param {string | null} simd
 */
export function connect(backend, simd) {
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  /** @type {Map<number, { resolve: (a: any) => void, reject: (e: Error) => void, onProgress?: (p: any) => void }>} */
  const pending = new Map();
  let n = 0;
  /** @param {Error} error */
  const rejectAll = (error) => {
    for (const p of pending.values()) p.reject(error);
    pending.clear();
  };
  let failStart = (/** @type {Error} */ _e) => {};
  /** @type {Promise<{ backend: string, reason: string, simd: string, timing: { started: number, imported: number, instantiated: number } }>} */
  const ready = new Promise((resolve, reject) => {
    failStart = reject; // a worker that fails before it is ready (its script, its module)
    worker.onmessage = ({ data }) => {
      if (data.type === 'ready') return resolve(data);
      if (data.during === 'init') return reject(new Error(data.message));
      const p = pending.get(data.id);
      if (!p) return;
      if (data.type === 'progress') return p.onProgress?.(data); // more is to come
      pending.delete(data.id);
      if (data.type === 'error') p.reject(Object.assign(new Error(data.message), { fatal: data.fatal }));
      else p.resolve(data);
    };
  });
  worker.onerror = (e) => {
    e.preventDefault();
    const error = Object.assign(new Error(e.message || 'the model worker crashed'), { fatal: true });
    failStart(error);
    rejectAll(error);
  };
  // The choice goes first, so that the worker brings in the module's glue
  // while the page compiles the module, which follows it.
  const started = chooseBackend(backend, simd).then((choice) => {
    worker.postMessage({ type: 'init', choice });
    compileModule(choice).then((module) => worker.postMessage({ type: 'module', module }));
  });
  started.catch((e) => failStart(e));
  return {
    ready,
    /**
     * Sends `message` and resolves with the worker's answer to it;
     * `onProgress` hears its progress reports. A stream in the message
     * (a download under way) moves to the worker.
     * @param {Request} message
     * @param {(p: { stage: string, done: number, total: number }) => void} [onProgress]
     * @returns {Promise<any>}
     */
    request(message, onProgress) {
      checkRequest(message);
      const id = ++n;
      const weights = message.type === 'load' ? message.files.weights : null;
      const transfer = weights instanceof ReadableStream ? [weights] : [];
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject, onProgress });
        started.then(() => worker.postMessage({ ...message, id }, transfer), reject);
      });
    },
    /** Stops the worker; what was pending fails. */
    close() {
      worker.terminate();
      rejectAll(new Error('the model worker restarted'));
    },
  };
}
