// The view is the address: a link sets the maps, the sample and the patch;
// the address follows every change without adding history entries; values
// the model cannot take are left out with a note; a user's own image is
// never named; "Copy link" copies it. The query's reading and writing are
// checked in Node too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startSite, open, classify, fixtures, defaultModel } from './harness.mjs';
import { readQuery, writeQuery } from '../../www/address.js';

let site;
before(async () => { site = await startSite('address'); });
after(async () => { await site?.stop(); });

const classified = (page) => page.waitForFunction(() => document.body.dataset.classified === document.body.dataset.requested
  && Number(document.body.dataset.classified) > 0, null, { timeout: 120_000 });
/** The address's query, once the page has written the view into it. */
async function query(page) {
  await page.waitForFunction(() => !document.body.dataset.addressPending);
  return page.evaluate(() => Object.fromEntries(new URLSearchParams(location.search)));
}

test('a link sets the view, the sample and the patch; the address follows each change', { timeout: 600_000 }, async () => {
  const depth = defaultModel.depth;
  const { page, context } = await open(site, '?backend=cpu&layer=1&map=2&cmap=magma&opacity=0.4&keep=0.5&upsample=blocky&picture=input&image=fmnist-19&patch=3');
  await classified(page);
  await page.waitForFunction(() => window.vitrineState.patch === 3);
  assert.equal(await page.inputValue('#layer'), '1');
  assert.equal(await page.inputValue('#head'), '2');
  assert.equal(await page.inputValue('#colormap'), 'magma');
  assert.equal(await page.inputValue('#opacity'), '0.4');
  assert.equal(await page.isChecked('#threshold'), true);
  assert.equal(await page.inputValue('#mass'), '0.5');
  assert.equal(await page.isChecked('input[name="upsample"][value="blocky"]'), true);
  assert.equal(await page.isChecked('input[name="picture"][value="input"]'), true);
  await page.waitForFunction(() => /^Layer 1, head 2: where the patch at row 0, column 3 looks\./.test(document.getElementById('caption').textContent));
  assert.deepEqual(await query(page), {
    backend: 'cpu', layer: '1', map: '2', cmap: 'magma', opacity: '0.4', keep: '0.5', upsample: 'blocky', picture: 'input', image: 'fmnist-19', patch: '3',
  });

  // Each change rewrites the address in place: no new history entries.
  const entries = await page.evaluate(() => history.length);
  await page.press('#stage', 'Escape');
  await page.fill('#layer', String(depth - 1));
  await page.selectOption('#head', 'mean');
  await page.selectOption('#colormap', 'viridis');
  await page.uncheck('#threshold');
  const q = await query(page);
  assert.equal(q.layer, String(depth - 1));
  assert.equal(q.map, 'mean');
  assert.equal(q.cmap, undefined, 'the default colour map is left out');
  assert.equal(q.keep, undefined);
  assert.equal(q.patch, undefined);
  assert.equal(await page.evaluate(() => history.length), entries);

  // Copy link: the address itself.
  await context.grantPermissions(['clipboard-read', 'clipboard-write']);
  await page.click('#copy-link');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), await page.evaluate(() => location.href));

  // The user's own image is never named.
  await classify(page, path.join(fixtures, 'images/chelsea.png'));
  assert.equal((await query(page)).image, undefined);
  await context.close();
});

test('what a link asks that the model cannot take is left out with a note', { timeout: 600_000 }, async () => {
  const { page, context, errors } = await open(site, '?backend=cpu&size=30&layer=99&map=banana&cmap=nope&opacity=7&image=no-such-sample');
  await page.waitForFunction(() => /no-such-sample/.test(document.getElementById('note').textContent));
  const note = await page.textContent('#note');
  assert.match(note, new RegExp(`The link's layer 99 is past this model's ${defaultModel.depth} layers: the last is shown\\.`));
  assert.match(note, /The link's map=banana was left out: map takes mean, rollout, chefer, grad-rollout or a head's number\./);
  assert.match(note, /The link's cmap=nope was left out/);
  assert.match(note, /The link's opacity=7 was left out: opacity takes a number from 0 to 1\./);
  assert.match(note, /The link's image=no-such-sample is not one of this site's samples\./);
  assert.equal(await page.inputValue('#layer'), String(defaultModel.depth - 1));
  // 30 px is no whole number of the model's 4-px patches: said, and the model kept at its own size.
  assert.match(await page.textContent('#message'), /^The link's size=30 could not be used: /);
  assert.match(await page.textContent('#model-info'), /28×28×1 input/);
  // Still usable.
  await classify(page, path.join(fixtures, 'images/chelsea.png'));
  assert.deepEqual(errors, []);
  await context.close();
});

test('a link sets the input size: the model runs at it, and the address keeps it', { timeout: 600_000 }, async () => {
  const { page, context } = await open(site, '?backend=cpu&size=56&image=fmnist-19&patch=20');
  await page.waitForFunction(() => window.vitrineState.patch === 20, null, { timeout: 120_000 });
  assert.match(await page.textContent('#model-info'), /56×56×1 input → 196 patches of 4×4/);
  assert.equal(await page.evaluate(() => document.body.dataset.imageSize), '28x28');
  const q = await query(page);
  assert.equal(q.size, '56');
  assert.equal(q.patch, '20');
  // Back to its own size: the address drops it.
  await page.selectOption('#resolution', '28');
  await page.waitForFunction(() => !new URLSearchParams(location.search).has('size'), null, { timeout: 120_000 });
  await context.close();
});

test('a link asks why a class: the sample\'s maps for that class', { timeout: 600_000 }, async () => {
  const { page, context } = await open(site, '?backend=cpu&show=relevance&class=3&image=fmnist-19');
  await page.waitForFunction(() => /:3$/.test(document.body.dataset.explained ?? ''), null, { timeout: 120_000 });
  assert.equal(await page.isChecked('input[name="show"][value="relevance"]'), true);
  // Fashion-MNIST's class 3, whatever its rank for this image.
  assert.match(await page.textContent('#caption'), /^Why “Dress” \(/);
  const q = await query(page);
  assert.equal(q.show, 'relevance');
  assert.equal(q.class, '3');
  assert.equal(q.map, 'chefer');
  // Another class chosen: the address follows.
  await page.evaluate(() => { delete document.body.dataset.explained; });
  await page.click('#top li:first-child .class-pick');
  await page.waitForFunction(() => document.body.dataset.explained);
  assert.equal((await query(page)).class, await page.getAttribute('#top li:first-child', 'data-index'));
  await context.close();
});

test('a link opens the walk-through at a step; the address follows the step read and its closing', { timeout: 600_000 }, async () => {
  const { page, context } = await open(site, '?backend=cpu&image=fmnist-19&learn=4');
  await page.waitForSelector('#learn:not([hidden]) #step-4', { timeout: 120_000 });
  await page.waitForFunction(() => new URLSearchParams(location.search).get('learn') === '4');
  // Scrolled to another step, the address says which.
  await page.evaluate(() => document.getElementById('step-7').scrollIntoView());
  await page.waitForFunction(() => new URLSearchParams(location.search).get('learn') === '7');
  await page.click('#learn-close');
  await page.waitForFunction(() => !new URLSearchParams(location.search).has('learn'));
  await context.close();
});

test('the query, read and written in Node', () => {
  const notes = [];
  const { view, patch, image } = readQuery(new URLSearchParams('show=relevance&layer=3&map=chefer&keep=off&patch=-1&image=../x'), notes);
  assert.deepEqual(view, { show: 'relevance', layer: 3, head: 'chefer', threshold: false });
  assert.equal(patch, -1);
  assert.equal(image, null, 'a name that is no sample file stem is dropped');
  assert.deepEqual(notes, []);
  readQuery(new URLSearchParams('layer=1.5&keep=2&show=why'), notes);
  assert.equal(notes.length, 3, notes.join('\n'));
  const defaults = { show: 'attention', layer: 0, head: 'mean', colormap: 'viridis', smooth: true, picture: 'photo', threshold: false, mass: 0.6, opacity: 0.6 };
  const out = writeQuery(new URLSearchParams('backend=cpu&layer=9&hub=http://x'), { ...defaults, layer: 2, threshold: true, mass: 0.3 }, defaults,
    { patch: 4, image: 'chelsea', model: 'hf:acme/tiny' });
  assert.equal(out.toString(), 'backend=cpu&hub=http%3A%2F%2Fx&model=hf%3Aacme%2Ftiny&layer=2&map=mean&keep=0.3&patch=4&image=chelsea');
  // The class explained, only in "why this class".
  const why = writeQuery(new URLSearchParams(), { ...defaults, show: 'relevance', head: 'chefer' }, defaults, { patch: -1, klass: 7, image: null, model: null });
  assert.equal(why.toString(), 'show=relevance&layer=0&map=chefer&class=7');
  assert.equal(writeQuery(new URLSearchParams(), defaults, defaults, { patch: -1, klass: 7, image: null, model: null }).get('class'), null);
  // The feature PCA: N images, -all without the foreground step; the default is not written.
  assert.deepEqual(readQuery(new URLSearchParams('pca=3-all'), notes).pca, { images: 3, foreground: false });
  assert.deepEqual(readQuery(new URLSearchParams('pca=2'), notes).pca, { images: 2, foreground: true });
  const before = notes.length;
  assert.equal(readQuery(new URLSearchParams('pca=9'), notes).pca, null);
  assert.equal(notes[before], 'The link\'s pca=9 was left out: pca takes the last 1 to 4 images, N or N-all (without the foreground step).');
  const pca = (p) => writeQuery(new URLSearchParams(), defaults, defaults, { patch: -1, image: null, model: null, pca: p }).get('pca');
  assert.equal(pca({ images: 4, foreground: false }), '4-all');
  assert.equal(pca({ images: 1, foreground: true }), null);
});

test('a link opens the Figures panel at a block; the address follows the block shown and the panel\'s closing', { timeout: 600_000 }, async () => {
  const { page, context } = await open(site, '?backend=cpu&model=timm_tiny&image=astronaut&figures=2');
  await page.waitForFunction(() => window.vitrineFigures, null, { timeout: 300_000 });
  assert.equal(await page.evaluate(() => document.getElementById('figures').open), true);
  assert.equal(await page.inputValue('#figures-layer'), '1');
  assert.match(await page.textContent('#figures-norms-text'), /^After block 2:/);
  await page.waitForFunction(() => new URLSearchParams(location.search).get('figures') === '2');
  await page.selectOption('#figures-layer', '3');
  await page.waitForFunction(() => new URLSearchParams(location.search).get('figures') === '4');
  assert.match(await page.textContent('#figures-norms-text'), /^After block 4:/);
  await page.click('#figures summary');
  await page.waitForFunction(() => !new URLSearchParams(location.search).has('figures'));
  await context.close();
  // Past the model's blocks: the last, with a note.
  const past = await open(site, '?backend=cpu&model=timm_tiny&image=astronaut&figures=9');
  await past.page.waitForFunction(() => window.vitrineFigures, null, { timeout: 300_000 });
  assert.equal(await past.page.inputValue('#figures-layer'), '3');
  await past.page.waitForFunction(() => document.getElementById('note').textContent.includes("The link's figures=9 is past this model's 4 blocks: the last is shown."));
  await past.context.close();
  // The feature PCA's controls: set by the link, written back when changed.
  const pca = await open(site, '?backend=cpu&model=timm_tiny&image=astronaut&figures=1&pca=3-all');
  await pca.page.waitForFunction(() => document.body.dataset.pca?.startsWith('3 false '), null, { timeout: 300_000 });
  assert.equal(await pca.page.inputValue('#pca-images'), '3');
  assert.equal(await pca.page.isChecked('#pca-foreground'), false);
  await pca.page.setChecked('#pca-foreground', true);
  await pca.page.waitForFunction(() => new URLSearchParams(location.search).get('pca') === '3');
  await pca.page.selectOption('#pca-images', '1');
  await pca.page.waitForFunction(() => !new URLSearchParams(location.search).has('pca'));
  await pca.context.close();
});
