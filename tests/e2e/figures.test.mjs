// The Figures panel in headless Chromium: token norms, the registers' share
// of the class token's attention and position similarity, for a model with
// registers and one without, on the CPU and WebGPU backends, agreeing with
// `vitrine walkthrough` (the native engine, itself held to PyTorch by
// tests/figures.rs) on the same image file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startSite, open, classify, maxDiff, nativeWalk, goldenTensor, assertDeclared, fixtures } from './harness.mjs';
import { describeNorms, describeShare } from '../../www/figures.js';

let site;
before(async () => { site = await startSite('figures'); });
after(async () => { await site?.stop(); });

test('the figures are worded with the model\'s own numbers', () => {
  // A 2 × 2 grid after a class token, two blocks: one patch ten times the others in the second.
  const norms = Float32Array.from([3, 1, 1, 1, 1, 5, 1, 2, 1, 10]);
  const first = describeNorms(norms, ['class'], 0, [2, 2]);
  assert.deepEqual(Array.from(first.patches), [1, 1, 1, 1]);
  assert.match(first.text, /^After block 1: the patches' median length is 1\.00; the longest, at row 1, column 1, is 1\.0× that\. No patch is over 4× the median/);
  const second = describeNorms(norms, ['class'], 1, [2, 2]);
  assert.equal(second.text, 'After block 2: the patches\' median length is 2.00; the longest, at row 2, column 2, is 5.0× that. '
    + '1 patch is over 4× the median: artefacts of the kind registers absorb, where a model stores what it gathered from the whole image. '
    + 'Prefix tokens: class 5.00.');
  assert.equal(describeShare(new Float32Array(0), 2), null);
  assert.match(describeShare(Float32Array.from([0.006, 0.0002]), 1).text, /take 0\.31% of/);
  const share = describeShare(Float32Array.from([0.1, 0.3, 0.25, 0.15]), 2);
  assert.deepEqual(share.perLayer.map((s) => +s.toFixed(6)), [0.2, 0.2]);
  assert.equal(share.text, 'In the last block the registers take 20% of the class token\'s attention (mean of 2 heads); across the blocks, 20%, 20%.');
});

/** The panel's figures for `image`, once the panel is open. */
async function figuresOf(page, image) {
  await classify(page, image);
  await page.evaluate(() => { window.vitrineFigures = undefined; });
  if (!(await page.evaluate(() => document.getElementById('figures').open))) await page.click('#figures summary');
  await page.waitForFunction(() => window.vitrineFigures, null, { timeout: 300_000 });
  return page.evaluate(() => {
    const f = window.vitrineFigures;
    return {
      keys: Object.keys(f), tokenNorms: Array.from(f.tokenNorms), registerShare: Array.from(f.registerShare),
      positionSimilarity: Array.from(f.positionSimilarity), filters: Array.from(f.filters), filterVariance: Array.from(f.filterVariance),
    };
  });
}

for (const backend of ['cpu', 'webgpu']) {
  test(`figures on ${backend}: a model with registers and one without, as the native engine computes them`, { timeout: 900_000 }, async () => {
    const image = path.join(fixtures, 'images/astronaut.png');
    const { page, errors } = await open(site, `?backend=${backend}&model=timm_reg4`);
    const got = await figuresOf(page, image);
    assertDeclared(got.keys, 'Figures');
    const want = nativeWalk(path.join(fixtures, 'models/timm_reg4'), image, { patches: [0], layer: 0, head: 0 });
    // Two float32 implementations, each within twice PyTorch float32's
    // distance from the exact values (tests/figures.rs): within four times
    // of each other, never less than the Rust test's floors.
    const [normError, shareError] = goldenTensor('figures', 'timm_reg4.astronaut.torch_f32_error');
    const norms = want.figures.token_norms;
    const largest = Math.max(...norms);
    assert.equal(got.tokenNorms.length, norms.length);
    assert.ok(maxDiff(got.tokenNorms, norms) <= Math.max(4 * normError, 5e-6 * largest), `token norms off by ${maxDiff(got.tokenNorms, norms)}`);
    assert.equal(got.registerShare.length, 3, 'one block of three heads');
    assert.ok(maxDiff(got.registerShare, want.figures.register_share) <= Math.max(4 * shareError, 2e-5), 'registers\' share');
    assert.ok(maxDiff(got.positionSimilarity, want.position_similarity) <= 2e-5, 'position similarity');
    // Worded with the model's own numbers; the similarity grid laid out as the patches (16 × 16 at 224 px, patch 14).
    assert.match(await page.textContent('#figures-norms-text'), /^After block 1: the patches' median length is [\d.]+; the longest, at row \d+, column \d+, is [\d.]+× that\. .*Prefix tokens: class [\d.]+, register 1 [\d.]+/);
    assert.equal(await page.locator('#figures-share li').count(), 1);
    assert.match(await page.textContent('#figures-share-text'), /^In the last block the registers take [\d.]+% of the class token's attention \(mean of 3 heads\)/);
    assert.equal(await page.evaluate(() => document.getElementById('figures-similarity').width), 16 * 17 - 1);

    // Another model, no registers: the share is left out, the rest follows the new model.
    await page.goto(`${site.origin}/?backend=${backend}&model=timm_tiny`);
    const tiny = await figuresOf(page, image);
    assert.deepEqual(tiny.registerShare, []);
    assert.ok(await page.locator('#figures-share-row').isHidden());
    const tinyWant = nativeWalk(path.join(fixtures, 'models/timm_tiny'), image, { patches: [0], layer: 0, head: 0 }).figures;
    const [tinyError] = goldenTensor('figures', 'timm_tiny.astronaut.torch_f32_error');
    assert.ok(maxDiff(tiny.tokenNorms, tinyWant.token_norms) <= Math.max(4 * tinyError, 5e-6 * Math.max(...tinyWant.token_norms)));
    assert.equal(await page.locator('#figures-layer option').count(), 4, 'one choice per block');
    // The patch embedding's first 28 components (16×16×3), as torch.linalg.eigh finds them in float64
    // (tests/figures.rs's bounds), each up to its sign; seven to a row.
    const [k, len] = [28, 16 * 16 * 3];
    const share = goldenTensor('figures', 'timm_tiny.filters.variance');
    const components = goldenTensor('figures', 'timm_tiny.filters.components');
    const filterError = goldenTensor('figures', 'timm_tiny.filters.torch_f32_error');
    assert.ok(maxDiff(tiny.filterVariance, share) <= Math.max(2 * filterError[0], 1e-6), 'shares');
    for (let i = 0; i < k; i++) {
      const [a, b] = [tiny.filters.slice(i * len, (i + 1) * len), components.slice(i * len, (i + 1) * len)];
      const d = Math.min(maxDiff(a, b), maxDiff(a, b.map((v) => -v)));
      assert.ok(d <= Math.max(2 * filterError[1 + i], 1e-4), `component ${i} off by ${d}`);
    }
    assert.deepEqual(await page.evaluate(() => [document.getElementById('figures-filters').width, document.getElementById('figures-filters').height]), [7 * 17 - 1, 4 * 17 - 1]);
    assert.match(await page.textContent('#figures-filters-text'), /^The first 28 components explain \d+% of the variance of the colour filters \(the first alone [\d.]+%\)/);
    assert.deepEqual(errors, []);
    await page.close();
  });
}
