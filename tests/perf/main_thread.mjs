// vitrine's CPU classification and onnxruntime-web's wasm `run`, each on a
// page's main thread in headless Chromium (no worker), alternating, with a
// CPU profile of each (Chrome DevTools Protocol) summarised by function.
// It reuses the site bench_web.mjs assembles (test-output/bench-site, with
// the vit_tiny model and onnxruntime-web in it): run that once first. For
// vitrine's function names, pass a module built with names (vitrine.wasm
// is whichever of the two build.sh built last: the plain SIMD128 one):
//   wasm-bindgen --target web --no-typescript --keep-debug --out-dir DIR \
//     $CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/vitrine.wasm
// and --pkg DIR --wasm vitrine_bg.wasm. The default is the relaxed-SIMD
// module, the one Chromium's pages load.
//
//   node tests/perf/main_thread.mjs [--pkg DIR] [--wasm vitrine_relaxed_bg.wasm] [--rounds 3] [--runs 20] [--top 12]
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { serveAndLaunch } from '../e2e/serve.mjs';

const here = import.meta.dirname;
const site = path.resolve(here, '../../test-output/bench-site');
const args = process.argv.slice(2);
const opt = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const rounds = Number(opt('--rounds', 3));
const runs = Number(opt('--runs', 20));
const top = Number(opt('--top', 12));
if (!fs.existsSync(path.join(site, 'models', 'vit_tiny', 'model.onnx'))) {
  console.error(`no ${site} with the vit_tiny model: run node tests/perf/bench_web.mjs --quick first`);
  process.exit(2);
}
const pkg = opt('--pkg', null);
const wasm = opt('--wasm', 'vitrine_relaxed_bg.wasm');
fs.rmSync(path.join(site, 'pkg-main'), { recursive: true, force: true });
fs.cpSync(pkg ? path.resolve(pkg) : path.join(site, 'pkg'), path.join(site, 'pkg-main'), { recursive: true });

const pixels = 'new Uint8Array(224 * 224 * 4).map((_, i) => (i * 37) % 251)';
fs.writeFileSync(path.join(site, 'main-vitrine.html'), `<!doctype html><script type="module">
import init, { FileBytes, Vitrine } from './pkg-main/vitrine.js';
await init({ module_or_path: './pkg-main/${wasm}' });
const get = async (p) => new Uint8Array(await (await fetch(p)).arrayBuffer());
const file = await get('models/vit_tiny/model.safetensors');
const weights = new FileBytes(file.length);
weights.push(file);
const model = await Vitrine.load('cpu', weights,
  await get('models/vit_tiny/config.json'), undefined, undefined);
const rgba = ${pixels};
window.step = async () => (await model.classify(rgba, 224, 224, undefined)).timings.forward;
window.ready = true;
</script>`);
fs.writeFileSync(path.join(site, 'main-ort.html'), `<!doctype html><script type="module">
import * as ort from './ort/ort.all.bundle.min.mjs';
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = new URL('./ort/', location.href).href;
const session = await ort.InferenceSession.create('models/vit_tiny/model.onnx', { executionProviders: ['wasm'] });
const x = new ort.Tensor('float32', new Float32Array(3 * 224 * 224).map((_, i) => ((i * 37) % 251) / 251 - 0.5), [1, 3, 224, 224]);
window.step = async () => { await session.run({ pixel_values: x }); return null; };
window.ready = true;
</script>`);

const { origin, browser, stop } = await serveAndLaunch(chromium, site, 8700 + (process.pid % 200));
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function measure(name, url) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e.message ?? e)));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(`${origin}/${url}`);
  await page.waitForFunction(() => window.ready, null, { timeout: 120_000 }).catch((e) => {
    throw new Error(`${url} did not get ready: ${errors.join('; ') || e.message}`);
  });
  for (let i = 0; i < 3; i++) await page.evaluate(() => window.step());
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 500 });
  await cdp.send('Profiler.start');
  const wall = [];
  const forward = [];
  for (let i = 0; i < runs; i++) {
    const t0 = Date.now();
    const f = await page.evaluate(() => window.step());
    wall.push(Date.now() - t0);
    if (f !== null) forward.push(f);
  }
  const { profile } = await cdp.send('Profiler.stop');
  await page.close();
  const fw = forward.length ? `, forward ${median(forward).toFixed(1)} ms` : '';
  console.log(`${name.padEnd(7)} call median ${median(wall)} ms${fw}`);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const key = byId.get(id).callFrame.functionName || '(anonymous)';
    self.set(key, (self.get(key) ?? 0) + profile.timeDeltas[i]);
    total += profile.timeDeltas[i];
  });
  for (const [key, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`   ${((100 * t) / total).toFixed(1).padStart(5)}% ${key.slice(0, 110)}`);
  }
}

for (let round = 1; round <= rounds; round++) {
  console.log(`round ${round}`);
  await measure('vitrine', 'main-vitrine.html');
  await measure('ort', 'main-ort.html');
}
await browser.close();
await stop?.();
