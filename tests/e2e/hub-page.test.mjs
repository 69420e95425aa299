// Models from the Hub in the page, with a stand-in Hub (tests/hub/standin.mjs)
// on another origin: a link with ?model=hf: and a gallery click load and
// classify; a reload with the stand-in stopped loads from the browser's
// copy; gated, missing, cut-off and cancelled downloads say so and leave the
// previous model working; Delete empties the copy; and no request goes
// anywhere but the site, the endpoint and its CDN.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startSite, classify, messageIncludes, fixtures, out } from './harness.mjs';
import { startHub, writeRepo } from '../hub/standin.mjs';

let site;
let hub;
const hubRoot = path.join(out, 'hub-page-repos');

const read = (dir) => Object.fromEntries(fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f))]));

before(async () => {
  fs.rmSync(hubRoot, { recursive: true, force: true });
  // timm's layout, 1,000 unnamed classes (ImageNet-1k's names are used).
  writeRepo(hubRoot, 'acme/tiny', read(path.join(fixtures, 'models/timm_tiny')));
  // transformers' DeiT with only pytorch_model.bin, as many facebook/ repos.
  writeRepo(hubRoot, 'acme/deit-bin', read(path.join(fixtures, 'torch/hf_deit')));
  writeRepo(hubRoot, 'acme/gated', read(path.join(fixtures, 'models/hf_vit')), { gated: true });
  writeRepo(hubRoot, 'acme/cut', read(path.join(fixtures, 'models/hf_vit')), { faults: { 'model.safetensors': 'cut' } });
  writeRepo(hubRoot, 'acme/slow', read(path.join(fixtures, 'models/hf_vit')), { faults: { 'model.safetensors': 'slow' } });
  writeRepo(hubRoot, 'acme/no-length', read(path.join(fixtures, 'models/timm_tiny')), { faults: { 'model.safetensors': 'no-length' } });
  writeRepo(hubRoot, 'acme/no-range', read(path.join(fixtures, 'models/timm_tiny')), { faults: { 'model.safetensors': 'no-range' } });
  hub = await startHub({ root: hubRoot });
  site = await startSite('hub');
});
after(async () => {
  await site?.stop();
  await hub?.close();
});

/** A page whose Hub is the stand-in; every request it makes is recorded. */
async function openHub(context, query) {
  const page = await context.newPage();
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(`${site.origin}/?hub=${encodeURIComponent(hub.endpoint)}${query}`);
  return { page, requests };
}

const hubLoaded = (page, state = 'done') => page.waitForFunction((s) => document.body.dataset.hubLoad === s, state, { timeout: 300_000 });

test('a Hub model by link and by name: downloaded once, kept, loaded offline, deleted', { timeout: 900_000 }, async () => {
  const context = await site.browser.newContext();
  const { page, requests } = await openHub(context, '&model=hf:acme/tiny');
  await hubLoaded(page);
  const line = await page.textContent('#model-info');
  assert.match(line, /From acme\/tiny@[0-9a-f]{7} from 127\.0\.0\.1:\d+\./, line);
  await classify(page, path.join(fixtures, 'images/chelsea.png'));
  const top = await page.$$eval('#top li', (li) => li.map((l) => l.textContent));
  assert.equal(top.length, 5);
  // timm's config names no classes: ImageNet-1k's (a random model, so any of them).
  const names = fs.readFileSync(path.join(import.meta.dirname, '../../src/checkpoint/imagenet-1k.txt'), 'utf8').split('\n');
  for (const t of top) assert.ok(names.includes(t.split(' — ')[0]), t);
  await page.waitForFunction(() => document.body.dataset.hubKept === '1');
  assert.match(await page.textContent('#hub-kept'), /acme\/tiny@main/);

  // Only the site, the endpoint and its CDN were asked, and the Hub only for this model.
  const origins = new Set(requests.map((u) => new URL(u).origin));
  for (const o of origins) assert.ok([site.origin, hub.endpoint, hub.cdn].includes(o) || o === 'null', `no request to ${o}`);
  const asked = hub.requests.filter((r) => r.url.includes('/resolve/') || r.server === 'cdn');
  assert.ok(asked.length >= 2 && asked.every((r) => /acme\/tiny|\/repos\//.test(r.url)), JSON.stringify(asked.map((r) => r.url)));
  for (const r of hub.requests) {
    assert.equal(r.headers.cookie, undefined, 'no cookie');
    assert.equal(r.headers.authorization, undefined, 'no credentials');
    assert.ok(!Object.keys(r.headers).some((h) => h.startsWith('x-')), `no custom header: ${Object.keys(r.headers)}`);
  }

  // A pytorch_model.bin-only repo by name; then the first one again, from the browser's copy.
  const before = hub.requests.length;
  await page.fill('#hub-ref', 'https://huggingface.co/acme/deit-bin/tree/main');
  await page.evaluate(() => { document.body.dataset.hubLoad = ''; });
  await page.click('#hub-form button[type="submit"]');
  await hubLoaded(page);
  assert.match(await page.textContent('#model-info'), /From acme\/deit-bin@/);
  assert.ok(hub.requests.slice(before).some((r) => r.url.includes('pytorch_model.bin')), 'pytorch_model.bin was fetched');
  await page.waitForFunction(() => document.body.dataset.hubKept === '2');
  await page.close();

  // The Hub gone: the link still loads, from what the browser kept.
  const served = hub.requests.length;
  await hub.close();
  const offline = await openHub(context, '&model=hf:acme/tiny');
  await hubLoaded(offline.page);
  assert.equal(hub.requests.length, served, 'no request reached the (stopped) Hub');
  await classify(offline.page, path.join(fixtures, 'images/chelsea.png'));
  // Delete frees it.
  await offline.page.click('#hub-kept li:has-text("acme/deit-bin") .hub-delete');
  await offline.page.waitForFunction(() => document.body.dataset.hubKept === '1');
  const left = await offline.page.evaluate(async () => (await (await caches.open('vitrine-hub-v1')).keys()).map((r) => r.url));
  assert.ok(left.some((u) => u.includes('acme/tiny')), left.join('\n'));
  assert.ok(left.every((u) => !u.includes('acme/deit-bin')), left.join('\n'));
  await offline.page.close();
  await context.close();
  hub = await startHub({ root: hubRoot });
});

test('a download streams into the loader: bytes reach WebAssembly memory while the rest is still coming', { timeout: 900_000 }, async () => {
  const context = await site.browser.newContext();
  const { page } = await openHub(context, '');
  await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
  // Count what the worker hands to WebAssembly memory, and when.
  const [worker] = page.workers();
  await worker.evaluate(async () => {
    const { FileBytes } = await import(new URL('pkg/vitrine.js', self.location.href).href);
    const push = FileBytes.prototype.push;
    self.pushed = 0;
    FileBytes.prototype.push = function (chunk) {
      self.pushed += chunk.length;
      return push.call(this, chunk);
    };
  });
  const size = fs.statSync(path.join(fixtures, 'models/hf_vit/model.safetensors')).size;
  await page.fill('#hub-ref', 'acme/slow'); // 16 KB every 50 ms: six seconds for the whole file
  await page.click('#hub-form button[type="submit"]');
  let during = 0;
  for (let i = 0; i < 600 && during === 0; i++) {
    during = await worker.evaluate(() => self.pushed);
    if (during === 0) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(during > 0 && during < size / 2, `${during} of ${size} bytes in WebAssembly memory at first sight`);
  await hubLoaded(page);
  assert.equal(await worker.evaluate(() => self.pushed), size, 'every byte, once');
  await page.waitForFunction(() => document.body.dataset.hubKept === '1');
  await classify(page, path.join(fixtures, 'images/chelsea.png'));
  // A reload (another input size) reads the kept copy: the stream is spent.
  await page.selectOption('#resolution', '128');
  await page.waitForFunction(() => document.getElementById('model-info').textContent.includes('128×128×3 input → 64 patches'), null, { timeout: 120_000 });
  await context.close();
});

test('storage too small: loaded all the same, the message says how much is needed and what to do, and a reload still works', { timeout: 900_000 }, async () => {
  const context = await site.browser.newContext();
  // A storage of 2 MB. Headless Chromium's contexts keep their quota
  // (DevTools' Storage.overrideQuotaForOrigin leaves it as it is), so the
  // browser's two answers are given here: the room left, and the error a
  // write past it gets.
  await context.addInitScript(() => {
    const quota = 2_000_000;
    navigator.storage.estimate = async () => ({ quota, usage: 0 });
    const put = Cache.prototype.put;
    Cache.prototype.put = async function (request, response) {
      const parts = [];
      let size = 0;
      const reader = response.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        size += value.length;
        if (size > quota) {
          reader.cancel();
          throw new DOMException('Quota exceeded.', 'QuotaExceededError');
        }
        parts.push(value);
      }
      return put.call(this, request, new Response(new Blob(parts)));
    };
  });
  const { page } = await openHub(context, '');
  await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
  const load = async (ref) => {
    await page.evaluate(() => { document.body.dataset.hubLoad = ''; });
    await page.fill('#hub-ref', ref);
    await page.click('#hub-form button[type="submit"]');
    await hubLoaded(page);
  };
  // Its size known (no Content-Length: a one-byte range request, cross-origin
  // and without a preflight, reads it): too big for what is left, known before a byte is kept.
  const mark = hub.requests.length;
  await load('acme/no-length');
  const warned = (text) => page.waitForFunction((t) => document.getElementById('warning').textContent.includes(t), text, { timeout: 120_000 });
  await warned('acme/no-length is loaded but not kept for next time: the browser’s storage has 2 MB left and acme/no-length needs 4 MB. Delete a downloaded model below to make room.');
  const asked = hub.requests.slice(mark);
  assert.deepEqual(asked.filter((r) => r.headers.range).map((r) => [r.server, r.method, r.headers.range, r.status]), [['cdn', 'GET', 'bytes=0-0', 206]]);
  assert.deepEqual(asked.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.url}`), [], 'no preflight');
  await classify(page, path.join(fixtures, 'images/chelsea.png'));
  await page.selectOption('#resolution', '112');
  await page.waitForFunction(() => document.getElementById('model-info').textContent.includes('112×112×3 input'), null, { timeout: 120_000 });
  // No size announced: the storage fills up on the way, and what was written goes.
  await load('acme/no-range');
  await warned('acme/no-range is loaded but not kept for next time: the browser’s storage is full (acme/no-range needs');
  await classify(page, path.join(fixtures, 'images/chelsea.png'));
  // Nothing to reload from but the Hub: said, and the model stays.
  await page.selectOption('#resolution', '112');
  await messageIncludes(page, 'model.safetensors was not kept in this browser: load the model again');
  await classify(page, path.join(fixtures, 'images/chelsea.png'));
  assert.equal(await page.evaluate(() => document.body.dataset.hubKept), '0');
  const left = await page.evaluate(async () => (await (await caches.open('vitrine-hub-v1')).keys()).map((r) => r.url));
  assert.deepEqual(left, []);
  await context.close();
});

test('gated, missing, cut off and cancelled: a message each, and the previous model still works', { timeout: 900_000 }, async () => {
  const context = await site.browser.newContext();
  const { page } = await openHub(context, '');
  await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
  const load = async (ref, state = 'failed') => {
    await page.evaluate(() => { document.body.dataset.hubLoad = ''; });
    await page.fill('#hub-ref', ref);
    await page.click('#hub-form button[type="submit"]');
    await hubLoaded(page, state);
  };
  // Not a model's name: said at once, nothing asked of the Hub.
  const asked = hub.requests.length;
  await page.fill('#hub-ref', 'gpt2');
  await page.click('#hub-form button[type="submit"]');
  await messageIncludes(page, '“gpt2” names no owner (a model is org/name)');
  assert.equal(hub.requests.length, asked);
  await load('acme/gated');
  await messageIncludes(page, 'acme/gated is gated: accept its terms on the Hub, download the files and drop them here');
  await load('acme/nothing-here');
  await messageIncludes(page, 'acme/nothing-here');
  await load('acme/tiny@v9');
  await messageIncludes(page, 'v9');
  await load('acme/cut');
  await messageIncludes(page, 'cut off');
  // Cancel while the weights trickle in.
  await page.evaluate(() => { document.body.dataset.hubLoad = ''; });
  await page.fill('#hub-ref', 'acme/slow');
  await page.click('#hub-form button[type="submit"]');
  await page.waitForSelector('#hub-cancel:not([hidden])');
  await page.waitForFunction(() => /Downloading/.test(document.getElementById('load-status').textContent), null, { timeout: 60_000 });
  await page.click('#hub-cancel');
  await hubLoaded(page, 'failed');
  await messageIncludes(page, 'was cancelled. The previous model is still in use.');
  // Nothing of the failed downloads was kept.
  assert.equal(await page.evaluate(() => document.body.dataset.hubKept), '0');
  assert.match(await page.textContent('#model-info'), /fashion/i);
  await classify(page, path.join(fixtures, 'images/chelsea.png'));
  await context.close();
});
