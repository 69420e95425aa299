// "Why this class" in the page: the relevance maps of the chosen class,
// computed in the worker by a backward pass, on both CPU modules and on
// WebGPU; the same as the native CLI's on the same pixels; another class
// gives other maps, and asking again leaves no state behind; memory stays
// flat over 200 of them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { startSite, open, classify, shot, fixtures, bin, goldenTensor, maxDiff, assertDeclared } from './harness.mjs';

let site;
before(async () => { site = await startSite('relevance'); });
after(async () => { await site?.stop(); });

/** The native CLI's relevance maps for `image` and `cls`. */
function nativeWhy(model, image, cls) {
  const args = ['classify', image, '--model', model, '--json', '--explain', 'chefer', '--class', String(cls)];
  const r = JSON.parse(execFileSync(bin, args).toString()).relevance;
  return { class: r.class, chefer: r.chefer, gradRollout: r.grad_rollout, heads: r.heads.flat(2) };
}

/**
 * How far the page may be from the CLI: tests/relevance.rs holds native
 * vitrine within twice PyTorch float32's error of the float64 reference,
 * and at least 3e-5 of the map's largest value; the page is another float32
 * implementation held to the same, so the two may differ by twice it.
 */
function whyBound(model, stem, rank, want) {
  const err = goldenTensor('relevance', `${model}.${stem}.${rank}.torch_f32_error`);
  const largest = (v) => v.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const one = (e, v) => 2 * Math.max(2 * e, 3e-5 * largest(v));
  return { gradRollout: one(err[0], want.gradRollout), chefer: one(err[1], want.chefer), heads: one(err[2], want.heads) };
}

const maps = async (page) => {
  assertDeclared(await page.evaluate(() => Object.keys(window.vitrineWhy)), 'RelevanceMaps');
  return page.evaluate(() => {
  const r = window.vitrineWhy;
  return { class: r.class, chefer: Array.from(r.chefer), gradRollout: Array.from(r.gradRollout), heads: Array.from(r.heads) };
  });
};

async function explained(page, k) {
  const id = await page.evaluate(() => document.body.dataset.classified);
  await page.waitForFunction((want) => document.body.dataset.explained === want, `${id}:${k}`, { timeout: 300_000 });
}

function assertClose(got, want, tol, label) {
  assert.equal(got.class, want.class, `${label}: the class`);
  for (const key of ['chefer', 'gradRollout', 'heads']) {
    const d = maxDiff(got[key], want[key]);
    console.log(`${label}: ${key} |page - CLI| ${d.toExponential(2)} (allowed ${tol[key].toExponential(1)})`);
    assert.ok(d <= tol[key], `${label}: ${key} differs from the CLI by ${d}, more than ${tol[key]}`);
  }
}

for (const [backend, query] of [['cpu', ''], ['cpu-simd128', '&simd=simd128'], ['webgpu', '']]) {
  test(`why this class on ${backend}: the CLI's maps, for the class chosen`, { timeout: 900_000 }, async () => {
    const model = 'timm_d96';
    const { page, requests, errors } = await open(site, `?backend=${backend.split('-')[0]}${query}&model=${model}`);
    const image = path.join(fixtures, 'images/chelsea.png');
    const got = await classify(page, image);
    const order = Array.from(got.probabilities.keys()).sort((a, b) => got.probabilities[b] - got.probabilities[a]);
    const dir = path.join(fixtures, 'models', model);

    // Switching to "why this class" explains the top class.
    await page.check('input[name="show"][value="relevance"]');
    await explained(page, order[0]);
    const top = await maps(page);
    const wantTop = nativeWhy(dir, image, order[0]);
    assertClose(top, wantTop, whyBound(model, 'chelsea', 0, wantTop), `${model} ${backend}, class ${order[0]}`);
    assert.match(await page.textContent('#caption'), /^Why “pullover” \(\d+\.\d%\), by Chefer et al\.'s relevance/);
    assert.equal(await page.locator('#top .class-pick[aria-pressed="true"]').count(), 1);
    assert.equal(await page.locator('#heads button').count(), 2 + 4, 'the two maps and one per head');
    // The threshold view keeps the patches holding a share of the relevance.
    await page.check('#threshold');
    assert.match(await page.textContent('#caption'), /Only the patches holding 60% of it are left uncovered\.$/);
    assert.equal(await page.textContent('#mass-what'), 'of the relevance');
    await page.uncheck('#threshold');
    await shot(page, `why-${backend}`);
    // The patch pointer works as in attention mode: the pointed patch's
    // attention, then back to the class's map.
    await page.locator('#stage').scrollIntoViewIfNeeded();
    const box = await page.locator('#stage').boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.waitForFunction(() => /where the patch at row \d+, column \d+ looks/.test(document.getElementById('caption').textContent));
    await page.mouse.move(box.x + box.width + 40, box.y - 40);
    await page.waitForFunction(() => document.getElementById('caption').textContent.startsWith('Why “pullover”'));

    // Another class: other maps, the CLI's for that class.
    await page.locator('#top .class-pick').nth(1).click();
    await explained(page, order[1]);
    const second = await maps(page);
    const wantSecond = nativeWhy(dir, image, order[1]);
    assertClose(second, wantSecond, whyBound(model, 'chelsea', 1, wantSecond), `${model} ${backend}, class ${order[1]}`);
    assert.ok(maxDiff(second.chefer, top.chefer) > 0.05 * Math.max(...top.chefer), 'two classes, two maps');

    // The top class again, computed afresh: the same maps, bit for bit.
    const again = await page.evaluate(async (k) => {
      const { relevance: r } = await window.vitrineRelevance(k);
      return { class: r.class, chefer: Array.from(r.chefer), gradRollout: Array.from(r.gradRollout), heads: Array.from(r.heads) };
    }, order[0]);
    assert.deepEqual(again, top, 'nothing of the second class stays behind');

    // In "why this class" a classification keeps its forward pass, and the
    // map that follows runs only the backward pass: still the CLI's maps.
    await classify(page, image);
    await explained(page, order[0]);
    const kept = await maps(page);
    assertClose(kept, wantTop, whyBound(model, 'chelsea', 0, wantTop), `${model} ${backend}, class ${order[0]}, forward pass kept`);

    // The map menu and the grid switch back to attention.
    await page.check('input[name="show"][value="attention"]');
    assert.equal(await page.inputValue('#head'), 'mean');
    assert.match(await page.textContent('#caption'), /where the class token looks/);
    assert.equal(await page.textContent('#mass-what'), 'of the attention');
    assert.deepEqual(requests.filter((u) => !u.startsWith(site.origin)), [], 'no request leaves the origin');
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test('the default model: 200 relevance maps keep memory flat; a backbone offers none', { timeout: 900_000 }, async () => {
  const { page, errors } = await open(site, '?backend=cpu');
  await classify(page, path.join(fixtures, 'images/coffee.png'));
  const grow = await page.evaluate(async () => {
    for (let i = 0; i < 10; i++) await window.vitrineRelevance(i); // the allocator's first growth
    const first = (await window.vitrineMemory()).wasmBytes;
    for (let i = 0; i < 200; i++) await window.vitrineRelevance(i % 10);
    return (await window.vitrineMemory()).wasmBytes - first;
  });
  console.log(`wasm memory growth over 200 relevance maps: ${grow} bytes`);
  assert.equal(grow, 0, 'wasm memory grew');
  assert.deepEqual(errors, []);
  await page.close();

  const dino = await open(site, '?backend=cpu&model=hf_dino');
  await classify(dino.page, path.join(fixtures, 'images/coffee.png'));
  assert.ok(await dino.page.isDisabled('input[name="show"][value="relevance"]'));
  assert.equal(await dino.page.locator('#top .class-pick').count(), 0);
  await dino.page.close();
});
