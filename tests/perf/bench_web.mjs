// The web bench, in one script: vitrine's bench page (CPU wasm, with and
// without relaxed SIMD, and WebGPU) beside onnxruntime-web (wasm and
// WebGPU) on the same timm weights, in the same headless Chromium, plus the
// memory check (200 classifications) on the default model. Prints one JSON
// line per run, then a summary per model: drop-to-ready time, the first
// classification, median and p90 of forward + read-back, wasm memory after
// loading and after --memory-runs more classifications, and what a
// relevance map (why this class: --relevance N of them, 0 for none) costs
// against a classification on vitrine's CPU pages.
//
//   node tests/perf/bench_web.mjs [--runs N] [--rounds N] [--quick] [--f16]
//        [--arch vit_small_patch16_224,vit_base_patch16_224,vit_large_patch16_224] [--memory-runs 50]
//        [--relevance 20]
// --arch takes one timm size or several, comma-separated (made by
// make_vit.py; default vit_tiny_patch16_224); --f16 stores their weights in
// f16, as the hub's big checkpoints often are.
// --only-vitrine runs vitrine's two CPU pages alone, on models written by
// `vitrine export --arch` (f16; no ONNX export: sizes past protobuf's 2 GB,
// ViT-H/14 in f16, need no PyTorch); --f16-matrices keep|widen passes
// ?f16= to vitrine's pages (by default a model keeps its f16 matrices only
// when its f32 weights would not fit).
// --quick leaves out WebGPU (on SwiftShader, a software adapter: minutes per
// run). The three CPU pages run --rounds times (default 3), alternating, and
// the summary takes the median over rounds: a (virtual) machine's speed can
// drift between minutes, so only interleaved runs compare fairly.
// (run by ./build.sh bench-web after the site is built into dist/)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { serveAndLaunch } from '../e2e/serve.mjs';

const here = import.meta.dirname;
const root = path.resolve(here, '../..');
const args = process.argv.slice(2);
const opt = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const runs = Number(opt('--runs', 20)) || 20;
const quick = args.includes('--quick');
const rounds = Number(opt('--rounds', 3)) || 3;
const archs = opt('--arch', 'vit_tiny_patch16_224').split(',');
const memoryRuns = Number(opt('--memory-runs', 50)) || 0;
const f16 = args.includes('--f16');
const relevanceRuns = Number(opt('--relevance', 20)) || 0;
const onlyVitrine = args.includes('--only-vitrine');
const matrices = opt('--f16-matrices', null);
const why = (relevanceRuns ? `&relevance=${relevanceRuns}` : '') + (matrices ? `&f16=${matrices}` : '');
const site = path.join(root, 'test-output', 'bench-site');

fs.rmSync(site, { recursive: true, force: true });
fs.cpSync(path.join(root, 'dist'), site, { recursive: true });
const manifestPath = path.join(site, 'models', 'manifest.json');
const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
for (const arch of archs) {
  const dir = path.join(site, 'models', arch);
  if (onlyVitrine) {
    const bin = process.env.VITRINE_BIN ?? path.join(process.env.HOME, '.cache/vitrine/target/release/vitrine');
    execFileSync(bin, ['export', '--arch', arch, '--out', dir], { stdio: ['ignore', 'ignore', 'inherit'] }); // f16
  } else {
    execFileSync('python3', [path.join(here, 'make_vit.py'), dir, '--arch', arch, ...(f16 ? ['--f16'] : [])], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  manifest.models.push({ name: arch, path: `${arch}/` });
}
fs.writeFileSync(manifestPath, JSON.stringify(manifest));
fs.cpSync(path.join(here, 'node_modules', 'onnxruntime-web', 'dist'), path.join(site, 'ort'), { recursive: true });
for (const f of ['ort.html', 'ort-bench.js']) fs.copyFileSync(path.join(here, f), path.join(site, f));

const { origin, browser, stop } = await serveAndLaunch(chromium, site, 8600 + (process.pid % 300));

async function bench(url) {
  const page = await browser.newPage();
  const started = Date.now();
  let report;
  try {
    await page.goto(`${origin}/${url}`);
    await page.waitForSelector('body[data-done="true"]', { timeout: 1_800_000 });
    report = await page.evaluate(() => window.vitrineBench);
  } catch (e) {
    report = { error: `the page failed: ${String(e.message ?? e).split('\n')[0]}` };
  }
  await page.close().catch(() => {});
  report.url = url;
  report.wallSeconds = (Date.now() - started) / 1000;
  console.log(JSON.stringify(report));
  return report;
}

const swRuns = Math.max(5, Math.round(runs / 4)); // SwiftShader WebGPU is slow: fewer runs there
// vitrine's module with relaxed SIMD (what Chromium gets), its plain SIMD128
// module (what browsers without relaxed SIMD get), onnxruntime-web's wasm.
const cpuSet = (arch) => [
  `bench.html?model=${arch}&backend=cpu&runs=${runs}${why}`,
  `bench.html?model=${arch}&backend=cpu&simd=simd128&runs=${runs}${why}`,
  ...(onlyVitrine ? [] : [`ort.html?ep=wasm&model=${arch}&runs=${runs}`]),
];
// The last round's relaxed-SIMD page also runs the memory check.
const latency = archs.flatMap((arch) => [
  ...Array.from({ length: rounds }, (_, r) => cpuSet(arch).map((u, i) => (r === rounds - 1 && i === 0 && memoryRuns ? `${u}&memory=${memoryRuns}` : u))).flat(),
  ...(quick || onlyVitrine ? [] : [
    `bench.html?model=${arch}&backend=webgpu&runs=${swRuns}&warmup=2`,
    `ort.html?ep=webgpu&model=${arch}&runs=${swRuns}&warmup=2`,
  ]),
]);
const memory = onlyVitrine ? [] : [
  `bench.html?backend=cpu&runs=20&memory=200${why}`,
  ...(quick ? [] : ['bench.html?backend=webgpu&runs=5&warmup=2&memory=200']),
];
const results = [];
for (const url of [...latency, ...memory]) results.push(await bench(url));
await stop();
fs.writeFileSync(path.join(root, 'test-output', 'bench-web.json'), JSON.stringify(results, null, 1));
const med = (r) => (r.ms?.forward ? r.ms.forward.median + r.ms.readback.median : r.ms?.total.median);
const p90 = (r) => (r.ms?.forward ? r.ms.forward.p90 + r.ms.readback.p90 : r.ms?.total.p90);
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const page = (url) => url.replace(/&memory=\d+/, '');
const mb = (b) => `${(b / 1e6).toFixed(0)} MB`;
for (const arch of archs) {
  const mine = results.filter((r) => !r.error && new URLSearchParams(r.url.split('?')[1]).get('model') === arch);
  const all = results.filter((r) => new URLSearchParams(r.url.split('?')[1]).get('model') === arch);
  console.log(`\n${arch}${f16 ? ' (f16 weights)' : ''}, batch 1, headless Chromium; per page the median over rounds:`);
  for (const url of new Set(all.map((r) => page(r.url)))) {
    const got = mine.filter((r) => page(r.url) === url);
    const errors = all.filter((r) => page(r.url) === url && r.error).map((r) => r.error);
    if (!got.length) { console.log(`  ${url.padEnd(64)} ${errors[0]}`); continue; }
    const ready = got.map((r) => r.loadMs ?? r.readyMs);
    const first = got.map((r) => r.firstClassifyMs ?? r.firstResultMs - r.readyMs);
    console.log(`  ${url.padEnd(64)} ready ${median(ready).toFixed(0)} ms, first ${median(first).toFixed(0)} ms, `
      + `median ${median(got.map(med)).toFixed(1)} ms, p90 ${median(got.map(p90)).toFixed(1)} ms (rounds: ${got.map((r) => med(r).toFixed(0)).join(', ')})`);
    const whys = got.filter((r) => r.relevance);
    if (whys.length) {
      console.log(`    relevance map: median ${median(whys.map((r) => r.relevance.engineMs.median)).toFixed(1)} ms, `
        + `${median(whys.map((r) => r.relevance.perForward)).toFixed(2)}× a forward pass + read-back (rounds: ${whys.map((r) => r.relevance.perForward.toFixed(2)).join(', ')}); `
        + `${median(whys.map((r) => r.relevance.ms.median)).toFixed(1)} ms through the worker; `
        + `after a classification that kept its forward pass ${median(whys.map((r) => r.relevance.afterForward)).toFixed(2)}× `
        + `(rounds: ${whys.map((r) => r.relevance.afterForward.toFixed(2)).join(', ')})`);
    }
    for (const r of got.filter((x) => x.memory)) {
      console.log(`    wasm memory: ${mb(r.wasmBytesLoaded)} loaded, ${mb(r.memory.wasmBytes[1])} after ${r.memory.runs} more classifications (${(100 * r.memory.wasmGrowth).toFixed(1)}% over them)`);
    }
  }
  const byRound = (i) => all.filter((r) => page(r.url) === cpuSet(arch)[i]).map((r) => (r.error ? NaN : med(r)));
  const ort = byRound(2);
  for (const i of onlyVitrine ? [] : [0, 1]) {
    const ratios = byRound(i).map((ms, r) => ms / ort[r]);
    const ok = ratios.filter((x) => !Number.isNaN(x));
    console.log(`  ${cpuSet(arch)[i].split('?')[1]} / onnxruntime-web, round by round: ${ratios.map((x) => x.toFixed(2)).join(', ')}; median ${ok.length ? median(ok).toFixed(2) : 'n/a'}`);
  }
}
for (const r of results.slice(latency.length)) {
  const m = r.memory;
  if (!m) { console.log(`  memory check ${r.url}: ${r.error}`); continue; }
  console.log(`  memory over ${m.runs} runs (${r.backend}): wasm ${(100 * m.wasmGrowth).toFixed(1)}%, device pools ${m.deviceGrowth == null ? 'n/a' : (100 * m.deviceGrowth).toFixed(1) + '%'}`);
  if (r.relevance) {
    console.log(`  default model (${r.backend}): relevance map ${r.relevance.engineMs.median.toFixed(1)} ms, ${r.relevance.perForward.toFixed(2)}× a forward pass + read-back `
      + `(${(r.ms.forward.median + r.ms.readback.median).toFixed(1)} ms); ${r.relevance.ms.median.toFixed(1)} ms through the worker, a whole classification ${r.ms.total.median.toFixed(1)} ms`);
  }
}
