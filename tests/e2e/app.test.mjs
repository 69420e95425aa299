// The built site in a real headless Chromium: classification on the CPU
// backend and on WebGPU, agreement with the native CLI on the same pixels,
// no request leaving the site's origin, and switching checkpoints.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { startSite, open, classify, messageIncludes, native, top5, maxDiff, assertAgrees, assertDeclared, shot, out, fixtures, root } from './harness.mjs';

let site;
before(async () => { site = await startSite('app'); });
after(async () => { await site?.stop(); });

// The CPU backend twice: Chromium validates relaxed SIMD, so the page picks
// the module whose matrix kernel uses its fused multiply-add; `simd=simd128`
// forces the plain SIMD128 module other browsers get.
// Each backend names what runs the model: the fused kernels on the CPU,
// Burn's operations on WebGPU.
// Only the module that runs is fetched: the CPU ones carry no WebGPU backend.
for (const [backend, query, label, executor, module] of [
  ['cpu', '', /CPU \(WebAssembly, relaxed SIMD\)/, 'fused CPU kernels', '/pkg/vitrine_relaxed_bg.wasm'],
  ['cpu-simd128', '&simd=simd128', /CPU \(WebAssembly, SIMD128\)/, 'fused CPU kernels', '/pkg/vitrine_bg.wasm'],
  ['webgpu', '', /WebGPU/, "Burn's operations", '/pkg-webgpu/vitrine_bg.wasm'],
]) {
  test(`classifies on ${backend} and agrees with the native CLI`, { timeout: 600_000 }, async () => {
    const { page, requests, errors } = await open(site, `?backend=${backend.split('-')[0]}${query}&model=hf_vit`);
    assert.match(await page.textContent('#backend'), label);
    assert.deepEqual(requests.filter((u) => u.endsWith('.wasm')).map((u) => new URL(u).pathname), [module], 'the one module that runs');
    assert.ok((await page.textContent('#model-info')).includes(`run by ${executor}.`), 'the executor is named');
    const image = path.join(fixtures, 'images/chelsea.png');
    const got = await classify(page, image);
    // What crossed the boundary is what vitrine.d.ts declares.
    assertDeclared(await page.evaluate(() => Object.keys(window.vitrineLast)), 'Prediction');
    assertDeclared(await page.evaluate(() => Object.keys(window.vitrineState.info)), 'ModelInfo');
    const want = native(path.join(fixtures, 'models/hf_vit'), image);
    assert.deepEqual(top5(got.probabilities), want.top);
    assertAgrees(got, want, 'hf_vit', 'chelsea', backend);
    await shot(page, `classified-${backend}`);
    assert.deepEqual(requests.filter((u) => !u.startsWith(site.origin)), [], 'no request leaves the origin');
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test('a page without a hardware WebGPU adapter never fetches the WebGPU module', { timeout: 300_000 }, async () => {
  // Headless Chromium's only adapter is SwiftShader's software fallback: the page takes the CPU.
  const { page, requests, errors } = await open(site, '');
  assert.equal(await page.evaluate(() => document.body.dataset.backend), 'cpu');
  assert.match(await page.textContent('#backend'), /the only WebGPU adapter is a software fallback/);
  await classify(page, path.join(fixtures, 'images/chelsea.png'));
  assert.deepEqual(requests.filter((u) => u.includes('/pkg-webgpu/')), [], 'nothing of the WebGPU module');
  assert.ok(requests.some((u) => u.endsWith('/pkg/vitrine_relaxed_bg.wasm')));
  assert.deepEqual(errors, []);
  await page.close();
});

test('a host that serves .wasm with another type: the page cannot compile it, the worker fetches it itself, and the page classifies', { timeout: 300_000 }, async () => {
  // The page compiles the module as it downloads (backend.js), which needs
  // application/wasm; so does the worker's own streaming compile, after
  // which wasm-bindgen's glue compiles the bytes whole.
  const context = await site.browser.newContext();
  const served = [];
  await context.route('**/*.wasm', async (route) => {
    served.push(new URL(route.request().url()).pathname);
    const response = await route.fetch();
    await route.fulfill({ response, headers: { ...response.headers(), 'content-type': 'application/octet-stream' } });
  });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${site.origin}/?backend=cpu`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
  const got = await classify(page, path.join(fixtures, 'images/chelsea.png'));
  assert.equal(got.probabilities.length, 10, 'the default model answered');
  assert.deepEqual(served, ['/pkg/vitrine_relaxed_bg.wasm', '/pkg/vitrine_relaxed_bg.wasm'], 'the page tried, then the worker');
  assert.deepEqual(errors, []);
  await context.close();
});

test('each wasm module the site ships stays within 4 MB gzipped', () => {
  for (const file of ['pkg/vitrine_bg.wasm', 'pkg/vitrine_relaxed_bg.wasm', 'pkg-webgpu/vitrine_bg.wasm']) {
    const bytes = zlib.gzipSync(fs.readFileSync(path.join(root, 'dist', file)), { level: 9 }).length;
    console.log(`${file}: ${bytes} bytes gzip -9`);
    assert.ok(bytes <= 4e6, `${file} is ${bytes} bytes gzipped, over 4 MB`);
  }
});

test('a DINO backbone (transformers ViTModel, no classifier) shows its maps and says it has no classes', { timeout: 600_000 }, async () => {
  const { page, errors } = await open(site, '?backend=cpu&model=hf_dino');
  const image = path.join(fixtures, 'images/coffee.png');
  const got = await classify(page, image);
  const want = native(path.join(fixtures, 'models/hf_dino'), image);
  assert.equal(got.probabilities.length, 0, 'no classes');
  assert.equal(got.logits.length, 384, 'the class token\'s features');
  assertAgrees(got, want, 'hf_dino', 'coffee', 'cpu');
  assert.match(await page.textContent('#knows'), /hf_dino has no classifier: it is a backbone/);
  assert.equal(await page.locator('#top li').count(), 0);
  assert.ok(await page.locator('#heads button').count() >= 6 + 2, 'one map per head, the mean and the rollout');
  await shot(page, 'dino-backbone');
  assert.deepEqual(errors, []);
  await page.close();
});

test('DINOv2 with registers and distilled DeiT: maps over the patches as the CLI gives them, the extra tokens named and in the walk-through', { timeout: 600_000 }, async () => {
  for (const [model, stem, prefix, note, token] of [
    ['timm_reg4', 'astronaut', 5, /4 register tokens take part in attention too .*\(Darcet et al\. 2024/, /register tokens/],
    ['timm_deit_dist', 'chelsea', 2, /The distillation token \(DeiT\)/, /distillation token/],
  ]) {
    const { page, errors } = await open(site, `?backend=cpu&model=${model}`);
    const image = path.join(fixtures, `images/${stem}.png`);
    const got = await classify(page, image);
    const want = native(path.join(fixtures, 'models', model), image);
    assertAgrees(got, want, model, stem, 'cpu');
    if (want.probabilities.length) assert.deepEqual(top5(got.probabilities), want.top, `${model}: top-5`);
    assert.match(await page.textContent('#map-note'), note);
    await page.click('#learn-open');
    await page.waitForFunction(() => window.vitrineWalk?.prefixTokens, null, { timeout: 300_000 });
    const walk = await page.evaluate(() => ({ prefix: window.vitrineWalk.prefixTokens.length, attention: window.vitrineWalk.attention.length }));
    const d = 192;
    const t = prefix + 256 - (model === 'timm_deit_dist' ? 60 : 0); // 16×16 patches (reg4, patch 14 at 224) or 14×14 (DeiT, patch 16)
    assert.deepEqual(walk, { prefix: prefix * d, attention: t * t }, `${model}: the prefix tokens and the full ${t}×${t} matrix`);
    const steps = await page.evaluate(() => [...document.querySelectorAll('#learn-steps .step p')].map((p) => p.textContent));
    assert.match(steps[3], token);
    assert.match(steps[5], new RegExp(`the first ${prefix} rows and columns are class, `));
    assert.ok(await page.locator('.shares tr').count() === prefix + 1, 'each token\'s share of the class token\'s attention');
    await shot(page, `${model}-walkthrough`);
    assert.deepEqual(errors, []);
    await page.close();
  }
});

test('another input size: position embeddings interpolated in the page as in the CLI, and back', { timeout: 600_000 }, async () => {
  const { page, errors } = await open(site, '?backend=cpu&model=hf_vit');
  const image = path.join(fixtures, 'images/chelsea.png');
  await classify(page, image);
  const options = await page.$$eval('#resolution option', (o) => o.map((x) => x.value));
  assert.ok(options.includes('128') && options.includes('96'), options.join(' '));
  await page.selectOption('#resolution', '128');
  await page.waitForFunction(() => document.getElementById('model-info').textContent.includes('128×128×3 input → 64 patches'));
  // The image shown is answered again at the new size.
  await page.waitForFunction(() => window.vitrineLast?.cls.length === 3 * 4 * 64);
  const got = await page.evaluate(() => ({
    logits: Array.from(window.vitrineLast.logits), cls: Array.from(window.vitrineLast.cls), rollout: Array.from(window.vitrineLast.rollout),
  }));
  const want = native(path.join(fixtures, 'models/hf_vit'), image, ['--image-size', '128']);
  // Held to the bounds of the 128 px golden (PyTorch's own float32 error there).
  assertAgrees(got, want, 'resized', 'hf_vit.128.chelsea', 'cpu at 128 px');
  await page.selectOption('#resolution', '96');
  await page.waitForFunction(() => document.getElementById('model-info').textContent.includes('96×96×3 input → 36 patches'));
  assert.deepEqual(errors, []);
  await page.close();
});

test('a dropped checkpoint replaces the model; a broken one is refused and the old one kept', { timeout: 600_000 }, async () => {
  const { page } = await open(site, '?backend=cpu&model=hf_vit');
  const d96 = path.join(fixtures, 'models/timm_d96');
  await page.setInputFiles('#file', [path.join(d96, 'model.safetensors'), path.join(d96, 'config.json')]);
  // Named as its config names it (timm's architecture), not by its file.
  await page.waitForFunction(() => document.body.dataset.model === 'vit_small_patch16_224');
  assert.match(await page.textContent('#model-info'), /^Model “vit_small_patch16_224”/);
  const got = await classify(page, path.join(fixtures, 'images/coffee.png'));
  assert.equal(got.probabilities.length, 7, 'the 7-class timm_d96 model now answers');

  const broken = path.join(out, 'broken.safetensors');
  fs.writeFileSync(broken, fs.readFileSync(path.join(d96, 'model.safetensors')).subarray(0, 5000));
  await page.setInputFiles('#file', [broken]);
  await messageIncludes(page, 'Could not load');
  assert.match(await page.textContent('#message'), /broken\.safetensors.*truncated safetensors file.*previous model is still in use/);
  const again = await classify(page, path.join(fixtures, 'images/chelsea.png'));
  assert.equal(again.probabilities.length, 7);
  await page.close();
});

test('PyTorch files dropped on the page load as in the CLI; a hostile pickle is refused, nothing runs, the old model stays', { timeout: 600_000 }, async () => {
  const { page, errors } = await open(site, '?backend=cpu&model=timm_d96');
  const deit = path.join(fixtures, 'torch/hf_deit');
  await page.setInputFiles('#file', fs.readdirSync(deit).map((f) => path.join(deit, f)));
  await page.waitForFunction(() => document.body.dataset.model === 'DeiTForImageClassificationWithTeacher');
  const image = path.join(fixtures, 'images/coffee.png');
  const got = await classify(page, image);
  const want = native(deit, image);
  assertAgrees(got, want, 'hf_deit', 'coffee', 'pytorch_model.bin dropped');
  assert.deepEqual(top5(got.probabilities), want.top);

  // The legacy format (before PyTorch 1.6) dropped alone, its shapes inferred.
  assert.equal(await page.locator('#weights-key-row').isHidden(), true, 'a bare state dict offers no choice');
  const legacy = path.join(fixtures, 'torch/timm_d96_legacy.pth');
  await page.setInputFiles('#file', [legacy]);
  await page.waitForFunction(() => document.body.dataset.model === 'timm_d96_legacy.pth');
  const d96 = await classify(page, image);
  assertAgrees(d96, native(legacy, image), 'timm_d96', 'coffee', 'legacy .pth dropped');

  // DINO's training checkpoint: the teacher by default, said so; the student on request.
  const dino = path.join(fixtures, 'torch/dino_checkpoint.pth');
  const camera = path.join(fixtures, 'images/camera.png');
  await page.setInputFiles('#file', [dino]);
  await page.waitForFunction(() => document.body.dataset.model === 'dino_checkpoint.pth');
  // What the loader chose is a note, as a sentence, not an error.
  assert.match(await page.textContent('#note'), /The weights are `dino_checkpoint\.pth`'s `teacher` \(it also holds `student`\)[^.]*\./);
  assert.equal(await page.textContent('#message'), '');
  assert.equal(await page.locator('#weights-key-row').isVisible(), true);
  assert.deepEqual(await page.$$eval('#weights-key option', (o) => o.map((x) => [x.value, x.selected])), [['teacher', true], ['student', false]]);
  const teacher = await classify(page, camera);
  assertAgrees(teacher, native(dino, camera), 'timm_gray', 'camera', 'DINO teacher');
  await page.selectOption('#weights-key', 'student');
  await page.waitForFunction(() => document.getElementById('weights-key').value === 'student' && !document.getElementById('weights-key').disabled);
  const student = await classify(page, camera);
  // The student's weights (the teacher's + 0.25) have no reference of their
  // own to bound the float error: what is checked is that it was the student
  // that loaded, its answer the CLI's and far from the teacher's.
  const wantStudent = native(dino, camera, ['--checkpoint-key', 'student']);
  assert.deepEqual(top5(student.probabilities), wantStudent.top);
  assert.notDeepEqual(wantStudent.top, top5(teacher.probabilities));
  assert.ok(maxDiff(student.logits, wantStudent.logits) * 100 < maxDiff(student.logits, teacher.logits), 'the student, not the teacher');

  await page.setInputFiles('#file', [path.join(fixtures, 'torch/evil.pth')]);
  await messageIncludes(page, 'Could not load');
  assert.match(await page.textContent('#message'), /evil\.pth.*asks to call `posix\.system`: refused, vitrine only reads tensors.*previous model is still in use/);
  assert.equal(fs.existsSync('/tmp/vitrine-evil-pickle-ran'), false, 'the pickle\'s command never ran');
  assert.ok(maxDiff((await classify(page, camera)).logits, student.logits) === 0, 'the student still answers');
  assert.deepEqual(errors, []);
  await page.close();
});

test('checkpoints by ?model= and by drop, in both layouts; hostile labels stay text; a mismatched config is refused', { timeout: 600_000 }, async () => {
  const { page, errors } = await open(site, '?backend=cpu&model=timm_d96');
  assert.equal(await page.evaluate(() => document.body.dataset.model), 'timm_d96');
  assert.equal((await classify(page, path.join(fixtures, 'images/coffee.png'))).probabilities.length, 7);

  const hf = path.join(fixtures, 'models/hf_vit');
  await page.setInputFiles('#file', fs.readdirSync(hf).map((f) => path.join(hf, f)));
  await page.waitForFunction(() => document.body.dataset.model === 'ViTForImageClassification' && document.getElementById('model-info').textContent.includes('5 classes'));
  const image = path.join(fixtures, 'images/chelsea.png');
  const got = await classify(page, image);
  const want = native(hf, image);
  assertAgrees(got, want, 'hf_vit', 'chelsea', 'dropped');

  // Labels are shown as text: markup in them is never parsed.
  const d96 = path.join(fixtures, 'models/timm_d96');
  const hostile = path.join(out, 'hostile');
  fs.mkdirSync(hostile, { recursive: true });
  const config = JSON.parse(fs.readFileSync(path.join(d96, 'config.json')));
  config.label_names = config.label_names.map((_, i) => `<img src=x onerror="window.pwned=${i}"><b>label ${i}</b>`);
  fs.writeFileSync(path.join(hostile, 'config.json'), JSON.stringify(config));
  fs.copyFileSync(path.join(d96, 'model.safetensors'), path.join(hostile, 'model.safetensors'));
  await page.setInputFiles('#file', [path.join(hostile, 'model.safetensors'), path.join(hostile, 'config.json')]);
  await page.waitForFunction(() => document.getElementById('model-info').textContent.includes('7 classes'));
  await classify(page, image);
  assert.match(await page.textContent('#top li:first-child'), /^<img src=x onerror="window\.pwned=\d"><b>label \d<\/b> — /);
  assert.equal(await page.locator('#top img, #top b').count(), 0);
  assert.equal(await page.evaluate(() => window.pwned), undefined);

  // A config that contradicts its tensors is refused with the reason; the previous model stays.
  const mismatched = path.join(out, 'mismatched');
  fs.mkdirSync(mismatched, { recursive: true });
  fs.writeFileSync(path.join(mismatched, 'config.json'), JSON.stringify({ ...config, model_args: { ...config.model_args, embed_dim: 128 } }));
  fs.copyFileSync(path.join(d96, 'model.safetensors'), path.join(mismatched, 'model.safetensors'));
  await page.setInputFiles('#file', [path.join(mismatched, 'model.safetensors'), path.join(mismatched, 'config.json')]);
  const message = await messageIncludes(page, 'Could not load');
  assert.match(message, /shape/);
  assert.match(message, /previous model is still in use/);
  assert.equal((await classify(page, image)).probabilities.length, 7);
  assert.deepEqual(errors, []);
  await page.close();
});


test('a checkpoint whose output is not a number is refused with a message, never "NaN%"', { timeout: 600_000 }, async () => {
  const { page, errors } = await open(site, '?backend=cpu&model=timm_d96');
  // timm_gray (stored as f32) with a head of 3e38s: finite weights whose
  // products overflow float32.
  const gray = path.join(fixtures, 'models/timm_gray');
  const bytes = fs.readFileSync(path.join(gray, 'model.safetensors'));
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString());
  const [start, end] = header['head.weight'].data_offsets.map((o) => 8 + headerLength + o);
  for (let i = start; i < end; i += 4) bytes.writeFloatLE(3e38, i);
  const dir = path.join(out, 'overflowing');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'model.safetensors'), bytes);
  fs.copyFileSync(path.join(gray, 'config.json'), path.join(dir, 'config.json'));
  await page.setInputFiles('#file', [path.join(dir, 'model.safetensors'), path.join(dir, 'config.json')]);
  const message = await messageIncludes(page, 'Could not load');
  assert.match(message, /the model's output is not a number: .* NaN .*previous model is still in use/);
  assert.ok(!(await page.textContent('body')).includes('NaN%'));
  assert.equal((await classify(page, path.join(fixtures, 'images/coffee.png'))).probabilities.length, 7, 'timm_d96 still answers');
  assert.deepEqual(errors, []);
  await page.close();
});

test('the bench page reports latency and memory stays flat over 200 classifications', { timeout: 600_000 }, async () => {
  const page = await site.browser.newPage();
  await page.goto(`${site.origin}/bench.html?backend=cpu&runs=5&memory=200`);
  await page.waitForSelector('body[data-done="true"]', { timeout: 300_000 });
  const report = await page.evaluate(() => window.vitrineBench);
  assert.equal(report.error, undefined);
  assert.equal(report.model, 'fashion-vit');
  for (const k of ['preprocess', 'forward', 'readback', 'total']) assert.ok(report.ms[k].median >= 0 && report.ms[k].p90 >= report.ms[k].median, k);
  assert.ok(report.firstResultMs > 0);
  assert.equal(report.memory.runs, 200);
  assert.ok(report.memory.wasmGrowth < 0.1, `wasm memory grew ${(report.memory.wasmGrowth * 100).toFixed(1)}%`);
  await shot(page, 'bench');
  await page.close();
});

test('when the GPU fails mid-run, the page restarts on the CPU backend and still answers', { timeout: 600_000 }, async () => {
  const page = await site.browser.newPage();
  const workers = [];
  page.on('worker', (w) => workers.push(w));
  await page.goto(`${site.origin}/?backend=webgpu&model=hf_vit`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 300_000 });
  assert.equal(await page.evaluate(() => document.body.dataset.backend), 'webgpu');
  const first = await classify(page, path.join(fixtures, 'images/chelsea.png'));
  // What a lost device does to a read-back: every buffer mapping is refused.
  await workers[0].evaluate(() => {
    GPUBuffer.prototype.mapAsync = () => Promise.reject(new DOMException('the GPU device was lost', 'OperationError'));
  });
  const again = await classify(page, path.join(fixtures, 'images/chelsea.png'));
  assert.equal(await page.evaluate(() => document.body.dataset.backend), 'cpu');
  // A warning, not an error: the classification itself succeeded.
  assert.match(await page.textContent('#warning'), /WebGPU backend failed .* restarted on the CPU backend/);
  assert.equal(await page.textContent('#message'), '');
  assertAgrees(again, first, 'hf_vit', 'chelsea', 'CPU after the GPU failed, vs the GPU');
  await page.close();
});

test('a checkpoint too large for the GPU is refused before loading, with the sizes, and the old model kept', { timeout: 600_000 }, async () => {
  const page = await site.browser.newPage();
  const workers = [];
  page.on('worker', (w) => workers.push(w));
  await page.goto(`${site.origin}/?backend=webgpu&model=hf_vit`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 300_000 });
  assert.equal(await page.evaluate(() => document.body.dataset.backend), 'webgpu');
  // A GPU whose largest buffer holds 64 KB (real ones hold 128 MB or more):
  // the limit is read when a checkpoint is loaded, so hf_vit, loaded already,
  // keeps running, and timm_tiny (a 576 KB patch projection) is refused.
  await workers[0].evaluate(() => {
    const small = { maxStorageBufferBindingSize: 65536, maxBufferSize: 65536 };
    Object.defineProperty(GPUAdapter.prototype, 'limits', { get: () => small });
  });
  const tiny = path.join(fixtures, 'models/timm_tiny');
  await page.setInputFiles('#file', [path.join(tiny, 'model.safetensors'), path.join(tiny, 'config.json')]);
  await messageIncludes(page, 'Could not load');
  assert.match(await page.textContent('#message'),
    /too large for this GPU: tensor `[\w.]+` needs [\d.]+ [KM]B as f32, more than the 64 KB one buffer may hold.*previous model is still in use/);
  await shot(page, 'too-large-for-the-gpu');
  const got = await classify(page, path.join(fixtures, 'images/chelsea.png'));
  const want = native(path.join(fixtures, 'models/hf_vit'), path.join(fixtures, 'images/chelsea.png'));
  assert.deepEqual(top5(got.probabilities), want.top, 'the previous model still answers');
  await page.close();
});

test('without WebGPU the page says so and runs on the CPU backend', { timeout: 600_000 }, async () => {
  // A second Chromium without --enable-unsafe-webgpu: no adapter at all.
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-quic', '--no-first-run'] });
  const page = await browser.newPage();
  await page.goto(`${site.origin}/?model=hf_vit`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
  assert.match(await page.textContent('#backend'), /CPU \(WebAssembly, relaxed SIMD\), because (no WebGPU adapter is available|this browser does not offer WebGPU)/);
  const image = path.join(fixtures, 'images/astronaut.png');
  const got = await classify(page, image);
  const want = native(path.join(fixtures, 'models/hf_vit'), image);
  assert.deepEqual(top5(got.probabilities), want.top);
  assertAgrees(got, want, 'hf_vit', 'astronaut', 'no WebGPU');
  await browser.close();
});
