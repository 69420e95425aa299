// The lessons (www/lessons/): every file reads, the languages agree on
// what each step shows, and a bad file is refused with its place named;
// in the page every lesson walks to its end in English and Korean with a
// stand-in Hub serving the lessons' models (random checkpoints of the same
// layouts under the same names), and again with the stand-in stopped, from
// the browser's copies; each step sets the view it names and quotes this
// model's own numbers; the address and the presentation view's arrows step
// through it; and a lesson whose models cannot be had says so and leaves
// the page usable.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startSite, fixtures, out, root } from './harness.mjs';
import { startHub, writeRepo } from '../hub/standin.mjs';
import { parseLesson, FACTS } from '../../www/lesson-format.js';

const dir = path.join(root, 'www/lessons');
const index = JSON.parse(fs.readFileSync(path.join(dir, 'lessons.json'), 'utf8'));
const samples = JSON.parse(fs.readFileSync(path.join(root, 'www/samples/samples.json'), 'utf8')).samples.map((x) => x.file.replace(/\.[^.]+$/, ''));
const raw = (id, lang) => JSON.parse(fs.readFileSync(path.join(dir, `${id}.${lang}.json`), 'utf8'));
const lessonOf = (id, lang) => parseLesson(fs.readFileSync(path.join(dir, `${id}.${lang}.json`), 'utf8'), `${id}.${lang}.json`);

// The lessons' models, served under their Hub names by checkpoints of the same layouts.
const MODELS = {
  'timm/deit_tiny_patch16_224.fb_in1k': 'timm_tiny',
  'timm/vit_small_patch16_224.dino': 'timm_dino',
  'facebook/dinov2-small': 'hf_dinov2',
  'timm/vit_small_patch14_reg4_dinov2.lvd142m': 'timm_reg4',
};

test('every lesson reads, in every language, and the languages show the same views', () => {
  assert.ok(index.lessons.length >= 3);
  assert.deepEqual(Object.keys(index.languages), ['en', 'ko']);
  for (const id of index.lessons) {
    const en = raw(id, 'en');
    for (const lang of Object.keys(index.languages)) {
      const lesson = lessonOf(id, lang);
      assert.equal(lesson.id, id);
      assert.equal(lesson.language, lang);
      const r = raw(id, lang);
      assert.equal(r.steps.length, en.steps.length, `${id}.${lang}: as many steps as in English`);
      r.steps.forEach((s, i) => {
        assert.deepEqual(s.view, en.steps[i].view, `${id}.${lang} step ${i + 1}: the view`);
        assert.equal(s.ask?.answer, en.steps[i].ask?.answer, `${id}.${lang} step ${i + 1}: the answer`);
        assert.equal(s.ask?.choices.length, en.steps[i].ask?.choices.length);
      });
      for (const s of lesson.steps) {
        for (const m of [s.view.model, s.view.compare].filter(Boolean)) assert.ok(MODELS[m.slice(3)], `${m} is served by the test's stand-in`);
        assert.ok(samples.includes(s.view.image), `${id}.${lang}: ${s.view.image} is one of the site's samples`);
      }
    }
    // Predict, then reveal: a question in every lesson.
    assert.ok(en.steps.some((s) => s.ask), `${id} asks a question`);
  }
});

test('a bad lesson file is refused with its place and reason', () => {
  const good = raw('where-vit-looks', 'en');
  const bad = (change, message) => {
    const copy = structuredClone(good);
    change(copy);
    assert.throws(() => parseLesson(JSON.stringify(copy), 'x.json'), (e) => {
      assert.match(e.message, message);
      assert.match(e.message, /^x\.json: /);
      return true;
    });
  };
  bad((l) => { l.steps[0].text += ' {accuracy}'; }, /steps\[0\]\.text names \{accuracy\}, which is not a number lessons can quote/);
  bad((l) => { l.steps[1].view.layer = -2; }, /steps\[1\]\.view has layer=-2/);
  bad((l) => { l.steps[0].view.model = 'timm/deit'; }, /steps\[0\]\.view\.model must name a Hub model/);
  bad((l) => { l.steps[0].view.model = 'hf:evil/../x'; }, /steps\[0\]\.view\.model/);
  bad((l) => { l.steps[0].view.colour = 'red'; }, /steps\[0\]\.view\.colour is not a view setting/);
  bad((l) => { l.steps[0].ask.answer = 3; }, /steps\[0\]\.ask\.answer must be the index/);
  bad((l) => { l.steps[0].ask.choices = ['one']; }, /choices must list 2 to 6/);
  bad((l) => { l.format = 2; }, /format must be 1/);
  bad((l) => { l.steps = []; }, /steps must be a list/);
  assert.throws(() => parseLesson('{"format": 1,', 'y.json'), /^Error: y\.json: is not valid JSON/);
  // Every fact the docs list is one the page fills (the page's own list).
  const doc = fs.readFileSync(path.join(root, 'docs/lessons.md'), 'utf8');
  for (const name of Object.keys(FACTS)) assert.ok(doc.includes(`{${name}}`), `docs/lessons.md documents {${name}}`);
});

let site;
let hub;
const hubRoot = path.join(out, 'lesson-repos');

/** The stand-in Hub with the lessons' models, and the site: started by the page's test only. */
async function startAll() {
  fs.rmSync(hubRoot, { recursive: true, force: true });
  for (const [repo, fixture] of Object.entries(MODELS)) {
    const files = Object.fromEntries(fs.readdirSync(path.join(fixtures, 'models', fixture)).map((f) => [f, fs.readFileSync(path.join(fixtures, 'models', fixture, f))]));
    writeRepo(hubRoot, repo, files);
  }
  hub = await startHub({ root: hubRoot });
  site = await startSite('lessons');
}
after(async () => {
  await site?.stop();
  await hub?.close();
});

const shown = (page, id, lang, n) => page.waitForFunction((want) => document.body.dataset.lesson === want, `${id}.${lang}:${n}`, { timeout: 300_000 });

/** What step `n` of the open lesson shows, checked against the lesson file and the page's own outputs. */
async function checkStep(page, lesson, n) {
  const step = lesson.steps[n - 1];
  const got = await page.evaluate(() => {
    const s = window.vitrineState;
    const facts = Object.fromEntries([...document.querySelectorAll('#lesson-text .fact')].map((f) => [f.dataset.fact, f.textContent]));
    const r = window.vitrineLast;
    return {
      link: s.source?.link, sample: s.current?.sample, view: s.view, why: s.current?.why, depth: s.info.config.depth,
      labels: s.info.labels, probabilities: Array.from(r.probabilities), grid: r.grid,
      clsMean: Array.from(r.clsMean), rollout: Array.from(r.rollout), text: document.querySelector('#lesson-text').textContent,
      title: document.querySelector('#lesson-step-title').textContent, facts, figuresOpen: document.querySelector('#figures').open,
    };
  });
  const where = `${lesson.id}.${lesson.language} step ${n}`;
  assert.equal(got.link, step.view.model, `${where}: the model`);
  assert.equal(got.sample, step.view.image, `${where}: the image`);
  assert.equal(got.title, step.title);
  const layer = step.view.layer === 'last' || step.view.layer === undefined ? got.depth - 1 : step.view.layer;
  assert.equal(got.view.layer, layer, `${where}: the layer`);
  const map = step.view.query.get('map');
  if (map) assert.equal(got.view.head, map, `${where}: the map`);
  assert.equal(got.view.show, step.view.query.get('show') ?? 'attention', `${where}: attention or relevance`);
  if (step.view.figures) assert.ok(got.figuresOpen, `${where}: the Figures panel is open`);
  const order = got.probabilities.map((_, i) => i).sort((a, b) => got.probabilities[b] - got.probabilities[a]);
  if (step.view.klass === 'top1') assert.equal(got.why, order[0]);
  if (step.view.klass === 'top2') assert.equal(got.why, order[1]);
  // Every number named is filled; the ones the page computes are checked from its raw outputs.
  assert.doesNotMatch(got.text, /[{}]/, where);
  for (const [name, value] of Object.entries(got.facts)) assert.ok(value && value !== '—' && !/NaN|undefined/.test(value), `${where}: {${name}} = ${value}`);
  if ('top1' in got.facts) assert.equal(got.facts.top1, got.labels[order[0]]);
  if ('top1.p' in got.facts) assert.equal(got.facts['top1.p'], `${(100 * got.probabilities[order[0]]).toFixed(1)}%`);
  // In use, nothing left to download.
  assert.match(await page.textContent('#lesson-uses'), new RegExp(`${lesson.language === 'ko' ? '이 브라우저에 있음' : 'in this browser'}\\)`));
  if ('layers' in got.facts) assert.equal(got.facts.layers, String(got.depth));
  if ('map.top10' in got.facts && got.view.show === 'attention') {
    const n = got.grid[0] * got.grid[1];
    const m = got.view.head === 'rollout' ? got.rollout : got.view.head === 'mean' ? got.clsMean.slice(layer * n, (layer + 1) * n) : null;
    if (m) {
      const sorted = [...m].sort((a, b) => b - a);
      const share = sorted.slice(0, Math.max(1, Math.round(n / 10))).reduce((a, b) => a + b, 0) / m.reduce((a, b) => a + b, 0);
      assert.equal(got.facts['map.top10'], `${(100 * share).toFixed(share < 0.1 ? 1 : 0)}%`, `${where}: the brightest tenth's share`);
    }
  }
  // The second model beside the first, where the step names one; else none.
  if (step.view.compare) {
    await page.waitForFunction((ref) => window.vitrineState.compare === ref && document.body.dataset.compared?.startsWith(`${window.vitrineState.current.id}:`), step.view.compare, { timeout: 300_000 });
    assert.ok(await page.isVisible('#compare-stage'), `${where}: both pictures`);
  } else {
    assert.equal(await page.evaluate(() => window.vitrineState.compare), null, `${where}: no comparison`);
  }
  if (step.ask) {
    // Predict, then reveal: the answer shows only after a choice.
    assert.equal(await page.textContent('#lesson-reveal'), '', 'no answer before a choice');
    await page.click('.lesson-choice >> nth=0');
    await page.waitForSelector('#lesson-reveal p');
    const reveal = await page.textContent('#lesson-reveal');
    assert.doesNotMatch(reveal, /[{}]|NaN|undefined/, `${where}: the reveal`);
    const facts = await page.$$eval('#lesson-reveal .fact', (f) => f.map((x) => x.textContent));
    assert.ok(facts.every((v) => v && v !== '—'), `${where}: the reveal's numbers ${facts}`);
    if (step.ask.answer !== null) assert.equal(await page.getAttribute(`.lesson-choice >> nth=${step.ask.answer}`, 'class'), 'lesson-choice right');
  }
}

/** The models this browser has downloaded so far. */
const downloaded = new Set();

/** Walks lesson `id` in `lang` from its link to its last step with Next. */
async function walk(page, id, lang) {
  const lesson = lessonOf(id, lang);
  await page.goto(`${site.origin}/?hub=${encodeURIComponent(hub.endpoint)}&lesson=${id}&lang=${lang}`);
  for (let n = 1; n <= lesson.steps.length; n++) {
    const { model, compare } = lesson.steps[n - 1].view;
    if (n > 1) {
      // Before a step downloads a model, Next says which, and how much.
      const label = await page.textContent('#lesson-next');
      if (![model, compare].every((m) => !m || downloaded.has(m))) assert.match(label, lang === 'ko' ? /^다음 \(.+ 내려받기, [\d.]+ MB\)$/ : /^Next \(downloads .+, [\d.]+ MB\)$/, label);
      else assert.equal(label, lang === 'ko' ? '다음' : 'Next');
      await page.click('#lesson-next');
    }
    await shown(page, id, lang, n);
    downloaded.add(model);
    if (compare) downloaded.add(compare);
    await checkStep(page, lesson, n);
    await page.waitForFunction(() => !document.body.dataset.addressPending);
    const query = new URL(page.url()).searchParams;
    assert.equal(query.get('lesson'), id);
    assert.equal(query.get('step'), String(n));
    assert.equal(query.get('lang'), lang === 'en' ? null : lang);
    assert.equal(query.get('model'), model);
  }
  assert.ok(await page.isDisabled('#lesson-next'), 'the last step has no Next');
}

test('every lesson walks to its end in both languages, with the Hub and then from the browser\'s copies', { timeout: 1_800_000 }, async () => {
  await startAll();
  const context = await site.browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));

  // Before anything is downloaded, each lesson says what it will download, and how much.
  await page.goto(`${site.origin}/?hub=${encodeURIComponent(hub.endpoint)}`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
  await page.waitForFunction((n) => document.querySelectorAll('.lesson-pick').length === n, index.lessons.length);
  const picks = await page.$$eval('.lesson-pick', (b) => b.map((x) => x.textContent));
  assert.match(picks[0], /Uses: DeiT-Tiny \(23 MB\), DINO ViT-S\/16 \(timm\) \(87 MB\): 110 MB to download, once\./, picks[0]);
  assert.ok(!hub.requests.length, 'nothing asked of the Hub before a lesson is opened');

  for (const lang of ['en', 'ko']) for (const id of index.lessons) await walk(page, id, lang);
  const fromCdn = hub.requests.filter((r) => r.server === 'cdn').length;
  assert.ok(fromCdn >= Object.keys(MODELS).length, `each model downloaded (${fromCdn} CDN requests)`);

  // The presentation view's arrows step through the lesson.
  await page.goto(`${site.origin}/?hub=${encodeURIComponent(hub.endpoint)}&lesson=attention-is-not-explanation&step=2`);
  await shown(page, 'attention-is-not-explanation', 'en', 2);
  await page.click('#present');
  assert.match(await page.textContent('#present-lesson'), /Attention is not explanation · 2\/4 · Why the top class/);
  assert.match(await page.textContent('.present-hint'), /^← → step · ↑ ↓ map/);
  await page.keyboard.press('ArrowRight');
  await shown(page, 'attention-is-not-explanation', 'en', 3);
  await page.keyboard.press('ArrowLeft');
  await shown(page, 'attention-is-not-explanation', 'en', 2);
  await page.keyboard.press('Escape');

  // The stand-in stopped: every lesson again, from what the browser kept.
  await hub.close();
  const before = hub.requests.length;
  for (const lang of ['en', 'ko']) for (const id of index.lessons) await walk(page, id, lang);
  assert.equal(hub.requests.length, before, 'nothing asked of the Hub offline');
  const origins = new Set(requests.map((u) => new URL(u).origin));
  for (const o of origins) assert.ok([site.origin, hub.endpoint, hub.cdn].includes(o), `no request to ${o}`);
  assert.deepEqual(errors, []);

  // One model deleted from this browser, offline: its step says so and offers the steps it can show.
  await page.goto(`${site.origin}/?hub=${encodeURIComponent(hub.endpoint)}`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
  await page.waitForFunction(() => document.body.dataset.hubKept === '4');
  await page.click('#hub-kept li:has-text("timm/vit_small_patch16_224.dino") .hub-delete');
  await page.waitForFunction(() => document.body.dataset.hubKept === '3');
  await page.goto(`${site.origin}/?hub=${encodeURIComponent(hub.endpoint)}&lesson=where-vit-looks&step=3`);
  await page.waitForFunction(() => document.body.dataset.lessonFailed === 'where-vit-looks:3', null, { timeout: 120_000 });
  assert.match(await page.textContent('#lesson-status'), /This step needs DINO ViT-S\/16 \(timm\), which could not be loaded: .*Steps whose models this browser has: 1, 2, 5\./);
  await page.click('#lesson-status .lesson-goto:has-text("5")');
  await shown(page, 'where-vit-looks', 'en', 5);

  // A browser without the models, offline: the lesson says so, the site's own model is in use instead.
  const fresh = await site.browser.newContext();
  const other = await fresh.newPage();
  await other.goto(`${site.origin}/?hub=${encodeURIComponent(hub.endpoint)}&lesson=registers`);
  await other.waitForFunction(() => document.body.dataset.lessonFailed === 'registers:1', null, { timeout: 120_000 });
  const status = await other.textContent('#lesson-status');
  assert.match(status, /This step needs DINOv2 ViT-S\/14, which could not be loaded: Could not reach 127\.0\.0\.1:\d+ for facebook\/dinov2-small/, status);
  assert.match(status, /This browser has none of this lesson's models yet\./);
  await other.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
  assert.equal(await other.evaluate(() => window.vitrineState.source.link), null, 'the site\'s own model');
  await fresh.close();
  await context.close();
});
