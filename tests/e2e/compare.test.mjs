// Compare: the image shown through a second model from a stand-in Hub,
// beside the first, under the same controls. Its top-5 is the model's own
// (the native CLI's on the same file); its map follows the relative depth,
// the head and the point pointed at; both models' attention distances are
// on one plot; the address restores it; a pair over the memory budget is
// refused with the reason; and the memory of both workers stays flat over
// 50 classifications.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startSite, classify, fixtures, out, native, top5, defaultModel } from './harness.mjs';
import { startHub, writeRepo } from '../hub/standin.mjs';

let site;
let hub;
after(async () => {
  await site?.stop();
  await hub?.close();
});

const read = (dir) => Object.fromEntries(fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f))]));
const images = path.join(fixtures, 'images');
const vit = path.join(fixtures, 'models/hf_vit'); // transformers' ViT: 3 layers, 4 heads, 6×6 patches

const compared = (page) => page.waitForFunction(() => document.body.dataset.compared?.startsWith(`${window.vitrineState.current?.id}:`), null, { timeout: 300_000 });
const comparedAs = (page, want) => page.waitForFunction((w) => document.body.dataset.compared === `${window.vitrineState.current?.id}:${w}`, want, { timeout: 120_000 });

/** The stand-in Hub with one model, and the site. */
async function started() {
  if (site) return;
  const root = path.join(out, 'compare-repos');
  fs.rmSync(root, { recursive: true, force: true });
  writeRepo(root, 'acme/vit', read(vit));
  hub = await startHub({ root });
  site = await startSite('compare');
}

test('two models side by side: the right top-5s, one set of controls, one distance plot, the address, flat memory', { timeout: 1_200_000 }, async () => {
  await started();
  const context = await site.browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${site.origin}/?hub=${encodeURIComponent(hub.endpoint)}&compare=hf:acme/vit`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
  const image = path.join(images, 'chelsea.png');
  await classify(page, image);
  await compared(page);

  // Each model's own top-5: the first's and the second's, as the native engine gives them.
  const first = await page.$$eval('#top li', (li) => li.map((l) => Number(l.dataset.index)));
  const second = await page.$$eval('#compare-top li', (li) => li.map((l) => Number(l.dataset.index)));
  assert.deepEqual(second, top5(native(vit, image).probabilities), 'the second model\'s top-5');
  assert.equal(first.length, 5);
  assert.notDeepEqual(first, second);
  assert.match(await page.textContent('#compare-name'), /acme\/vit/);

  // One set of controls: the same relative depth, the same head, the same point.
  const depth = defaultModel.depth;
  await page.evaluate(() => { const s = document.getElementById('layer'); s.value = '2'; s.dispatchEvent(new Event('input')); });
  const want = Math.round(((2 + 1) * 3) / depth) - 1;
  await comparedAs(page, `${want}:mean:-1`);
  assert.match(await page.textContent('#compare-caption'), new RegExp(`layer ${want} of 3 \\(the depth of layer 2 of ${depth}\\)`));
  await page.selectOption('#head', '2');
  await comparedAs(page, `${want}:2:-1`);
  await page.selectOption('#head', 'rollout');
  await comparedAs(page, `${want}:rollout:-1`);
  await page.selectOption('#head', 'mean');
  // Pointing at the centre patch: the second model's patch over the same point, once its rows are read.
  await page.focus('#stage');
  await page.keyboard.press('ArrowRight');
  await page.waitForFunction(() => /where the patch at the same point looks/.test(document.getElementById('compare-caption').textContent), null, { timeout: 120_000 });
  const point = Number((await page.evaluate(() => document.body.dataset.compared)).split(':')[3]);
  assert.ok(point >= 0 && point < 36, `a patch of the 6×6 grid: ${point}`);
  await page.keyboard.press('Escape');

  // Both models' mean attention distance on one plot: a dot a head of each layer.
  await page.click('#compare-distance summary');
  await page.waitForFunction(() => document.body.dataset.compareDistance === String(window.vitrineState.current.id), null, { timeout: 300_000 });
  assert.equal(await page.locator('#compare-plot circle.m0').count(), depth * defaultModel.num_heads);
  assert.equal(await page.locator('#compare-plot circle.m1').count(), 3 * 4);
  assert.match(await page.textContent('#compare-distance-text'), /acme\/vit: from \d+% of the image's width in layer 0 to \d+% in layer 2/);

  // The address restores the comparison (with a sample, which the address names).
  await page.click('#gallery img[src="samples/chelsea.jpg"]');
  await page.waitForFunction(() => window.vitrineState.current?.sample === 'chelsea');
  await compared(page);
  const shown = await page.$$eval('#compare-top li', (li) => li.map((l) => Number(l.dataset.index)));
  await page.waitForFunction(() => !document.body.dataset.addressPending);
  const url = page.url();
  assert.equal(new URL(url).searchParams.get('compare'), 'hf:acme/vit');
  const again = await context.newPage();
  await again.goto(url);
  await compared(again);
  assert.deepEqual(await again.$$eval('#compare-top li', (li) => li.map((l) => Number(l.dataset.index))), shown);
  assert.equal(await again.evaluate(() => document.getElementById('compare-with').value), 'hf:acme/vit');
  await again.close();

  // The memory of a comparison stays flat: 50 classifications, both workers.
  const memory = () => page.evaluate(async () => [(await window.vitrineMemory()).wasmBytes, (await window.vitrineCompareMemory()).wasmBytes]);
  const files = ['chelsea.png', 'astronaut.png'].map((f) => path.join(images, f));
  for (let i = 0; i < 5; i++) { await classify(page, files[i % 2]); await compared(page); }
  const warm = await memory();
  for (let i = 5; i < 50; i++) { await classify(page, files[i % 2]); await compared(page); }
  const end = await memory();
  console.log(`wasm memory after 5 and 50 comparisons: first worker ${warm[0]} → ${end[0]}, second ${warm[1]} → ${end[1]} bytes`);
  assert.ok(end[0] <= warm[0] * 1.02 && end[1] <= warm[1] * 1.02, `flat: ${warm} → ${end}`);

  // Stop: the second worker is gone, the address forgets it.
  await page.click('#compare-stop');
  assert.ok(await page.isHidden('#compare'));
  assert.equal(await page.evaluate(() => window.vitrineCompareMemory()), null);
  assert.deepEqual(errors, []);
  await context.close();
});

test('over the memory budget: a second model too big alone is refused; a pair that fits one at a time runs in turn', { timeout: 900_000 }, async () => {
  await started();
  const context = await site.browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // 1.9 MB for weights: the second model (2.0 MB) cannot be held at all.
  await page.goto(`${site.origin}/?hub=${encodeURIComponent(hub.endpoint)}&memory=1.9&compare=hf:acme/vit`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
  const image = path.join(images, 'chelsea.png');
  await classify(page, image);
  await page.waitForFunction(() => document.body.dataset.compareRefused, null, { timeout: 300_000 });
  const why = await page.textContent('#compare-status');
  assert.match(why, /^acme\/vit alone needs 2\.0 MB, and this page gives models' weights 1\.9 MB on this device/, why);
  assert.equal(await page.evaluate(() => window.vitrineCompareMemory()), null, 'no second model held');
  assert.equal(await page.$$eval('#top li', (li) => li.length), 5, 'the first model still answers');

  // 2.1 MB: each fits alone, not both: they run in turn, one in memory at a time.
  const weights = await page.evaluate(() => window.vitrineState.info.weightBytes);
  assert.ok(weights + 2.0e6 > 2.1e6 && weights < 2.1e6, `the default model's ${weights} bytes`);
  await page.goto(`${site.origin}/?hub=${encodeURIComponent(hub.endpoint)}&memory=2.1&compare=hf:acme/vit`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
  // In the first model's own worker, whose memory the second reuses: it grows once, not each turn.
  const mainBytes = () => page.evaluate(async () => (await window.vitrineMemory()).wasmBytes);
  const grown = [];
  for (const file of ['chelsea.png', 'astronaut.png', 'chelsea.png']) {
    await classify(page, path.join(images, file));
    await compared(page);
    assert.deepEqual(await page.$$eval('#compare-top li', (li) => li.map((l) => Number(l.dataset.index))), top5(native(vit, path.join(images, file)).probabilities), file);
    assert.match(await page.textContent('#compare-status'), /together need [\d.]+ MB, and this page gives models' weights 2\.1 MB on this device[^:]*: they run in turn/);
    assert.equal(await page.evaluate(() => window.vitrineCompareMemory()), null, 'no second worker: the second model ran in the first one\'s');
    grown.push(await mainBytes());
  }
  assert.ok(grown[2] <= grown[1], `the first worker's memory after each turn: ${grown}`);
  // The first model is back after each turn: pointing and "why this class" still work.
  await page.locator('#stage').scrollIntoViewIfNeeded();
  const box = await page.locator('#stage').boundingBox();
  await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.5);
  await page.waitForFunction(() => document.getElementById('caption').textContent.includes('the patch at row'), null, { timeout: 120_000 });
  await page.waitForFunction(() => /the two models run in turn/.test(document.getElementById('compare-caption').textContent));
  await page.mouse.move(0, 0);
  await page.click('#top li:nth-child(2) button');
  await page.waitForFunction(() => document.body.dataset.explained?.startsWith(`${window.vitrineState.current.id}:`), null, { timeout: 120_000 });
  // Both distance curves, the second model's read during its turn.
  await page.click('#compare-distance summary');
  await page.waitForFunction(() => document.body.dataset.compareDistance === String(window.vitrineState.current.id), null, { timeout: 300_000 });
  assert.equal(await page.locator('#compare-plot circle.m1').count(), 3 * 4);
  assert.equal(await page.textContent('#message'), '');
  assert.deepEqual(errors, []);
  await context.close();
});
