// @ts-check
// The page's first module: it starts what the first result waits for
// longest, the model's worker (its wasm module downloading and compiling)
// and the site's model's files, then brings in the page itself (app.js and
// its modules), which takes them over. Started after the page's own
// modules, they queued behind them. Until app.js listens, a file dropped or
// pasted on the page is kept here for it, not lost (nor opened by the
// browser in place of the page).
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

/** Files dropped or pasted before app.js listened. @type {File[]} */
const given = [];
const keep = (/** @type {DragEvent | ClipboardEvent} */ e) => {
  const files = e instanceof DragEvent ? e.dataTransfer?.files : e.clipboardData?.files;
  if (e.type !== 'paste') e.preventDefault();
  if (e.type !== 'dragover') given.push(...(files ?? []));
};
for (const type of ['dragover', 'drop', 'paste']) document.addEventListener(type, keep);

/** The files given so far; from now on app.js hears them itself. */
export function takeGiven() {
  for (const type of ['dragover', 'drop', 'paste']) document.removeEventListener(type, keep);
  return given.splice(0);
}

import('./app.js').catch((e) => {
  const status = document.getElementById('backend');
  if (status) status.textContent = `The page could not start: ${e.message}. Reload it to try again.`;
});
