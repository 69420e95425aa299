// models/manifest.json as the page reads it (www/manifest.js), in Node: the
// shipped one, every kind of mistake a host can make, and a mutation fuzz
// run in which every outcome is either a valid listing or an Error naming
// the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fetchModelFiles, parseManifest } from '../../www/manifest.js';

const root = path.resolve(import.meta.dirname, '../..');
const shipped = fs.readFileSync(path.join(root, 'www/models/manifest.json'), 'utf8');

test('the shipped manifest lists the default model and its files', () => {
  const m = parseManifest(shipped);
  assert.equal(m.default, 'fashion-vit');
  assert.deepEqual(m.models[0], { name: 'fashion-vit', path: 'fashion-vit/', files: ['model.safetensors', 'config.json'], weights: 'model.safetensors' });
  for (const f of m.models[0].files) assert.ok(fs.existsSync(path.join(root, 'www/models', m.models[0].path, f)), f);
});

test("a host's mistakes get a message naming the field", () => {
  const cases = [
    ['{', /models\/manifest\.json: not valid JSON/],
    ['[]', /must be an object/],
    ['{"models": {}}', /`models` must be a list/],
    ['{"models": [3]}', /models\[0\] must be an object/],
    ['{"models": [{"name": "", "path": "a/"}]}', /models\[0\]\.name must be a non-empty string/],
    ['{"models": [{"name": "a", "path": "../secrets/"}]}', /models\[0\]\.path must be a folder inside models\//],
    ['{"models": [{"name": "a", "path": "https://elsewhere.example/m/"}]}', /models\[0\]\.path must be a folder inside models\//],
    ['{"models": [{"name": "a", "path": "/etc/"}]}', /models\[0\]\.path must be a folder inside models\//],
    ['{"models": [{"name": "a", "path": "a/", "files": "model.safetensors"}]}', /models\[0\]\.files must be a list of file names/],
    ['{"models": [{"name": "a", "path": "a/", "files": ["config.json"]}]}', /must include model\.safetensors/],
    ['{"default": "b", "models": [{"name": "a", "path": "a/"}]}', /`default` names “b”, which `models` does not list/],
    ['{"default": 7, "models": []}', /`default` must be a model name/],
  ];
  for (const [text, pattern] of cases) assert.throws(() => parseManifest(text), pattern, text);
  // A listing without `files` and a path without its slash are fine.
  assert.deepEqual(parseManifest('{"models": [{"name": "a", "path": "a"}]}').models[0], { name: 'a', path: 'a/', files: undefined, weights: 'model.safetensors' });
  // PyTorch weights where a repo has only those (facebook/deit-*, as `vitrine fetch --out` copies them).
  assert.deepEqual(parseManifest('{"models": [{"name": "o/n", "path": "o--n/", "files": ["config.json", "pytorch_model.bin"]}]}').models[0],
    { name: 'o/n', path: 'o--n/', files: ['config.json', 'pytorch_model.bin'], weights: 'pytorch_model.bin' });
});

test('only the files an entry lists are fetched, so no request is answered 404', async () => {
  const asked = [];
  const fetchFn = async (url) => { asked.push(url); return { ok: true, arrayBuffer: async () => new ArrayBuffer(1), blob: async () => new Blob([new ArrayBuffer(1)]) }; };
  const files = await fetchModelFiles({ path: 'm/', files: ['model.safetensors', 'config.json'] }, fetchFn);
  assert.deepEqual(asked, ['models/m/model.safetensors', 'models/m/config.json']);
  assert.equal(files.preprocessor, undefined);
  asked.length = 0;
  const bin = await fetchModelFiles(parseManifest('{"models": [{"name": "b", "path": "b/", "files": ["pytorch_model.bin"]}]}').models[0], fetchFn);
  assert.deepEqual(asked, ['models/b/pytorch_model.bin']);
  assert.equal(bin.name, 'pytorch_model.bin');
  const missing = async () => ({ ok: false, status: 404 });
  await assert.rejects(fetchModelFiles({ path: 'm/' }, missing), /models\/m\/model\.safetensors: HTTP 404/);
});

test('fuzz: 20,000 mutated manifests give a listing or a clear error, never anything else', () => {
  let state = 12345;
  const rand = (n) => { state = (state * 1103515245 + 12345) % 2 ** 31; return state % n; };
  const hostile = [0, -1, 1e308, 2 ** 53, '', '..', '../x/', 'é🙂', null, true, [], {}, 'x'.repeat(10000), ['model.safetensors'], [1, 2]];
  const mutateValue = (v, depth = 0) => {
    if (depth > 3 || rand(4) === 0) return hostile[rand(hostile.length)];
    if (Array.isArray(v)) return rand(3) === 0 ? [] : v.map((x) => mutateValue(x, depth + 1));
    if (v && typeof v === 'object') {
      const out = {};
      for (const [k, x] of Object.entries(v)) if (rand(6)) out[rand(8) ? k : `${k}_`] = mutateValue(x, depth + 1);
      return out;
    }
    return v;
  };
  const base = JSON.parse(shipped);
  base.models.push({ name: 'b', path: 'b/' });
  let ok = 0, refused = 0;
  for (let i = 0; i < 20000; i++) {
    let text = JSON.stringify(rand(2) ? mutateValue(base) : base);
    if (rand(3) === 0) {
      // Raw bytes: a character replaced, deleted or the text cut.
      const at = rand(text.length + 1);
      text = [text.slice(0, at) + '"{}[],:0'[rand(8)] + text.slice(at + 1), text.slice(0, at), text.slice(0, at) + text.slice(at + 1)][rand(3)];
    }
    try {
      const m = parseManifest(text);
      assert.ok(Array.isArray(m.models));
      for (const e of m.models) {
        assert.equal(typeof e.name, 'string');
        assert.ok(e.path.endsWith('/') && !e.path.includes('..') && !/^[a-z]+:/i.test(e.path) && !e.path.startsWith('/'), e.path);
      }
      assert.ok(m.default === null || m.models.some((e) => e.name === m.default));
      ok++;
    } catch (e) {
      assert.ok(e instanceof Error && e.message.startsWith('models/manifest.json: '), `${text.slice(0, 200)} → ${e}`);
      refused++;
    }
  }
  console.log(`manifest fuzz: ${ok} parsed, ${refused} refused with a message`);
  assert.ok(ok > 100 && refused > 100);
});
