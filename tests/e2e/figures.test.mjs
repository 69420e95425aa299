// The Figures panel in headless Chromium: token norms, the registers' share
// of the class token's attention and position similarity, for a model with
// registers and one without, on the CPU and WebGPU backends, agreeing with
// `vitrine walkthrough` (the native engine, itself held to PyTorch by
// tests/figures.rs) on the same image file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
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

/** The panel's figures for `image`, once the panel is open (those of the image shown, however soon they come). */
async function figuresOf(page, image) {
  await classify(page, image);
  if (!(await page.evaluate(() => document.getElementById('figures').open))) await page.click('#figures summary');
  await page.waitForFunction(() => document.body.dataset.figures === document.body.dataset.classified, null, { timeout: 300_000 });
  return page.evaluate(() => {
    const f = window.vitrineFigures;
    return {
      keys: Object.keys(f), tokenNorms: Array.from(f.tokenNorms), registerShare: Array.from(f.registerShare),
      positionSimilarity: Array.from(f.positionSimilarity), filters: Array.from(f.filters), filterVariance: Array.from(f.filterVariance),
    };
  });
}

/**
 * Sets the PCA figure's controls and holds what it draws to the native
 * engine's (`want`: `vitrine walkthrough --pca-with`, itself held to PyTorch
 * float64 by tests/figures.rs) on the same files: the same foreground, the
 * rest within twice the Rust test's bounds, with PyTorch float32's largest
 * error on this model's PCA references (make_figures.py), each colour
 * channel up to its sign.
 */
async function checkPca(page, images, foreground, want, key) {
  await page.selectOption('#pca-images', String(images));
  await page.setChecked('#pca-foreground', foreground);
  // Drawn for these controls and the image shown (asked again when either changes).
  await page.waitForFunction((w) => document.body.dataset.pca === `${w} ${document.body.dataset.classified}`,
    `${images} ${foreground}`, { timeout: 300_000 });
  const got = await page.evaluate(() => {
    const p = window.vitrinePca;
    const flat = (k) => p.images.flatMap((im) => Array.from(im[k]));
    return { keys: Object.keys(p), first: flat('first'), foreground: flat('foreground'), rgb: flat('rgb'), shares: [...p.variance, p.firstVariance] };
  });
  assertDeclared(got.keys, 'FeaturePca');
  const [firstError, rgbError, shareError] = ['astronaut', 'chelsea', 'astronaut+chelsea', 'all']
    .map((s) => goldenTensor('figures', `timm_tiny.pca.${s}.torch_f32_error`))
    .reduce((a, b) => a.map((x, i) => Math.max(x, b[i])));
  const first = want.first.flat();
  // The split is the same on every float32 engine only when no patch lies
  // near it: a hundred times an engine's bound (make_figures.py asks the same).
  const margin = Math.min(...first.map((v) => Math.abs(v - 0.5)));
  assert.ok(!foreground || margin > 100 * 2 * firstError, `${key}: a patch lies ${margin} from the threshold: pick other images`);
  assert.deepEqual(got.foreground, want.foreground.flat(), `${key}: foreground`);
  assert.ok(maxDiff(got.first, first) <= Math.max(4 * firstError, 2e-4), `${key}: first off by ${maxDiff(got.first, first)}`);
  const rgb = want.rgb.flat();
  for (let c = 0; c < 3; c++) {
    const a = got.rgb.filter((_, i) => i % 3 === c);
    const b = rgb.filter((_, i) => i % 3 === c);
    const d = Math.min(maxDiff(a, b), maxDiff(a, b.map((v, i) => (got.foreground[i] ? 1 - v : 0))));
    assert.ok(d <= Math.max(4 * rgbError, 2e-4), `${key}: channel ${c} off by ${d}`);
  }
  assert.ok(maxDiff(got.shares, [...want.variance, want.first_variance]) <= Math.max(4 * shareError, 2e-4), `${key}: shares`);
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

    // DINOv2's figure: the patch features' PCA over the image alone, over the last two images
    // together, and without the foreground step, as PyTorch float64 finds it (tests/figures.rs).
    // (astronaut and coffee: no patch near the foreground threshold, alone or together.)
    const coffee = path.join(fixtures, 'images/coffee.png');
    await classify(page, coffee);
    const tinyModel = path.join(fixtures, 'models/timm_tiny');
    const alone = nativeWalk(tinyModel, coffee, { patches: [0], layer: 0, head: 0 }).figures;
    const both = nativeWalk(tinyModel, coffee, { patches: [0], layer: 0, head: 0, pcaWith: [image] }).figures;
    await checkPca(page, 1, true, alone.feature_pca, 'coffee');
    await checkPca(page, 2, true, both.feature_pca, 'astronaut, then coffee');
    assert.equal(await page.locator('#pca-maps canvas').count(), 4, 'each image beside its colours');
    const kept = both.feature_pca.foreground.flat().reduce((a, b) => a + b, 0);
    assert.match(await page.textContent('#pca-text'), new RegExp(`^Fitted over the last 2 images\\. The first component of all 392 patches' features \\(\\d+% of their variance\\) splits them: ${kept} on the side away from the border are taken as foreground`));
    await checkPca(page, 2, false, both.feature_pca_all, 'astronaut and coffee, no foreground step');
    assert.match(await page.textContent('#pca-text'), /Every one of the 392 patches is used \(no foreground step\)\. The foreground's next three principal components are red, green and blue; they explain \d+%, \d+% and \d+%/);
    await checkPca(page, 4, false, both.feature_pca_all, 'only two classified');

    // Any figure downloads with its caption as it reads (the controls' values), the model and what it says.
    const pcaFigure = page.locator('figure', { has: page.locator('#pca-maps') });
    const [svg] = await Promise.all([page.waitForEvent('download'), pcaFigure.getByRole('button', { name: 'Download this figure as SVG' }).click()]);
    const text = fs.readFileSync(await svg.path(), 'utf8');
    const title = text.match(/<title>([^<]*)<\/title>/)[1].replaceAll('&#39;', "'");
    assert.match(title, /^What the features group together: the patch features' principal components as colour over the last 4 images: timm_tiny on your image\. Fitted over the last 2 images \(only 2 classified/);
    assert.equal((text.match(/<image /g) ?? []).length, 1, 'the four canvases in one picture');
    await page.selectOption('#export-scale', '4');
    const [png] = await Promise.all([page.waitForEvent('download'),
      page.locator('figure', { has: page.locator('#figures-similarity') }).getByRole('button', { name: 'Download this figure as PNG' }).click()]);
    assert.match(png.suggestedFilename(), /^vitrine-timm-tiny-how-alike-the-patches-position\.png$/);
    const shown = await page.evaluate(() => document.getElementById('figures-similarity').getBoundingClientRect().width);
    assert.equal(fs.readFileSync(await png.path()).readUInt32BE(16), Math.round(4 * shown) + 20, 'four times the size shown, and a margin');
    assert.match(await page.textContent('#pca-text'), /^Fitted over the last 2 images \(only 2 classified with this model so far\)/);
    assert.deepEqual(errors, []);
    await page.close();
  });
}
