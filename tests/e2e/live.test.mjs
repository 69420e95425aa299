// Live mode in headless Chromium with its synthetic camera
// (--use-fake-device-for-media-stream): frame after frame classified, the
// rate shown, frames dropped rather than queued (one classification at a
// time even when the CPU is slowed twentyfold), paused while the tab is
// hidden, and the camera released when it is turned off.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSite, open } from './harness.mjs';

let site;
before(async () => { site = await startSite('live'); });
after(async () => { await site?.stop(); });

const frames = (page) => page.evaluate(() => Number(document.body.dataset.liveFrames ?? 0));

test('live: 20 frames and more, dropped not queued, paused when hidden, the camera released when off', { timeout: 600_000 }, async () => {
  const { page, context, errors, requests } = await open(site, '?backend=cpu');
  await context.grantPermissions(['camera'], { origin: site.origin });
  await page.click('#camera-open');
  await page.waitForFunction(() => document.getElementById('video').videoWidth > 0, null, { timeout: 60_000 });
  // Slowed twentyfold, the model is busier than the camera's 30 frames a second.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Emulation.setCPUThrottlingRate', { rate: 20 });
  // Watched from inside the page at every animation frame: never more than one classification asked and not yet shown.
  await page.evaluate(() => {
    window.liveAhead = 0;
    const watch = () => {
      const ahead = Number(document.body.dataset.requested ?? 0) - Number(document.body.dataset.classified ?? 0);
      window.liveAhead = Math.max(window.liveAhead, ahead);
      requestAnimationFrame(watch);
    };
    watch();
  });
  await page.click('#live');
  assert.equal(await page.getAttribute('#live', 'aria-pressed'), 'true');
  await page.waitForFunction(() => Number(document.body.dataset.liveFrames) >= 20, null, { timeout: 300_000 });
  assert.equal(await page.evaluate(() => window.liveAhead), 1, 'one frame in flight at a time');
  assert.ok(Number(await page.evaluate(() => document.body.dataset.liveDropped)) > 0, 'frames dropped while the model was busy');
  assert.match(await page.textContent('#live-status'), /^Live: \d+\.\d frames a second; \d+ frames dropped while the model was busy\.$/);
  assert.ok(await page.evaluate(() => window.vitrineLast.probabilities.length === 10), 'each frame classified by the model');
  await cdp.send('Emulation.setCPUThrottlingRate', { rate: 1 });

  // Hidden: no frame is classified until the tab shows again.
  await page.evaluate(() => {
    Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await page.waitForFunction(() => document.body.dataset.live === 'paused');
  await page.waitForTimeout(300); // the frame in flight, if any, lands
  const paused = await frames(page);
  await page.waitForTimeout(1500);
  assert.equal(await frames(page), paused, 'no frame while hidden');
  assert.equal(await page.textContent('#live-status'), 'Live: paused while the tab is hidden.');
  await page.evaluate(() => {
    delete document.visibilityState; // the prototype's getter again
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await page.waitForFunction((n) => Number(document.body.dataset.liveFrames) > n + 5, paused, { timeout: 60_000 });

  // Off: the loop stops and the camera is released.
  await page.click('#live');
  assert.ok(await page.evaluate(() => document.getElementById('camera').hidden));
  assert.ok(await page.evaluate(() => document.getElementById('video').srcObject.getTracks().every((t) => t.readyState === 'ended')), 'the camera released');
  const stopped = await frames(page);
  await page.waitForTimeout(500);
  assert.equal(await frames(page), stopped);
  assert.equal(await page.textContent('#live-status'), '');
  assert.deepEqual(requests.filter((u) => !u.startsWith(site.origin)), [], 'no request leaves the origin');
  assert.deepEqual(errors, []);
  await context.close();
});
