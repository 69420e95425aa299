// "Why this class": the relevance maps of a class, asked of the worker once
// per image and class, only when wanted. The page's view and the
// walk-through share them; they are kept with the image they are for
// (`current.relevance`, `current.failed`), a cache of the image shown.
import { setView } from './controls.js';
import { run } from './models.js';
import { state, update } from './store.js';

/** Redraws from the state (after a cache of the image shown was filled). */
const redraw = () => update({ current: state.current });

/**
 * Shows why the model scored class `k`: the maps follow its gradient
 * (computed once per image and class, only when asked).
 */
export function explain(k) {
  const { current, info } = state;
  if (!current || !info?.config.num_classes) return;
  current.why = k;
  if (state.view.show !== 'relevance') setView({ show: 'relevance' });
  ensureRelevance();
  redraw();
}

/**
 * The relevance maps of class `k` for `mine` (an image's state), asked of
 * the worker once however many callers want them; a failure is kept as its
 * message.
 */
export function fetchRelevance(mine, k) {
  if (mine.relevance[k] || mine.failed[k]) return Promise.resolve();
  if (!mine.pending.has(k)) {
    const label = state.info.labels[k];
    mine.pending.set(k, (async () => {
      try {
        // `image` names the classification these maps are for: the worker
        // answers `stale` if it has classified a newer image since.
        const answer = await run({ type: 'relevance', class: k, image: mine.id });
        if (answer.stale) {
          // The worker no longer holds this image (it restarted, or a newer
          // image came in whose result was dropped): say so rather than wait.
          mine.failed[k] = `The model no longer holds this image, so it cannot say why “${label}”: give the image again.`;
        } else {
          mine.relevance[k] = answer.relevance;
          window.vitrineWhy = answer.relevance; // for tests and the curious: the raw maps
        }
      } catch (e) {
        mine.failed[k] = `Could not work out why “${label}”: ${e.message}`;
      } finally {
        mine.pending.delete(k);
      }
    })());
  }
  return mine.pending.get(k);
}

/** Fetches the chosen class's relevance maps if they are wanted and missing, then redraws. */
export async function ensureRelevance() {
  const mine = state.current;
  if (!mine || state.view.show !== 'relevance' || mine.why < 0) return;
  const k = mine.why;
  // One waiter a class: the redraw when its maps come is done once.
  if (mine.relevance[k] || mine.failed[k] || mine.awaiting?.has(k)) return;
  (mine.awaiting ??= new Set()).add(k);
  document.body.dataset.explaining = String(k);
  try {
    await fetchRelevance(mine, k);
  } finally {
    mine.awaiting.delete(k);
  }
  if (mine === state.current) {
    redraw();
    document.body.dataset.explained = `${mine.id}:${k}`; // for tests: these maps are drawn
  }
}
