// The CLI's downloads (`vitrine fetch`, `--model hf:`) against the stand-in
// Hub (tests/hub/standin.mjs): the Hugging Face cache laid out as
// huggingface_hub lays it out, the same answers as the files loaded from a
// folder, the Hub's refusals in one line with exit status 2, a cut-off
// download resumed, the cache standing in for an unreachable Hub, and
// HF_HUB_OFFLINE. No network beyond 127.0.0.1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startHub, writeRepo } from '../hub/standin.mjs';
import { bin, fixtures, root as repoRoot } from './harness.mjs';
import { parseManifest } from '../../www/manifest.js';

const image = path.join(fixtures, 'images/chelsea.png');
const tiny = path.join(fixtures, 'models/timm_tiny');
const deit = path.join(fixtures, 'torch/hf_deit');
const read = (dir, name) => fs.readFileSync(path.join(dir, name));
let root;
let hub;
let cache;
const meta = {};

before(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'vitrine-hub-cli-'));
  cache = path.join(root, 'cache');
  const tinyFiles = { 'config.json': read(tiny, 'config.json'), 'model.safetensors': read(tiny, 'model.safetensors') };
  meta.tiny = writeRepo(path.join(root, 'hub'), 'acme/vit-tiny', tinyFiles);
  meta.deit = writeRepo(path.join(root, 'hub'), 'acme/deit-bin', Object.fromEntries(
    ['config.json', 'preprocessor_config.json', 'pytorch_model.bin'].map((f) => [f, read(deit, f)])));
  writeRepo(path.join(root, 'hub'), 'acme/gated', tinyFiles, { gated: true });
  meta.cut = writeRepo(path.join(root, 'hub'), 'acme/cut', tinyFiles, { faults: { 'model.safetensors': 'cut' } });
  writeRepo(path.join(root, 'hub'), 'acme/no-length', tinyFiles, { faults: { 'model.safetensors': 'no-length' } });
  writeRepo(path.join(root, 'hub'), 'acme/config-only', { 'config.json': tinyFiles['config.json'] });
  hub = await startHub({ root: path.join(root, 'hub') });
});

after(async () => {
  await hub?.close();
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

/**
 * Runs the CLI with the cache and endpoint given: status, stdout, stderr.
 * Asynchronously, so that the stand-in in this process can answer it.
 */
function vitrine(args, env = {}) {
  return new Promise((resolve) => {
    execFile(bin, args, {
      encoding: 'utf8',
      env: { ...process.env, HF_HUB_CACHE: cache, HF_ENDPOINT: hub.endpoint, HF_TOKEN: '', HF_HUB_OFFLINE: '', ...env },
      timeout: 120_000,
    }, (error, out, err) => resolve({ code: error ? error.code : 0, out, err }));
  });
}

const top = (out) => JSON.parse(out).top;
const sha256 = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const repoDir = (id) => path.join(cache, `models--${id.replace('/', '--')}`);

/** The requests made while `fn` ran. */
async function traffic(fn) {
  const mark = hub.requests.length;
  const result = await fn();
  return { result, seen: hub.requests.slice(mark) };
}

test('fetch lays the cache out as huggingface_hub does, and the model answers as its folder', async () => {
  const { result, seen } = await traffic(() => vitrine(['fetch', 'acme/vit-tiny']));
  assert.equal(result.code, 0, result.err);
  const dir = repoDir('acme/vit-tiny');
  const snapshot = path.join(dir, 'snapshots', meta.tiny.commit);
  assert.equal(result.out.trim(), snapshot);
  assert.equal(fs.readFileSync(path.join(dir, 'refs/main'), 'utf8'), meta.tiny.commit);
  // Weights named by their sha256 (the LFS ETag), linked relatively.
  const weights = path.join(snapshot, 'model.safetensors');
  const digest = sha256(path.join(tiny, 'model.safetensors'));
  assert.equal(fs.readlinkSync(weights), `../../blobs/${digest}`);
  assert.equal(sha256(weights), digest);
  assert.ok(fs.existsSync(path.join(dir, '.no_exist', meta.tiny.commit, 'preprocessor_config.json')));
  assert.deepEqual(fs.readdirSync(path.join(dir, 'blobs')).filter((f) => f.endsWith('.incomplete')), []);
  // The weights came from the CDN host, without the token's header.
  assert.ok(seen.some((r) => r.server === 'cdn' && r.method === 'GET'), 'the CDN served the weights');

  const want = await vitrine(['classify', image, '--model', tiny, '--json']);
  assert.equal(want.code, 0, want.err);
  const again = await traffic(() => vitrine(['classify', image, '--model', 'hf:acme/vit-tiny', '--json']));
  assert.equal(again.result.code, 0, again.result.err);
  assert.deepEqual(top(again.result.out), top(want.out));
  assert.deepEqual(again.seen.filter((r) => r.method === 'GET').map((r) => r.url), [],
    'a cached model is only asked about (HEAD), not downloaded again');
});

test('a repo with only pytorch_model.bin, by tag and by commit', async () => {
  const want = await vitrine(['classify', image, '--model', deit, '--json']);
  assert.equal(want.code, 0, want.err);
  for (const name of ['hf:acme/deit-bin@v1.0', `hf:acme/deit-bin@${meta.deit.commit}`]) {
    const got = await vitrine(['classify', image, '--model', name, '--json']);
    assert.equal(got.code, 0, `${name}: ${got.err}`);
    assert.deepEqual(top(got.out), top(want.out), name);
  }
  const snapshot = path.join(repoDir('acme/deit-bin'), 'snapshots', meta.deit.commit);
  assert.deepEqual(fs.readdirSync(snapshot).sort(), ['config.json', 'preprocessor_config.json', 'pytorch_model.bin']);
});

test('the token goes to the Hub only', async () => {
  const { result, seen } = await traffic(() => vitrine(['fetch', 'acme/no-length'], { HF_TOKEN: 'hf_secret' }));
  assert.equal(result.code, 0, result.err);
  assert.ok(seen.filter((r) => r.server === 'hub').every((r) => r.headers.authorization === 'Bearer hf_secret'));
  assert.ok(seen.filter((r) => r.server === 'cdn').every((r) => r.headers.authorization === undefined));
  const weights = path.join(repoDir('acme/no-length'), 'snapshots', writeRepoCommit('acme/no-length'), 'model.safetensors');
  assert.equal(sha256(weights), sha256(path.join(tiny, 'model.safetensors')), 'a body without Content-Length, whole');
});

/** The stand-in's commit of a repo (a hash of its name). */
function writeRepoCommit(id) {
  return crypto.createHash('sha1').update(`${id}\0commit`).digest('hex');
}

test('the Hub\'s refusals: one line each, exit status 2', async () => {
  const cases = [
    ['acme/gated', /acme\/gated is gated: accept its terms on the Hub, then set HF_TOKEN/],
    ['acme/nothing', /acme\/nothing is not on http:\/\/127\.0\.0\.1:\d+, or it is private/],
    ['acme/vit-tiny@v9', /acme\/vit-tiny has no revision `v9`/],
    ['acme/config-only', /acme\/config-only@main has neither model\.safetensors nor pytorch_model\.bin/],
  ];
  for (const [name, message] of cases) {
    const r = await vitrine(['fetch', name]);
    assert.equal(r.code, 2, `${name}: ${r.out}`);
    assert.match(r.err, message, name);
    assert.equal(r.err.trim().split('\n').length, 1, `${name}: one line: ${r.err}`);
  }
  const usage = await vitrine(['fetch', 'gpt2']);
  assert.equal(usage.code, 2);
  assert.match(usage.err, /is not a Hub model/);
});

test('a cut-off download leaves no file in the snapshot, and the next run resumes it', async () => {
  const first = await vitrine(['fetch', 'acme/cut']);
  assert.equal(first.code, 2);
  assert.match(first.err, /the download of acme\/cut\/model\.safetensors was cut off at [\d.]+ MB of [\d.]+ MB: run the command again to resume it/);
  const dir = repoDir('acme/cut');
  const snapshot = path.join(dir, 'snapshots', meta.cut.commit);
  assert.ok(!fs.existsSync(path.join(snapshot, 'model.safetensors')), 'no weights in the snapshot');
  const digest = sha256(path.join(tiny, 'model.safetensors'));
  const partial = path.join(dir, 'blobs', `${digest}.incomplete`);
  const size = fs.statSync(path.join(tiny, 'model.safetensors')).size;
  assert.equal(fs.statSync(partial).size, Math.floor(size / 2), 'the half that came is kept');
  const loading = await vitrine(['classify', image, '--model', 'hf:acme/cut', '--json'], { HF_HUB_OFFLINE: '1' });
  assert.equal(loading.code, 2, 'offline, a partial download is not a model');

  const { result, seen } = await traffic(() => vitrine(['fetch', 'acme/cut']));
  assert.equal(result.code, 0, result.err);
  const ranged = seen.find((r) => r.server === 'cdn' && r.method === 'GET');
  assert.equal(ranged?.headers.range, `bytes=${Math.floor(size / 2)}-`, 'resumed from where it stopped');
  assert.equal(sha256(path.join(snapshot, 'model.safetensors')), digest);
  assert.ok(!fs.existsSync(partial));
});

test('offline, and with the Hub unreachable, the cache serves what it has', async () => {
  const want = await vitrine(['classify', image, '--model', tiny, '--json']);
  const offline = await traffic(() => vitrine(['classify', image, '--model', 'hf:acme/vit-tiny', '--json'], { HF_HUB_OFFLINE: '1' }));
  assert.equal(offline.result.code, 0, offline.result.err);
  assert.deepEqual(offline.seen, [], 'HF_HUB_OFFLINE: no request');
  assert.deepEqual(top(offline.result.out), top(want.out));
  const missing = await vitrine(['fetch', 'acme/gated'], { HF_HUB_OFFLINE: '1' });
  assert.equal(missing.code, 2);
  assert.match(missing.err, /acme\/gated is not in the Hugging Face cache .*HF_HUB_OFFLINE is set/);

  // A port nothing listens on.
  const dead = 'http://127.0.0.1:9';
  const fallback = await vitrine(['classify', image, '--model', 'hf:acme/vit-tiny', '--json'], { HF_ENDPOINT: dead });
  assert.equal(fallback.code, 0, fallback.err);
  assert.deepEqual(top(fallback.out), top(want.out));
  assert.match(fallback.err, /http:\/\/127\.0\.0\.1:9 is unreachable .*; using acme\/vit-tiny@main from the Hugging Face cache/);
  const nothing = await vitrine(['fetch', 'acme/never-fetched'], { HF_ENDPOINT: dead });
  assert.equal(nothing.code, 2);
  assert.match(nothing.err, /cannot reach http:\/\/127\.0\.0\.1:9 .*acme\/never-fetched@main is not in the Hugging Face cache/);
});

test('fetch --out copies a model into a site and --manifest lists it there', async () => {
  const site = path.join(root, 'site');
  fs.mkdirSync(path.join(site, 'models'), { recursive: true });
  const manifest = path.join(site, 'models/manifest.json');
  fs.copyFileSync(path.join(repoRoot, 'www/models/manifest.json'), manifest);
  const out = path.join(site, 'models/acme--deit-bin');
  for (let i = 0; i < 2; i++) {
    const r = await vitrine(['fetch', 'acme/deit-bin', '--out', out, '--manifest', manifest]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.trim(), out);
  }
  for (const f of ['config.json', 'preprocessor_config.json', 'pytorch_model.bin']) {
    assert.ok(!fs.lstatSync(path.join(out, f)).isSymbolicLink(), `${f}: a file of its own`);
    assert.ok(fs.readFileSync(path.join(out, f)).equals(read(deit, f)), `${f}: the repo's bytes`);
  }
  const parsed = parseManifest(fs.readFileSync(manifest, 'utf8'));
  assert.equal(parsed.default, 'fashion-vit', 'the site\'s default stays');
  const listed = parsed.models.filter((m) => m.name === 'acme/deit-bin');
  assert.equal(listed.length, 1, 'listed once, however often fetched');
  assert.equal(listed[0].path, 'acme--deit-bin/');
  assert.deepEqual(listed[0].files, ['config.json', 'preprocessor_config.json', 'pytorch_model.bin']);
  // The copy answers as the repo's files do.
  const want = await vitrine(['classify', image, '--model', deit, '--json']);
  const got = await vitrine(['classify', image, '--model', out, '--json']);
  assert.deepEqual(top(got.out), top(want.out));

  const outside = await vitrine(['fetch', 'acme/deit-bin', '--out', path.join(root, 'elsewhere'), '--manifest', manifest]);
  assert.equal(outside.code, 2);
  assert.match(outside.err, /is not under the manifest's folder/);
});

test('./build.sh bundle copies VITRINE_HUB_MODELS into a site and lists them in its manifest', async () => {
  const bundle = (site, models) => new Promise((resolve) => {
    execFile('bash', [path.join(repoRoot, 'build.sh'), 'bundle', site], {
      encoding: 'utf8',
      env: { ...process.env, VITRINE_BIN: bin, VITRINE_HUB_MODELS: models, HF_HUB_CACHE: cache, HF_ENDPOINT: hub.endpoint, HF_TOKEN: '', HF_HUB_OFFLINE: '' },
      timeout: 120_000,
    }, (error, out, err) => resolve({ code: error ? error.code : 0, out, err }));
  });
  const site = path.join(root, 'bundled');
  fs.mkdirSync(path.join(site, 'models'), { recursive: true });
  fs.copyFileSync(path.join(repoRoot, 'www/models/manifest.json'), path.join(site, 'models/manifest.json'));
  const r = await bundle(site, 'acme/deit-bin hf:acme/vit-tiny@v1.0');
  assert.equal(r.code, 0, r.err);
  const parsed = parseManifest(fs.readFileSync(path.join(site, 'models/manifest.json'), 'utf8'));
  const listed = Object.fromEntries(parsed.models.map((m) => [m.name, m]));
  assert.equal(listed['acme/deit-bin'].path, 'acme--deit-bin/');
  assert.equal(listed['acme/vit-tiny'].path, 'acme--vit-tiny/');
  assert.ok(fs.readFileSync(path.join(site, 'models/acme--vit-tiny/model.safetensors')).equals(read(tiny, 'model.safetensors')));
  assert.ok(fs.readFileSync(path.join(site, 'models/acme--deit-bin/pytorch_model.bin')).equals(read(deit, 'pytorch_model.bin')));
  // Not a site: said, and nothing written.
  const empty = path.join(root, 'not-a-site');
  fs.mkdirSync(empty);
  const refused = await bundle(empty, 'acme/deit-bin');
  assert.equal(refused.code, 1);
  assert.match(refused.err, /not-a-site is not a site \(no models\/manifest\.json\): run \.\/build\.sh dist/);
  assert.deepEqual(fs.readdirSync(empty), []);
});
