// The README's picture of a comparison (docs/compare.jpg): the site's own
// default model beside a second one served by the stand-in Hub (a random
// checkpoint in transformers' ViT layout, tests/fixtures/models/hf_vit), on
// a Fashion-MNIST sample, with the attention-distance plot open. Run after
// ./build.sh dist:
//   node tests/perf/picture_compare.mjs [OUT.jpg]
import fs from 'node:fs';
import path from 'node:path';
import { startSite, fixtures, out, root } from '../e2e/harness.mjs';
import { startHub, writeRepo } from '../hub/standin.mjs';

const target = process.argv[2] ?? path.join(root, 'docs/compare.jpg');
const repos = path.join(out, 'picture-repos');
fs.rmSync(repos, { recursive: true, force: true });
const dir = path.join(fixtures, 'models/hf_vit');
writeRepo(repos, 'acme/vit-random', Object.fromEntries(fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f))])));
const hub = await startHub({ root: repos });
const site = await startSite('picture');
try {
  const page = await site.browser.newPage({ viewport: { width: 1100, height: 900 } });
  await page.goto(`${site.origin}/?hub=${encodeURIComponent(hub.endpoint)}&image=fmnist-8&layer=3&compare=hf:acme/vit-random`);
  await page.waitForFunction(() => document.body.dataset.compared?.startsWith(`${window.vitrineState.current?.id}:`), null, { timeout: 300_000 });
  await page.click('#compare-distance summary');
  await page.waitForFunction(() => document.body.dataset.compareDistance, null, { timeout: 300_000 });
  await page.locator('#view').screenshot(target.endsWith('.png') ? { path: target } : { path: target, type: 'jpeg', quality: 85 });
  console.log(`wrote ${target}`);
} finally {
  await site.stop();
  await hub.close();
}
