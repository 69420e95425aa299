// A checkpoint of a real model's size in the page: ViT-S/16 (22 M weights,
// 44 MB in f16), written with random weights by `vitrine export --arch`, as
// no download is allowed here. Its load reports every stage, it answers as
// the native CLI does, and memory stays flat over 20 classifications; with
// its f16 matrices kept in f16 it answers the same, bit for bit, with half
// the weights' memory.
// ViT-B and ViT-L stay in the bench (./build.sh bench-web), not here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startSite, open, classify, native, assertWithin, floorAgreement, top5, bin, out, fixtures } from './harness.mjs';
import { SHOW_AFTER_MS } from '../../www/progress.js';

let site;
const model = path.join(out, 'vit_small_patch16_224');
let widened; // the first test's answer and memory, its matrices widened to f32
before(async () => {
  fs.rmSync(model, { recursive: true, force: true });
  execFileSync(bin, ['export', '--arch', 'vit_small_patch16_224', '--out', model], { stdio: 'inherit' });
  site = await startSite('big');
});
after(async () => { await site?.stop(); });

test('ViT-S/16 dropped on the page: the load says each stage, the answer agrees with the CLI, memory stays flat', { timeout: 900_000 }, async () => {
  const { page, errors } = await open(site, '?backend=cpu');
  // Every text the load status shows, as it shows it.
  await page.evaluate(() => {
    window.statusSeen = [];
    new MutationObserver(() => window.statusSeen.push(document.getElementById('load-status').textContent))
      .observe(document.getElementById('load-status'), { childList: true, characterData: true, subtree: true });
  });
  await page.setInputFiles('#file', ['model.safetensors', 'config.json'].map((f) => path.join(model, f)));
  await page.waitForFunction(() => document.body.dataset.model === 'vit_small_patch16_224', null, { timeout: 300_000 });
  await page.waitForFunction(() => document.body.dataset.loadMs !== undefined);
  const loadMs = Number(await page.evaluate(() => document.body.dataset.loadMs)); // as the page timed it
  const stages = await page.evaluate(() => document.body.dataset.loadStages);
  assert.equal(stages, 'reading converting building warm-up', 'every stage reported, in order');
  const seen = (await page.evaluate(() => window.statusSeen)).filter(Boolean);
  console.log(`ViT-S/16 loaded in ${loadMs} ms; the status said: ${[...new Set(seen.map((t) => t.split(':')[0]))].join(' | ')}`);
  // Past half a second the status line says what is happening (a margin for the timer).
  if (loadMs > SHOW_AFTER_MS + 250) {
    assert.ok(seen.some((t) => /^(Reading model\.safetensors|Checking the weights): [\d.]+ \/ 44 MB$|^Laying out the weights: [\d.]+ \/ 22 M weights$|^Warming up/.test(t)),
      `a ${loadMs} ms load said what it was doing: ${JSON.stringify(seen)}`);
  }
  assert.equal(await page.textContent('#load-status'), '', 'the status clears once loaded');
  assert.match(await page.textContent('#model-info'), /22\.\d M parameters \(8\d MB in memory\)/);

  const image = path.join(fixtures, 'images/chelsea.png');
  const got = await classify(page, image);
  const want = native(model, image);
  // No PyTorch reference exists for random weights: the golden floors bound
  // the page against the CLI (tests/e2e/harness.mjs, `agreement`).
  const tol = floorAgreement();
  assertWithin(got, want, tol, 'ViT-S/16 chelsea');
  // Random weights give close logits: the top class must agree only where
  // its lead is larger than what the two may differ by.
  const sorted = [...want.logits].sort((a, b) => b - a);
  if (sorted[0] - sorted[1] > 2 * tol.logits) assert.equal(top5(got.probabilities)[0], want.top[0]);

  const before = await page.evaluate(() => window.vitrineMemory());
  widened = { got, memory: before };
  for (let i = 0; i < 20; i++) await classify(page, path.join(fixtures, i % 2 ? 'images/coffee.png' : 'images/chelsea.png'));
  const afterRuns = await page.evaluate(() => window.vitrineMemory());
  const growth = afterRuns.wasmBytes / before.wasmBytes - 1;
  console.log(`ViT-S/16 wasm memory ${(before.wasmBytes / 1e6).toFixed(0)} MB → ${(afterRuns.wasmBytes / 1e6).toFixed(0)} MB over 20 classifications`);
  assert.ok(growth < 0.1, `wasm memory grew ${(growth * 100).toFixed(1)}% over 20 classifications`);
  assert.deepEqual(errors, []);
  await page.close();
});

test('ViT-S/16 with its f16 matrices kept in f16 (?f16=keep): the same answer bit for bit, its weights in half the memory', { timeout: 900_000 }, async () => {
  assert.ok(widened, 'the widened run came first');
  const { page, errors } = await open(site, '?backend=cpu&f16=keep');
  await page.setInputFiles('#file', ['model.safetensors', 'config.json'].map((f) => path.join(model, f)));
  await page.waitForFunction(() => document.body.dataset.model === 'vit_small_patch16_224', null, { timeout: 300_000 });
  assert.match(await page.textContent('#model-info'), /22\.\d M parameters \(4\d MB in memory, matrices in f16\)/);
  const got = await classify(page, path.join(fixtures, 'images/chelsea.png'));
  // The kernel widens each half exactly as it packs it: the same sums.
  for (const key of ['logits', 'probabilities', 'cls', 'rollout']) assert.deepEqual(got[key], widened.got[key], key);
  // The weights take half the memory (the model line above); wasm memory
  // only grows, and its high-water mark is the file beside its tensors,
  // the same either way, so it shows less of the difference.
  const memory = await page.evaluate(() => window.vitrineMemory());
  console.log(`ViT-S/16 wasm memory after loading and one classification: ${(memory.wasmBytes / 1e6).toFixed(0)} MB with f16 matrices, ${(widened.memory.wasmBytes / 1e6).toFixed(0)} MB widened`);
  assert.ok(memory.wasmBytes <= widened.memory.wasmBytes, `${memory.wasmBytes} vs ${widened.memory.wasmBytes}`);
  assert.deepEqual(errors, []);
  await page.close();
});
