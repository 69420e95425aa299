// The sample images (samples/samples.json): a click classifies one, with
// its true label when it has one; a link names one by its file's stem
// (`?image=chelsea`).
import { classifyBlob } from './images.js';
import { notify } from './store.js';
import { $ } from './dom.js';

/** The samples, once listed. */
let listed = Promise.resolve([]);

/** A sample's name in a link: its file without the extension. */
export const sampleName = (file) => file.replace(/\.[^.]+$/, '');

async function classifySampleEntry(s) {
  try {
    const res = await fetch(`samples/${s.file}`);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const blob = await res.blob();
    classifyBlob(new File([blob], s.file, { type: blob.type }), s.truth, '', sampleName(s.file));
  } catch (e) {
    notify({ error: `The sample “${s.title}” could not be fetched: ${e.message}.` });
  }
}

/** Classifies the sample named `name`; false when there is none of that name. */
export async function classifySample(name) {
  const s = (await listed).find((x) => sampleName(x.file) === name);
  if (!s) return false;
  await classifySampleEntry(s);
  return true;
}

export async function loadGallery() {
  listed = fetch('samples/samples.json').then((r) => r.json()).then((j) => j.samples).catch(() => []);
  const samples = await listed;
  if (!samples.length) {
    $('gallery-title').hidden = true;
    return;
  }
  $('gallery').replaceChildren(...samples.map((s) => {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = `sample ${s.kind}`;
    button.title = s.truth ? `${s.title} (true label: ${s.truth})` : s.title;
    const img = document.createElement('img');
    img.src = `samples/${s.file}`;
    img.alt = button.title;
    img.width = img.height = 64;
    button.append(img);
    button.addEventListener('click', () => classifySampleEntry(s));
    li.append(button);
    return li;
  }));
}
