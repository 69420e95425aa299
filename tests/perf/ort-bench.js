// onnxruntime-web on the same weights as vitrine's bench page: session.run
// on a fixed input, median / p90 / min after warm-up.
// ?ep=wasm|webgpu&runs=N&warmup=N&model=NAME (a folder of models/, default vit_tiny)
import * as ort from './ort/ort.all.bundle.min.mjs';

const params = new URLSearchParams(location.search);
const ep = params.get('ep') ?? 'wasm';
const runs = Number(params.get('runs') ?? 30);
const warmup = Number(params.get('warmup') ?? 3);
const model = params.get('model') ?? 'vit_tiny';

function stats(values) {
  const s = [...values].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { median: at(0.5), p90: at(0.9), min: s[0] };
}

async function main() {
  ort.env.wasm.numThreads = 1; // as vitrine's CPU backend in wasm
  ort.env.wasm.wasmPaths = new URL('./ort/', location.href).href;
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(`models/${model}/model.onnx`, { executionProviders: [ep] });
  const readyMs = performance.now() - t0;
  const data = new Float32Array(3 * 224 * 224).map((_, i) => Math.sin(i) * 0.5);
  const feeds = { pixel_values: new ort.Tensor('float32', data, [1, 3, 224, 224]) };
  const first = await session.run(feeds);
  const firstResultMs = performance.now();
  for (let i = 1; i < warmup; i++) await session.run(feeds);
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const out = await session.run(feeds);
    await out.logits.getData(); // read back, as vitrine does
    times.push(performance.now() - t0);
  }
  const report = { engine: 'onnxruntime-web', version: ort.env.versions?.web, ep, model, runs, warmup, readyMs, firstResultMs, classes: first.logits.dims[1], ms: { total: stats(times) } };
  document.getElementById('json').textContent = JSON.stringify(report, null, 1);
  document.getElementById('status').textContent = 'Done.';
  window.vitrineBench = report;
  document.body.dataset.done = 'true';
}

main().catch((e) => {
  document.getElementById('status').textContent = `Bench failed: ${e.message}`;
  window.vitrineBench = { error: String(e.message ?? e), ep };
  document.body.dataset.done = 'true';
});
