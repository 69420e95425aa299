// The sample images (samples/samples.json): a click classifies one, with
// its true label when it has one.
import { classifyBlob } from './images.js';
import { $ } from './dom.js';


export async function loadGallery() {
  try {
    const { samples } = await (await fetch('samples/samples.json')).json();
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
      button.addEventListener('click', async () => {
        const blob = await (await fetch(`samples/${s.file}`)).blob();
        classifyBlob(new File([blob], s.file, { type: blob.type }), s.truth);
      });
      li.append(button);
      return li;
    }));
  } catch {
    $('gallery-title').hidden = true;
  }
}
