// @ts-check
// The page's first module: it starts what the first result waits for
// longest, the model's worker (its wasm module downloading and compiling)
// and the site's model's files, then brings in the page itself (app.js and
// its modules), which takes them over. Started after the page's own
// modules, they queued behind them. Until app.js listens, what the user
// picks, drops or pastes is kept here for it, in order: not lost, nor (a
// dropped file) opened by the browser in place of the page.
import { connect } from './rpc.js';
import { fetchSiteModel } from './manifest.js';

const params = new URLSearchParams(location.search);

/** The worker, started on the backend the address asks for (or its own choice). */
export const worker = connect(params.get('backend'), params.get('simd'));

/**
 * The site's model's files, unless the address names one of the Hub's
 * (`?model=hf:…`) or a lesson (whose step names its own).
 */
export const siteModel = /^hf:/i.test(params.get('model') ?? '') || params.has('lesson')
  ? undefined
  : fetchSiteModel(params.get('model'));
siteModel?.catch(() => {}); // said when it is loaded

/**
 * What the user gave before app.js listened, in the order it came: each
 * drop, paste or pick its own list of files (an image, then a checkpoint,
 * are two). @type {File[][]}
 */
const given = [];
const picker = /** @type {HTMLInputElement | null} */ (document.getElementById('file'));
const pick = () => {
  if (!picker?.files?.length) return;
  given.push([...picker.files]);
  picker.value = ''; // the same file picked again is a new pick
};
pick(); // picked before this module ran
const keep = (/** @type {Event} */ e) => {
  if (e.type === 'change') return pick();
  const files = e instanceof DragEvent ? e.dataTransfer?.files : e instanceof ClipboardEvent ? e.clipboardData?.files : null;
  if (e.type !== 'paste') e.preventDefault(); // the browser would open a dropped file in place of the page
  if (e.type !== 'dragover' && files?.length) given.push([...files]);
};
const events = ['dragover', 'drop', 'paste'];
for (const type of events) document.addEventListener(type, keep);
picker?.addEventListener('change', keep);

/** What was given so far, list by list; from now on app.js hears it itself. */
export function takeGiven() {
  for (const type of events) document.removeEventListener(type, keep);
  picker?.removeEventListener('change', keep);
  return given.splice(0);
}

import('./app.js').catch((e) => {
  const status = document.getElementById('backend');
  if (status) status.textContent = `The page could not start: ${e.message}. Reload it to try again.`;
});
