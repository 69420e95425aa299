// Every way an image reaches the page (picker, drop, paste, gallery, camera),
// every awkward image users meet (tests/fixtures/make_inputs.py: truncated,
// TIFF, animated, one pixel, huge, 16-bit, transparent, EXIF-rotated), and
// the attention controls, on the default model in headless Chromium on the
// CPU backend.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startSite, open, classify, classifiedId, nextResult, messageIncludes, maxDiff, shot, out, fixtures, root, defaultModel } from './harness.mjs';

const inputs = path.join(fixtures, 'inputs');
const sample = path.join(root, 'www/samples/fmnist-0.png'); // an ankle boot
let site;
before(async () => { site = await startSite('inputs'); });
after(async () => { await site?.stop(); });

/** Hands `file` to the page as a drop (or a paste) of a real File, built in the page from its bytes. */
async function deliver(page, file, how) {
  const before = await classifiedId(page);
  const bytes = [...fs.readFileSync(file)];
  await page.evaluate(([bytes, name, how]) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(bytes)], name, { type: 'image/png' }));
    if (how === 'drop') document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    else document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true }));
  }, [bytes, path.basename(file), how]);
  return nextResult(page, before);
}

test('the default model loads and every input path classifies', { timeout: 600_000 }, async () => {
  const { page, context, requests, errors } = await open(site, '?backend=cpu');
  assert.equal(await page.evaluate(() => document.body.dataset.model), 'fashion-vit');
  assert.match(await page.textContent('#model-info'), /28×28×1 input → 49 patches of 4×4/);

  const picked = await classify(page, sample);
  // What the model can answer stands beside its predictions, from its own labels.
  assert.match(await page.textContent('#knows'), /^fashion-vit knows 10 classes \(T-shirt\/top, Trouser, Pullover, …\); anything else gets a guess among them\.$/);
  const dropped = await deliver(page, sample, 'drop');
  const pasted = await deliver(page, sample, 'paste');
  assert.ok(maxDiff(picked.probabilities, dropped.probabilities) < 1e-6, 'drop = picker');
  assert.ok(maxDiff(picked.probabilities, pasted.probabilities) < 1e-6, 'paste = picker');

  // The gallery's Fashion-MNIST images carry their true label; the model gets them right.
  const samples = JSON.parse(fs.readFileSync(path.join(root, 'www/samples/samples.json'))).samples;
  let right = 0;
  for (const [i, s] of samples.entries()) {
    if (s.kind !== 'fashion-mnist') continue;
    const before = await classifiedId(page);
    await page.click(`#gallery li:nth-child(${i + 1}) button`);
    await nextResult(page, before);
    assert.equal(await page.textContent('#truth'), `True label: ${s.truth}`);
    if ((await page.textContent('#top li:first-child')).startsWith(`${s.truth} —`)) right++;
  }
  assert.ok(right >= 8, `the default model names at least 8 of the 10 gallery items (got ${right})`);
  await shot(page, 'gallery-item');

  // The camera (Chromium's synthetic one here).
  await context.grantPermissions(['camera'], { origin: site.origin });
  await page.click('#camera-open');
  await page.waitForFunction(() => document.getElementById('video').videoWidth > 0, null, { timeout: 60_000 });
  const before = await classifiedId(page);
  await page.click('#capture');
  await nextResult(page, before);
  await page.click('#camera-close');
  assert.ok(await page.evaluate(() => document.getElementById('camera').hidden));

  assert.deepEqual(requests.filter((u) => !u.startsWith(site.origin)), [], 'no request leaves the origin');
  assert.deepEqual(errors, []);
  await context.close();
});

test('awkward images get a clear message or a correct result, and the page keeps working', { timeout: 900_000 }, async () => {
  const { page, context, errors } = await open(site, '?backend=cpu');
  const notImage = path.join(out, 'not-an-image.png');
  fs.writeFileSync(notImage, 'this is text, not a PNG');
  const refused = [
    [notImage, /“not-an-image\.png” is not an image this browser can decode/],
    [path.join(inputs, 'truncated.jpg'), /“truncated\.jpg” is truncated or corrupt: its JPEG data stops before the end-of-image marker/],
    [path.join(inputs, 'photo.tif'), /“photo\.tif” is a TIFF image, which browsers cannot decode/],
  ];
  for (const [file, pattern] of refused) {
    await page.setInputFiles('#file', file);
    assert.match(await messageIncludes(page, path.basename(file)), pattern);
    await classify(page, sample); // still working
    assert.equal(await page.textContent('#message'), '', 'the message goes once an image works');
  }

  // Accepted, with a note where something was changed.
  const one = await classify(page, path.join(inputs, 'one-pixel.png'));
  assert.equal(one.probabilities.length, 10);
  assert.match(await page.textContent('#note'), /only 1×1 pixels/);

  await classify(page, path.join(inputs, 'huge-12000x9000.png'));
  assert.match(await page.textContent('#note'), /12000×9000 pixels; it was scaled to 1024×768/);
  await shot(page, 'huge-image');

  // An animated GIF: its first frame.
  const gif = await classify(page, path.join(inputs, 'animated.gif'));
  const frame = await classify(page, path.join(inputs, 'animated-first-frame.png'));
  assert.ok(maxDiff(gif.probabilities, frame.probabilities) < 1e-6, 'the GIF is classified by its first frame');

  // 8-bit and 16-bit grayscale with the same values (v and 257·v) give the
  // same answer: both decode to the same 8-bit pixels, so the same sums run.
  const g8 = await classify(page, path.join(inputs, 'gray8.png'));
  const g16 = await classify(page, path.join(inputs, 'gray16.png'));
  assert.ok(maxDiff(g8.probabilities, g16.probabilities) < 1e-6, '16-bit PNG = 8-bit PNG');

  // A transparent background counts as background: the disc fills the model's view.
  await classify(page, path.join(inputs, 'transparent.png'));
  const input = await page.evaluate(() => Array.from(window.vitrineLast.input));
  const corner = input[0], centre = input[14 * 28 + 14];
  assert.ok(centre > corner + 1, `the disc is light on a dark background in the model's input (${centre} vs ${corner})`);

  // A sideways-stored JPEG with EXIF orientation is shown (and classified) upright.
  await classify(page, path.join(inputs, 'exif-rotated.jpg'));
  assert.equal(await page.evaluate(() => document.body.dataset.imageSize), '200x300');

  // Two images in quick succession: only the newer one's result is shown.
  await page.setInputFiles('#file', path.join(inputs, 'gray8.png'));
  await page.setInputFiles('#file', sample);
  await page.waitForFunction(() => window.vitrineLast && document.getElementById('truth') !== null);
  await page.waitForTimeout(2000);
  const last = await page.evaluate(() => Array.from(window.vitrineLast.probabilities));
  const alone = await classify(page, sample);
  assert.ok(maxDiff(last, alone.probabilities) < 1e-6, 'the newest image wins');
  assert.deepEqual(errors, []);
  await context.close();
});

test('attention controls: heads, patches, threshold, colours, keyboard, download', { timeout: 600_000 }, async () => {
  const { page, context } = await open(site, '?backend=cpu');
  await classify(page, path.join(root, 'www/samples/fmnist-6.png'));
  const { depth, num_heads: heads } = defaultModel;
  assert.match(await page.textContent('#caption'), new RegExp(`Layer ${depth - 1}, mean of the heads: where the class token looks`));
  // One small map per head plus the mean and the rollout; choosing one selects it.
  assert.equal(await page.locator('#heads button').count(), heads + 2);
  await page.click('#heads button:nth-child(4)');
  assert.equal(await page.inputValue('#head'), '1');
  assert.match(await page.textContent('#caption'), /head 1: where the class token looks/);

  // Pointing at a patch shows that patch's own attention row (read back on demand).
  await page.locator('#stage').scrollIntoViewIfNeeded();
  const box = await page.locator('#stage').boundingBox();
  await page.mouse.move(box.x + box.width * 0.1, box.y + box.height * 0.9);
  await page.waitForFunction(() => document.getElementById('caption').textContent.includes('the patch at row 6, column 0'));
  // The keyboard does the same: arrows move the patch, Escape returns to the class token.
  await page.mouse.move(0, 0);
  await page.focus('#stage');
  await page.keyboard.press('ArrowUp');
  await page.waitForFunction(() => document.getElementById('caption').textContent.includes('row 3, column 3'));
  await page.keyboard.press('ArrowRight');
  await page.waitForFunction(() => document.getElementById('caption').textContent.includes('row 3, column 4'));
  await shot(page, 'patch-row');
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => document.getElementById('caption').textContent.includes('class token'));

  // Threshold mode, colormaps and blocky upsampling change the overlay.
  const pixels = () => page.evaluate(() => {
    const c = document.getElementById('overlay');
    return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data.filter((_, i) => i % 97 === 0));
  });
  const plain = await pixels();
  await page.selectOption('#colormap', 'magma');
  const magma = await pixels();
  assert.ok(maxDiff(plain, magma) > 10, 'the colormap changes the overlay');
  await page.check('input[name="upsample"][value="blocky"]');
  assert.ok(maxDiff(magma, await pixels()) > 0, 'blocky differs from smooth');
  await page.check('#threshold');
  assert.match(await page.textContent('#caption'), /Only the patches holding 60% of it are left uncovered/);
  await shot(page, 'threshold');

  // The view downloads as PNG and SVG with its caption, at 1×, 2× or 4×
  // (nearest-neighbour: each export pixel is the view's, blended as shown).
  const save = async (button) => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
    return { name: download.suggestedFilename(), bytes: fs.readFileSync(await download.path()) };
  };
  await page.selectOption('#export-scale', '2');
  const png = await save('#download-png');
  assert.equal(png.name, `vitrine-fashion-vit-layer${depth - 1}-1.png`);
  assert.deepEqual([...png.bytes.subarray(1, 4)], [0x50, 0x4e, 0x47]);
  assert.equal(png.bytes.readUInt32BE(16), 2 * 448 + 20, 'PNG width: twice the view and a margin');
  assert.ok(png.bytes.readUInt32BE(20) > 2 * 448 + 20 + 18, 'a caption below');
  const off = await page.evaluate(async (bytes) => {
    const got = await createImageBitmap(new Blob([new Uint8Array(bytes)]));
    const read = (source, w, h) => {
      const c = new OffscreenCanvas(w, h);
      c.getContext('2d').drawImage(source, 0, 0);
      return c.getContext('2d').getImageData(0, 0, w, h).data;
    };
    const exported = read(got, got.width, got.height);
    const shown = new OffscreenCanvas(448, 448);
    const ctx = shown.getContext('2d');
    ctx.drawImage(document.getElementById('image'), 0, 0);
    ctx.globalAlpha = window.vitrineState.view.opacity;
    ctx.drawImage(document.getElementById('overlay'), 0, 0);
    const view = ctx.getImageData(0, 0, 448, 448).data;
    let worst = 0;
    for (let y = 0; y < 448; y += 7) {
      for (let x = 0; x < 448; x += 5) {
        for (let c = 0; c < 3; c++) {
          const a = exported[((10 + 2 * y + 1) * got.width + 10 + 2 * x + 1) * 4 + c];
          worst = Math.max(worst, Math.abs(a - view[(y * 448 + x) * 4 + c]));
        }
      }
    }
    return worst;
  }, [...png.bytes]);
  assert.ok(off <= 2, `the PNG shows the view pixel for pixel (off by ${off})`);
  await page.selectOption('#export-scale', '1');
  const svg = await save('#download-svg');
  assert.equal(svg.name, `vitrine-fashion-vit-layer${depth - 1}-1.svg`);
  const text = svg.bytes.toString();
  assert.match(text, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="468" /);
  assert.match(text, /<image x="10" y="10" width="448" height="448" style="image-rendering:pixelated" href="data:image\/png;base64,/);
  const caption = [...text.matchAll(/<text [^>]*>([^<]*)<\/text>/g)].map((m) => m[1]).join(' ');
  assert.match(caption, new RegExp(`^fashion-vit on your image\\. Layer ${depth - 1}, head 1: where the class token looks\\. Only the patches holding 60% of it are left uncovered\\.`));

  // The presentation view: the map and its caption alone; ← → step the layers, ↑ ↓ the Map menu; Escape leaves.
  await page.click('#present');
  assert.ok(await page.evaluate(() => document.body.classList.contains('presenting')));
  assert.ok(await page.locator('#controls').isHidden());
  assert.ok(await page.locator('#caption').isVisible());
  assert.ok((await page.locator('#stage').boundingBox()).width > 448, 'larger than on the page');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await page.evaluate(() => window.vitrineState.view.layer), depth - 2);
  assert.match(await page.textContent('#caption'), new RegExp(`^Layer ${depth - 2}, head 1: `));
  await page.keyboard.press('ArrowDown');
  assert.match(await page.textContent('#caption'), new RegExp(`^Layer ${depth - 2}, head 2: `));
  await page.keyboard.press('ArrowUp');
  await page.keyboard.press('ArrowRight');
  assert.match(await page.textContent('#caption'), new RegExp(`^Layer ${depth - 1}, head 1: `));
  await page.keyboard.press('Escape');
  assert.ok(await page.evaluate(() => !document.body.classList.contains('presenting')));
  assert.ok(await page.locator('#controls').isVisible());

  // Phone width: nothing sticks out sideways.
  await page.setViewportSize({ width: 390, height: 844 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390), 'no horizontal scrolling at 390 px');
  await shot(page, 'phone');
  await context.close();
});
