// @ts-check
// DINOv2's figure (Oquab et al. 2024, Fig. 1): a backbone's patch features
// as colour. The first principal component splits foreground from
// background; the next three of the foreground's features are red, green
// and blue. Fitted over several images at once, matching parts get
// matching colours. The numbers come from the model (Rust: figures/pca.rs);
// this module asks for them while the Figures panel is open, draws each
// image beside its colours, and words them.
import { inputPicture } from './overlay.js';
import { onUpdate, state, update } from './store.js';
import { $ } from './dom.js';

/** @typedef {import('./vitrine').FeaturePca} FeaturePca */

const percent = (/** @type {number} */ s) => `${(100 * s).toFixed(0)}%`;

/**
 * One image's colours: a rows×cols picture, one pixel a patch, the
 * background dark grey.
 * @param {HTMLCanvasElement} canvas
 * @param {Float32Array} rgb [N, 3] in [0, 1]
 * @param {Uint8Array} foreground [N]
 * @param {[number, number]} grid
 */
export function drawPca(canvas, rgb, foreground, [rows, cols]) {
  canvas.width = cols;
  canvas.height = rows;
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
  const img = ctx.createImageData(cols, rows);
  for (let p = 0; p < rows * cols; p++) {
    for (let c = 0; c < 3; c++) img.data[p * 4 + c] = foreground[p] ? Math.round(255 * rgb[p * 3 + c]) : 40;
    img.data[p * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

/**
 * What the figure shows, in the model's own numbers.
 * @param {FeaturePca} pca
 * @param {boolean} split whether the foreground step was asked for
 * @param {number} asked how many images were asked for
 */
export function describePca(pca, split, asked) {
  const n = pca.images.length;
  const total = pca.images.reduce((a, im) => a + im.foreground.length, 0);
  const kept = pca.images.reduce((a, im) => a + im.foreground.reduce((s, b) => s + b, 0), 0);
  const over = n === 1 ? 'this image' : `the last ${n} images`;
  const fewer = asked > n ? ` (only ${n} classified with this model so far)` : '';
  const step = split
    ? `The first component of all ${total} patches' features (${percent(pca.firstVariance)} of their variance) splits them: `
      + `${kept} on the side away from the border are taken as foreground (the rest are grey). `
    : `Every one of the ${total} patches is used (no foreground step). `;
  const [r, g, b] = Array.from(pca.variance, percent);
  return `Fitted over ${over}${fewer}. ${step}The foreground's next three principal components are red, green and blue; `
    + `they explain ${r}, ${g} and ${b} of its features' variance. A trained backbone (DINO, DINOv2) colours an object's `
    + 'parts alike, and fitted over several images the same parts get the same colours; random weights give noise.';
}

/**
 * Wires the PCA figure of the Figures panel: asked while the panel is
 * open, again when the image, the model or a control changes.
 * @param {{ run: (m: any) => Promise<any> }} options
 */
export function setupPca({ run }) {
  const panel = /** @type {HTMLDetailsElement} */ ($('figures'));
  const images = /** @type {HTMLSelectElement} */ ($('pca-images'));
  const split = /** @type {HTMLInputElement} */ ($('pca-foreground'));
  /** @type {{ key: string, current: any }} */
  let shown = { key: '', current: null }; // the controls' values and the image shown
  let asking = 0;

  const ask = async () => {
    const { current, info } = state;
    if (!panel.open || !current || !info) return;
    const { images: asked, foreground } = state.pca;
    const key = `${asked} ${foreground}`;
    if (shown.key === key && shown.current === current) return;
    const mine = ++asking;
    $('pca-text').textContent = 'Computing…';
    try {
      const { pca } = await run({ type: 'featurePca', images: asked, foreground });
      if (mine !== asking) return; // a newer question is on its way
      shown = { key, current };
      window.vitrinePca = pca;
      document.body.dataset.pca = `${key} ${current.id}`; // what is drawn: for tests
      $('pca-maps').replaceChildren(...pca.images.map((/** @type {FeaturePca['images'][number]} */ im, i) => {
        const cell = document.createElement('figure');
        const colours = document.createElement('canvas');
        colours.className = 'pca';
        colours.setAttribute('role', 'img');
        colours.setAttribute('aria-label', `Image ${i + 1} of ${pca.images.length}: its patch features as colour`);
        drawPca(colours, im.rgb, im.foreground, info.grid);
        const source = inputPicture(im.input, info.preprocess);
        const picture = document.createElement('canvas');
        [picture.width, picture.height] = [source.width, source.height];
        /** @type {CanvasRenderingContext2D} */ (picture.getContext('2d')).drawImage(source, 0, 0);
        picture.className = 'pca';
        cell.append(picture, colours);
        return cell;
      }));
      $('pca-text').textContent = describePca(pca, foreground, asked);
    } catch (e) {
      if (mine === asking) $('pca-text').textContent = `The PCA could not be computed: ${/** @type {Error} */ (e).message}.`;
    }
  };
  images.value = String(state.pca.images);
  split.checked = state.pca.foreground;
  // The controls write the state (the address follows it); the state sets the controls.
  const fromControls = () => update({ pca: { images: Number(images.value), foreground: split.checked } });
  images.addEventListener('change', fromControls);
  split.addEventListener('change', fromControls);
  panel.addEventListener('toggle', ask);
  onUpdate((s, changed) => {
    if ('pca' in changed) {
      images.value = String(s.pca.images);
      split.checked = s.pca.foreground;
    }
    if ('current' in changed || 'info' in changed || 'pca' in changed) ask();
  });
}
