// @ts-check
// Models downloaded from the Hub, kept in the browser's Cache Storage so
// that a second visit, or an offline one, loads them with no network. The
// weights are written as they stream in, beside the loader reading them.
// Each file is kept under its /resolve/ URL at the commit it came from; a
// record of the model's files, then the revision's commit, are written
// last, so a download that failed half-way leaves nothing a later load
// would take for a whole model.
import { resolveUrl } from './hub.js';

const CACHE = 'vitrine-hub-v1';

/**
 * What the cache holds of one model at one commit.
 * @typedef {{ endpoint: string, repo: string, commit: string, revisions: string[],
 *   weightsName: string, preprocessor: boolean, bytes: number, savedAt: number }} CachedModel
 */

/** @typedef {{ config: ArrayBuffer, preprocessor?: ArrayBuffer, weights: Blob, weightsName: string, commit: string }} HubFiles */

const recordKey = (/** @type {string} */ endpoint, /** @type {string} */ repo, /** @type {string} */ commit) =>
  `${endpoint}/${repo}/vitrine-model/${commit}`;
const refKey = (/** @type {string} */ endpoint, /** @type {string} */ repo, /** @type {string} */ revision) =>
  `${endpoint}/${repo}/vitrine-ref/${encodeURIComponent(revision)}`;

/** The cache, or null where the page cannot have one (not a secure context, storage blocked). */
async function open() {
  try {
    return globalThis.caches ? await caches.open(CACHE) : null;
  } catch {
    return null;
  }
}

/**
 * The model `repo` at `revision`, whole from the cache, or null.
 * @param {string} endpoint
 * @param {string} repo
 * @param {string} revision
 * @returns {Promise<HubFiles | null>}
 */
export async function cachedModel(endpoint, repo, revision) {
  const cache = await open();
  if (!cache) return null;
  // A full commit is its own key; any other revision is looked up.
  const ref = /^[0-9a-f]{40}$/.test(revision) ? null : await cache.match(refKey(endpoint, repo, revision));
  if (!ref && !/^[0-9a-f]{40}$/.test(revision)) return null;
  const commit = ref ? await ref.text() : revision;
  const record = await cache.match(recordKey(endpoint, repo, commit));
  if (!record) return null;
  /** @type {CachedModel} */
  const model = await record.json();
  const file = (/** @type {string} */ name) => cache.match(resolveUrl(endpoint, repo, commit, name));
  const [config, preprocessor, weights] = await Promise.all([
    file('config.json'), model.preprocessor ? file('preprocessor_config.json') : null, file(model.weightsName),
  ]);
  if (!config || !weights || (model.preprocessor && !preprocessor)) return null;
  return {
    config: await config.arrayBuffer(),
    preprocessor: preprocessor ? await preprocessor.arrayBuffer() : undefined,
    // A Blob of the cached file: posted to the worker by reference, read there.
    weights: await weights.blob(),
    weightsName: model.weightsName,
    commit,
  };
}

/**
 * Keeps a model as it downloads. `files.weights` is the opened download
 * (hub.js `open`): its body is split in two, one half written into the
 * cache, the other returned as `weights` for the loader, so that no script
 * holds the whole file. `kept` settles once the download has: with the
 * files as they are kept (the weights a Blob of the cached copy) and
 * `fresh`, the record to delete if the model cannot be loaded; or, where
 * the cache cannot take them (no storage, or too little room left: `full`),
 * with the weights as a Blob the browser holds and a `warning`. It rejects,
 * leaving nothing behind, when the download fails, or when the storage
 * fills up during it (`code: 'quota'`, `needed` bytes).
 * @param {string} endpoint
 * @param {string} repo
 * @param {string} revision
 * @param {{ config: Uint8Array, preprocessor?: Uint8Array, weights: import('./hub.js').Opened, weightsName: string, commit: string }} files
 * @returns {Promise<{ weights: ReadableStream<Uint8Array> | Blob, kept: Promise<{ files: HubFiles, fresh?: CachedModel, warning?: string, full?: boolean }> }>}
 */
export async function keepWhileLoading(endpoint, repo, revision, files) {
  const cache = await open();
  const { commit, weights: opened } = files;
  const bytes = files.config.length + (files.preprocessor?.length ?? 0) + (opened.total ?? 0);
  const put = (/** @type {Cache} */ c, /** @type {string} */ key, /** @type {BodyInit} */ body) => c.put(key, new Response(body));
  const asFiles = (/** @type {Blob} */ weights) => ({
    config: files.config.slice().buffer,
    preprocessor: files.preprocessor?.slice().buffer,
    weights,
    weightsName: files.weightsName,
    commit,
  });
  const old = cache && (await cache.match(recordKey(endpoint, repo, commit)));
  if (cache && old) {
    // This commit is kept already (under another revision): only the new
    // name is added, and the copy kept is loaded.
    /** @type {CachedModel} */
    const record = await old.json();
    record.revisions = [...new Set([...record.revisions, revision])];
    await put(cache, recordKey(endpoint, repo, commit), JSON.stringify(record));
    await put(cache, refKey(endpoint, repo, revision), commit);
    const kept = await cachedModel(endpoint, repo, commit);
    if (kept) {
      opened.body.cancel().catch(() => {});
      return { weights: kept.weights, kept: Promise.resolve({ files: kept }) };
    }
  }
  const [toLoader, toKeep] = opened.body.tee();
  const room = await storageUse();
  const why = !cache ? 'this page cannot use the browser’s storage'
    : room && room.quota > 0 && room.quota - room.usage < bytes
      ? `the browser’s storage has ${(Math.max(0, room.quota - room.usage) / 1e6).toFixed(0)} MB left and ${repo} needs ${(bytes / 1e6).toFixed(0)} MB`
      : null;
  if (why || !cache) {
    // Held by the browser for a reload (another input size, a restarted worker).
    const kept = new Response(toKeep).blob().then((blob) => ({ files: asFiles(blob), warning: why ?? '', full: Boolean(cache) }));
    return { weights: toLoader, kept };
  }
  const keeping = (async () => {
    const fresh = { endpoint, repo, commit, weightsName: files.weightsName, preprocessor: Boolean(files.preprocessor), bytes, revisions: [revision], savedAt: 0 };
    try {
      await put(cache, resolveUrl(endpoint, repo, commit, files.weightsName), toKeep);
      await opened.ended; // the body whole, as it announced
      await put(cache, resolveUrl(endpoint, repo, commit, 'config.json'), /** @type {BodyInit} */ (files.config));
      if (files.preprocessor) await put(cache, resolveUrl(endpoint, repo, commit, 'preprocessor_config.json'), /** @type {BodyInit} */ (files.preprocessor));
      // The size as read, where the Hub gave none.
      const weights = await cache.match(resolveUrl(endpoint, repo, commit, files.weightsName));
      const blob = await /** @type {Response} */ (weights).blob();
      /** @type {CachedModel} */
      const record = { ...fresh, bytes: bytes - (opened.total ?? 0) + blob.size, savedAt: Date.now() };
      await put(cache, recordKey(endpoint, repo, commit), JSON.stringify(record));
      await put(cache, refKey(endpoint, repo, revision), commit);
      // Ask the browser to keep the site's storage under pressure (granted
      // or not without a prompt in most browsers; the page says which).
      await globalThis.navigator?.storage?.persist?.().catch(() => false);
      return { files: asFiles(blob), fresh: record };
    } catch (e) {
      await forget(cache, endpoint, repo, commit, files.weightsName);
      // The download's own failure, where it failed, says what happened.
      await opened.ended;
      if (e?.name === 'QuotaExceededError') {
        throw Object.assign(new Error(`the browser’s storage is full (${repo} needs ${(bytes / 1e6).toFixed(0)} MB)`), { code: 'quota', needed: bytes });
      }
      throw e;
    }
  })();
  return { weights: toLoader, kept: keeping };
}

/**
 * Every model kept, newest first.
 * @returns {Promise<CachedModel[]>}
 */
export async function keptModels() {
  const cache = await open();
  if (!cache) return [];
  const records = [];
  for (const request of await cache.keys()) {
    if (!request.url.includes('/vitrine-model/')) continue;
    const response = await cache.match(request);
    if (response) records.push(await response.json());
  }
  return records.sort((a, b) => b.savedAt - a.savedAt);
}

/**
 * Deletes a kept model: its files, its record and the revisions naming it.
 * @param {CachedModel} model
 */
export async function deleteModel({ endpoint, repo, commit, weightsName, revisions }) {
  const cache = await open();
  if (!cache) return;
  for (const revision of revisions) {
    const ref = await cache.match(refKey(endpoint, repo, revision));
    if (ref && (await ref.text()) === commit) await cache.delete(refKey(endpoint, repo, revision));
  }
  await forget(cache, endpoint, repo, commit, weightsName);
}

/**
 * Removes one commit's files and record.
 * @param {Cache} cache
 * @param {string} endpoint
 * @param {string} repo
 * @param {string} commit
 * @param {string} weightsName
 */
async function forget(cache, endpoint, repo, commit, weightsName) {
  for (const name of [weightsName, 'config.json', 'preprocessor_config.json']) {
    await cache.delete(resolveUrl(endpoint, repo, commit, name)).catch(() => false);
  }
  await cache.delete(recordKey(endpoint, repo, commit)).catch(() => false);
}

/**
 * The storage this site uses and may use, in bytes, and whether the
 * browser keeps it under pressure (`persist`).
 * @returns {Promise<{ usage: number, quota: number, persisted: boolean } | null>}
 */
export async function storageUse() {
  const storage = globalThis.navigator?.storage;
  if (!storage?.estimate) return null;
  const { usage = 0, quota = 0 } = await storage.estimate();
  const persisted = storage.persisted ? await storage.persisted() : false;
  return { usage, quota, persisted };
}
