// A stand-in for huggingface.co's file downloads, so that tests never reach
// the internet: two local HTTP servers, the Hub and its CDN, answering as
// the real ones do for what a client of `/resolve/` sees (status codes,
// X-Error-Code, X-Repo-Commit, X-Linked-Etag/Size, the 302 to another host
// for LFS files, the relative 307 to /api/resolve-cache/ for small files
// asked for by branch, CORS). huggingface_hub's own client is held to it by
// check_standin.py; tests/e2e/hub.test.mjs uses it in CI.
//
// Repos live in ROOT/<org>/<name>/: the files, and a repo.json
//   { "commit": "<40 hex>", "refs": { "main": "<40 hex>", "v1.0": ..., "refs/pr/1": ... },
//     "tags": ["v1.0"], "gated": false, "lfs": ["model.safetensors"],
//     "faults": { "model.safetensors": "no-length" | "no-range" | "cut" | "slow" } }
// One revision a repo: every ref and the commit serve the same files.
// `tags` says which refs are tags (asked by a tag, small files come at once;
// by a branch, through the 307).
//
//   node tests/hub/standin.mjs ROOT [PORT [CDN_PORT]]   prints the endpoint, then serves
//   STANDIN_LOG=1 ...                                   also logs each request to stderr
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { pathToFileURL } from 'node:url';

// What a page may read of a cross-origin answer: the Hub's own list carries
// these (and more, for its API); without them fetch() sees only the
// CORS-safelisted headers.
const EXPOSED = ['X-Repo-Commit', 'X-Linked-Size', 'X-Linked-Etag', 'X-Error-Code', 'X-Error-Message',
  'ETag', 'Content-Length', 'Content-Range', 'Accept-Ranges', 'Location'].join(', ');
const COMMIT = /^[0-9a-f]{40}$/;
const PR_REF = /^refs\/pr\/\d+$/;
const SEGMENT = /^[\w.-]+$/;

function cors(res) {
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Expose-Headers', EXPOSED);
}

/** Bytes, hashed the ways the Hub names them; cached by path, size and mtime. */
const hashes = new Map();
async function fileInfo(file) {
  const st = await fs.promises.stat(file);
  const key = `${file}\0${st.size}\0${st.mtimeMs}`;
  let info = hashes.get(key);
  if (!info) {
    const sha256 = crypto.createHash('sha256');
    // A git blob's id, which the Hub sends as a small file's ETag.
    const sha1 = crypto.createHash('sha1').update(`blob ${st.size}\0`);
    for await (const chunk of fs.createReadStream(file)) { sha256.update(chunk); sha1.update(chunk); }
    info = { size: st.size, sha256: sha256.digest('hex'), gitSha1: sha1.digest('hex'), mtime: st.mtime };
    hashes.set(key, info);
  }
  return info;
}

/** The LFS pointer git stores for a big file; the tree API gives its blob id. */
function lfsPointerOid(info) {
  const text = `version https://git-lfs.github.com/spec/v1\noid sha256:${info.sha256}\nsize ${info.size}\n`;
  return crypto.createHash('sha1').update(`blob ${Buffer.byteLength(text)}\0${text}`).digest('hex');
}

function readRepo(root, org, name) {
  if (!SEGMENT.test(org) || !SEGMENT.test(name) || [org, name].some((s) => s === '.' || s === '..')) return null;
  const dir = path.join(root, org, name);
  let meta;
  try {
    meta = JSON.parse(fs.readFileSync(path.join(dir, 'repo.json'), 'utf8'));
  } catch {
    return null;
  }
  const commit = String(meta.commit);
  return {
    id: `${org}/${name}`, org, name, dir, commit,
    refs: { ...(meta.refs ?? { main: commit }) },
    tags: new Set(meta.tags ?? []),
    gated: Boolean(meta.gated),
    lfs: new Set(meta.lfs ?? []),
    faults: meta.faults ?? {},
  };
}

/** The commit a revision names, or null: a ref, or the full commit hash. */
function commitOf(repo, revision) {
  if (revision === repo.commit) return repo.commit;
  return Object.hasOwn(repo.refs, revision) ? repo.refs[revision] : null;
}

/** A file inside the repo's folder, or null (repo.json is the stand-in's, not the repo's). */
function fileIn(repo, parts) {
  if (!parts.length || parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\\') || p.includes('\0'))) return null;
  if (parts.length === 1 && parts[0] === 'repo.json') return null;
  const file = path.join(repo.dir, ...parts);
  try {
    return fs.statSync(file).isFile() ? file : null;
  } catch {
    return null;
  }
}

/** Every file of a repo, relative, with '/' separators. */
function listFiles(repo) {
  const out = [];
  const walk = (dir, prefix) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const rel = prefix + entry.name;
      if (entry.isDirectory()) walk(path.join(dir, entry.name), `${rel}/`);
      else if (entry.isFile() && rel !== 'repo.json') out.push(rel);
    }
  };
  walk(repo.dir, '');
  return out;
}

/** An error as the Hub gives it: the code and message in headers, the message in a JSON body. */
function sendError(req, res, status, code, message, extra = {}) {
  const body = JSON.stringify({ error: message });
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    ...(code ? { 'X-Error-Code': code } : {}),
    'X-Error-Message': message,
    ...extra,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** A redirect as the Hub's web server writes it: a short text body naming the target. */
function sendRedirect(req, res, status, location, headers) {
  const body = `${status === 302 ? 'Found' : 'Temporary Redirect'}. Redirecting to ${location}`;
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    Location: location,
    ...headers,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** `Range: bytes=a-b` (one range) → [start, end] inclusive; null for none; 'bad' if unsatisfiable. */
function parseRange(header, size) {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'bad';
  let start, end;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start > end || start >= size ? 'bad' : [start, end];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A file's bytes, whole or a range, and the faults tests ask for:
 * `no-length` streams it chunked without Content-Length (a range is still
 * answered, with its Content-Range), `no-range` does that and ignores
 * Range as well (a server that cannot seek), `cut` announces
 * the whole length and closes the connection after half, `slow` trickles
 * it out (16 KB every 50 ms) until the client goes away.
 */
async function sendFile(req, res, file, size, headers, fault) {
  const range = fault === 'no-range' ? null : parseRange(req.headers.range, size);
  if (range === 'bad') {
    res.writeHead(416, { 'Content-Range': `bytes */${size}`, 'Content-Length': 0, ...headers });
    res.end();
    return;
  }
  const [start, end] = range ?? [0, size - 1];
  const length = size === 0 ? 0 : end - start + 1;
  const head = { ...headers, 'Accept-Ranges': 'bytes' };
  if (range) head['Content-Range'] = `bytes ${start}-${end}/${size}`;
  if ((fault !== 'no-length' && fault !== 'no-range') || range) head['Content-Length'] = length;
  res.writeHead(range ? 206 : 200, head);
  if (req.method === 'HEAD' || length === 0) {
    res.end();
    return;
  }
  if (range || !fault) {
    fs.createReadStream(file, { start, end }).pipe(res);
    return;
  }
  const bytes = await fs.promises.readFile(file);
  const write = (chunk) => new Promise((resolve) => res.write(chunk, () => resolve()));
  if (fault === 'cut') {
    await write(bytes.subarray(0, Math.floor(size / 2)));
    // Let the client read what came before the connection goes, so it is
    // told "cut off at half", not an earlier count.
    await sleep(100);
    res.socket?.end();
    return;
  }
  const step = fault === 'slow' ? 16 * 1024 : 64 * 1024;
  for (let at = 0; at < size && !res.destroyed && !res.socket?.destroyed; at += step) {
    await write(bytes.subarray(at, at + step));
    if (fault === 'slow') await sleep(50);
  }
  if (!res.destroyed) res.end();
}

/** Splits and decodes a path; null when a segment is not valid percent-encoding. */
function segments(pathname) {
  try {
    return pathname.split('/').slice(1).map(decodeURIComponent);
  } catch {
    return null;
  }
}

/**
 * Starts the Hub and its CDN on 127.0.0.1 (port 0: any free port). Returns
 * `{ endpoint, cdn, close(), requests }`, `requests` listing every request
 * either server got: `{ server: 'hub'|'cdn', method, url, host, headers, status }`.
 */
export async function startHub({ root, port = 0, cdnPort = 0, log = false }) {
  root = path.resolve(root);
  const requests = [];
  /** CDN object keys (repo hash / sha256) → the file they serve. */
  const blobs = new Map();
  let endpoint = '';
  let cdn = '';

  const record = (server, req, res) => {
    const entry = { server, method: req.method, url: req.url, host: req.headers.host, headers: { ...req.headers }, status: 0 };
    requests.push(entry);
    // 'close', not 'finish': a body the client stops reading still has its status.
    res.on('close', () => {
      entry.status = res.statusCode;
      if (log) process.stderr.write(`${server} ${req.method} ${req.url} → ${res.statusCode}\n`);
    });
    cors(res);
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS',
        'Access-Control-Allow-Headers': req.headers['access-control-request-headers'] ?? 'Range, Authorization',
        'Access-Control-Max-Age': '86400',
      });
      res.end();
      return false;
    }
    return true;
  };

  const repoHash = (repo) => crypto.createHash('sha256').update(`models/${repo.id}`).digest('hex');

  /** GET|HEAD /{org}/{name}/resolve/{revision}/{path} and /api/resolve-cache/models/{org}/{name}/{commit}/{path}. */
  async function resolve(req, res, parts, cached) {
    const [org, name] = parts;
    let rest = parts.slice(cached ? 2 : 3);
    const repo = readRepo(root, org, name);
    if (!repo) return sendError(req, res, 401, 'RepoNotFound', 'Repository not found');
    if (repo.gated) {
      return sendError(req, res, 401, 'GatedRepo',
        `Access to model ${repo.id} is restricted. You must have access to it and be authenticated to access it. Please log in.`);
    }
    // A PR ref arrives encoded (refs%2Fpr%2F1) from clients that quote it, plain from others.
    let revision = rest[0] ?? '';
    if (revision === 'refs' && rest[1] === 'pr' && /^\d+$/.test(rest[2] ?? '')) {
      revision = `refs/pr/${rest[2]}`;
      rest = rest.slice(3);
    } else {
      rest = rest.slice(1);
    }
    const commit = cached ? (revision === repo.commit ? revision : null) : commitOf(repo, revision);
    if (!commit) return sendError(req, res, 404, 'RevisionNotFound', `Invalid rev id: ${revision}`);
    const file = fileIn(repo, rest);
    const relative = rest.join('/');
    if (!file) return sendError(req, res, 404, 'EntryNotFound', 'Entry not found', { 'X-Repo-Commit': commit });
    const info = await fileInfo(file);
    const fault = repo.faults[relative];

    if (repo.lfs.has(relative)) {
      // The bytes live on another host; the redirect itself carries what
      // they are (huggingface_hub's HEAD stops here and reads these).
      const rh = repoHash(repo);
      blobs.set(`${rh}/${info.sha256}`, { file, fault, name: path.basename(file) });
      const base = path.basename(file);
      const disposition = `inline; filename*=UTF-8''${encodeURIComponent(base)}; filename="${base}";`;
      const expires = Math.floor(Date.now() / 1000) + 3600;
      const location = `${cdn}/repos/${rh.slice(0, 2)}/${rh.slice(2, 4)}/${rh}/${info.sha256}`
        + `?response-content-disposition=${encodeURIComponent(disposition)}&Expires=${expires}`
        + '&Policy=stand-in&Signature=stand-in&Key-Pair-Id=stand-in';
      return sendRedirect(req, res, 302, location, {
        'X-Repo-Commit': commit,
        'X-Linked-Etag': `"${info.sha256}"`,
        'X-Linked-Size': String(info.size),
        ETag: `"${info.sha256}"`,
        'Accept-Ranges': 'bytes',
      });
    }

    const etag = `"${info.gitSha1}"`;
    const isBranch = !cached && revision !== commit && !repo.tags.has(revision) && !PR_REF.test(revision);
    if (isBranch) {
      // The Hub sends small files asked for by branch to a cacheable URL
      // named by commit, relative to its own host.
      const encodedPath = rest.map(encodeURIComponent).join('/');
      const original = encodeURIComponent(`/${repo.id}/resolve/${revision}/${relative}`);
      const location = `/api/resolve-cache/models/${repo.id}/${commit}/${encodedPath}?${original}=&etag=${encodeURIComponent(etag)}`;
      return sendRedirect(req, res, 307, location, { 'X-Repo-Commit': commit });
    }
    return sendFile(req, res, file, info.size, {
      'Content-Type': /\.json$/.test(relative) ? 'application/json; charset=utf-8' : 'application/octet-stream',
      'X-Repo-Commit': commit,
      ETag: etag,
      'Last-Modified': info.mtime.toUTCString(),
    }, fault);
  }

  /** The two API routes snapshot_download uses: repo info and the file tree. */
  async function api(req, res, parts) {
    const [org, name, kind, rawRevision, ...sub] = parts;
    const repo = readRepo(root, org, name);
    if (!repo) return sendError(req, res, 401, 'RepoNotFound', 'Repository not found');
    const revision = rawRevision ?? 'main';
    const commit = kind === undefined ? commitOf(repo, 'main') : commitOf(repo, revision);
    if (kind !== undefined && kind !== 'revision' && kind !== 'tree') return sendError(req, res, 404, null, 'Not found');
    if (!commit) return sendError(req, res, 404, 'RevisionNotFound', `Invalid rev id: ${revision}`);
    const files = listFiles(repo);
    let body;
    if (kind === 'tree') {
      // A gated repo's listing is public on the Hub; only its files are not.
      const recursive = new URL(req.url, 'http://x').searchParams.get('recursive') === 'True'
        || new URL(req.url, 'http://x').searchParams.get('recursive') === 'true';
      const prefix = sub.length ? `${sub.join('/')}/` : '';
      const entries = [];
      const dirs = new Set();
      for (const rel of files.filter((f) => f.startsWith(prefix))) {
        const tail = rel.slice(prefix.length);
        if (!recursive && tail.includes('/')) {
          dirs.add(prefix + tail.split('/')[0]);
          continue;
        }
        for (let i = tail.indexOf('/'); recursive && i >= 0; i = tail.indexOf('/', i + 1)) dirs.add(prefix + tail.slice(0, i));
        const info = await fileInfo(path.join(repo.dir, ...rel.split('/')));
        entries.push(repo.lfs.has(rel)
          ? { type: 'file', oid: lfsPointerOid(info), size: info.size, path: rel, lfs: { oid: info.sha256, size: info.size, pointerSize: 134 } }
          : { type: 'file', oid: info.gitSha1, size: info.size, path: rel });
      }
      for (const dir of dirs) entries.push({ type: 'directory', oid: crypto.createHash('sha1').update(dir).digest('hex'), size: 0, path: dir });
      body = entries.sort((a, b) => a.path.localeCompare(b.path));
    } else {
      body = {
        _id: repoHash(repo).slice(0, 24), id: repo.id, author: repo.org, sha: commit,
        private: false, gated: repo.gated ? 'auto' : false, disabled: false, tags: [],
        lastModified: new Date().toISOString(), siblings: files.map((rfilename) => ({ rfilename })),
      };
    }
    const text = JSON.stringify(body);
    res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
    res.end(req.method === 'HEAD' ? undefined : text);
  }

  const hub = http.createServer(async (req, res) => {
    if (!record('hub', req, res)) return;
    try {
      const url = new URL(req.url, 'http://stand-in');
      const parts = segments(url.pathname);
      if (!parts || (req.method !== 'GET' && req.method !== 'HEAD')) return sendError(req, res, parts ? 405 : 400, null, parts ? 'Method not allowed' : 'Bad path');
      if (parts[0] === 'api' && parts[1] === 'resolve-cache' && parts[2] === 'models') return await resolve(req, res, parts.slice(3), true);
      if (parts[0] === 'api' && parts[1] === 'models') return await api(req, res, parts.slice(2));
      if (parts.length >= 5 && parts[2] === 'resolve') return await resolve(req, res, parts, false);
      sendError(req, res, 404, null, 'Not found');
    } catch (e) {
      if (!res.headersSent) sendError(req, res, 500, null, `stand-in: ${e.message}`);
      else res.destroy();
    }
  });

  /** Every LFS file of every repo under the root, so the CDN serves keys it never handed out. */
  async function findBlob(key) {
    for (const org of fs.readdirSync(root)) {
      let names = [];
      try { names = fs.readdirSync(path.join(root, org)); } catch { continue; }
      for (const name of names) {
        const repo = readRepo(root, org, name);
        if (!repo) continue;
        for (const rel of repo.lfs) {
          const file = fileIn(repo, rel.split('/'));
          if (!file) continue;
          const info = await fileInfo(file);
          blobs.set(`${repoHash(repo)}/${info.sha256}`, { file, fault: repo.faults[rel], name: path.basename(file) });
        }
      }
    }
    return blobs.get(key);
  }

  const cdnServer = http.createServer(async (req, res) => {
    if (!record('cdn', req, res)) return;
    try {
      const url = new URL(req.url, 'http://stand-in');
      const m = /^\/repos\/[0-9a-f]{2}\/[0-9a-f]{2}\/([0-9a-f]{64})\/([0-9a-f]{64})$/.exec(url.pathname);
      const blob = m && (blobs.get(`${m[1]}/${m[2]}`) ?? await findBlob(`${m[1]}/${m[2]}`));
      if (!blob || (req.method !== 'GET' && req.method !== 'HEAD')) {
        // What S3 behind CloudFront answers for a key it does not hold.
        const body = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code></Error>';
        res.writeHead(404, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) });
        return res.end(req.method === 'HEAD' ? undefined : body);
      }
      const info = await fileInfo(blob.file);
      const disposition = url.searchParams.get('response-content-disposition');
      await sendFile(req, res, blob.file, info.size, {
        'Content-Type': 'binary/octet-stream',
        ETag: `"${info.sha256}"`,
        'Last-Modified': info.mtime.toUTCString(),
        ...(disposition ? { 'Content-Disposition': disposition } : {}),
      }, blob.fault);
    } catch (e) {
      if (!res.headersSent) { res.writeHead(500); res.end(); } else res.destroy();
    }
  });

  const listen = (server, p) => new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(p, '127.0.0.1', () => resolve(server.address().port));
  });
  endpoint = `http://127.0.0.1:${await listen(hub, port)}`;
  cdn = `http://127.0.0.1:${await listen(cdnServer, cdnPort)}`;

  const close = async () => {
    for (const server of [hub, cdnServer]) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(() => resolve()));
    }
  };
  return { endpoint, cdn, close, requests };
}

const sha = (text) => crypto.createHash('sha1').update(text).digest('hex');

/**
 * Writes a repo under `root` for a test: `files` maps names to contents
 * (string or bytes). `lfs` defaults to the weights files present. Returns
 * the repo.json written (its commit, refs, …).
 */
export function writeRepo(root, id, files, { lfs, gated = false, faults, tags = ['v1.0'], refs } = {}) {
  const dir = path.join(root, ...id.split('/'));
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
  const commit = sha(`${id}\0commit`);
  const meta = {
    commit,
    refs: refs ?? { main: commit, 'v1.0': commit, 'refs/pr/1': commit },
    tags,
    gated,
    lfs: lfs ?? Object.keys(files).filter((f) => /\.(safetensors|bin|pth|pt|onnx)$/.test(f)),
    ...(faults ? { faults } : {}),
  };
  fs.writeFileSync(path.join(dir, 'repo.json'), JSON.stringify(meta, null, 2));
  return meta;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const [root, port = '0', cdnPort = '0'] = process.argv.slice(2);
  if (!root || !fs.existsSync(root)) {
    process.stderr.write('usage: node tests/hub/standin.mjs ROOT [PORT [CDN_PORT]]\n');
    process.exit(2);
  }
  const hub = await startHub({ root, port: Number(port), cdnPort: Number(cdnPort), log: process.env.STANDIN_LOG === '1' });
  process.stdout.write(`${hub.endpoint}\n`);
  process.stderr.write(`stand-in Hub on ${hub.endpoint}, its CDN on ${hub.cdn}, serving ${path.resolve(root)}\n`);
  const stop = () => hub.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
