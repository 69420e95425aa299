// The built site in a real headless Chromium: classification on the CPU
// backend and on WebGPU, agreement with the native CLI on the same pixels,
// bad input, and no request leaving the site's origin.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const root = path.resolve(import.meta.dirname, '../..');
const out = path.join(root, 'test-output');
const site = path.join(out, 'site');
const fixtures = path.join(root, 'tests/fixtures');
const bin = process.env.VITRINE_BIN ?? path.join(os.homedir(), '.cache/vitrine/target/release/vitrine');
const port = 8000 + (process.pid % 1000);
const origin = `http://127.0.0.1:${port}`;
let server;
let browser;

before(async () => {
  // The built site plus two test checkpoints, listed in its manifest.
  fs.rmSync(site, { recursive: true, force: true });
  fs.cpSync(path.join(root, 'dist'), site, { recursive: true });
  for (const m of ['hf_vit', 'timm_d96']) {
    fs.cpSync(path.join(fixtures, 'models', m), path.join(site, 'models', m), { recursive: true });
  }
  const models = ['hf_vit', 'timm_d96'].map((name) => ({ name, path: `${name}/` }));
  fs.writeFileSync(path.join(site, 'models/manifest.json'), JSON.stringify({ default: 'hf_vit', models }));
  fs.mkdirSync(path.join(out, 'screenshots'), { recursive: true });

  server = spawn('python3', ['-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', site], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    try { if ((await fetch(origin)).ok) break; } catch { await new Promise((r) => setTimeout(r, 100)); }
  }
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu'],
  });
});

after(async () => {
  await browser?.close();
  server?.kill();
});

/** Opens the page and records every request it makes. */
async function open(query) {
  const page = await browser.newPage();
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${origin}/${query}`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
  return { page, requests, errors };
}

async function classify(page, file) {
  const before = await page.evaluate(() => document.body.dataset.classified ?? '0');
  await page.setInputFiles('#file', file);
  await page.waitForFunction((b) => (document.body.dataset.classified ?? '0') !== b, before, { timeout: 300_000 });
  return page.evaluate(() => ({
    probabilities: Array.from(window.vitrineLast.probabilities),
    cls: Array.from(window.vitrineLast.cls),
    rollout: Array.from(window.vitrineLast.rollout),
  }));
}

function native(model, image) {
  const json = JSON.parse(execFileSync(bin, ['classify', image, '--model', model, '--json', '--top', '5']).toString());
  const m = Math.max(...json.logits);
  const e = json.logits.map((l) => Math.exp(l - m));
  const s = e.reduce((a, b) => a + b, 0);
  return {
    top: json.top.map((t) => t.index),
    probabilities: e.map((v) => v / s),
    cls: json.attention.cls.flat(2),
    rollout: json.attention.rollout,
  };
}

const top5 = (p) => Array.from(p.keys()).sort((a, b) => p[b] - p[a]).slice(0, 5);
const maxDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

for (const backend of ['cpu', 'webgpu']) {
  test(`classifies on ${backend} and agrees with the native CLI`, { timeout: 600_000 }, async () => {
    const { page, requests, errors } = await open(`?backend=${backend}&model=hf_vit`);
    const label = await page.textContent('#backend');
    assert.match(label, backend === 'cpu' ? /CPU/ : /WebGPU/);
    const image = path.join(fixtures, 'images/chelsea.png');
    const got = await classify(page, image);
    const want = native(path.join(fixtures, 'models/hf_vit'), image);
    assert.deepEqual(top5(got.probabilities), want.top);
    assert.ok(maxDiff(got.probabilities, want.probabilities) <= 1e-3, 'probabilities within 1e-3');
    assert.ok(maxDiff(got.cls, want.cls) <= 1e-4, 'attention within 1e-4');
    assert.ok(maxDiff(got.rollout, want.rollout) <= 1e-4, 'rollout within 1e-4');
    await page.screenshot({ path: path.join(out, `screenshots/classified-${backend}.png`), fullPage: true });
    assert.deepEqual(requests.filter((u) => !u.startsWith(origin)), [], 'no request leaves the origin');
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test('bad input gets a message and the page keeps working', { timeout: 600_000 }, async () => {
  const { page } = await open('?backend=cpu&model=hf_vit');
  const bad = path.join(out, 'not-an-image.png');
  fs.writeFileSync(bad, 'this is text, not a PNG');
  await page.setInputFiles('#file', bad);
  await page.waitForFunction(() => document.getElementById('message').textContent.includes('not an image'));
  const got = await classify(page, path.join(fixtures, 'images/coffee.png'));
  assert.equal(got.probabilities.length, 5);
  assert.equal(await page.textContent('#message'), '');
  await page.close();
});

test('a dropped checkpoint replaces the model; a broken one is refused and the old one kept', { timeout: 600_000 }, async () => {
  const { page } = await open('?backend=cpu&model=hf_vit');
  const d96 = path.join(fixtures, 'models/timm_d96');
  await page.setInputFiles('#file', [path.join(d96, 'model.safetensors'), path.join(d96, 'config.json')]);
  await page.waitForFunction(() => document.body.dataset.model === 'model.safetensors');
  const got = await classify(page, path.join(fixtures, 'images/coffee.png'));
  assert.equal(got.probabilities.length, 7, 'the 7-class timm_d96 model now answers');

  const broken = path.join(out, 'broken.safetensors');
  fs.writeFileSync(broken, fs.readFileSync(path.join(d96, 'model.safetensors')).subarray(0, 5000));
  await page.setInputFiles('#file', [broken]);
  await page.waitForFunction(() => document.getElementById('message').textContent.includes('Could not load'));
  assert.match(await page.textContent('#message'), /broken\.safetensors.*truncated safetensors file.*previous model is still in use/);
  const again = await classify(page, path.join(fixtures, 'images/chelsea.png'));
  assert.equal(again.probabilities.length, 7);
  await page.close();
});
