// A classifier of 21,843 unnamed classes gets Google's ImageNet-21k names,
// as timm assumes: built into the CLI; in the page, fetched from the site's
// own labels/ only for such a model (never for the default model). The
// checkpoint is the timm_tiny fixture with a 21,843-row head, written here
// (17 MB is too much to commit). And a site model whose weights are
// pytorch_model.bin (as `vitrine fetch --out` copies a facebook/deit repo)
// loads from the manifest.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startSite, open, classify, native, top5, bin, out, fixtures, root } from './harness.mjs';

const CLASSES = 21843;
const names = fs.readFileSync(path.join(root, 'www/labels/imagenet-21k-goog.txt'), 'utf8').split('\n').slice(0, CLASSES);
const model = path.join(out, 'imagenet-21k-tiny');
const image = path.join(fixtures, 'images/chelsea.png');
let site;

/** timm_tiny's safetensors with its head widened to `classes` rows of small random values (in f32; the rest as it is). */
function widenHead(from, to, classes) {
  const bytes = fs.readFileSync(from);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString());
  const data = bytes.subarray(8 + n);
  const entries = Object.entries(header).filter(([k]) => k !== '__metadata__');
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.2;
  const parts = [];
  const out = {};
  let at = 0;
  for (const [name, t] of entries) {
    let buf = data.subarray(t.data_offsets[0], t.data_offsets[1]);
    let { shape, dtype } = t;
    if (name === 'head.weight' || name === 'head.bias') {
      shape = name === 'head.weight' ? [classes, t.shape[1]] : [classes];
      const values = new Float32Array(shape.reduce((a, b) => a * b, 1)).map(random);
      buf = Buffer.from(values.buffer);
      dtype = 'F32';
    }
    out[name] = { dtype, shape, data_offsets: [at, at + buf.length] };
    parts.push(buf);
    at += buf.length;
  }
  let json = Buffer.from(JSON.stringify(out));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, ' ')]);
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(to, Buffer.concat([size, json, ...parts]));
}

before(async () => {
  fs.rmSync(model, { recursive: true, force: true });
  fs.mkdirSync(model, { recursive: true });
  const tiny = path.join(fixtures, 'models/timm_tiny');
  const config = JSON.parse(fs.readFileSync(path.join(tiny, 'config.json'), 'utf8'));
  config.num_classes = CLASSES;
  config.pretrained_cfg.num_classes = CLASSES;
  fs.writeFileSync(path.join(model, 'config.json'), JSON.stringify(config));
  widenHead(path.join(tiny, 'model.safetensors'), path.join(model, 'model.safetensors'), CLASSES);
  site = await startSite('labels');
});
after(async () => { await site?.stop(); });

test('the CLI names the classes from ImageNet-21k', () => {
  const json = JSON.parse(execFileSync(bin, ['classify', image, '--model', model, '--json', '--top', '3'], { maxBuffer: 1 << 28 }).toString());
  assert.equal(json.logits.length, CLASSES);
  for (const t of json.top) assert.equal(t.label, names[t.index], `class ${t.index}`);
  const text = execFileSync(bin, ['classify', image, '--model', model, '--top', '1']).toString();
  assert.ok(text.includes(names[json.top[0].index]), text);
});

test('the page fetches the names for that model only, and shows them', { timeout: 300_000 }, async () => {
  const { page, requests, errors } = await open(site, '?backend=cpu');
  assert.deepEqual(requests.filter((u) => u.includes('/labels/')), [], 'not for the default model');
  await page.setInputFiles('#file', ['model.safetensors', 'config.json'].map((f) => path.join(model, f)));
  await page.waitForFunction(() => document.body.dataset.model === 'vit_tiny_patch16_224', null, { timeout: 120_000 });
  assert.deepEqual(requests.filter((u) => u.includes('/labels/')).map((u) => new URL(u).pathname), ['/labels/imagenet-21k-goog.txt']);
  const got = await classify(page, image);
  const top = Array.from(got.probabilities.keys()).sort((a, b) => got.probabilities[b] - got.probabilities[a])[0];
  const shown = await page.textContent('#top li:first-child');
  assert.ok(shown.startsWith(`${names[top]} — `), `${shown} names class ${top} as ${names[top]}`);
  assert.match(await page.textContent('#note'), /Google's ImageNet-21k's, as timm assumes for 21,843 classes/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a site model with pytorch_model.bin for weights loads from the manifest', { timeout: 300_000 }, async () => {
  const deit = path.join(fixtures, 'torch/hf_deit');
  const folder = path.join(out, 'site-labels/models/acme--deit-bin');
  fs.cpSync(deit, folder, { recursive: true });
  const manifestPath = path.join(out, 'site-labels/models/manifest.json');
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  manifest.models.push({ name: 'acme/deit-bin', path: 'acme--deit-bin/', files: ['config.json', 'preprocessor_config.json', 'pytorch_model.bin'] });
  fs.writeFileSync(manifestPath, JSON.stringify(manifest));
  const { page, requests, errors } = await open(site, '?backend=cpu&model=acme/deit-bin');
  await page.waitForFunction(() => document.body.dataset.model === 'acme/deit-bin', null, { timeout: 120_000 });
  assert.ok(requests.some((u) => u.endsWith('/models/acme--deit-bin/pytorch_model.bin')));
  const got = await classify(page, image);
  assert.deepEqual(top5(got.probabilities).slice(0, 1), native(deit, image).top.slice(0, 1));
  assert.deepEqual(errors, []);
  await page.close();
});
