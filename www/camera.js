// The camera as an image source: a picture taken is classified like a
// dropped file; "Live" classifies frame after frame, each taken when the
// one before is shown (the frames in between are dropped, never queued),
// pauses while the tab is hidden, and releases the camera when turned off.
// The stream is released when the camera is closed.
import { classifyBlob, classifyFrame } from './images.js';
import { notify } from './store.js';
import { $ } from './dom.js';


/**
 * The next frame the video presents: its count of frames presented so far
 * (requestVideoFrameCallback where the browser has it, else the next
 * animation frame, counted as one).
 * @param {HTMLVideoElement} video
 * @returns {Promise<number | null>}
 */
function nextFrame(video) {
  if ('requestVideoFrameCallback' in video) {
    return new Promise((resolve) => video.requestVideoFrameCallback((_, meta) => resolve(meta.presentedFrames)));
  }
  return new Promise((resolve) => requestAnimationFrame(() => resolve(null)));
}

const hidden = () => document.visibilityState === 'hidden';

export function setupCamera() {
  let stream = null;
  const live = { on: false, running: false, frames: 0, dropped: 0, times: /** @type {number[]} */ ([]) };
  const showLive = () => {
    const t = live.times;
    // Frames a second over the last two seconds' results.
    const fps = t.length > 1 ? (1000 * (t.length - 1)) / (t[t.length - 1] - t[0]) : 0;
    const paused = live.on && hidden();
    $('live-status').textContent = !live.on ? ''
      : paused ? 'Live: paused while the tab is hidden.'
        : `Live: ${fps.toFixed(1)} frames a second; ${live.dropped} frames dropped while the model was busy.`;
    Object.assign(document.body.dataset, { liveFrames: String(live.frames), liveDropped: String(live.dropped), live: paused ? 'paused' : String(live.on) });
  };
  // One loop at a time: takes a frame, waits for its result, takes the next.
  const run = async () => {
    if (live.running) return;
    live.running = true;
    let last = null;
    const video = /** @type {HTMLVideoElement} */ ($('video'));
    try {
      while (live.on && !hidden()) {
        const presented = await nextFrame(video);
        if (!live.on || hidden()) break;
        if (presented !== null && last !== null) live.dropped += Math.max(0, presented - last - 1);
        last = presented;
        if (await classifyFrame(video)) {
          live.frames++;
          const now = performance.now();
          live.times = [...live.times.filter((x) => now - x < 2000), now];
        }
        showLive();
      }
    } finally {
      live.running = false;
      showLive();
    }
  };
  const setLive = (/** @type {boolean} */ on) => {
    live.on = on;
    live.times = [];
    $('live').setAttribute('aria-pressed', String(on));
    showLive();
    if (on) run();
  };
  const close = () => {
    setLive(false);
    stream?.getTracks().forEach((t) => t.stop());
    stream = null;
    $('camera').hidden = true;
  };
  document.addEventListener('visibilitychange', () => {
    showLive();
    if (live.on && !hidden()) run();
  });
  // Turned off, live mode lets the camera go.
  $('live').addEventListener('click', () => (live.on ? close() : setLive(true)));
  if (!navigator.mediaDevices?.getUserMedia) {
    $('camera-open').disabled = true;
    $('camera-open').title = 'This browser (or an http:// page) offers no camera';
  }
  $('camera-open').addEventListener('click', async () => {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
    } catch (e) {
      notify({ error: `The camera is not available: ${e.message}` });
      return;
    }
    $('video').srcObject = stream;
    $('camera').hidden = false;
    await $('video').play();
    $('capture').focus();
  });
  $('capture').addEventListener('click', async () => {
    const v = $('video');
    if (!v.videoWidth) return;
    const c = new OffscreenCanvas(v.videoWidth, v.videoHeight);
    c.getContext('2d').drawImage(v, 0, 0);
    const blob = await c.convertToBlob({ type: 'image/png' });
    classifyBlob(new File([blob], 'camera picture.png', { type: 'image/png' }));
  });
  $('camera-close').addEventListener('click', close);
}
