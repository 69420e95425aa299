// Every figure of docs/benchmark.md, from one command (`./build.sh bench`,
// which builds what it needs first): the machine; the modules' sizes; the
// page's first result after navigation (cold and warm); the page's forward
// pass beside onnxruntime-web's; the native forward pass beside PyTorch
// eager at each size and batch, with the share of this machine's own
// matrix-product rate that each reaches.
//
//   node tests/perf/bench.mjs [--quick] [--native tiny,small,base,large] [--batch 1,8]
//        [--web tiny,small,base] [--rounds 3] [--first 5] [--avx2-bin PATH] [--out docs/benchmark.md]
//
// A (virtual) machine's speed drifts by tens of percent between minutes, so
// the two sides of each comparison alternate for --rounds rounds and the
// tables give each round's figures and the median of their ratios.
// --avx2-bin: a vitrine built without AVX-512 (`./build.sh bench --avx2`
// builds it), run beside PyTorch held to AVX2, as an AVX2-only machine runs.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

const here = import.meta.dirname;
const root = path.resolve(here, '../..');
const args = process.argv.slice(2);
const opt = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const quick = args.includes('--quick');
const list = (name, fallback) => opt(name, fallback).split(',').filter(Boolean);
const ARCH = {
  tiny: 'vit_tiny_patch16_224',
  small: 'vit_small_patch16_224',
  base: 'vit_base_patch16_224',
  large: 'vit_large_patch16_224',
};
const native = list('--native', quick ? 'tiny,base' : 'tiny,small,base,large');
const batches = list('--batch', quick ? '1' : '1,8').map(Number);
const web = list('--web', quick ? 'tiny' : 'tiny,small,base');
const rounds = Number(opt('--rounds', quick ? 2 : 3));
const firstRuns = Number(opt('--first', quick ? 3 : 5));
const bin = opt('--bin', process.env.VITRINE_BIN ?? path.join(os.homedir(), '.cache/vitrine/target/release/vitrine'));
const avx2Bin = opt('--avx2-bin', null);
const out = path.resolve(opt('--out', path.join(root, 'docs', 'benchmark.md')));
for (const name of [...native, ...web]) if (!ARCH[name]) throw new Error(`unknown size ${name}: one of ${Object.keys(ARCH)}`);

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const ms = (x) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(x < 100 ? 1 : 0)} ms`);
const lines = [];
const say = (line = '') => {
  lines.push(line);
  console.log(line);
};
const run = (cmd, argv, env = {}) =>
  execFileSync(cmd, argv, { encoding: 'utf8', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
const lastJson = (text) => JSON.parse(text.trim().split('\n').filter((l) => l.startsWith('{')).at(-1));

// The machine, as exactly as a virtual machine lets us name it.
function machine() {
  const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const field = (name) => info.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm'))?.[1] ?? '?';
  const flags = field('flags').split(' ');
  const isa = flags.includes('avx512f') ? 'AVX-512' : flags.includes('avx2') ? 'AVX2 (no AVX-512)' : 'no AVX2';
  const family = Number(field('cpu family'));
  const vendor = field('vendor_id');
  // AMD's families name the core generation where the model name does not.
  const zen = vendor === 'AuthenticAMD' ? { 23: 'Zen 1/2', 25: flags.includes('avx512f') ? 'Zen 4' : 'Zen 3', 26: 'Zen 5' }[family] : null;
  const chromium = (() => { try { return run('/usr/bin/chromium', ['--version']).trim(); } catch { return 'no Chromium'; } })();
  const torch = (() => { try { return run('python3', ['-c', 'import torch; print(torch.__version__)']).trim(); } catch { return null; } })();
  return {
    cpu: `${field('model name')}${zen ? ` (${zen})` : ''}, family ${family} model ${field('model')}`,
    isa, threads: os.cpus().length, memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`, chromium, torch,
    date: new Date().toISOString().slice(0, 10),
  };
}

function sizes() {
  const dist = path.join(root, 'dist');
  const files = ['pkg/vitrine_bg.wasm', 'pkg/vitrine_relaxed_bg.wasm', 'pkg/vitrine.js', 'pkg-webgpu/vitrine_bg.wasm', 'pkg-webgpu/vitrine.js'];
  return files.map((f) => {
    const bytes = fs.readFileSync(path.join(dist, f));
    return { file: f, raw: bytes.length, gzip: zlib.gzipSync(bytes, { level: 9 }).length };
  });
}

/** One size × batch natively: rounds of vitrine then PyTorch, each with its ceiling. */
function nativeRow(name, batch, vitrine, env = {}) {
  const arch = ARCH[name];
  const big = { tiny: 1, small: 2, base: 6, large: 20 }[name] * batch;
  const runs = String(Math.max(3, Math.round(30 / big)));
  const warmup = String(big > 10 ? 1 : 3);
  const threads = String(os.cpus().length);
  const rows = [];
  for (let r = 0; r < rounds; r++) {
    const ours = lastJson(run(vitrine, ['bench', '--backend', 'cpu', '--arch', arch, '--batch', String(batch), '--runs', runs, '--warmup', warmup, '--ceiling', '--json']));
    const theirs = lastJson(run('python3', [path.join(here, 'bench_torch.py'), '--arch', arch, '--batch', String(batch), '--runs', runs, '--warmup', warmup, '--threads', threads, '--ceiling', '--json'], env));
    // The machine's ceiling: the faster of the two libraries' own 2048² products.
    const ceiling = Math.max(ours.ceiling_gflops, theirs.ceiling_gflops);
    rows.push({ ours: ours.median_ms, theirs: theirs.median_ms, gemm: ours.ceiling_gflops, torch: theirs.ceiling_gflops,
      share: ours.gflops / ceiling, torchShare: (ours.gflops * ours.median_ms) / theirs.median_ms / ceiling });
    console.error(`  ${name} batch ${batch} round ${r + 1}: vitrine ${ms(ours.median_ms)}, PyTorch ${ms(theirs.median_ms)}`);
  }
  return { name, batch, rows };
}

function nativeTable(title, vitrine, env) {
  say(`### ${title}`);
  say();
  say('| model | batch | vitrine, per round | PyTorch eager, per round | ratio, median | share of the ceiling: vitrine | PyTorch | ceiling (gemm crate, PyTorch) |');
  say('|---|---|---|---|---|---|---|---|');
  for (const name of native) {
    for (const batch of batches) {
      const { rows } = nativeRow(name, batch, vitrine, env);
      const pick = (key) => rows.map((r) => r[key]);
      const ratio = median(rows.map((r) => r.ours / r.theirs));
      const pct = (x) => `${Math.round(100 * x)}%`;
      say(`| ${ARCH[name]} | ${batch} | ${pick('ours').map(ms).join(', ')} | ${pick('theirs').map(ms).join(', ')} | **${ratio.toFixed(2)}×** `
        + `| **${pct(median(pick('share')))}** | ${pct(median(pick('torchShare')))} | ${median(pick('gemm')).toFixed(0)}, ${median(pick('torch')).toFixed(0)} GFLOP/s |`);
    }
  }
  say();
}

const m = machine();
say('# Benchmark');
say();
const shown = args.map((a, i) => (args[i - 1] === '--avx2-bin' || args[i - 1] === '--bin' || args[i - 1] === '--out' ? 'PATH' : a));
say(`Generated by \`./build.sh bench${quick ? ' --quick' : ''}${avx2Bin ? ' --avx2' : ''}\` (\`node tests/perf/bench.mjs ${shown.join(' ')}\`) on ${m.date}:`);
say(`${m.cpu}, ${m.isa}, ${m.threads} threads, ${m.memory}; ${m.chromium}, headless; PyTorch ${m.torch ?? '(not installed)'}.`);
say('What each figure means and how it came to be: [performance.md](performance.md).');
say();

say('## Shipped modules');
say();
say('| file | raw | gzip -9 |');
say('|---|---|---|');
for (const s of sizes()) say(`| \`${s.file}\` | ${s.raw.toLocaleString('en')} B | ${s.gzip.toLocaleString('en')} B |`);
say();

if (firstRuns > 0) {
  console.error('first result after navigation…');
  const r = JSON.parse(run('node', [path.join(here, 'first_result.mjs'), '--runs', String(firstRuns), '--json']).trim().split('\n').at(-1));
  say('## First result after navigation');
  say();
  say(`The default model on the bench page (CPU backend), ${firstRuns} fresh browser profiles, each visited twice (its browser left ${r.settle} s after its start, the first visit stays ${r.stay} s); medians of where the time went, `
    + 'and when (from navigation) the page\'s script, the worker\'s, its module\'s glue and the wasm module were ready:');
  say();
  say('| visit | first result, per profile | median | page, worker and module | waiting for the model | loading it | first classification | page, worker, glue, module at |');
  say('|---|---|---|---|---|---|---|---|');
  for (const [label, reports] of [['cold', r.cold], ['warm (second visit)', r.warm]]) {
    const pick = (key) => median(reports.map((x) => x[key]));
    const rest = median(reports.map((x) => x.firstResultMs - x.fetchedMs - x.loadMs - x.firstClassifyMs));
    say(`| ${label} | ${reports.map((x) => x.firstResultMs.toFixed(0)).join(', ')} ms | **${pick('firstResultMs').toFixed(0)} ms** `
      + `| ${rest.toFixed(0)} ms | ${pick('fetchedMs').toFixed(0)} ms | ${pick('loadMs').toFixed(0)} ms | ${pick('firstClassifyMs').toFixed(0)} ms `
      + `| ${['pageMs', 'workerMs', 'gluedMs', 'moduleMs'].map((k) => median(reports.map((x) => x.start[k])).toFixed(0)).join(', ')} ms |`);
  }
  say();
  say(`The app's own page (\`index.html?backend=cpu&image=fmnist-0\`, a link to a sample), in ${firstRuns} fresh profiles of its own: when it first had the model, and first showed the linked sample's result, from navigation:`);
  say();
  say('| visit | the model, per profile | median | the result, per profile | median |');
  say('|---|---|---|---|---|');
  for (const [label, reports] of [['cold', r.app.cold], ['warm (second visit)', r.app.warm]]) {
    const cells = (key) => `${reports.map((x) => x[key].toFixed(0)).join(', ')} ms | **${median(reports.map((x) => x[key])).toFixed(0)} ms**`;
    say(`| ${label} | ${cells('modelMs')} | ${cells('resultMs')} |`);
  }
  say();
}

if (web.length) {
  console.error('the page beside onnxruntime-web…');
  const runs = quick ? 10 : 15;
  run('node', [path.join(here, 'bench_web.mjs'), '--quick', '--runs', String(runs), '--rounds', String(rounds), '--memory-runs', '0',
    '--relevance', '0', '--arch', web.map((w) => ARCH[w]).join(',')]);
  const results = JSON.parse(fs.readFileSync(path.join(root, 'test-output', 'bench-web.json'), 'utf8'));
  say('## The page beside onnxruntime-web');
  say();
  say(`Forward pass + read-back, batch 1, random weights (timm, f32), median of ${runs} runs per page, the pages in turn for ${rounds} rounds; onnxruntime-web on wasm, one thread:`);
  say();
  say('| model | vitrine, relaxed SIMD, per round | vitrine, SIMD128 | onnxruntime-web | ratio (relaxed SIMD), median | ratio (SIMD128) |');
  say('|---|---|---|---|---|---|');
  const page = (r) => new URLSearchParams(r.url.split('?')[1]);
  const took = (r) => (r.error ? NaN : r.ms.forward ? r.ms.forward.median + r.ms.readback.median : r.ms.total.median);
  for (const name of web) {
    const mine = results.filter((r) => page(r).get('model') === ARCH[name]);
    const relaxed = mine.filter((r) => r.url.startsWith('bench.html') && !page(r).get('simd')).map(took);
    const simd128 = mine.filter((r) => page(r).get('simd') === 'simd128').map(took);
    const ort = mine.filter((r) => r.url.startsWith('ort.html')).map(took);
    const ratio = (xs) => median(xs.map((x, i) => x / ort[i]).filter((x) => !Number.isNaN(x)))?.toFixed(2) ?? 'n/a';
    say(`| ${ARCH[name]} | ${relaxed.map(ms).join(', ')} | ${simd128.map(ms).join(', ')} | ${ort.map(ms).join(', ')} | **${ratio(relaxed)}** | ${ratio(simd128)} |`);
  }
  say();
}

if (native.length) {
  say('## Native forward pass beside PyTorch');
  say();
  say('Random weights, f32, all the machine\'s threads on both sides. "Share of the ceiling" is the rate of the forward pass\'s matrix products '
    + '(`VitConfig::multiply_adds`, 2 FLOP each, over the whole forward pass\'s time) against this machine\'s own: the faster of the gemm crate\'s and '
    + 'PyTorch\'s 2048² f32 products (best of 8, measured before and after each run).');
  say();
  nativeTable(`${m.isa}`, bin, {});
  if (avx2Bin) {
    nativeTable('AVX2 on both sides: vitrine built without AVX-512, PyTorch held to AVX2', avx2Bin,
      { ATEN_CPU_CAPABILITY: 'avx2', MKL_ENABLE_INSTRUCTIONS: 'AVX2', ONEDNN_MAX_CPU_ISA: 'AVX2' });
  }
}

fs.writeFileSync(out, `${lines.join('\n')}\n`);
console.error(`written to ${path.relative(process.cwd(), out)}`);
