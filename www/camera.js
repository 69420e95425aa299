// The camera as an image source: a picture taken is classified like a
// dropped file. The stream is released when the camera is closed.
import { classifyBlob } from './images.js';
import { notify } from './store.js';
import { $ } from './dom.js';


export function setupCamera() {
  let stream = null;
  const close = () => {
    stream?.getTracks().forEach((t) => t.stop());
    stream = null;
    $('camera').hidden = true;
  };
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
