// @ts-check
// Which backend runs the model and which wasm module carries it, chosen by
// the page (rpc.js), which then compiles that module while the worker
// starts: the CPU module (pkg/, SIMD128 or relaxed SIMD), or, where the
// page has a hardware WebGPU adapter, the WebGPU module (pkg-webgpu/, which
// also carries the CPU backend). Only the module that runs is fetched.

// The smallest module that uses relaxed SIMD's f32x4.relaxed_madd (the
// instruction of the matrix kernel in vitrine_relaxed_bg.wasm): a browser
// that validates it can run that module.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123, 123, 1, 123, 3, 2, 1, 0, 10, 13, 1, 11, 0, 32, 0, 32, 1, 32, 2,
  253, 133, 2, 11,
]);

/**
 * @typedef {{ backend: 'cpu' | 'webgpu', reason: string, dir: string, file: string, simd: 'relaxed' | 'simd128' }} Choice
 */

/**
 * The backend for `requested` ('cpu', 'webgpu' or null for the page's
 * choice) and its module, with relaxed SIMD's fused multiply-add where the
 * browser has it (unless `simd` is 'simd128'). WebGPU only with a hardware
 * adapter: a software fallback adapter is slower than the CPU backend.
 * @param {string | null} requested
 * @param {string | null} simd
 * @returns {Promise<Choice>}
 */
export async function chooseBackend(requested, simd) {
  const relaxed = simd !== 'simd128' && WebAssembly.validate(RELAXED_SIMD_PROBE);
  /** @returns {Choice} */
  const cpu = (/** @type {string} */ reason) => ({
    backend: 'cpu', reason, dir: 'pkg', file: relaxed ? 'vitrine_relaxed_bg.wasm' : 'vitrine_bg.wasm', simd: relaxed ? 'relaxed' : 'simd128',
  });
  if (requested === 'cpu') return cpu('the CPU backend was requested');
  const gpu = /** @type {any} */ (self.navigator).gpu;
  if (!gpu) return cpu('this browser does not offer WebGPU');
  const adapter = await gpu.requestAdapter().catch(() => null);
  if (!adapter) return cpu('no WebGPU adapter is available');
  const fallback = adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false;
  if (fallback && requested !== 'webgpu') return cpu('the only WebGPU adapter is a software fallback, slower than the CPU backend');
  const reason = fallback ? 'WebGPU was requested (software fallback adapter)' : 'a WebGPU adapter is available';
  return { backend: 'webgpu', reason, dir: 'pkg-webgpu', file: 'vitrine_bg.wasm', simd: 'simd128' };
}

/**
 * The chosen module, compiled as it downloads (which also lets the browser
 * keep its compiled code for the next visit), or null where that fails (a
 * host that serves .wasm with another type, a failed download): the worker
 * then fetches it itself and says what went wrong.
 * @param {Choice} choice
 * @returns {Promise<WebAssembly.Module | null>}
 */
export function compileModule(choice) {
  if (typeof WebAssembly.compileStreaming !== 'function') return Promise.resolve(null);
  const url = new URL(`./${choice.dir}/${choice.file}`, import.meta.url);
  return WebAssembly.compileStreaming(fetch(url)).catch(() => null);
}
