// The size budget of what a visitor downloads (docs/performance.md,
// "Shipped sizes"): each wasm module raw and gzipped, the JavaScript glue,
// and the page's own files. Read from dist/ as `./build.sh dist` wrote it;
// a site built without wasm-opt (VITRINE_WASM_OPT=0, which marks
// dist/pkg/.unoptimised) is not what ships, and is not measured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { root } from './harness.mjs';

const dist = path.join(root, 'dist');
const MB = 1e6;
// Today's sizes (2026-12-07): the CPU modules (pkg/) 1.89 MB raw and 0.50
// MB in Node's gzip -9 each, the WebGPU module (pkg-webgpu/, fetched only
// with a WebGPU adapter) 11.77 MB and 2.54 MB (since wasm-opt keeps large
// functions out of their one caller, build.sh: 2% more raw, 14% less
// gzipped); the page's own files 316 KB (lessons and Compare came to them).
// About 2-5% to grow in; lowered as they shrink.
const BUDGET = {
  modules: {
    'pkg/vitrine_bg.wasm': { raw: 1.95 * MB, gzip: 0.53 * MB },
    'pkg/vitrine_relaxed_bg.wasm': { raw: 1.95 * MB, gzip: 0.53 * MB },
    'pkg-webgpu/vitrine_bg.wasm': { raw: 12.1 * MB, gzip: 2.65 * MB },
  },
  glue: 80e3,
  page: 320e3,
};

const gzip = (file) => zlib.gzipSync(fs.readFileSync(file), { level: 9 }).length;

test('what a visitor downloads stays within its budget', (t) => {
  if (fs.existsSync(path.join(dist, 'pkg/.unoptimised'))) {
    t.skip('dist/ was built with VITRINE_WASM_OPT=0: not the shipped modules');
    return;
  }
  for (const [name, budget] of Object.entries(BUDGET.modules)) {
    const file = path.join(dist, name);
    const raw = fs.statSync(file).size;
    const packed = gzip(file);
    console.log(`${name}: ${raw.toLocaleString('en')} B raw, ${packed.toLocaleString('en')} B gzip`);
    assert.ok(raw <= budget.raw, `${name} is ${raw} B, over the budget of ${budget.raw} B`);
    assert.ok(packed <= budget.gzip, `${name} gzips to ${packed} B, over the budget of ${budget.gzip} B`);
  }
  for (const glue of ['pkg/vitrine.js', 'pkg-webgpu/vitrine.js']) {
    const bytes = fs.statSync(path.join(dist, glue)).size;
    assert.ok(bytes <= BUDGET.glue, `${glue} is ${bytes} B, over ${BUDGET.glue} B`);
  }
  // The page's own files: its HTML, CSS, scripts and tables (not the bench page's).
  const own = fs.readdirSync(dist, { withFileTypes: true })
    .filter((e) => e.isFile() && /\.(html|css|js|json)$/.test(e.name) && !e.name.startsWith('bench'))
    .reduce((sum, e) => sum + fs.statSync(path.join(dist, e.name)).size, 0);
  console.log(`the page's own files: ${own.toLocaleString('en')} B`);
  assert.ok(own <= BUDGET.page, `the page's own files are ${own} B, over ${BUDGET.page} B`);
});

// Each page's first module starts the worker (and the model's files): its
// static imports, all the way down, are what that start waits for, so the
// page asks for them at once rather than a level of imports at a time.
for (const [html, entry, more] of [['index.html', 'start.js', ['app.js']], ['bench.html', 'bench.js', []]]) {
  test(`${html} preloads ${entry}'s modules${more.length ? ` and ${more.join(', ')}` : ''}, no more and no fewer`, () => {
    const www = path.join(root, 'www');
    const graph = new Set();
    const walk = (file) => {
      for (const [, dep] of fs.readFileSync(path.join(www, file), 'utf8').matchAll(/^import\s[^'"]*from\s+'\.\/([\w.-]+\.js)'/gm)) {
        if (!graph.has(dep)) { graph.add(dep); walk(dep); }
      }
    };
    walk(entry);
    assert.ok(graph.has('rpc.js') && graph.has('backend.js') && graph.has('protocol.js'), `${entry}'s graph was read: ${[...graph]}`);
    const text = fs.readFileSync(path.join(www, html), 'utf8');
    const preloaded = [...text.matchAll(/<link rel="modulepreload" href="([^"]+)">/g)].map((m) => m[1]);
    assert.deepEqual([...preloaded].sort(), [...graph, ...more].sort());
    assert.match(text, new RegExp(`<script type="module" src="${entry.replace('.', '\\.')}"></script>`));
  });
}
