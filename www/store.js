// @ts-check
// The page's state: one object, changed only through `update`, and the
// views that redraw from it. Every module reads `state`; none assigns to it.

/** @typedef {import('./vitrine').ModelInfo} ModelInfo */
/** @typedef {import('./vitrine').Prediction} Prediction */
/** @typedef {import('./vitrine').RelevanceMaps} RelevanceMaps */
/** @typedef {import('./protocol.js').ModelFiles} ModelFiles */

/**
 * The image shown and what has been asked about it.
 * @typedef {object} Shown
 * @property {Prediction} result the classification
 * @property {OffscreenCanvas | HTMLCanvasElement} bitmap the pixels given to the model
 * @property {number[]} viewBox the part of the image the model saw
 * @property {Record<number, { layerAttention: Float32Array, layerMean: Float32Array }>} rows each layer's full attention, once read
 * @property {string | null} truth the sample's true label, if known
 * @property {string | null} sample the sample's name (samples/samples.json), null for the user's own image
 * @property {number} id the classification's number
 * @property {number} why the class "why this class" explains (-1: none)
 * @property {Record<number, RelevanceMaps>} relevance the maps of each class asked for
 * @property {Record<number, string>} failed why a class's maps could not be had
 * @property {Map<number, Promise<void>>} pending the requests for maps in flight
 * @property {Set<number>} pendingRows the layers whose rows are being read
 * @property {Set<number>} [awaiting] the classes whose maps a redraw waits for
 */

/**
 * What the page tells the user, each kind apart: a problem (`error`), a
 * warning that is not a failure (the backend restarted), and notes about
 * the model in use and about the image shown.
 * @typedef {{ error: string, warning: string, modelNotes: string[], imageNotes: string[] }} Notices
 */

/**
 * @typedef {object} State
 * @property {string | null} backend 'webgpu' or 'cpu', as the worker chose
 * @property {(ModelInfo & { name: string, origin?: string | null }) | null} info the model in use, named, and where it came from (the Hub's repo@commit)
 * @property {{ name: string, files: ModelFiles, seq: number, origin?: string | null, link?: string | null } | null} source what to reload if the worker restarts (or at another size), and how a link names it
 * @property {number} loads the number of the newest model load asked for
 * @property {number} applied the number of the load whose model is in use
 * @property {{ blob: Blob, truth: string | null, sample?: string | null } | null} given the newest image the user gave
 * @property {number} latest the number of the newest classification asked for
 * @property {Shown | null} current the image shown
 * @property {number} patch the patch pointed at, or -1 for the class token
 * @property {View} view how the maps are shown
 * @property {number} learn the walk-through's step being read, 0 when it is closed
 * @property {number} figures the Figures panel's block (from 1), 0 when it is closed
 * @property {{ images: number, foreground: boolean }} pca the feature PCA's images (the last 1 to 4) and its foreground step
 * @property {{ id: string, step: number, lang: string } | null} lesson the lesson open, its step (from 1) and language
 * @property {string | null} compare the second model shown beside the first (`hf:org/name`), if any
 * @property {Notices} notices
 */

/**
 * How the maps are shown: the settings of the page's controls.
 * @typedef {object} View
 * @property {'attention' | 'relevance'} show where the model looks, or why it chose a class
 * @property {number} layer the layer whose maps are shown
 * @property {string} head a head's index, or a layer-wide map (mean, rollout, chefer, grad-rollout)
 * @property {string} colormap
 * @property {boolean} smooth interpolate between patch centres (else one flat block a patch)
 * @property {'photo' | 'input'} picture under the map: the user's image, or the model's input tensor
 * @property {boolean} threshold cover all but the patches holding `mass` of the map
 * @property {number} mass
 * @property {number} opacity the map's
 */

/** @type {State} */
export const state = {
  backend: null,
  info: null,
  source: null,
  loads: 0,
  applied: 0,
  given: null,
  latest: 0,
  current: null,
  patch: -1,
  learn: 0,
  figures: 0,
  pca: { images: 1, foreground: true },
  lesson: null,
  compare: null,
  view: {
    show: 'attention', layer: 0, head: 'mean', colormap: 'viridis', smooth: true,
    picture: 'photo', threshold: false, mass: 0.6, opacity: 0.6,
  },
  notices: { error: '', warning: '', modelNotes: [], imageNotes: [] },
};

/** @type {((state: State, changed: Partial<State>) => void)[]} */
const views = [];
/** @type {Set<{ test: (state: State) => boolean, resolve: () => void }>} */
const waiters = new Set();

/**
 * The one way to change the state: the fields of `change` replace the
 * state's, then every view sees the new state and what changed.
 * @param {Partial<State>} change
 */
export function update(change) {
  Object.assign(state, change);
  for (const view of views) view(state, change);
  for (const w of waiters) {
    if (w.test(state)) {
      waiters.delete(w);
      w.resolve();
    }
  }
}

/**
 * Resolves once `test(state)` holds: at once if it does now, else after
 * the first update that makes it so.
 * @param {(state: State) => boolean} test
 * @returns {Promise<void>}
 */
export function until(test) {
  if (test(state)) return Promise.resolve();
  return new Promise((resolve) => { waiters.add({ test, resolve }); });
}

/**
 * Adds a view, called after every update.
 * @param {(state: State, changed: Partial<State>) => void} view
 */
export function onUpdate(view) {
  views.push(view);
}

/**
 * Changes some of the notices, keeping the others.
 * @param {Partial<Notices>} change
 */
export function notify(change) {
  update({ notices: { ...state.notices, ...change } });
}

/**
 * A note as a sentence: a capital first and a full stop last.
 * @param {string} text
 */
export function sentence(text) {
  const t = text.trim();
  if (!t) return t;
  const first = t[0].toUpperCase() + t.slice(1);
  return /[.!?…]$/.test(first) ? first : `${first}.`;
}
