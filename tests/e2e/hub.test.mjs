// The page's Hub client (www/hub.js) against the stand-in Hub
// (tests/hub/standin.mjs, itself held to huggingface_hub by
// tests/hub/check_standin.py): what a user may type for a model, the URLs,
// the Hub's refusals as sentences, and whole downloads through the Hub's
// redirects, faults and cancellation. No browser, no network beyond 127.0.0.1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startHub, writeRepo } from '../hub/standin.mjs';
import { parseModelRef, resolveUrl, hubError, download, modelFiles, ACCEPTED_FORMS } from '../../www/hub.js';
import { eachChunk } from '../../www/progress.js';

/** Every byte of an opened download's body (its error, exactly, when it fails). */
async function readAll(opened) {
  const parts = [];
  await eachChunk(opened.body, (c) => parts.push(c));
  return new Uint8Array(Buffer.concat(parts));
}

const MB = 1_000_000;
const config = Buffer.from(JSON.stringify({ architecture: 'vit_tiny_patch16_224', num_classes: 10 }));
const preprocessor = Buffer.from(JSON.stringify({ image_mean: [0.5, 0.5, 0.5], size: { height: 224, width: 224 } }));
const weights = crypto.randomBytes(MB);
const binWeights = crypto.randomBytes(200_000);
let root;
let hub;
let host; // the stand-in Hub's host:port, as messages name it
const meta = {};

before(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'vitrine-hub-'));
  meta.tiny = writeRepo(root, 'acme/vit-tiny', { 'config.json': config, 'model.safetensors': weights });
  meta.bin = writeRepo(root, 'acme/vit-bin', { 'config.json': config, 'preprocessor_config.json': preprocessor, 'pytorch_model.bin': binWeights });
  writeRepo(root, 'acme/gated', { 'config.json': config, 'model.safetensors': weights }, { gated: true });
  writeRepo(root, 'acme/config-only', { 'config.json': config });
  for (const fault of ['no-length', 'no-range', 'cut', 'slow']) {
    writeRepo(root, `acme/${fault}`, { 'config.json': config, 'model.safetensors': weights }, { faults: { 'model.safetensors': fault } });
  }
  hub = await startHub({ root });
  host = new URL(hub.endpoint).host;
});

after(async () => {
  await hub?.close();
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

/** Byte for byte, without printing a megabyte when they differ. */
function sameBytes(got, want, what) {
  assert.ok(got instanceof Uint8Array, `${what}: a Uint8Array`);
  assert.equal(got.length, want.length, `${what}: length`);
  assert.ok(Buffer.from(got.buffer, got.byteOffset, got.length).equals(want), `${what}: the same bytes`);
}

/** The requests made while `fn` ran, as `server METHOD path → status`. */
async function traffic(fn) {
  const mark = hub.requests.length;
  const result = await fn();
  return { result, seen: hub.requests.slice(mark).map((r) => `${r.server} ${r.method} ${r.url.split('?')[0]} → ${r.status}`) };
}

test('parseModelRef reads every accepted form', () => {
  const sha = 'a'.repeat(40);
  const cases = [
    ['google/vit-base-patch16-224', { repo: 'google/vit-base-patch16-224', revision: 'main' }],
    ['  google/vit-base-patch16-224\n', { repo: 'google/vit-base-patch16-224', revision: 'main' }],
    ['timm/vit_small_patch16_224.augreg_in21k', { repo: 'timm/vit_small_patch16_224.augreg_in21k', revision: 'main' }],
    ['acme/m@v1.0', { repo: 'acme/m', revision: 'v1.0' }],
    ['acme/m@feature/x', { repo: 'acme/m', revision: 'feature/x' }],
    [`acme/m@${sha}`, { repo: 'acme/m', revision: sha }],
    ['acme/m@refs/pr/12', { repo: 'acme/m', revision: 'refs/pr/12' }],
    ['hf:acme/m', { repo: 'acme/m', revision: 'main' }],
    ['hf:acme/m@dev', { repo: 'acme/m', revision: 'dev' }],
    ['hf://acme/m@refs/pr/1', { repo: 'acme/m', revision: 'refs/pr/1' }],
    ['https://huggingface.co/google/vit-base-patch16-224', { repo: 'google/vit-base-patch16-224', revision: 'main' }],
    ['https://huggingface.co/google/vit-base-patch16-224/', { repo: 'google/vit-base-patch16-224', revision: 'main' }],
    ['https://huggingface.co/google/vit-base-patch16-224?library=transformers#model-card', { repo: 'google/vit-base-patch16-224', revision: 'main' }],
    ['huggingface.co/acme/m', { repo: 'acme/m', revision: 'main' }],
    ['http://www.huggingface.co/acme/m', { repo: 'acme/m', revision: 'main' }],
    ['https://hf.co/acme/m', { repo: 'acme/m', revision: 'main' }],
    ['https://huggingface.co/acme/m/tree/main', { repo: 'acme/m', revision: 'main' }],
    ['https://huggingface.co/acme/m/tree/v1.0/', { repo: 'acme/m', revision: 'v1.0' }],
    ['https://huggingface.co/acme/m/tree/refs%2Fpr%2F3', { repo: 'acme/m', revision: 'refs/pr/3' }],
    ['https://huggingface.co/acme/m/tree/refs/pr/3', { repo: 'acme/m', revision: 'refs/pr/3' }],
    ['https://huggingface.co/acme/m/blob/main/config.json', { repo: 'acme/m', revision: 'main', file: 'config.json' }],
    [`https://huggingface.co/acme/m/blob/${sha}/model.safetensors?download=true`, { repo: 'acme/m', revision: sha, file: 'model.safetensors' }],
    ['https://huggingface.co/acme/m/resolve/refs%2Fpr%2F1/pytorch_model.bin', { repo: 'acme/m', revision: 'refs/pr/1', file: 'pytorch_model.bin' }],
    ['https://huggingface.co/acme/m/resolve/main/onnx/model.onnx/', { repo: 'acme/m', revision: 'main', file: 'onnx/model.onnx' }],
  ];
  for (const [text, want] of cases) assert.deepEqual(parseModelRef(text), want, JSON.stringify(text));
});

test('parseModelRef refuses the rest, saying why and what it accepts', () => {
  const why = (text, reason) => `“${text}” is not a Hub model: ${reason}. Give ${ACCEPTED_FORMS}.`;
  assert.throws(() => parseModelRef('vit-base'), { message: why('vit-base', '“vit-base” names no owner (a model is org/name)') });
  assert.match(ACCEPTED_FORMS, /org\/name@REVISION .*refs\/pr\/N.*hf:org\/name.*huggingface\.co\/org\/name/);
  const cases = [
    ['', 'nothing was given'],
    ['a/b/c', '“a/b/c” has more than one “/” (a model is org/name)'],
    ['acme/my model', '“my model” may hold only letters, digits, “-”, “_” and “.”'],
    ['acme/-model', '“-model” must start and end with a letter or digit'],
    ['acme/model.', '“model.” must start and end with a letter or digit'],
    ['acme/a--b', '“acme/a--b” holds “--” or “..”'],
    ['acme/a..b', '“acme/a..b” holds “--” or “..”'],
    [`acme/${'x'.repeat(97)}`, `“${'x'.repeat(20)}…” is longer than 96 characters`],
    ['acme/model.git', '“acme/model.git” ends in “.git”'],
    ['acme/ｍodel', '“ｍodel” may hold only letters, digits, “-”, “_” and “.”'],
    ['acme/m@', 'the revision is empty'],
    ['acme/m@refs/heads/main', '“refs/heads/main” is not a revision (of refs/, only refs/pr/N)'],
    ['acme/m@a..b', '“a..b” is not a branch, tag or commit'],
    ['acme/m@dev branch', '“dev branch” is not a branch, tag or commit'],
    ['hf:acme', '“acme” names no owner (a model is org/name)'],
    ['https://example.com/acme/m', 'it is a link to somewhere other than huggingface.co'],
    ['https://huggingface.co/datasets/acme/d', 'it is a dataset, not a model'],
    ['https://huggingface.co/spaces/acme/s', 'it is a Space, not a model'],
    ['https://huggingface.co/acme', 'the link names no model'],
    ['https://huggingface.co/acme/m/discussions/1', '“/discussions/” is not a page of the model\'s files'],
    ['https://huggingface.co/acme/m/tree/main/onnx', 'it is a folder inside the repo; give the model itself'],
    ['https://huggingface.co/acme/m/tree/', 'the link names no revision after /tree/'],
    ['https://huggingface.co/acme/m/blob/main', 'the link names no file after /blob/main/'],
    ['https://huggingface.co/acme/m/resolve/%E0%A4%A/x', 'its path is not valid percent-encoding'],
  ];
  for (const [text, reason] of cases) {
    assert.throws(() => parseModelRef(text), { message: why(text.length > 80 ? `${text.slice(0, 79)}…` : text, reason) }, JSON.stringify(text));
  }
  assert.throws(() => parseModelRef(/** @type {any} */ (undefined)), { message: why('', 'nothing was given') });
});

test('resolveUrl encodes the revision whole and the file by segment', () => {
  assert.equal(resolveUrl('https://huggingface.co', 'acme/m', 'main', 'config.json'), 'https://huggingface.co/acme/m/resolve/main/config.json');
  assert.equal(resolveUrl('https://huggingface.co/', 'acme/m', 'refs/pr/1', 'onnx/model.onnx'), 'https://huggingface.co/acme/m/resolve/refs%2Fpr%2F1/onnx/model.onnx');
  assert.equal(resolveUrl('http://127.0.0.1:9/mirror', 'acme/m', 'feature/x', 'a b.json'), 'http://127.0.0.1:9/mirror/acme/m/resolve/feature%2Fx/a%20b.json');
});

test('hubError says each refusal in one sentence, with a code', () => {
  const answer = (status, code, statusText = '') => ({ status, statusText, headers: new Headers(code ? { 'X-Error-Code': code } : {}) });
  const target = { repo: 'acme/m', revision: 'v2', file: 'config.json', endpoint: 'https://huggingface.co' };
  const cases = [
    [answer(401, 'GatedRepo'), 'gated', 'acme/m is gated: accept its terms on the Hub, download the files and drop them here.'],
    [answer(403, 'GatedRepo'), 'gated', 'acme/m is gated: accept its terms on the Hub, download the files and drop them here.'],
    [answer(401, 'RepoNotFound'), 'repo', 'No model acme/m on huggingface.co (or it is private).'],
    [answer(401, null), 'repo', 'No model acme/m on huggingface.co (or it is private).'],
    [answer(404, 'RevisionNotFound'), 'revision', 'acme/m has no revision “v2” on huggingface.co.'],
    [answer(404, 'EntryNotFound'), 'file', 'acme/m has no config.json at “v2”.'],
    [answer(404, null), 'file', 'acme/m has no config.json at “v2”.'],
    [answer(500, null, 'Internal Server Error'), 'http', 'huggingface.co answered 500 Internal Server Error for config.json of acme/m.'],
    [answer(429, null), 'http', 'huggingface.co answered 429 for config.json of acme/m.'],
  ];
  for (const [response, code, message] of cases) {
    const e = hubError(response, target);
    assert.ok(e instanceof Error);
    assert.deepEqual({ code: e.code, message: e.message, status: e.status }, { code, message, status: response.status });
  }
});

test('the stand-in answers as the Hub: 302 to the CDN with X-Linked-*, relative 307, ranges, CORS', async () => {
  const { commit } = meta.tiny;
  const lfs = await fetch(`${hub.endpoint}/acme/vit-tiny/resolve/main/model.safetensors`, { method: 'HEAD', redirect: 'manual' });
  const sha256 = crypto.createHash('sha256').update(weights).digest('hex');
  assert.equal(lfs.status, 302);
  assert.equal(lfs.headers.get('x-repo-commit'), commit);
  assert.equal(lfs.headers.get('x-linked-size'), String(MB));
  assert.equal(lfs.headers.get('x-linked-etag'), `"${sha256}"`);
  const location = lfs.headers.get('location');
  assert.ok(location.startsWith(`${hub.cdn}/repos/`) && location.includes(`/${sha256}?`), location);

  const small = await fetch(`${hub.endpoint}/acme/vit-tiny/resolve/main/config.json`, { method: 'HEAD', redirect: 'manual' });
  assert.equal(small.status, 307);
  assert.match(small.headers.get('location'), new RegExp(`^/api/resolve-cache/models/acme/vit-tiny/${commit}/config\\.json\\?`));
  const cached = await fetch(new URL(small.headers.get('location'), hub.endpoint));
  assert.equal(cached.status, 200);
  assert.equal(cached.headers.get('x-repo-commit'), commit);
  const blobSha1 = crypto.createHash('sha1').update(`blob ${config.length}\0`).update(config).digest('hex');
  assert.equal(cached.headers.get('etag'), `"${blobSha1}"`);
  sameBytes(new Uint8Array(await cached.arrayBuffer()), config, 'config.json');

  const part = await fetch(location, { headers: { Range: 'bytes=10-19' } });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get('content-range'), `bytes 10-19/${MB}`);
  sameBytes(new Uint8Array(await part.arrayBuffer()), weights.subarray(10, 20), 'the range');

  for (const response of [lfs, small, cached, part]) {
    assert.equal(response.headers.get('access-control-allow-origin'), '*');
    assert.match(response.headers.get('access-control-expose-headers'), /X-Repo-Commit.*X-Linked-Size.*X-Linked-Etag.*X-Error-Code.*X-Error-Message.*ETag.*Content-Length.*Content-Range.*Accept-Ranges/);
  }
  const preflight = await fetch(`${hub.endpoint}/acme/vit-tiny/resolve/main/config.json`, { method: 'OPTIONS' });
  assert.equal(preflight.status, 204);
  assert.match(preflight.headers.get('access-control-allow-methods'), /GET/);
});

test('modelFiles by branch: config through the relative 307, weights through the 302 to the CDN', async () => {
  const progress = [];
  const { result, seen } = await traffic(async () => {
    const files = await modelFiles(hub.endpoint, 'acme/vit-tiny', 'main', { onProgress: (p) => progress.push(p) });
    // The weights are open, not read: their bytes stream to the reader.
    assert.equal(files.weights.total, MB);
    assert.ok(!progress.some((p) => p.file === 'model.safetensors' && p.done > 0), 'nothing read before the reader asks');
    sameBytes(await readAll(files.weights), weights, 'model.safetensors');
    await files.weights.ended;
    return files;
  });
  const { commit } = meta.tiny;
  sameBytes(result.config, config, 'config.json');
  assert.equal(result.preprocessor, undefined);
  assert.equal(result.weightsName, 'model.safetensors');
  assert.equal(result.commit, commit);
  // After config.json names the commit, the rest is asked for by it.
  assert.deepEqual(seen.map((s) => s.replace(/\/repos\/\S+/, '/repos/…')), [
    'hub GET /acme/vit-tiny/resolve/main/config.json → 307',
    `hub GET /api/resolve-cache/models/acme/vit-tiny/${commit}/config.json → 200`,
    `hub GET /acme/vit-tiny/resolve/${commit}/preprocessor_config.json → 404`,
    `hub GET /acme/vit-tiny/resolve/${commit}/model.safetensors → 302`,
    'cdn GET /repos/… → 200',
  ]);
  assert.equal(hub.requests.at(-1).host, new URL(hub.cdn).host, 'the weights came from the CDN host');
  assert.notEqual(new URL(hub.cdn).host, host);
  const last = progress.at(-1);
  assert.deepEqual([last.file, last.done, last.total], ['model.safetensors', MB, MB]);
  assert.ok(progress.filter((p) => p.file === 'model.safetensors').every((p) => p.total === MB && p.done <= MB && p.bytesPerSecond >= 0));
  assert.equal(last.secondsLeft, 0);
});

test('modelFiles falls back to pytorch_model.bin, and reads preprocessor_config.json', async () => {
  const { result, seen } = await traffic(() => modelFiles(hub.endpoint, 'acme/vit-bin', 'main'));
  assert.equal(result.weightsName, 'pytorch_model.bin');
  sameBytes(await readAll(result.weights), binWeights, 'pytorch_model.bin');
  sameBytes(result.preprocessor, preprocessor, 'preprocessor_config.json');
  sameBytes(result.config, config, 'config.json');
  assert.equal(result.commit, meta.bin.commit);
  assert.ok(seen.includes(`hub GET /acme/vit-bin/resolve/${meta.bin.commit}/model.safetensors → 404`), seen.join('\n'));
  assert.ok(seen.includes(`hub GET /acme/vit-bin/resolve/${meta.bin.commit}/pytorch_model.bin → 302`), seen.join('\n'));
});

test('modelFiles by tag, by full commit and by refs/pr/1: small files come at once', async () => {
  const { commit } = meta.tiny;
  for (const [revision, asked] of [['v1.0', 'v1.0'], [commit, commit], ['refs/pr/1', 'refs%2Fpr%2F1']]) {
    const { result, seen } = await traffic(() => modelFiles(hub.endpoint, 'acme/vit-tiny', revision));
    sameBytes(await readAll(result.weights), weights, `model.safetensors at ${revision}`);
    sameBytes(result.config, config, `config.json at ${revision}`);
    assert.equal(result.commit, commit);
    assert.equal(seen[0], `hub GET /acme/vit-tiny/resolve/${asked}/config.json → 200`, revision);
  }
});

test("modelFiles says the Hub's refusals: gated, no repo, no revision, no file", async () => {
  const refusals = [
    ['acme/gated', 'main', 'gated', 'acme/gated is gated: accept its terms on the Hub, download the files and drop them here.'],
    ['acme/nothing', 'main', 'repo', `No model acme/nothing on ${host} (or it is private).`],
    ['acme/vit-tiny', 'v9', 'revision', `acme/vit-tiny has no revision “v9” on ${host}.`],
    ['acme/config-only', 'main', 'file', 'acme/config-only has neither model.safetensors nor pytorch_model.bin at “main”.'],
  ];
  for (const [repo, revision, code, message] of refusals) {
    await assert.rejects(modelFiles(hub.endpoint, repo, revision), { code, message }, repo);
  }
  // A file asked for alone: the target is read back from its URL.
  await assert.rejects(download(resolveUrl(hub.endpoint, 'acme/vit-tiny', 'refs/pr/1', 'tokenizer.json')),
    { code: 'file', message: 'acme/vit-tiny has no tokenizer.json at “refs/pr/1”.', status: 404 });
  await assert.rejects(download('http://127.0.0.1:1/acme/m/resolve/main/config.json'),
    { code: 'network', message: /^Could not reach 127\.0\.0\.1:1 for config\.json \(offline, or it does not let this page read it\): / });
});

test('no Content-Length: the size comes from a one-byte range, or stays unknown', async () => {
  const weightsOf = async (repo) => {
    const progress = [];
    const { result, seen } = await traffic(async () => {
      const files = await modelFiles(hub.endpoint, repo, 'main', { onProgress: (p) => progress.push(p) });
      sameBytes(await readAll(files.weights), weights, `${repo}'s model.safetensors`);
      return files;
    });
    const weightsProgress = progress.filter((p) => p.file === 'model.safetensors');
    assert.ok(weightsProgress.length > 0);
    assert.equal(weightsProgress.at(-1).done, MB);
    // The probe asks the CDN's address (the Hub's redirect is not repeated), with no header but Range.
    const probes = hub.requests.slice(-seen.length).filter((r) => r.headers.range);
    return { total: result.weights.total, weightsProgress, probes };
  };
  // The CDN answers the range: its Content-Range names the size.
  const sized = await weightsOf('acme/no-length');
  assert.equal(sized.total, MB);
  assert.ok(sized.weightsProgress.every((p) => p.total === MB), JSON.stringify(sized.weightsProgress.slice(0, 2)));
  assert.ok(sized.weightsProgress.at(-1).secondsLeft === 0);
  assert.deepEqual(sized.probes.map((r) => [r.server, r.method, r.headers.range, r.status]), [['cdn', 'GET', 'bytes=0-0', 206]]);
  // It ignores Range (a whole 200 instead): the size stays unknown, the bar indeterminate.
  const unsized = await weightsOf('acme/no-range');
  assert.equal(unsized.total, null);
  assert.ok(unsized.weightsProgress.every((p) => p.total === null && p.secondsLeft === null), JSON.stringify(unsized.weightsProgress.slice(0, 2)));
  assert.deepEqual(unsized.probes.map((r) => [r.server, r.headers.range, r.status]), [['cdn', 'bytes=0-0', 200]]);
});

test('a download cut short says where it stopped', async () => {
  const opened = (await modelFiles(hub.endpoint, 'acme/cut', 'main')).weights;
  const cut = { code: 'cut', message: 'The download of model.safetensors was cut off at 0.5 of 1.0 MB.' };
  await assert.rejects(readAll(opened), cut);
  await assert.rejects(opened.ended, cut);
});

test('download against bodies that do not match their Content-Length', async () => {
  // A fetch whose body is `bytes`, sent in 64 KB chunks, announcing `length`.
  const fake = (bytes, length) => async () => new Response(new ReadableStream({
    start(c) {
      for (let at = 0; at < bytes.length; at += 65536) c.enqueue(bytes.subarray(at, at + 65536));
      c.close();
    },
  }), { headers: { 'Content-Length': String(length) } });
  const url = `${hub.endpoint}/acme/m/resolve/main/model.safetensors`;
  // Ends cleanly but short (a proxy that closes the stream without an error).
  await assert.rejects(download(url, { fetch: fake(weights, 3 * MB) }),
    { code: 'cut', message: 'The download of model.safetensors was cut off at 1.0 of 3.0 MB.', done: MB, total: 3 * MB });
  // More than announced (a compressed body's length): the size becomes unknown, the bytes stay right.
  const progress = [];
  const { bytes } = await download(url, { fetch: fake(weights, 100_000), onProgress: (p) => progress.push(p) });
  sameBytes(bytes, weights, 'an overlong body');
  assert.equal(progress.at(-1).total, null);
  assert.equal(progress.at(-1).done, MB);
});

test('a slow download stops when cancelled', async () => {
  const controller = new AbortController();
  const started = Date.now();
  let heard = 0;
  const slow = await modelFiles(hub.endpoint, 'acme/slow', 'main', {
    signal: controller.signal,
    onProgress: (p) => {
      if (p.file === 'model.safetensors' && p.done > 0) {
        heard = p.done;
        controller.abort();
      }
    },
  });
  const cancelled = { name: 'AbortError', code: 'cancelled', message: 'The download of model.safetensors was cancelled.' };
  await assert.rejects(readAll(slow.weights), cancelled);
  await assert.rejects(slow.weights.ended, cancelled);
  assert.ok(heard > 0 && heard < MB, `cancelled after ${heard} bytes`);
  // Sent whole, the file takes 3 s at the stand-in's trickle.
  assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
  // Cancelled before it starts: nothing is asked.
  const mark = hub.requests.length;
  await assert.rejects(modelFiles(hub.endpoint, 'acme/vit-tiny', 'main', { signal: AbortSignal.abort() }), { code: 'cancelled' });
  assert.equal(hub.requests.length, mark);
});

test('every request was a simple GET: no credentials, no custom headers', () => {
  // The stand-in's own checks above use fetch directly (HEAD, OPTIONS); hub.js's requests are the rest.
  // Its only header is a one-byte Range, which needs no CORS preflight.
  const mine = hub.requests.filter((r) => r.method === 'GET');
  assert.ok(mine.length > 20, `${mine.length} requests`);
  for (const r of hub.requests.filter((q) => !['HEAD', 'OPTIONS'].includes(q.method))) {
    const names = Object.keys(r.headers);
    assert.deepEqual(names.filter((n) => n === 'cookie' || n === 'authorization' || n.startsWith('x-')), [], `${r.method} ${r.url}`);
    assert.equal(r.method, 'GET');
  }
});
