// The model runs here, off the main thread: the page never freezes.
import init, { Vitrine } from './pkg/vitrine.js';

let model = null;
let backend = 'cpu';
let ready = null;
let last = null; // the last image classified: { rgba, width, height }
let adapter = null; // the WebGPU adapter in use, for its limits
let memory = null; // the wasm module's memory, for the bench page

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
  return { backend: 'webgpu', adapter, reason: fallback ? 'WebGPU was requested (software fallback adapter)' : 'a WebGPU adapter is available' };
}

async function load(files) {
  const bytes = (b) => (b ? new Uint8Array(b) : undefined);
  const limit = adapter ? Math.min(adapter.limits.maxStorageBufferBindingSize, adapter.limits.maxBufferSize) : undefined;
  const next = await Vitrine.load(backend, bytes(files.weights), bytes(files.config), bytes(files.preprocessor), limit);
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
        memory = (await init()).memory;
        const { adapter: chosen, ...choice } = await chooseBackend(data.backend);
        backend = choice.backend;
        adapter = chosen ?? null;
        return choice;
      })();
      self.postMessage({ type: 'ready', ...(await ready) });
    } else if (data.type === 'load') {
      await ready;
      self.postMessage({ type: 'loaded', id: data.id, info: await load(data.files) });
    } else if (data.type === 'classify') {
      await ready;
      if (!model) throw new Error('no model is loaded yet');
      last = { rgba: new Uint8Array(data.rgba), width: data.width, height: data.height };
      const result = await model.classify(last.rgba, last.width, last.height, undefined);
      self.postMessage({ type: 'result', id: data.id, result });
    } else if (data.type === 'walkthrough') {
      // The forward pass step by step on the last image (the teaching view).
      await ready;
      if (!model || !last) throw new Error('no image has been classified yet');
      const walk = await model.walkthrough(last.rgba, last.width, last.height, Uint32Array.from(data.patches), data.layer, data.head);
      self.postMessage({ type: 'walkthrough', id: data.id, walk });
    } else if (data.type === 'memory') {
      await ready;
      self.postMessage({ type: 'memory', id: data.id, wasmBytes: memory.buffer.byteLength, device: model?.memory() ?? null });
    } else if (data.type === 'attention') {
      // One layer's full [H, N+1, N+1] attention for the last image, read back only on request.
      await ready;
      if (!model || !last) throw new Error('no image has been classified yet');
      const result = await model.classify(last.rgba, last.width, last.height, data.layer);
      self.postMessage({ type: 'attention', id: data.id, layerAttention: result.layerAttention });
    }
  } catch (e) {
    // A trap (a Rust panic aborts) or a lost device leaves this worker unusable: say so.
    const fatal = e instanceof WebAssembly.RuntimeError || /device (was )?lost|unreachable/i.test(String(e?.message ?? e));
    self.postMessage({ type: 'error', id: data.id, during: data.type, fatal, message: String(e?.message ?? e) });
  }
};
