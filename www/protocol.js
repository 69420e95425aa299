// @ts-check
// The messages between a page and worker.js, all of them: what each request
// carries and what its answer holds. rpc.js sends them and worker.js answers
// them; a request of a type not listed here is refused on both sides. The
// wasm handle's own results are typed in vitrine.d.ts.

/** @typedef {import('./vitrine').ModelInfo} ModelInfo */
/** @typedef {import('./vitrine').Prediction} Prediction */
/** @typedef {import('./vitrine').RelevanceMaps} RelevanceMaps */
/** @typedef {import('./vitrine').Walkthrough} Walkthrough */
/** @typedef {import('./vitrine').Figures} Figures */
/** @typedef {import('./vitrine').FeaturePca} FeaturePca */

/**
 * The files of a checkpoint, and how to load it.
 * @typedef {object} ModelFiles
 * @property {string} [name] the weights file's name, for messages
 * @property {Blob | ArrayBuffer | ReadableStream<Uint8Array>} weights a dropped File, a
 *   fetched or kept Blob, bytes, or a download under way (transferred, read once)
 * @property {number} [bytes] the size of a download under way, when known
 * @property {ArrayBuffer} [config] config.json
 * @property {ArrayBuffer} [preprocessor] preprocessor_config.json
 * @property {number} [imageSize] run at this square input size instead of the checkpoint's own
 * @property {string} [key] a training checkpoint's state dict (DINO's `teacher` or `student`)
 * @property {boolean} [keepF16] keep (true) or widen (false) an f16 file's matrices on the CPU
 */

/**
 * Page → worker, first: the page's choice of backend and wasm module
 * (backend.js); then, out of turn, that module compiled, or null where the
 * page could not compile it (the worker fetches it itself).
 * @typedef {{ type: 'init', choice: import('./backend.js').Choice }} Init
 * @typedef {{ type: 'module', module: WebAssembly.Module | null }} CompiledModule
 */

/**
 * Page → worker: the requests, each answered once (after any `progress`);
 * rpc.js numbers each (`id`, which its answer carries back).
 * `seq` numbers loads (a later-numbered one wins); `image` names the
 * classification a relevance map is for; `forRelevance` keeps a
 * classification's forward pass for the relevance map that will follow.
 * @typedef {{ type: 'load', files: ModelFiles, seq?: number }
 *   | { type: 'classify', rgba: ArrayBuffer, width: number, height: number, image: number, forRelevance?: boolean }
 *   | { type: 'walkthrough', patches: number[], layer: number, head: number }
 *   | { type: 'figures' }
 *   | { type: 'featurePca', images: number, foreground: boolean }
 *   | { type: 'relevance', class: number, image: number | undefined, discardRatio?: number }
 *   | { type: 'attention', layer: number }
 *   | { type: 'memory' }
 *   | { type: 'unload' }} Ask
 */

/** @typedef {Ask & { id?: number }} Request */

/**
 * Worker → page: the answers, by request type (`id` is the request's).
 * @typedef {{ type: 'loaded', id: number, info: ModelInfo, superseded: boolean }
 *   | { type: 'result', id: number, result: Prediction }
 *   | { type: 'walkthrough', id: number, walk: Walkthrough }
 *   | { type: 'figures', id: number, figures: Figures }
 *   | { type: 'featurePca', id: number, pca: FeaturePca }
 *   | { type: 'relevance', id: number, relevance?: RelevanceMaps, stale?: boolean }
 *   | { type: 'attention', id: number, layerAttention: Float32Array, layerMean: Float32Array }
 *   | { type: 'memory', id: number, wasmBytes: number, device: object | null }
 *   | { type: 'unloaded', id: number }} Answer
 */

/**
 * Worker → page, besides answers: the module started (or not), a load's
 * progress, a request that failed (`fatal` when the worker is unusable).
 * `ready.timing`: when the worker's script started, its module's glue was
 * imported and the wasm module instantiated, in ms since the epoch (a
 * page subtracts its `performance.timeOrigin`), for the bench page.
 * @typedef {{ type: 'ready', backend: string, reason: string, simd: string, timing: { started: number, imported: number, instantiated: number } }
 *   | { type: 'progress', id: number, stage: string, done: number, total: number }
 *   | { type: 'error', id?: number, during: string, fatal: boolean, message: string }} Event
 */

/** Each request type, and the type of its answer. */
export const ANSWERS = Object.freeze({
  load: 'loaded',
  classify: 'result',
  walkthrough: 'walkthrough',
  figures: 'figures',
  featurePca: 'featurePca',
  relevance: 'relevance',
  attention: 'attention',
  memory: 'memory',
  unload: 'unloaded',
});

/**
 * Throws unless `message` is a request this protocol lists.
 * @param {{ type?: unknown }} message
 * @returns {asserts message is Request}
 */
export function checkRequest(message) {
  const type = message?.type;
  if (typeof type !== 'string' || !Object.hasOwn(ANSWERS, type)) {
    throw new Error(`the model worker takes no “${String(type)}” request (it takes ${Object.keys(ANSWERS).join(', ')})`);
  }
}
