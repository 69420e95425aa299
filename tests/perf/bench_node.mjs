// vitrine's wasm module and onnxruntime-web's wasm backend in Node (the
// same V8 as Chromium, with no page, worker or browser around them), on the
// vit_tiny_patch16_224 weights of make_vit.py (or another size: --arch), alternating for a few
// rounds. For profiling: `node --cpu-prof tests/perf/bench_node.mjs --only vitrine`
// on a module built with names (wasm-bindgen --keep-debug, no wasm-opt).
//
//   python3 tests/perf/make_vit.py MODEL_DIR [--arch vit_base_patch16_224 --f16]
//   node tests/perf/bench_node.mjs MODEL_DIR [--pkg dist/pkg] [--wasm vitrine_bg.wasm] [--runs 20] [--rounds 3] [--only vitrine|ort] [--keep-f16|--widen-f16]
// (--wasm vitrine_relaxed_bg.wasm needs node --experimental-wasm-relaxed-simd in Node 20.)
import fs from 'node:fs';
import path from 'node:path';

const here = import.meta.dirname;
const args = process.argv.slice(2);
const opt = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const dir = args[0];
if (!dir || dir.startsWith('--')) {
  console.error('usage: node tests/perf/bench_node.mjs MODEL_DIR [--pkg DIR] [--runs N] [--rounds N] [--only vitrine|ort]');
  process.exit(2);
}
const pkg = path.resolve(opt('--pkg', path.join(here, '../../dist/pkg')));
const runs = Number(opt('--runs', 20));
const rounds = Number(opt('--rounds', 3));
const only = opt('--only', null);
const wasm = opt('--wasm', 'vitrine_bg.wasm');

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const size = 224;
// A fixed pattern, the same for both (each gets it in its own input form).
const rgba = new Uint8Array(size * size * 4).map((_, i) => (i * 37) % 251);

async function vitrine() {
  const { initSync, FileBytes, Vitrine } = await import(path.join(pkg, 'vitrine.js'));
  initSync({ module: fs.readFileSync(path.join(pkg, wasm)) });
  const file = fs.readFileSync(path.join(dir, 'model.safetensors'));
  const weights = new FileBytes(file.length);
  weights.push(file);
  const t0 = performance.now();
  const model = await Vitrine.load(
    'cpu',
    weights,
    fs.readFileSync(path.join(dir, 'config.json')),
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    // --keep-f16 / --widen-f16: an f16 file's matrices kept in f16 or
    // widened to f32 whatever the size (by default: kept only where f32
    // would not fit).
    args.includes('--keep-f16') ? true : args.includes('--widen-f16') ? false : undefined,
  );
  console.log(`vitrine load (bytes in hand to a model) ${(performance.now() - t0).toFixed(0)} ms`);
  const info = model.info();
  console.log(`vitrine weights ${(info.weightBytes / 2 ** 20).toFixed(0)} MB in memory${info.notes.length ? `; notes: ${info.notes.join(' ')}` : ''}`);
  return async () => {
    const r = await model.classify(rgba, size, size, undefined);
    return r.timings.forward;
  };
}

async function ort() {
  const ort = await import(path.join(here, 'node_modules/onnxruntime-web/dist/ort.node.min.mjs'));
  ort.env.wasm.numThreads = 1;
  const session = await ort.InferenceSession.create(fs.readFileSync(path.join(dir, 'model.onnx')), {
    executionProviders: ['wasm'],
  });
  const pixels = new Float32Array(3 * size * size).map((_, i) => ((i * 37) % 251) / 251 - 0.5);
  const input = new ort.Tensor('float32', pixels, [1, 3, size, size]);
  return async () => {
    await session.run({ pixel_values: input });
    return null;
  };
}

const engines = {};
for (const [name, make] of Object.entries({ vitrine, ort })) if (!only || only === name) engines[name] = await make();
for (let round = 1; round <= rounds; round++) {
  for (const [name, step] of Object.entries(engines)) {
    if (only && only !== name) continue;
    const wall = [];
    const forward = [];
    for (let i = 0; i < runs + 3; i++) {
      const t0 = performance.now();
      const f = await step();
      if (i < 3) continue; // warm-up
      wall.push(performance.now() - t0);
      if (f !== null) forward.push(f);
    }
    const fw = forward.length ? `, forward ${median(forward).toFixed(1)} ms` : '';
    console.log(`round ${round} ${name.padEnd(7)} call median ${median(wall).toFixed(1)} ms (min ${Math.min(...wall).toFixed(1)})${fw}`);
  }
}
