// @ts-check
// A model from the Hugging Face Hub, fetched by the page itself: what the
// user typed or pasted, read as a repo and revision; the Hub's answers read
// as sentences; a file's bytes streamed with progress. Pure (it imports
// only progress.js's stream helper), so tests/e2e/hub.test.mjs runs it in
// Node against tests/hub/standin.mjs.
//
// Every request is a "simple" one: GET, no credentials, no custom headers.
// A custom header (or a token) would make the browser send a CORS preflight,
// and the Hub's CDN answers those for some origins only; and no cookie of
// the user's Hub session is sent, so a gated or private model stays out of
// reach here, as it says.
import { eachChunk } from './progress.js';

/** The Hub, unless a host names a mirror. */
export const HUB_ENDPOINT = 'https://huggingface.co';

/** What parseModelRef accepts, shown in its messages. */
export const ACCEPTED_FORMS = 'org/name, org/name@REVISION (a branch, a tag, a 40-hex commit or refs/pr/N), '
  + 'hf:org/name[@REVISION], or a huggingface.co/org/name link (also …/tree/REVISION, …/blob/REVISION/FILE, …/resolve/REVISION/FILE)';

/** The weights files a model's repo may hold, in the order they are tried. */
export const WEIGHTS_FILES = ['model.safetensors', 'pytorch_model.bin'];

const HUB_HOSTS = /^(www\.)?(huggingface\.co|hf\.co)$/i;
const COMMIT = /^[0-9a-f]{40}$/;
const PR_REF = /^refs\/pr\/\d+$/;

/**
 * A model on the Hub: its repo id, a revision, and a file when a link named one.
 * @typedef {{ repo: string, revision: string, file?: string }} ModelRef
 */

/**
 * @param {string} text
 * @param {string} why
 * @returns {never}
 */
function refuse(text, why) {
  const shown = text.length > 80 ? `${text.slice(0, 79)}…` : text;
  throw new Error(`“${shown}” is not a Hub model: ${why}. Give ${ACCEPTED_FORMS}.`);
}

/**
 * Checks a repo id as the Hub does (huggingface_hub's validate_repo_id):
 * owner and name of ASCII letters, digits, `-`, `_` and `.`, each starting
 * and ending with a letter, digit or `_`, at most 96 characters; no `--`
 * or `..`; not ending in `.git`.
 * @param {string} text the whole input, for messages
 * @param {string} repo
 */
function checkRepo(text, repo) {
  const parts = repo.split('/');
  if (parts.length === 1) refuse(text, `“${repo}” names no owner (a model is org/name)`);
  if (parts.length > 2) refuse(text, `“${repo}” has more than one “/” (a model is org/name)`);
  for (const part of parts) {
    if (part === '') refuse(text, 'the owner or the name is empty');
    if (part.length > 96) refuse(text, `“${part.slice(0, 20)}…” is longer than 96 characters`);
    if (!/^[A-Za-z0-9_.-]+$/.test(part)) refuse(text, `“${part}” may hold only letters, digits, “-”, “_” and “.”`);
    if (!/^\w/.test(part) || !/\w$/.test(part)) refuse(text, `“${part}” must start and end with a letter or digit`);
  }
  if (repo.includes('--') || repo.includes('..')) refuse(text, `“${repo}” holds “--” or “..”`);
  if (repo.endsWith('.git')) refuse(text, `“${repo}” ends in “.git”`);
}

/**
 * A revision: a 40-hex commit, refs/pr/N, or a branch or tag name as git
 * allows it (no `..`, `//`, `@{`, spaces or control characters; not ending
 * in `/`, `.` or `.lock`).
 * @param {string} text
 * @param {string} revision
 */
function checkRevision(text, revision) {
  if (revision === '') refuse(text, 'the revision is empty');
  if (COMMIT.test(revision) || PR_REF.test(revision)) return;
  if (revision.startsWith('refs/')) refuse(text, `“${revision}” is not a revision (of refs/, only refs/pr/N)`);
  if (revision.length > 255 || !/^[A-Za-z0-9_][A-Za-z0-9_.\-/+]*$/.test(revision)
    || /\.\.|\/\/|\/\.|\/$|\.$|\.lock$/.test(revision)) {
    refuse(text, `“${revision.slice(0, 60)}” is not a branch, tag or commit`);
  }
}

/**
 * Reads what a user gives for a model: `org/name`, `org/name@revision`,
 * `hf:org/name[@revision]`, or a link to the model on huggingface.co (its
 * page, or a `/tree/`, `/blob/` or `/resolve/` link, with or without a
 * trailing slash or query). Throws an Error saying what is wrong and what
 * is accepted.
 * @param {string} text
 * @returns {ModelRef}
 */
export function parseModelRef(text) {
  const input = typeof text === 'string' ? text.trim() : '';
  if (input === '') refuse('', 'nothing was given');
  if (/^hf:/i.test(input)) return parseId(input, input.slice(3).replace(/^\/\//, ''));
  const bare = input.replace(/^https?:\/\//i, '');
  const host = bare.split(/[/?#]/)[0];
  if (HUB_HOSTS.test(host)) return parseLink(input);
  if (/^[a-z][a-z0-9+.-]*:/i.test(input)) refuse(input, 'it is a link to somewhere other than huggingface.co');
  return parseId(input, input);
}

/**
 * @param {string} text
 * @param {string} id `org/name` or `org/name@revision`
 * @returns {ModelRef}
 */
function parseId(text, id) {
  const at = id.indexOf('@');
  const repo = at < 0 ? id : id.slice(0, at);
  checkRepo(text, repo);
  if (at < 0) return { repo, revision: 'main' };
  const revision = id.slice(at + 1);
  checkRevision(text, revision);
  return { repo, revision };
}

/**
 * @param {string} text a huggingface.co link, with or without its scheme
 * @returns {ModelRef}
 */
function parseLink(text) {
  let url;
  try {
    url = new URL(/^https?:\/\//i.test(text) ? text : `https://${text}`);
  } catch {
    refuse(text, 'it is not a valid link');
  }
  /** @type {string[]} */
  let parts;
  try {
    parts = url.pathname.split('/').filter((p) => p !== '').map(decodeURIComponent);
  } catch {
    refuse(text, 'its path is not valid percent-encoding');
  }
  if (parts[0] === 'datasets' || parts[0] === 'spaces') {
    refuse(text, `it is a ${parts[0] === 'datasets' ? 'dataset' : 'Space'}, not a model`);
  }
  if (parts.length < 2) refuse(text, 'the link names no model');
  const repo = `${parts[0]}/${parts[1]}`;
  checkRepo(text, repo);
  if (parts.length === 2) return { repo, revision: 'main' };
  const [kind, ...rest] = parts.slice(2);
  if (kind !== 'tree' && kind !== 'blob' && kind !== 'resolve') refuse(text, `“/${kind}/” is not a page of the model's files`);
  // The Hub writes refs/pr/N encoded (refs%2Fpr%2F1); people also type it plain.
  const prRef = rest[0] === 'refs' && rest[1] === 'pr' && /^\d+$/.test(rest[2] ?? '');
  const revision = prRef ? rest.slice(0, 3).join('/') : rest[0];
  const after = rest.slice(prRef ? 3 : 1);
  if (revision === undefined) refuse(text, `the link names no revision after /${kind}/`);
  checkRevision(text, revision);
  if (kind === 'tree') {
    if (after.length) refuse(text, 'it is a folder inside the repo; give the model itself');
    return { repo, revision };
  }
  if (!after.length) refuse(text, `the link names no file after /${kind}/${revision}/`);
  return { repo, revision, file: after.join('/') };
}

/**
 * A file's download URL: `{endpoint}/{repo}/resolve/{revision}/{file}`, the
 * revision encoded whole (refs/pr/1 → refs%2Fpr%2F1), the file by segment.
 * @param {string} endpoint
 * @param {string} repo
 * @param {string} revision
 * @param {string} file
 */
export function resolveUrl(endpoint, repo, revision, file) {
  const path = file.split('/').map(encodeURIComponent).join('/');
  return `${endpoint.replace(/\/+$/, '')}/${repo}/resolve/${encodeURIComponent(revision)}/${path}`;
}

/**
 * What a request was for, so that an error can say it.
 * @typedef {{ repo: string, revision: string, file: string, endpoint: string }} HubTarget
 */

/** An address's host, for messages (the address itself when it is none). @param {string} endpoint */
export function hostOf(endpoint) {
  try {
    return new URL(endpoint).host;
  } catch {
    return endpoint;
  }
}

/**
 * An Error, with a `code`, for code that may differ.
 * @param {string} message
 * @param {string} code
 * @param {object} [extra]
 * @returns {Error & { code: string }}
 */
function coded(message, code, extra = {}) {
  return Object.assign(new Error(message), { code }, extra);
}

/**
 * The Hub's refusal as one sentence. Its X-Error-Code says why (the Hub
 * lists it in Access-Control-Expose-Headers, so the page can read it): a
 * gated repo; a missing or private repo (401, also without a code: the Hub
 * does not say which); a missing revision; a missing file (404, also
 * without a code). `code` is
 * 'gated', 'repo', 'revision', 'file' or 'http'; `status` the HTTP status.
 * @param {{ status: number, statusText?: string, headers: { get(name: string): string | null } }} response
 * @param {HubTarget} target
 */
export function hubError(response, { repo, revision, file, endpoint }) {
  const code = response.headers.get('x-error-code');
  const host = hostOf(endpoint);
  const { status } = response;
  const extra = { status };
  if (code === 'GatedRepo') {
    return coded(`${repo} is gated: accept its terms on the Hub, download the files and drop them here.`, 'gated', extra);
  }
  if (code === 'RepoNotFound' || (status === 401 && !code)) {
    return coded(`No model ${repo} on ${host} (or it is private).`, 'repo', extra);
  }
  if (code === 'RevisionNotFound') {
    return coded(`${repo} has no revision “${revision}” on ${host}.`, 'revision', extra);
  }
  // A plain static mirror says 404 with no code: a missing file there too.
  if (code === 'EntryNotFound' || (status === 404 && !code)) {
    return coded(`${repo} has no ${file} at “${revision}”.`, 'file', extra);
  }
  const text = response.statusText ? ` ${response.statusText}` : '';
  return coded(`${host} answered ${status}${text} for ${file} of ${repo}.`, 'http', extra);
}

/**
 * What a /resolve/ URL asks for, when its caller did not say.
 * @param {string} url
 * @returns {HubTarget}
 */
function targetOf(url) {
  const m = /^(.*?)\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/([^?#]+)/.exec(url);
  const decode = (/** @type {string} */ s) => { try { return decodeURIComponent(s); } catch { return s; } };
  if (!m) return { repo: 'the model', revision: 'main', file: fileName(url), endpoint: url };
  return { endpoint: m[1], repo: m[2], revision: decode(m[3]), file: decode(m[4]) };
}

/** @param {string} url */
function fileName(url) {
  const last = url.split(/[?#]/)[0].split('/').pop() || url;
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

/** @param {unknown} e */
const messageOf = (e) => (e instanceof Error ? e.message : String(e));

/** Megabytes for messages, with the precision of the larger figure. */
function mb(/** @type {number} */ bytes, /** @type {number} */ scale = bytes) {
  return (bytes / 1e6).toFixed(scale < 1e7 ? 1 : 0);
}

/**
 * @typedef {{ done: number, total: number | null, bytesPerSecond: number, secondsLeft: number | null }} Progress
 * @typedef {{ bytes: Uint8Array, commit: string | null, etag: string | null }} Downloaded
 * @typedef {{ body: ReadableStream<Uint8Array>, total: number | null, commit: string | null, etag: string | null, ended: Promise<void> }} Opened
 * @typedef {(input: string, init?: RequestInit) => Promise<Response>} FetchFn
 */

/**
 * The size of what `url` serves, read from the Content-Range of a
 * `Range: bytes=0-0` answer (a single range is a CORS-safelisted header: no
 * preflight), or null when the server answers otherwise or not at all.
 * @param {string} url
 * @param {FetchFn} fetchFn
 * @param {AbortSignal | undefined} signal
 */
async function sizeByRange(url, fetchFn, signal) {
  try {
    const response = await fetchFn(url, {
      credentials: 'omit', redirect: 'follow', referrerPolicy: 'no-referrer', signal, headers: { Range: 'bytes=0-0' },
    });
    response.body?.cancel().catch(() => {});
    const m = /^bytes 0-0\/(\d+)$/.exec(response.headers.get('content-range')?.trim() ?? '');
    return response.status === 206 && m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * Opens one file's download, following the Hub's redirects (to its CDN for
 * big files): `body` streams its bytes, checked as they come; `total` is
 * the final answer's Content-Length (the redirect's X-Linked-Size is out of
 * fetch's sight), else what a one-byte range request says of it, else null; `ended` settles when the body
 * does, with the error that stopped it. `onProgress` hears each chunk
 * (`total` turns null when the body proves bigger: it was compressed).
 * Throws the Hub's refusal (hubError), and one with `code: 'network'` when
 * the host cannot be reached; the body fails with an Error when it ends
 * short of its length (`code: 'cut'`), one named AbortError with `code:
 * 'cancelled'` when `signal` aborts, one with `code: 'too-big'` past
 * `maxBytes`, and one with `code: 'network'` when it cannot be read.
 * @param {string} url
 * @param {{ signal?: AbortSignal, onProgress?: (p: Progress) => void, fetch?: FetchFn, name?: string, target?: HubTarget, maxBytes?: number }} [options]
 * @returns {Promise<Opened>}
 */
export async function open(url, { signal, onProgress, fetch: fetchFn = globalThis.fetch, name, target, maxBytes = Infinity } = {}) {
  const label = name ?? fileName(url);
  const cancelled = (/** @type {unknown} */ cause) => coded(`The download of ${label} was cancelled.`, 'cancelled', { name: 'AbortError', cause });
  if (signal?.aborted) throw cancelled(signal.reason);
  let response;
  try {
    // No credentials, no headers of ours: a simple request, without a
    // preflight. No referrer either: the Hub need not know the page.
    response = await fetchFn(url, { credentials: 'omit', redirect: 'follow', referrerPolicy: 'no-referrer', signal });
  } catch (e) {
    if (signal?.aborted) throw cancelled(e);
    const host = hostOf(url);
    throw coded(`Could not reach ${host} for ${label} (offline, or it does not let this page read it): ${messageOf(e)}`, 'network', { cause: e });
  }
  if (!response.ok) {
    response.body?.cancel().catch(() => {});
    throw hubError(response, target ?? targetOf(url));
  }
  const commit = response.headers.get('x-repo-commit');
  const etag = response.headers.get('etag');
  const length = response.headers.get('content-length');
  const encoding = response.headers.get('content-encoding');
  // A compressed body's Content-Length counts the compressed bytes, not
  // those read here (when the header is hidden by CORS, the overflow below
  // finds out).
  const plain = !encoding || encoding === 'identity';
  /** @type {number | null} */
  let total = length !== null && /^\d+$/.test(length.trim()) && plain ? Number(length) : null;
  if (total === null && plain) total = await sizeByRange(response.url || url, fetchFn, signal);
  const announced = total;

  const started = Date.now();
  let done = 0;
  let lastReport = -Infinity;
  const report = (/** @type {boolean} */ last) => {
    if (!onProgress) return;
    const now = Date.now();
    // At most 20 a second, and the last always: a page repaints no faster.
    if (!last && now - lastReport < 50) return;
    lastReport = now;
    const seconds = (now - started) / 1000;
    const bytesPerSecond = seconds > 0 ? done / seconds : 0;
    const secondsLeft = total !== null && bytesPerSecond > 0 ? Math.max(0, total - done) / bytesPerSecond : null;
    onProgress({ done, total, bytesPerSecond, secondsLeft });
  };
  const cut = () => coded(`The download of ${label} was cut off at ${mb(done, total ?? done)} of ${mb(total ?? done)} MB.`, 'cut', { done, total });
  // More than the caller can hold: refused before any byte is read (one
  // of 4 GB cannot be held), or as soon as a body of unknown size passes it.
  const tooBig = () => coded(`${label} is more than ${mb(maxBytes)} MB, more than this page can hold.`, 'too-big', { total });
  if (total !== null && total > maxBytes) {
    response.body?.cancel().catch(() => {});
    throw tooBig();
  }
  /** @type {(value?: any) => void} */
  let finish = () => {};
  /** @type {(e: Error) => void} */
  let fail = () => {};
  /** @type {Promise<void>} */
  const ended = new Promise((resolve, reject) => { finish = resolve; fail = reject; });
  ended.catch(() => {}); // read by those who want the reason
  /** `error`, which ends the body, told to `ended` first. */
  const stop = (/** @type {Error} */ error) => {
    fail(error);
    return error;
  };
  const reader = (response.body ?? new Response(await response.arrayBuffer()).body)?.getReader();
  const body = new ReadableStream({
    async pull(controller) {
      let chunk;
      try {
        chunk = await /** @type {ReadableStreamDefaultReader<Uint8Array>} */ (reader).read();
      } catch (e) {
        throw stop(signal?.aborted ? cancelled(e)
          : total !== null && done < total ? Object.assign(cut(), { cause: e })
            : coded(`The download of ${label} failed after ${mb(done)} MB: ${messageOf(e)}`, 'network', { cause: e }));
      }
      if (chunk.done) {
        if (total !== null && done < total) throw stop(cut());
        report(true);
        controller.close();
        finish();
        return;
      }
      const { value } = chunk;
      if (done + value.length > maxBytes) {
        reader?.cancel().catch(() => {});
        throw stop(tooBig());
      }
      if (total !== null && done + value.length > total) total = null; // more than announced: the size was not the body's
      done += value.length;
      report(false);
      controller.enqueue(value);
    },
    cancel(reason) {
      fail(cancelled(reason));
      return reader?.cancel(reason);
    },
  }, { highWaterMark: 0 }); // read as the reader asks, not ahead
  return { body, total: announced, commit, etag, ended };
}

/**
 * Downloads one file whole ([`open`]'s body into one buffer of the
 * announced size, grown by doubling without one), with `open`'s errors.
 * @param {string} url
 * @param {Parameters<typeof open>[1]} [options]
 * @returns {Promise<Downloaded>}
 */
export async function download(url, options) {
  const { body, total, commit, etag } = await open(url, options);
  let buffer = new Uint8Array(total ?? 1 << 20);
  const size = await eachChunk(body, (value, done) => {
    if (done > buffer.length) {
      const bigger = new Uint8Array(Math.max(buffer.length * 2, done));
      bigger.set(buffer.subarray(0, done - value.length));
      buffer = bigger;
    }
    buffer.set(value, done - value.length);
  });
  return { bytes: size === buffer.length ? buffer : buffer.slice(0, size), commit, etag };
}

/**
 * A model's files from the Hub: config.json (required: the cheapest
 * request, it finds a missing or gated repo before any big download), then
 * preprocessor_config.json (often absent), both read whole; then the
 * weights, the first of WEIGHTS_FILES present, opened ([`open`]): their
 * bytes stream to whoever reads `weights.body`. Once config.json names the
 * commit, the other files are asked for by that commit, so that all come
 * from one revision even if the branch moves meanwhile. `onProgress` hears
 * every file's progress, its name in `file`.
 * @param {string} endpoint
 * @param {string} repo
 * @param {string} revision
 * @param {{ signal?: AbortSignal, onProgress?: (p: Progress & { file: string }) => void, fetch?: FetchFn, maxBytes?: number }} [options]
 * @returns {Promise<{ config: Uint8Array, preprocessor: Uint8Array | undefined, weights: Opened, weightsName: string, commit: string | null }>}
 */
export async function modelFiles(endpoint, repo, revision, { signal, onProgress, fetch, maxBytes } = {}) {
  let pinned = revision;
  const options = (/** @type {string} */ file) => ({
    signal,
    fetch,
    maxBytes,
    name: file,
    target: { repo, revision, file, endpoint },
    onProgress: onProgress && ((/** @type {Progress} */ p) => onProgress({ ...p, file })),
  });
  const url = (/** @type {string} */ file) => resolveUrl(endpoint, repo, pinned, file);
  const absent = (/** @type {any} */ e) => {
    if (e?.code !== 'file') throw e;
    return undefined;
  };

  const config = await download(url('config.json'), options('config.json'));
  const commit = config.commit && COMMIT.test(config.commit) ? config.commit : null;
  if (commit) pinned = commit;
  const preprocessor = (await download(url('preprocessor_config.json'), options('preprocessor_config.json')).catch(absent))?.bytes;
  for (const weightsName of WEIGHTS_FILES) {
    const weights = await open(url(weightsName), options(weightsName)).catch(absent);
    if (weights) return { config: config.bytes, preprocessor, weights, weightsName, commit };
  }
  throw coded(`${repo} has neither ${WEIGHTS_FILES.join(' nor ')} at “${revision}”.`, 'file');
}
