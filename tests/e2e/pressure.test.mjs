// The page under pressure: what the user gives before it is ready, bursts of
// images, checkpoints that arrive while the model is busy, and what a normal
// start leaves in the console. Headless Chromium, CPU backend.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startSite, open, classify, nextResult, classifiedId, maxDiff, shot, fixtures, root } from './harness.mjs';

let site;
before(async () => { site = await startSite('pressure'); });
after(async () => { await site?.stop(); });

const images = path.join(fixtures, 'images');
const d96 = path.join(fixtures, 'models/timm_d96');
const tiny = path.join(fixtures, 'models/timm_tiny');

/**
 * Opens the page with `held` (by default the default model's weights) held
 * back until the returned `release()` is called, so that the test acts
 * while it loads; `waitUntil` as page.goto's.
 */
async function openHeldBack(query, held = '**/models/fashion-vit/model.safetensors', waitUntil = 'load') {
  const context = await site.browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  let release;
  const gate = new Promise((r) => { release = r; });
  let served = null;
  const done = new Promise((r) => { served = r; });
  await page.route(held, async (route) => {
    await gate;
    await route.continue();
    served();
  });
  await page.goto(`${site.origin}/${query}`, { waitUntil });
  await page.waitForSelector('#file');
  return { page, context, errors, release, served: done };
}

/**
 * Hands the page image files, all in one task: as separate drops, or
 * (`together`) as one drop of them all. Each distinct file's bytes cross
 * into the page once, as base64.
 */
function drop(page, files, together = false) {
  const distinct = [...new Set(files.map(([file]) => file))];
  const data = distinct.map((f) => fs.readFileSync(f).toString('base64'));
  const list = files.map(([file, name]) => [distinct.indexOf(file), name]);
  return page.evaluate(([data, list, together]) => {
    const bytes = data.map((b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
    const send = (dt) => document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    const all = new DataTransfer();
    for (const [i, name] of list) {
      const dt = together ? all : new DataTransfer();
      dt.items.add(new File([bytes[i]], name, { type: 'image/png' }));
      if (!together) send(dt);
    }
    if (together) send(all);
  }, [data, list, together]);
}

const wasmBytes = (page) => page.evaluate(async () => (await window.vitrineMemory()).wasmBytes);

test('a photo picked while the page starts is classified once the model is ready', { timeout: 600_000 }, async () => {
  const { page, context, errors, release } = await openHeldBack('?backend=cpu');
  const sample = path.join(root, 'www/samples/fmnist-0.png');
  await page.setInputFiles('#file', sample);
  await page.waitForFunction(() => document.getElementById('note').textContent.includes('will be classified as soon as the model is ready'));
  assert.equal(await page.textContent('#message'), '', 'no "no model" message');
  release();
  const got = await nextResult(page, '0');
  assert.equal(got.probabilities.length, 10);
  assert.equal(await page.evaluate(() => document.body.dataset.model), 'fashion-vit');
  assert.match(await page.textContent('#top li:first-child'), /^ankle boot — /i);
  assert.deepEqual(errors, []);
  await context.close();
});

test("an image dropped and a checkpoint picked before the page's own script has arrived are kept, in order", { timeout: 600_000 }, async () => {
  // start.js runs first and starts the model; app.js, held back here, is the page.
  const { page, context, errors, release } = await openHeldBack('?backend=cpu', '**/app.js', 'domcontentloaded');
  await page.waitForFunction(() => performance.getEntriesByType('resource').some((e) => e.name.endsWith('/rpc.js')));
  await drop(page, [[path.join(root, 'www/samples/fmnist-0.png'), 'early.png']]);
  await page.setInputFiles('#file', [path.join(d96, 'model.safetensors'), path.join(d96, 'config.json')]);
  assert.equal(await page.evaluate(() => window.vitrineState), undefined, "the page's script had not run when they came");
  release();
  // The checkpoint, given after the site's model was asked for, wins; the image is answered by it.
  await page.waitForFunction(() => document.body.dataset.model === 'vit_small_patch16_224', null, { timeout: 300_000 });
  const got = await nextResult(page, '0');
  assert.equal(got.probabilities.length, 7, "the dropped image is answered by the picked 7-class checkpoint");
  assert.deepEqual(errors, []);
  await context.close();
});

test("a checkpoint picked while the default model loads wins, and a photo given meanwhile gets the checkpoint's answer", { timeout: 600_000 }, async () => {
  const { page, context, errors, release, served } = await openHeldBack('?backend=cpu');
  await page.setInputFiles('#file', path.join(images, 'coffee.png'));
  await page.setInputFiles('#file', [path.join(d96, 'model.safetensors'), path.join(d96, 'config.json')]);
  await page.waitForFunction(() => document.body.dataset.model === 'vit_small_patch16_224');
  const got = await nextResult(page, '0');
  assert.equal(got.probabilities.length, 7, "the photo is answered by the user's 7-class checkpoint");
  // Now let the default model arrive: it must not replace the user's.
  release();
  await served;
  await page.waitForTimeout(3000);
  assert.equal(await page.evaluate(() => document.body.dataset.model), 'vit_small_patch16_224');
  assert.match(await page.textContent('#model-info'), /7 classes/);
  assert.equal((await classify(page, path.join(images, 'chelsea.png'))).probabilities.length, 7);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a normal start logs no console error and asks for no file that is not there', { timeout: 600_000 }, async () => {
  const context = await site.browser.newContext();
  const page = await context.newPage();
  const logged = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') logged.push(`${m.type()}: ${m.text()}`); });
  const failed = [];
  page.on('response', (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`); });
  await page.goto(`${site.origin}/?backend=cpu`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 300_000 });
  await classify(page, path.join(root, 'www/samples/fmnist-6.png'));
  assert.deepEqual(failed, []);
  assert.deepEqual(logged, []);
  await context.close();
});

test('bursts of 30 images: only the newest is shown, nothing is lost, memory stays flat', { timeout: 900_000 }, async () => {
  const { page, context, errors } = await open(site, '?backend=cpu&model=timm_tiny');
  const last = path.join(images, 'coffee.png');
  const alone = await classify(page, last);
  const m0 = await wasmBytes(page);
  const burst = (tag) => Array.from({ length: 30 }, (_, i) => [i === 29 ? last : path.join(images, i % 2 ? 'astronaut.png' : 'chelsea.png'), `${tag}-${i}.png`]);
  const before = await classifiedId(page);
  await drop(page, burst('first'));
  // The second burst while the first is still being classified.
  await page.waitForTimeout(50);
  await drop(page, burst('second'));
  const shown = await nextResult(page, before);
  assert.equal(await page.evaluate(() => document.body.dataset.requested), String(Number(before) + 60), 'all 60 were taken');
  assert.ok(maxDiff(shown.probabilities, alone.probabilities) < 1e-6, 'the newest image is the one shown');
  assert.equal(await page.textContent('#message'), '');
  // The page still works in every part: a patch's row, another image.
  await page.locator('#stage').scrollIntoViewIfNeeded();
  const box = await page.locator('#stage').boundingBox();
  await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.5);
  await page.waitForFunction(() => document.getElementById('caption').textContent.includes('the patch at row'));
  await classify(page, path.join(images, 'chelsea.png'));
  // One drop of 30 files at once: the first is shown, and the page says so.
  const before2 = await classifiedId(page);
  await drop(page, burst('many'), true);
  await nextResult(page, before2);
  assert.match(await page.textContent('#note'), /30 images were given; vitrine shows one at a time: the first, “many-0\.png”/);
  const m1 = await wasmBytes(page);
  assert.ok(m1 <= m0 * 1.1, `wasm memory ${m0} → ${m1} bytes (+${((m1 / m0 - 1) * 100).toFixed(1)}%)`);
  assert.deepEqual(errors, []);
  await shot(page, 'after-bursts');
  await context.close();
});

test('a checkpoint dropped mid-classification: the new model answers, the old one is released', { timeout: 900_000 }, async () => {
  const { page, context, errors } = await open(site, '?backend=cpu&model=timm_tiny');
  const image = path.join(images, 'chelsea.png');
  await classify(page, image);
  const dropModel = (dir) => page.setInputFiles('#file', [path.join(dir, 'model.safetensors'), path.join(dir, 'config.json')]);
  const loaded = (classes) => page.waitForFunction((c) => document.getElementById('model-info').textContent.includes(`${c} classes`), classes, { timeout: 300_000 });

  // An image goes in, and while it is classified the 7-class checkpoint arrives.
  const before = await classifiedId(page);
  await page.setInputFiles('#file', path.join(images, 'coffee.png'));
  await dropModel(d96);
  await loaded(7);
  const answer = await nextResult(page, before);
  assert.equal(answer.probabilities.length, 7, "the image is answered again by the new model");
  assert.equal(await page.textContent('#message'), '');

  // Models switched back and forth: each switch frees the old weights, so
  // the wasm memory after the third round is what it was after the first.
  const rounds = [];
  for (let i = 0; i < 3; i++) {
    await dropModel(tiny);
    await loaded(1000);
    await dropModel(d96);
    await loaded(7);
    await nextResult(page, '0');
    rounds.push(await wasmBytes(page));
  }
  assert.ok(rounds[2] <= rounds[0] * 1.1, `wasm memory after each round: ${rounds.join(', ')} bytes`);
  assert.deepEqual(errors, []);
  await context.close();
});
