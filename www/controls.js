// @ts-check
// The map controls as state: each control writes `state.view` (store.js)
// and is redrawn from it, so what the page shows is the state alone (and
// can be set from elsewhere: a lesson, the address).
import { $, one } from './dom.js';
import { state, update } from './store.js';

/** @typedef {import('./store.js').View} View */
/** @typedef {import('./vitrine').ModelInfo} ModelInfo */

/** The layer-wide choices of the Map menu in each mode, then one per head. */
const WHOLE = {
  attention: [['mean', 'mean of heads'], ['rollout', 'rollout (all layers)']],
  relevance: [['chefer', 'relevance (Chefer et al.)'], ['grad-rollout', 'gradient rollout']],
};

/**
 * The Map menu's entry for `head` in mode `show` with `heads` heads: the
 * counterpart of a layer-wide one (mean ↔ Chefer's relevance, rollout ↔
 * gradient rollout), the same head, else the mode's first entry.
 * @param {View['show']} show
 * @param {string} head
 * @param {number} heads
 */
export function headIn(show, head, heads) {
  const other = show === 'attention' ? 'relevance' : 'attention';
  const at = WHOLE[other].findIndex(([v]) => v === head);
  if (at >= 0) return WHOLE[show][at][0];
  if (WHOLE[show].some(([v]) => v === head)) return head;
  return /^\d+$/.test(head) && Number(head) < heads ? head : WHOLE[show][0][0];
}

/** The chosen head as the maps index it: a number, or a layer-wide map's name. */
export const headIndex = (/** @type {string} */ head) => (/^\d+$/.test(head) ? Number(head) : head);

/**
 * Changes some of the view's settings, keeping the others; the head
 * follows a change of mode.
 * @param {Partial<View>} change
 */
export function setView(change) {
  update({ view: fitView({ ...state.view, ...change }, state.info) });
}

/**
 * `view` made to fit the model `info`: a backbone shows attention (it has
 * no class to explain), the head one the menu has, a layer it has.
 * @param {View} view
 * @param {ModelInfo | null} info
 * @returns {View}
 */
export function fitView(view, info) {
  const fitted = { ...view };
  if (!info?.config.num_classes) fitted.show = 'attention';
  fitted.head = headIn(fitted.show, fitted.head, info?.config.num_heads ?? 0);
  fitted.layer = Math.max(0, Math.min(fitted.layer, (info?.config.depth ?? 1) - 1));
  return fitted;
}

/**
 * The view for a newly loaded model: the last layer, the same map where
 * the model has it.
 * @param {ModelInfo} info
 */
export function viewFor(info) {
  const { depth, num_heads: heads, num_classes: classes } = info.config;
  const show = classes ? state.view.show : 'attention';
  return { ...state.view, show, layer: depth - 1, head: headIn(show, state.view.head, heads) };
}

/**
 * Sets every control to the view (and the Map menu's entries to the
 * mode's and the model's).
 * @param {View} view
 * @param {ModelInfo | null} info
 */
export function showControls(view, info) {
  one(`input[name="show"][value="${view.show}"]`).checked = true;
  const why = one('input[name="show"][value="relevance"]');
  const classes = info?.config.num_classes ?? 0;
  why.disabled = !classes;
  why.parentElement.title = info && !classes ? 'This model has no classifier (a backbone): there is no class to explain.' : '';
  one(`input[name="picture"][value="${view.picture}"]`).checked = true;
  one(`input[name="upsample"][value="${view.smooth ? 'smooth' : 'blocky'}"]`).checked = true;
  $('layer').max = Math.max(0, (info?.config.depth ?? 1) - 1);
  $('layer').value = view.layer;
  $('layer-out').textContent = String(view.layer);
  const heads = info?.config.num_heads ?? 0;
  const menu = $('head');
  const entries = [...WHOLE[view.show], ...Array.from({ length: heads }, (_, h) => [String(h), `head ${h}`])];
  if ([...menu.options].map((o) => o.value).join() !== entries.map(([v]) => v).join()) {
    menu.replaceChildren(...entries.map(([v, t]) => new Option(t, v)));
  }
  menu.value = view.head;
  $('colormap').value = view.colormap;
  $('opacity').value = view.opacity;
  $('threshold').checked = view.threshold;
  $('mass').value = view.mass;
  $('mass-out').textContent = `${Math.round(view.mass * 100)}%`;
}

/** Each control writes its setting into the state. */
export function bindControls() {
  for (const r of document.querySelectorAll('input[name="show"]')) {
    r.addEventListener('change', () => setView({ show: one('input[name="show"]:checked').value }));
  }
  for (const r of document.querySelectorAll('input[name="picture"]')) {
    r.addEventListener('change', () => setView({ picture: one('input[name="picture"]:checked').value }));
  }
  for (const r of document.querySelectorAll('input[name="upsample"]')) {
    r.addEventListener('change', () => setView({ smooth: one('input[name="upsample"]:checked').value === 'smooth' }));
  }
  $('layer').addEventListener('input', () => setView({ layer: Number($('layer').value) }));
  $('head').addEventListener('change', () => setView({ head: $('head').value }));
  $('colormap').addEventListener('change', () => setView({ colormap: $('colormap').value }));
  $('opacity').addEventListener('input', () => setView({ opacity: Number($('opacity').value) }));
  $('threshold').addEventListener('change', () => setView({ threshold: $('threshold').checked }));
  $('mass').addEventListener('input', () => setView({ mass: Number($('mass').value) }));
}
