// The model runs here, off the main thread: the page never freezes.
import init, { Vitrine } from './pkg/vitrine.js';

let model = null;
let backend = 'cpu';
let ready = null;

/** WebGPU when there is a hardware adapter; a software fallback adapter is slower than the CPU backend. */
async function chooseBackend(requested) {
  if (requested === 'cpu') return { backend: 'cpu', reason: 'the CPU backend was requested' };
  if (!self.navigator.gpu) return { backend: 'cpu', reason: 'this browser does not offer WebGPU' };
  const adapter = await self.navigator.gpu.requestAdapter().catch(() => null);
  if (!adapter) return { backend: 'cpu', reason: 'no WebGPU adapter is available' };
  const fallback = adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false;
  if (fallback && requested !== 'webgpu') {
    return { backend: 'cpu', reason: 'the only WebGPU adapter is a software fallback, slower than the CPU backend' };
  }
  return { backend: 'webgpu', reason: fallback ? 'WebGPU was requested (software fallback adapter)' : 'a WebGPU adapter is available' };
}

async function load(files) {
  const bytes = (b) => (b ? new Uint8Array(b) : undefined);
  const next = await Vitrine.load(backend, bytes(files.weights), bytes(files.config), bytes(files.preprocessor));
  // Warm up: one run on a blank image compiles the shaders now, while the
  // page still shows loading progress, not on the user's first image.
  await next.classify(new Uint8Array(4 * 8 * 8), 8, 8, undefined);
  model?.free();
  model = next;
  return JSON.parse(model.info());
}

self.onmessage = async ({ data }) => {
  try {
    if (data.type === 'init') {
      ready = (async () => {
        await init();
        const choice = await chooseBackend(data.backend);
        backend = choice.backend;
        return choice;
      })();
      self.postMessage({ type: 'ready', ...(await ready) });
    } else if (data.type === 'load') {
      await ready;
      self.postMessage({ type: 'loaded', id: data.id, info: await load(data.files) });
    } else if (data.type === 'classify') {
      await ready;
      if (!model) throw new Error('no model is loaded yet');
      const result = await model.classify(new Uint8Array(data.rgba), data.width, data.height, undefined);
      const viewBox = Array.from(model.view_box(data.width, data.height));
      self.postMessage({ type: 'result', id: data.id, result, viewBox });
    }
  } catch (e) {
    self.postMessage({ type: 'error', id: data.id, during: data.type, message: String(e?.message ?? e) });
  }
};
