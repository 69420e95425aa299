// @ts-check
// The view is the address: the model, the sample image, the maps' settings
// and the patch pointed at live in the page's query, so that a link (from a
// slide, a course) opens the page on that view. The address follows the
// view by replacing itself (no new history entry per slider move). A value
// the page cannot take (a layer the model lacks, an unknown map) is left
// out with a note, never an error. A user's own image is never named.
import { COLORMAPS } from './overlay.js';

/** @typedef {import('./store.js').View} View */

/** The query's names for the view's settings, and the page's other parameters, which are kept as they are. */
export const VIEW_PARAMS = ['size', 'show', 'layer', 'map', 'cmap', 'opacity', 'keep', 'upsample', 'picture', 'patch', 'class', 'image', 'learn', 'figures', 'pca', 'lesson', 'step', 'lang', 'compare'];

const NAMED_MAPS = ['mean', 'rollout', 'chefer', 'grad-rollout'];

/**
 * What a query asks of the view, each value checked for its form; what
 * cannot be taken is said in `notes` and left out.
 * @param {URLSearchParams} params
 * @param {string[]} notes
 * @returns {{ view: Partial<View>, size: number | null, patch: number | null, klass: number | null, learn: number | null, figures: number | null, pca: { images: number, foreground: boolean } | null, image: string | null }}
 */
export function readQuery(params, notes) {
  /** @type {Partial<View>} */
  const view = {};
  const bad = (/** @type {string} */ key, /** @type {string} */ value, /** @type {string} */ takes) =>
    notes.push(`The link's ${key}=${value.slice(0, 40)} was left out: ${key} takes ${takes}.`);
  const get = (/** @type {string} */ key) => params.get(key);
  const number = (/** @type {string} */ key, /** @type {number} */ lo, /** @type {number} */ hi, /** @type {boolean} */ integer) => {
    const text = get(key);
    if (text === null) return null;
    const v = Number(text);
    if (text.trim() === '' || !Number.isFinite(v) || v < lo || v > hi || (integer && !Number.isInteger(v))) {
      bad(key, text, integer ? `a whole number from ${lo}` : `a number from ${lo} to ${hi}`);
      return null;
    }
    return v;
  };
  const choice = (/** @type {string} */ key, /** @type {string[]} */ options) => {
    const text = get(key);
    if (text === null) return null;
    if (!options.includes(text)) {
      bad(key, text, options.join(', '));
      return null;
    }
    return text;
  };
  const show = choice('show', ['attention', 'relevance']);
  if (show) view.show = /** @type {View['show']} */ (show);
  const layer = number('layer', 0, 1e4, true);
  if (layer !== null) view.layer = layer;
  const map = get('map');
  if (map !== null) {
    if (NAMED_MAPS.includes(map) || /^(0|[1-9]\d{0,3})$/.test(map)) view.head = map;
    else bad('map', map, `${NAMED_MAPS.join(', ')} or a head's number`);
  }
  const cmap = choice('cmap', Object.keys(COLORMAPS));
  if (cmap) view.colormap = cmap;
  const opacity = number('opacity', 0, 1, false);
  if (opacity !== null) view.opacity = opacity;
  const keep = get('keep');
  if (keep === 'off') view.threshold = false;
  else if (keep !== null) {
    const mass = number('keep', 0.05, 0.95, false);
    if (mass !== null) Object.assign(view, { threshold: true, mass });
  }
  const upsample = choice('upsample', ['smooth', 'blocky']);
  if (upsample) view.smooth = upsample === 'smooth';
  const picture = choice('picture', ['photo', 'input']);
  if (picture) view.picture = /** @type {View['picture']} */ (picture);
  const patch = number('patch', -1, 1e6, true);
  const klass = number('class', 0, 1e6, true);
  const size = number('size', 8, 4096, true);
  const learn = number('learn', 1, 9, true);
  const figures = number('figures', 1, 1e4, true);
  // The feature PCA: `pca=N` (the last N images, 1 to 4), `pca=N-all` without the foreground step.
  const pcaText = get('pca');
  const pcaMatch = pcaText === null ? null : /^([1-4])(-all)?$/.exec(pcaText);
  if (pcaText !== null && !pcaMatch) bad('pca', pcaText, 'the last 1 to 4 images, N or N-all (without the foreground step)');
  const pca = pcaMatch ? { images: Number(pcaMatch[1]), foreground: !pcaMatch[2] } : null;
  const image = get('image');
  return { view, size, patch, klass, learn, figures, pca, image: image && /^[\w.-]{1,80}$/.test(image) ? image : null };
}

/**
 * The query for a view: `base`'s other parameters kept (the backend, the
 * Hub's endpoint, the model), the view's written where it differs from the
 * page's defaults, the sample shown named (a user's own image never is).
 * @param {URLSearchParams} base
 * @param {View} view
 * @param {View} defaults
 * @param {{ size?: number | null, patch: number, klass?: number | null, learn?: number, figures?: number, pca?: { images: number, foreground: boolean }, image: string | null, model: string | null, lesson?: { id: string, step: number, lang: string } | null, compare?: string | null }} rest
 */
export function writeQuery(base, view, defaults, { size = null, patch, klass = null, learn = 0, figures = 0, pca = { images: 1, foreground: true }, image, model, lesson = null, compare = null }) {
  const out = new URLSearchParams(base);
  for (const key of VIEW_PARAMS) out.delete(key);
  if (model === null) out.delete('model');
  else out.set('model', model);
  const set = (/** @type {string} */ key, /** @type {unknown} */ value, /** @type {unknown} */ fallback) => {
    if (value !== fallback) out.set(key, String(value));
  };
  if (size !== null) out.set('size', String(size));
  set('show', view.show, defaults.show);
  out.set('layer', String(view.layer));
  out.set('map', view.head);
  set('cmap', view.colormap, defaults.colormap);
  set('opacity', view.opacity, defaults.opacity);
  if (view.threshold) out.set('keep', String(view.mass));
  set('upsample', view.smooth ? 'smooth' : 'blocky', defaults.smooth ? 'smooth' : 'blocky');
  set('picture', view.picture, defaults.picture);
  if (patch >= 0) out.set('patch', String(patch));
  if (view.show === 'relevance' && klass !== null && klass >= 0) out.set('class', String(klass));
  if (image) out.set('image', image);
  if (learn > 0) out.set('learn', String(learn));
  if (figures > 0) out.set('figures', String(figures));
  if (pca.images !== 1 || !pca.foreground) out.set('pca', `${pca.images}${pca.foreground ? '' : '-all'}`);
  if (lesson) {
    out.set('lesson', lesson.id);
    out.set('step', String(lesson.step));
    if (lesson.lang !== 'en') out.set('lang', lesson.lang);
  }
  if (compare) out.set('compare', compare);
  return out;
}
