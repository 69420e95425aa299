// The web bench, in one script: vitrine's bench page (CPU wasm, with and
// without relaxed SIMD, and WebGPU)
// beside onnxruntime-web (wasm and WebGPU) on the same vit_tiny_patch16_224
// weights, in the same headless Chromium, plus the memory check (200
// classifications) on the default model. Prints one JSON line per run.
//
//   node tests/perf/bench_web.mjs [--runs N] [--quick] [--arch vit_base_patch16_224] [--f16]
// --arch and --f16 bench another timm size (made by make_vit.py) in place of
// vit_tiny_patch16_224's f32 weights.
// --quick leaves out WebGPU (SwiftShader here: minutes per run). The three
// CPU pages run --rounds times (default 3), alternating, and the summary takes
// the median over rounds: this machine's speed drifts by tens of percent
// between minutes, so only interleaved runs compare fairly.
// (run by ./build.sh bench-web after the site is built into dist/)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { serveAndLaunch } from '../e2e/serve.mjs';

const here = import.meta.dirname;
const root = path.resolve(here, '../..');
const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1] || 20) || 20;
const quick = args.includes('--quick');
const rounds = Number(args[args.indexOf('--rounds') + 1] || 3) || 3;
const arch = args.includes('--arch') ? args[args.indexOf('--arch') + 1] : 'vit_tiny_patch16_224';
const f16 = args.includes('--f16');
const site = path.join(root, 'test-output', 'bench-site');

fs.rmSync(site, { recursive: true, force: true });
fs.cpSync(path.join(root, 'dist'), site, { recursive: true });
const tiny = path.join(site, 'models', 'bench');
execFileSync('python3', [path.join(here, 'make_vit.py'), tiny, '--arch', arch, ...(f16 ? ['--f16'] : [])], { stdio: ['ignore', 'ignore', 'inherit'] });
const manifestPath = path.join(site, 'models', 'manifest.json');
const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
manifest.models.push({ name: 'bench', path: 'bench/' });
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
const cpuSet = [
  `bench.html?model=bench&backend=cpu&runs=${runs}`,
  `bench.html?model=bench&backend=cpu&simd=simd128&runs=${runs}`,
  `ort.html?ep=wasm&model=bench&runs=${runs}`,
];
const latency = [
  ...Array.from({ length: rounds }, () => cpuSet).flat(),
  ...(quick ? [] : [
    `bench.html?model=bench&backend=webgpu&runs=${swRuns}&warmup=2`,
    `ort.html?ep=webgpu&model=bench&runs=${swRuns}&warmup=2`,
  ]),
];
const memory = [
  'bench.html?backend=cpu&runs=20&memory=200',
  ...(quick ? [] : ['bench.html?backend=webgpu&runs=5&warmup=2&memory=200']),
];
const results = [];
for (const url of [...latency, ...memory]) results.push(await bench(url));
await stop();
fs.writeFileSync(path.join(root, 'test-output', 'bench-web.json'), JSON.stringify(results, null, 1));
const med = (r) => r.ms?.forward ? r.ms.forward.median + r.ms.readback.median : r.ms?.total.median;
const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
console.log(`\n${arch}${f16 ? ' (f16 weights)' : ''}, batch 1, headless Chromium (forward + read-back, median ms):`);
for (const url of new Set(latency)) {
  const got = results.slice(0, latency.length).filter((r) => r.url === url);
  const errors = got.filter((r) => r.error).map((r) => r.error);
  const ms = got.filter((r) => !r.error).map(med);
  const each = ms.length > 1 ? `  (rounds: ${ms.map((m) => m.toFixed(1)).join(', ')})` : '';
  console.log(`  ${url.padEnd(58)} ${ms.length ? median(ms).toFixed(1) : errors[0]}${each}`);
}
const byRound = (url) => results.slice(0, rounds * cpuSet.length).filter((r) => r.url === url).map((r) => (r.error ? NaN : med(r)));
const ort = byRound(cpuSet[2]);
for (const url of cpuSet.slice(0, 2)) {
  const ratios = byRound(url).map((ms, i) => ms / ort[i]);
  console.log(`  ${url.split('?')[1]} / onnxruntime-web, round by round: ${ratios.map((x) => x.toFixed(2)).join(', ')}; median ${median(ratios.filter((x) => !Number.isNaN(x))).toFixed(2)}`);
}
for (const r of results.slice(latency.length)) {
  const m = r.memory;
  if (!m) { console.log(`  memory check ${r.url}: ${r.error}`); continue; }
  console.log(`  memory over ${m?.runs} runs (${r.backend}): wasm ${(100 * m?.wasmGrowth).toFixed(1)}%, device pools ${m?.deviceGrowth == null ? 'n/a' : (100 * m.deviceGrowth).toFixed(1) + '%'}`);
}
