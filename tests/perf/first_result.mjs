// The page's first result after navigation, the default model, on a fresh
// browser profile (cold) and on a second visit in the same profile (warm),
// with where the cold one's time goes. The site in dist/ is served by
// Python's http.server (Last-Modified, no Cache-Control: the browser
// revalidates each file and gets 304s, as from most static hosts), and
// each fresh profile is its own user-data directory, so the HTTP cache
// and compiled-code cache start empty.
//
// The app's own page (index.html) is measured the same way, in profiles of
// its own, by the marks it leaves: when it first had a model
// (vitrine:model) and first showed a result (vitrine:result), here of the
// sample its address names (?image=fmnist-0, as a shared link does). It
// does more than the bench page before either: its ~30 modules, the
// gallery, the lessons and the Hub's list.
//
// Each profile's browser is left --settle seconds (default 2) before its
// first visit, as a visitor's browser is already running: for about a
// second after it starts, Chrome loads its own pages (the omnibox's
// WebUI, ~80 chrome:// scripts) on the same two cores, which put 150-190
// ms on a first visit made at once (docs/performance.md).
//
// The first visit stays on the page --stay seconds (default 5) after its
// result, as a visitor does: Chrome writes a wasm module's compiled code to
// its cache only once the module has run for a while, and a second visit
// then skips compiling it.
//
//   node tests/perf/first_result.mjs [--runs 3] [--settle 2] [--stay 5] [--json]
// (after ./build.sh dist; run from anywhere; --json: one JSON line instead)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { chromium } from 'playwright-core';

const root = path.resolve(import.meta.dirname, '../..');
const args = process.argv.slice(2);
const runs = Number(args.includes('--runs') ? args[args.indexOf('--runs') + 1] : 3) || 3;
const stay = Number(args.includes('--stay') ? args[args.indexOf('--stay') + 1] : 5);
const settle = Number(args.includes('--settle') ? args[args.indexOf('--settle') + 1] : 2);
const FLAGS = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];
const port = 8900 + (process.pid % 90);
const origin = `http://127.0.0.1:${port}`;
const server = spawn('python3', ['-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', path.join(root, 'dist')], { stdio: 'ignore' });
for (let i = 0; i < 100; i++) {
  try { if ((await fetch(origin)).ok) break; } catch { await new Promise((r) => setTimeout(r, 100)); }
}

// Asked of the page by a timer of its own (UNTIL, passed in as text):
// Playwright's waits (waitForSelector, waitForFunction) first inject its
// 340 kB selector engine, which the page's main thread then parses (12-19
// ms in a trace) just as the page hands its worker the module.
const UNTIL = `(done) => new Promise((resolve) => {
  const check = () => { const v = done(); if (v) resolve(v); else setTimeout(check, 100); };
  check();
})`;
/** `page`'s first truthy `done()` (a function's text), polled by UNTIL; an error after five minutes. */
const ask = (page, done) => Promise.race([
  page.evaluate(`(${UNTIL})(${done})`),
  new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer from ${page.url()} in 5 minutes`)), 300_000).unref()),
]);

/** One visit of the bench page in `context`: its report. */
async function visit(context, staySeconds = 0) {
  const page = await context.newPage();
  await page.goto(`${origin}/bench.html?backend=cpu&runs=1&warmup=0`);
  const report = await ask(page, "() => document.body.dataset.done === 'true' && window.vitrineBench");
  await new Promise((r) => setTimeout(r, staySeconds * 1000));
  await page.close();
  return report;
}

/** One visit of the app's page in `context`: when it had its model and its first result, from navigation. */
async function visitApp(context, staySeconds = 0) {
  const page = await context.newPage();
  await page.goto(`${origin}/index.html?backend=cpu&image=fmnist-0`);
  const report = await ask(page, `() => {
    const [model, result] = ['vitrine:model', 'vitrine:result'].map((n) => performance.getEntriesByName(n)[0]?.startTime);
    return result !== undefined && { modelMs: model, resultMs: result };
  }`);
  await new Promise((r) => setTimeout(r, staySeconds * 1000));
  await page.close();
  return report;
}

/** Each of `runs` fresh profiles visited twice by `see`: the cold and warm reports. */
async function profiles(see) {
  const cold = [];
  const warm = [];
  for (let r = 0; r < runs; r++) {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'vitrine-profile-'));
    const context = await chromium.launchPersistentContext(profile, { executablePath: '/usr/bin/chromium', args: FLAGS });
    await new Promise((r) => setTimeout(r, settle * 1000));
    cold.push(await see(context, stay));
    warm.push(await see(context));
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  return { cold, warm };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
let cold;
let warm;
let app;
try {
  ({ cold, warm } = await profiles(visit));
  app = await profiles(visitApp);
} finally {
  server.kill();
}
const cpu = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? os.cpus()[0]?.model;
if (args.includes('--json')) {
  console.log(JSON.stringify({ cpu, runs, settle, stay, cold, warm, app }));
  process.exit(0);
}
const show = (label, reports) => {
  const pick = (key) => median(reports.map((x) => x[key]));
  // What is left: the page and its worker starting, the module fetched, compiled and instantiated.
  const rest = median(reports.map((x) => x.firstResultMs - x.fetchedMs - x.loadMs - x.firstClassifyMs));
  console.log(`${label}: first result ${reports.map((x) => x.firstResultMs.toFixed(0)).join(', ')} ms (median ${pick('firstResultMs').toFixed(0)});`
    + ` medians: page, worker and wasm module ${rest.toFixed(0)}, waiting for the model's files (fetched beside the module) ${pick('fetchedMs').toFixed(0)},`
    + ` loading it ${pick('loadMs').toFixed(0)}, the first classification ${pick('firstClassifyMs').toFixed(0)} ms`);
  const at = (key) => median(reports.map((x) => x.start[key])).toFixed(0);
  console.log(`  from navigation: the page's script at ${at('pageMs')}, the worker's at ${at('workerMs')}, its glue imported at ${at('gluedMs')},`
    + ` the wasm module instantiated at ${at('moduleMs')} ms`);
};
console.log(`${cpu}, ${os.cpus().length} threads, Chromium headless, CPU backend, the default model, ${runs} fresh profiles (each browser left ${settle} s after its start, the first visit stays ${stay} s):`);
show('cold (fresh profile)', cold);
show('warm (second visit)', warm);
const ms = (reports, key) => `${reports.map((x) => x[key].toFixed(0)).join(', ')} ms (median ${median(reports.map((x) => x[key])).toFixed(0)})`;
for (const [label, reports] of [['cold', app.cold], ['warm', app.warm]]) {
  console.log(`the app's page, ${label}: a model at ${ms(reports, 'modelMs')}, the linked sample's result at ${ms(reports, 'resultMs')}`);
}
