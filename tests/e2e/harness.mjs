// Shared by the browser tests: the built site served locally, a headless
// Chromium on it, and helpers to drive the page and the native CLI.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { serveAndLaunch } from './serve.mjs';

export const root = path.resolve(import.meta.dirname, '../..');
export const out = path.join(root, 'test-output');
export const fixtures = path.join(root, 'tests/fixtures');
/** The shipped default model's shape (depth, heads, …), so the tests follow the model that ships. */
export const defaultModel = JSON.parse(fs.readFileSync(path.join(root, 'www/models/fashion-vit/config.json'))).model_args;
export const bin = process.env.VITRINE_BIN ?? path.join(os.homedir(), '.cache/vitrine/target/release/vitrine');

/**
 * Serves a copy of dist/ with the test checkpoints added to its manifest
 * (the site's own default model stays the default), and starts Chromium.
 */
export async function startSite(name) {
  const site = path.join(out, `site-${name}`);
  fs.rmSync(site, { recursive: true, force: true });
  fs.cpSync(path.join(root, 'dist'), site, { recursive: true });
  const manifestPath = path.join(site, 'models/manifest.json');
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  for (const m of ['hf_vit', 'timm_d96', 'timm_tiny', 'hf_dino', 'timm_reg4', 'timm_deit_dist']) {
    fs.cpSync(path.join(fixtures, 'models', m), path.join(site, 'models', m), { recursive: true });
    manifest.models.push({ name: m, path: `${m}/`, files: fs.readdirSync(path.join(fixtures, 'models', m)) });
  }
  fs.writeFileSync(manifestPath, JSON.stringify(manifest));
  fs.mkdirSync(path.join(out, 'screenshots'), { recursive: true });

  const port = 8000 + ((process.pid + name.length * 97) % 1000);
  // A synthetic camera, so the camera path runs for real.
  return serveAndLaunch(chromium, site, port,
    ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream']);
}

/** Opens the page, records every request and page error, and waits for the model. */
export async function open(site, query, options = {}) {
  const context = await site.browser.newContext({ acceptDownloads: true, ...options });
  const page = await context.newPage();
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${site.origin}/${query}`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
  return { page, context, requests, errors };
}

/**
 * Waits until the page shows a classification newer than `before` that is
 * its newest request's (not one that a model switch re-ran meanwhile).
 */
export async function nextResult(page, before) {
  await page.waitForFunction((b) => {
    const { classified = '0', requested } = document.body.dataset;
    return classified !== b && classified === requested;
  }, before, { timeout: 300_000 });
  return page.evaluate(() => ({
    logits: Array.from(window.vitrineLast.logits),
    probabilities: Array.from(window.vitrineLast.probabilities),
    cls: Array.from(window.vitrineLast.cls),
    rollout: Array.from(window.vitrineLast.rollout),
  }));
}

export const classifiedId = (page) => page.evaluate(() => document.body.dataset.classified ?? '0');

/** Classifies `file` through the file picker. */
export async function classify(page, file) {
  const before = await classifiedId(page);
  await page.setInputFiles('#file', file);
  return nextResult(page, before);
}

/**
 * Holds an object the wasm handle returned (its `keys`) to the interface
 * `name` of www/vitrine.d.ts: every required field there, and no field the
 * declaration lacks (unless it is open).
 */
export function assertDeclared(keys, name) {
  const text = fs.readFileSync(path.join(root, 'www/vitrine.d.ts'), 'utf8');
  const body = text.match(new RegExp(`export interface ${name} \\{([\\s\\S]*?)\\n\\}`))?.[1];
  assert.ok(body, `vitrine.d.ts declares ${name}`);
  const fields = [...body.matchAll(/^ {2}(\w+)(\??):/gm)];
  const required = fields.filter((f) => !f[2]).map((f) => f[1]);
  const all = fields.map((f) => f[1]);
  for (const f of required) assert.ok(keys.includes(f), `${name} lacks its declared field ${f} (it has ${keys.join(', ')})`);
  if (!/\[field: string\]/.test(body)) {
    for (const k of keys) assert.ok(all.includes(k), `${name} has ${k}, which vitrine.d.ts does not declare`);
  }
}

/** Waits for the red message to contain `text`. */
export async function messageIncludes(page, text) {
  await page.waitForFunction((t) => document.getElementById('message').textContent.includes(t), text, { timeout: 120_000 });
  return page.textContent('#message');
}

/**
 * The native engine's walk-through of `image` (JSON of `vitrine walkthrough`);
 * `pcaWith`: the images its feature PCA is fitted over before `image`.
 */
export function nativeWalk(model, image, { patches, layer, head, pcaWith = [] }) {
  const args = ['walkthrough', image, '--model', model, '--patches', patches.join(','), '--layer', String(layer), '--head', String(head)];
  if (pcaWith.length) args.push('--pca-with', pcaWith.join(','));
  return JSON.parse(execFileSync(bin, args, { maxBuffer: 1 << 28 }).toString());
}

export function native(model, image, extra = []) {
  const json = JSON.parse(execFileSync(bin, ['classify', image, '--model', model, '--json', '--top', '5', ...extra]).toString());
  // A backbone answers with its class token's features, and no classes.
  const logits = json.logits ?? json.features;
  const m = Math.max(...logits);
  const e = logits.map((l) => Math.exp(l - m));
  const s = e.reduce((a, b) => a + b, 0);
  return {
    top: json.top.map((t) => t.index),
    logits,
    features: json.features ?? null,
    probabilities: json.logits ? e.map((v) => v / s) : [],
    cls: json.attention.cls.flat(2),
    rollout: json.attention.rollout,
  };
}

export const top5 = (p) => Array.from(p.keys()).sort((a, b) => p[b] - p[a]).slice(0, 5);
export const maxDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
export const shot = (page, name) => page.screenshot({ path: path.join(out, 'screenshots', `${name}.png`), fullPage: true });

/** One tensor of a golden file (`tests/fixtures/golden/MODEL.safetensors`, all f32), as numbers. */
export function goldenTensor(model, key) {
  const bytes = fs.readFileSync(path.join(fixtures, 'golden', `${model}.safetensors`));
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const entry = JSON.parse(bytes.subarray(8, 8 + headerLength).toString())[key];
  if (!entry || entry.dtype !== 'F32') throw new Error(`${model}: no f32 tensor ${key}`);
  const [start, end] = entry.data_offsets.map((o) => 8 + headerLength + o);
  return Array.from({ length: (end - start) / 4 }, (_, i) => bytes.readFloatLE(start + 4 * i));
}

/**
 * How far the page may be from the native CLI on `model`'s golden image
 * `stem`. The golden tests hold native vitrine to within twice PyTorch
 * float32's own error of the float64 reference (at least 1e-4 for logits,
 * 1e-5 for attention and rollout); the page, another float32
 * implementation summing in another order (wasm, WebGPU), is held to the
 * same bound, so the two may differ by twice it.
 */
const bound = (err, floor) => 2 * Math.max(floor, 2 * err);

/** The bounds for a model with no PyTorch reference recorded: the floors alone. */
export const floorAgreement = () => ({ logits: bound(0, 1e-4), cls: bound(0, 1e-5), last: bound(0, 1e-5), rollout: bound(0, 1e-5) });

export function agreement(model, stem) {
  const [logits, cls, last, rollout] = goldenTensor(model, `${stem}.torch_f32_error`);
  return { logits: bound(logits, 1e-4), cls: bound(cls, 1e-5), last: bound(last, 1e-5), rollout: bound(rollout, 1e-5) };
}

/**
 * The same rule for the walk-through's values (tests/golden.rs,
 * `walk_tolerances`): patch embeddings (floor 1e-5), mean attention
 * distance in pixels (floor 1e-3) and position similarity (floor 1e-6).
 */
export function walkAgreement(model, stem) {
  const [embeddings, distance, similarity] = goldenTensor(model, `${stem}.walk_f32_error`);
  return { embeddings: bound(embeddings, 1e-5), distance: bound(distance, 1e-3), similarity: bound(similarity, 1e-6) };
}

/** Asserts that two of vitrine's answers (the page's and the native CLI's, or two backends') agree within `agreement`. */
export function assertAgrees(got, want, model, stem, what = '') {
  assertWithin(got, want, agreement(model, stem), `${what} ${model}/${stem}`);
}

/** `got` (the page's answer) within `tol` of `want` (the native CLI's): logits, CLS attention, rollout. */
export function assertWithin(got, want, tol, label) {
  const d = { logits: maxDiff(got.logits, want.logits), cls: maxDiff(got.cls, want.cls), rollout: maxDiff(got.rollout, want.rollout) };
  console.log(`${label}: |Δ| logits ${d.logits.toExponential(2)} (allowed ${tol.logits.toExponential(1)}), `
    + `cls ${d.cls.toExponential(2)} (${tol.cls.toExponential(1)}), rollout ${d.rollout.toExponential(2)} (${tol.rollout.toExponential(1)})`);
  for (const k of ['logits', 'cls', 'rollout']) {
    if (!(d[k] <= tol[k])) throw new Error(`${label}: ${k} differ by ${d[k]}, more than ${tol[k]}`);
  }
}
