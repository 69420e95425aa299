// The teaching view ("How it works") in headless Chromium: every step for
// the default model and for a 224×224 patch-16 checkpoint, with this
// model's shapes; values equal to the native engine's; English and Korean.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startSite, open, classify, maxDiff, nativeWalk, agreement, walkAgreement, out, fixtures, root, defaultModel } from './harness.mjs';

let site;
before(async () => { site = await startSite('learn'); });
after(async () => { await site?.stop(); });

async function walkThrough(page) {
  const before = await page.evaluate(() => document.body.dataset.walkthrough ?? '');
  if (await page.isHidden('#learn')) await page.click('#learn-open');
  await page.waitForFunction((b) => (document.body.dataset.walkthrough ?? '') !== b, before, { timeout: 300_000 });
  return page.evaluate(() => [...document.querySelectorAll('#learn-steps .step')].map((s) => s.querySelector('h3').textContent + '\n' + s.querySelector('p').textContent));
}

test('the walk-through shows every step with the default model\'s shapes, in English and Korean', { timeout: 600_000 }, async () => {
  const { page, context, errors } = await open(site, '?backend=cpu');
  await page.evaluate(() => localStorage.removeItem('vitrine-lang'));
  await classify(page, path.join(root, 'www/samples/fmnist-2.png'));
  const english = await walkThrough(page);
  assert.equal(english.length, 9, 'nine steps');
  assert.match(english[0], /28×28×1 image .* 7×7 = 49 square patches of 4×4 pixels/);
  assert.match(english[1], /4·4·1 = 16 numbers/);
  assert.match(english[2], /49×16 → 49×96/);
  assert.match(english[3], /\(49\+1\)×96 = 50×96/);
  const { depth, num_heads: heads, embed_dim: width } = defaultModel;
  assert.match(english[5], new RegExp(`${depth} identical layers .*\\(${heads} heads, each of width d = ${width}/${heads} = ${width / heads}`));
  assert.match(english[7], /96 → 10/);
  // Step 9: attention is one map for every class; relevance follows the class.
  const top2 = await page.evaluate(() => {
    const p = window.vitrineLast.probabilities;
    return Array.from(p.keys()).sort((a, b) => p[b] - p[a]).slice(0, 2);
  });
  const labels = JSON.parse(fs.readFileSync(path.join(root, 'www/models/fashion-vit/config.json'))).label_names;
  assert.match(english[8], new RegExp(`why the model chose “${labels[top2[0]]}” rather than “${labels[top2[1]]}”.*Chefer, Gur & Wolf \\(2021\\)`));
  const captions = await page.locator('#step-9 figcaption').allTextContents();
  assert.deepEqual(captions, ['attention rollout: the same for every class', ...top2.map((k) => `why “${labels[k]}”: relevance`)]);
  for (let i = 1; i <= 9; i++) await page.locator(`#step-${i}`).screenshot({ path: path.join(out, 'screenshots', `learn-step-${i}.png`) });

  await page.selectOption('#learn-lang', 'ko');
  const korean = await page.evaluate(() => [...document.querySelectorAll('#learn-steps .step')].map((s) => s.querySelector('h3').textContent + '\n' + s.querySelector('p').textContent));
  korean.forEach((text, i) => assert.notEqual(text, english[i], `step ${i + 1} changes language`));
  assert.match(korean[0], /7×7 = 49개/);
  assert.equal(await page.evaluate(() => document.documentElement.lang), 'ko');
  // The choice is remembered.
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await page.inputValue('#learn-lang'), 'ko');
  assert.equal(await page.textContent('#learn-open'), '작동 원리');
  assert.deepEqual(errors, []);
  await context.close();
});

test('for a 224×224 patch-16 checkpoint the shapes and the values match the native engine', { timeout: 900_000 }, async () => {
  const { page, context, errors } = await open(site, '?backend=cpu&model=timm_tiny');
  await page.evaluate(() => localStorage.setItem('vitrine-lang', 'en'));
  const image = path.join(fixtures, 'images/chelsea.png');
  await classify(page, image);
  const steps = await walkThrough(page);
  assert.match(steps[0], /224×224×3 image .* 14×14 = 196 square patches of 16×16 pixels/);
  assert.match(steps[1], /16·16·3 = 768 numbers/);
  assert.match(steps[2], /196×768 → 196×192/);
  assert.match(steps[3], /\(196\+1\)×192 = 197×192/);
  assert.equal(await page.locator('#step-5 .pos-grid canvas').count(), 196, 'one similarity map per position');
  assert.equal(await page.locator('#step-7 circle').count(), 4 * 3, 'one dot per head and layer');

  // Another layer and head, then compare with `vitrine walkthrough` on the same file.
  for (const [select, value] of [['#learn-layer', '2'], ['#learn-head', '1']]) {
    const stamp = await page.evaluate(() => document.body.dataset.walkthrough);
    await page.selectOption(select, value);
    await page.waitForFunction((b) => document.body.dataset.walkthrough !== b, stamp);
  }
  assert.equal(await page.inputValue('#learn-layer'), '2');
  assert.equal(await page.inputValue('#learn-head'), '1');
  const walk = await page.evaluate(() => {
    const w = window.vitrineWalk;
    return { patches: w.patches, patchEmbeddings: Array.from(w.patchEmbeddings), attention: Array.from(w.attention), meanDistance: Array.from(w.meanDistance), positionSimilarity: Array.from(w.positionSimilarity) };
  });
  const want = nativeWalk(path.join(fixtures, 'models/timm_tiny'), image, { patches: walk.patches, layer: 2, head: 1 });
  // Each value held to what the golden tests allow native vitrine on this
  // image, twice over: the page and the native engine are each held to it.
  // Layer 2's attention gets the last layer's bound (float32 error grows
  // with depth).
  const walkBound = walkAgreement('timm_tiny', 'chelsea');
  const checks = [
    ['patch embeddings', walk.patchEmbeddings, want.patch_embeddings, walkBound.embeddings],
    ['layer 2, head 1 attention', walk.attention, want.attention, agreement('timm_tiny', 'chelsea').last],
    ['mean attention distance (px)', walk.meanDistance, want.mean_distance, walkBound.distance],
    ['position similarity', walk.positionSimilarity, want.position_similarity, walkBound.similarity],
  ];
  for (const [what, got, expected, allowed] of checks) {
    assert.equal(got.length, expected.length, what);
    const d = maxDiff(got, expected);
    console.log(`walk-through ${what}: page vs native ${d.toExponential(2)} (allowed ${allowed.toExponential(1)})`);
    assert.ok(d <= allowed, `${what}: the page and the native engine differ by ${d}, more than ${allowed}`);
  }
  await page.locator('#step-6').screenshot({ path: path.join(out, 'screenshots', 'learn-tiny-step-6.png') });
  assert.deepEqual(errors, []);
  await context.close();
});
