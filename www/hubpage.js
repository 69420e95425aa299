// @ts-check
// Models from the Hugging Face Hub in the page: the gallery the host lists
// (models/hub.json), any repo by name or link, `?model=hf:org/name[@rev]`;
// each downloaded once with its progress and a Cancel button, kept in the
// browser (hubcache.js), and listed with its size and a Delete button.
// Nothing is asked of the Hub until the user asks for a model.
import { HUB_ENDPOINT, hostOf, modelFiles, parseModelRef } from './hub.js';
import { cachedModel, deleteModel, keepWhileLoading, keptModels, storageUse } from './hubcache.js';
import { loadModel, loadProgress, nextLoad } from './models.js';
import { notify, state, update } from './store.js';
import { $ } from './dom.js';

/**
 * A model the host suggests.
 * @typedef {{ repo: string, title: string, bytes: number, kind: string, patch: number, px: number, note: string }} Suggested
 */

const params = new URLSearchParams(location.search);
/** Where models come from: `?hub=URL`, else the host's models/hub.json, else the Hub. */
let endpoint = HUB_ENDPOINT;
/** The models the host suggests (models/hub.json). */
let gallery = /** @type {Suggested[]} */ ([]);
/** The download in progress, to cancel. */
let downloading = /** @type {AbortController | null} */ (null);

/** The largest weights file the page takes: WebAssembly's memory is 4 GB, and it holds the file and its weights. */
const MAX_WEIGHTS_BYTES = 4e9;

export const mb = (/** @type {number} */ bytes) => (bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`);

/**
 * models/hub.json, read strictly: `{ endpoint?, models: [{ repo, title, bytes, kind, patch, px, note }] }`.
 * @param {string} text
 * @returns {{ endpoint: string | null, models: Suggested[] }}
 */
export function parseHubList(text) {
  const fail = (/** @type {string} */ why) => { throw new Error(`models/hub.json: ${why}`); };
  let json;
  try { json = JSON.parse(text); } catch (e) { fail(`not valid JSON (${e.message})`); }
  if (!json || typeof json !== 'object' || !Array.isArray(json.models)) fail('must be an object with a `models` list');
  if (json.endpoint !== undefined && !/^https?:\/\/[^/]+/.test(String(json.endpoint))) fail('`endpoint` must be an http(s) URL');
  const models = json.models.map((m, i) => {
    for (const key of ['repo', 'title', 'kind', 'note']) if (typeof m?.[key] !== 'string') fail(`models[${i}].${key} must be a string`);
    for (const key of ['bytes', 'patch', 'px']) if (!Number.isFinite(m[key]) || m[key] <= 0) fail(`models[${i}].${key} must be a positive number`);
    parseModelRef(m.repo);
    return { repo: m.repo, title: m.title, bytes: m.bytes, kind: m.kind, patch: m.patch, px: m.px, note: m.note };
  });
  return { endpoint: json.endpoint?.replace(/\/+$/, '') ?? null, models };
}

/** The Hub part of the page: its endpoint, its gallery, the field, Cancel, the downloaded models. */
export async function setupHub() {
  $('hub-form').addEventListener('submit', (/** @type {Event} */ e) => {
    e.preventDefault();
    loadHubModel($('hub-ref').value);
  });
  $('hub-cancel').addEventListener('click', () => downloading?.abort());
  try {
    const listing = await fetch('models/hub.json');
    // A host may leave the list out: the field still takes any model.
    if (listing.ok) {
      const list = parseHubList(await listing.text());
      gallery = list.models;
      if (list.endpoint) endpoint = list.endpoint;
    } else if (listing.status !== 404) {
      throw new Error(`models/hub.json: HTTP ${listing.status}`);
    }
  } catch (e) {
    notify({ warning: e.message });
  }
  const asked = params.get('hub');
  if (asked) {
    if (/^https?:\/\/[^/]+/.test(asked)) endpoint = asked.replace(/\/+$/, '');
    else notify({ warning: `?hub= must be an http(s) address; models come from ${hostOf(endpoint)}.` });
  }
  for (const el of document.querySelectorAll('.hub-host')) el.textContent = hostOf(endpoint);
  $('hub-gallery').replaceChildren(...gallery.map(suggestion));
  showKept();
}

/** Where models come from now. */
export const hubEndpoint = () => endpoint;

/** The models the host suggests. */
export const galleryModels = () => gallery;

/** The host's entry for `repo`, if it suggests it. */
export const suggested = (/** @type {string} */ repo) => gallery.find((m) => m.repo === repo) ?? null;

/** @param {Suggested} m */
function suggestion(m) {
  const li = document.createElement('li');
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'hub-model';
  button.dataset.repo = m.repo;
  const title = document.createElement('strong');
  title.textContent = m.title;
  const facts = document.createElement('span');
  facts.textContent = `${m.repo} · ${mb(m.bytes)} · ${m.kind} · ${m.patch}-px patches at ${m.px} px`;
  const note = document.createElement('span');
  note.className = 'hint';
  note.textContent = m.note;
  button.append(title, facts, note);
  button.addEventListener('click', () => loadHubModel(m.repo, { bytes: m.bytes }));
  li.append(button);
  return li;
}

/**
 * A Hub model's files: the browser's copy when it has one, else a download
 * that streams into the loader and into the browser's storage beside it
 * (`kept` settles once it is kept; `ended` once the download ends, and its
 * failure says why better than the loader that read it). Null when `stale()`
 * says the files are no longer wanted once the download has started.
 * @param {string} from the endpoint
 * @param {string} repo
 * @param {string} revision
 * @param {{ signal: AbortSignal, onDownload?: () => void, onProgress?: (p: any) => void, stale?: () => boolean }} options
 */
export async function hubModelFiles(from, repo, revision, { signal, onDownload = () => {}, onProgress, stale = () => false }) {
  const cached = await cachedModel(from, repo, revision);
  if (cached) {
    const files = { name: cached.weightsName, weights: cached.weights, config: cached.config, preprocessor: cached.preprocessor };
    return { files, commit: cached.commit ?? revision, kept: null, ended: null };
  }
  onDownload();
  const got = await modelFiles(from, repo, revision, { signal, maxBytes: MAX_WEIGHTS_BYTES, onProgress });
  const opened = got.weights;
  if (stale()) {
    opened.body.cancel().catch(() => {});
    return null;
  }
  const commit = got.commit ?? revision;
  const keeping = await keepWhileLoading(from, repo, revision, { ...got, commit });
  keeping.kept.catch(() => {}); // settled by the caller
  /** @type {import('./protocol.js').ModelFiles} */
  const files = {
    name: got.weightsName, weights: keeping.weights, bytes: opened.total ?? undefined,
    config: got.config.slice().buffer, preprocessor: got.preprocessor?.slice().buffer,
  };
  return { files, commit, kept: keeping.kept, ended: opened.ended };
}

/**
 * Loads a model from the Hub (`text`: a repo, `org/name@rev`, a link, or
 * `hf:…`): from the browser's copy when it has one, else downloaded, kept,
 * then loaded (a copy the model cannot load from is not kept). `seq` is
 * its load number (a new one when not given: taken only once the request
 * is good, so a bad one never stops the load under way); `bytes`, when
 * known beforehand, refuses a model too big before any download; `from`
 * is the endpoint (the page's).
 * @param {string} text
 * @param {{ seq?: number, bytes?: number, from?: string }} [options]
 */
export async function loadHubModel(text, { seq, bytes = 0, from = endpoint } = {}) {
  let ref;
  try {
    ref = parseModelRef(text);
  } catch (e) {
    notify({ error: e.message });
    return false;
  }
  const { repo, revision } = ref;
  if (bytes > MAX_WEIGHTS_BYTES) {
    notify({ error: `${repo} is ${mb(bytes)}: more than this page can hold (WebAssembly’s memory is 4 GB).${state.info ? ' The previous model is still in use.' : ''}` });
    return false;
  }
  seq ??= nextLoad();
  downloading?.abort();
  const controller = new AbortController();
  const progress = loadProgress(repo, seq);
  notify({ error: '', warning: '' });
  document.body.dataset.hubLoad = 'started';
  /** @type {Promise<{ files: any, fresh?: any, warning?: string, full?: boolean }> | null} */
  let kept = null; // what this load keeps, settled once its download has
  /** @type {Error | null} */
  let broken = null; // what stopped the download, if anything did
  try {
    const got = await hubModelFiles(from, repo, revision, {
      signal: controller.signal,
      // Cancel is offered while bytes come in.
      onDownload: () => { downloading = controller; $('hub-cancel').hidden = false; },
      onProgress: (p) => progress.report('downloading', p.done, p.total ?? 0, { file: p.file, rate: p.bytesPerSecond, left: p.secondsLeft }),
      stale: () => seq < state.loads, // a newer load was asked for: it wins
    });
    if (!got) return false;
    const { files, commit } = got;
    kept = got.kept;
    got.ended?.catch((d) => { broken = d; }).finally(() => {
      if (downloading === controller) {
        downloading = null;
        $('hub-cancel').hidden = true;
      }
    });
    if (seq < state.loads) return false; // a newer load was asked for: it wins
    const origin = `${repo}@${/^[0-9a-f]{40}$/.test(commit) ? commit.slice(0, 7) : commit} from ${hostOf(from)}`;
    const loaded = await loadModel(repo, files, seq, progress, origin, `hf:${repo}${revision === 'main' ? '' : `@${revision}`}`);
    let warning = '';
    if (kept) {
      try {
        const done = await kept;
        if (done.warning) warning = `${repo} is loaded but not kept for next time: ${done.warning}.${done.full ? ' Delete a downloaded model below to make room.' : ''}`;
        keepForReload(seq, done.files.weights);
      } catch (e) {
        // The storage filled up during the download: loaded all the same,
        // but only a new download can load it again.
        warning = e.code === 'quota'
          ? `${repo} is loaded but not kept for next time: ${e.message}. Delete a downloaded model below to make room.`
          : `${repo} is loaded but not kept for next time: ${e.message}.`;
        keepForReload(seq, undefined);
      }
    }
    if (loaded && warning) notify({ warning });
    document.body.dataset.hubLoad = 'done';
    return true;
  } catch (e) {
    // A failed download says why better than the loader that read it; a
    // model that cannot be loaded stops its download, and is not kept.
    const reason = broken ?? e;
    controller.abort();
    const done = await kept?.catch(() => null);
    if (done?.fresh) await deleteModel(done.fresh).catch(() => {});
    document.body.dataset.hubLoad = 'failed';
    if (seq === state.loads) notify({ error: await failure(repo, from, reason) });
    return false;
  } finally {
    progress.end();
    if (downloading === controller) downloading = null;
    if (!downloading) $('hub-cancel').hidden = true;
    showKept();
  }
}

/**
 * The weights a reload of load `seq` reads (at another input size, or in a
 * restarted worker): the kept copy, in place of the download stream the
 * load consumed; none when nothing could be kept.
 * @param {number} seq
 * @param {Blob | undefined} weights
 */
function keepForReload(seq, weights) {
  const { source } = state;
  if (source?.seq !== seq) return;
  update({ source: { ...source, files: { ...source.files, weights: /** @type {Blob} */ (weights) } } });
}

/**
 * What to tell the user when a Hub load failed: the Hub's own reason, a
 * cancellation, or an unreachable host with what the browser has kept.
 * @param {string} repo
 * @param {string} from the endpoint
 * @param {any} e
 */
async function failure(repo, from, e) {
  const still = state.info ? ' The previous model is still in use.' : '';
  if (e?.code === 'too-big') return `${repo}'s weights are more than this page can hold (WebAssembly’s memory is 4 GB).${still}`;
  if (e?.code === 'cancelled') return `The download of ${repo} was cancelled.${still}`;
  if (e?.code === 'network') {
    const kept = (await keptModels()).filter((m) => m.endpoint === from);
    const offer = kept.length ? ` Downloaded before, and loadable offline: ${kept.map((m) => m.repo).join(', ')}.` : '';
    return `Could not reach ${hostOf(from)} for ${repo} (offline, or the address is blocked): ${String(e.message).replace(/\.$/, '')}.${offer}${still}`;
  }
  const message = String(e?.message ?? e).replace(/\.$/, '');
  // The Hub's own refusals name the repo already.
  if (['gated', 'repo', 'revision', 'file'].includes(e?.code)) return `${message}.${still}`;
  return `Could not load ${repo}: ${message}.${still}`;
}

/** The downloaded models, each with its size and a Delete button, and the storage used. */
async function showKept() {
  const kept = await keptModels();
  $('hub-kept-title').hidden = kept.length === 0;
  $('hub-kept').replaceChildren(...kept.map((m) => {
    const li = document.createElement('li');
    const load = document.createElement('button');
    load.type = 'button';
    load.textContent = `${m.repo}@${m.revisions[0] ?? m.commit.slice(0, 7)}`;
    load.title = `Load it (commit ${m.commit})`;
    load.addEventListener('click', () => loadHubModel(`${m.repo}@${m.revisions[0] ?? m.commit}`, { from: m.endpoint }));
    const size = document.createElement('span');
    size.textContent = ` ${mb(m.bytes)} `;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'hub-delete';
    remove.textContent = 'Delete';
    remove.setAttribute('aria-label', `Delete ${m.repo} from this browser`);
    remove.addEventListener('click', async () => {
      await deleteModel(m);
      showKept();
    });
    li.append(load, size, remove);
    return li;
  }));
  const use = await storageUse();
  $('hub-storage').textContent = use && kept.length
    ? `This site uses ${mb(use.usage)} of the ${mb(use.quota)} the browser allows it${use.persisted ? '' : ' (the browser may clear it when space runs low)'}.`
    : '';
  document.body.dataset.hubKept = String(kept.length);
}
