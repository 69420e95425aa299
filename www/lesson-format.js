// @ts-check
// The lesson files (www/lessons/ID.LANG.json, docs/lessons.md): read
// strictly, so a teacher's mistake is named with where it is; and the
// numbers a step's text may quote, each computed from the model in use.
import { readQuery } from './address.js';
import { parseModelRef } from './hub.js';

/**
 * The numbers a lesson's text may name as {name}: each is this model's,
 * for the image and the view the step sets.
 */
export const FACTS = {
  model: "the model's name",
  layers: 'its number of layers',
  heads: 'its number of heads a layer',
  patches: 'its number of patches',
  registers: 'its number of register tokens',
  size: 'its input size in pixels (a side)',
  layer: 'the layer shown (as the Layer slider counts, from 0)',
  top1: 'the top class', 'top1.p': "the top class's probability",
  top2: 'the second class', 'top2.p': "the second class's probability",
  'map.top10': "the share of the map shown (over the patches) held by its brightest tenth of the patches",
  'map.spread': 'how many patches the map is spread over (the exponential of its entropy)',
  'map.border': "the share of the map shown on the image's outer ring of patches",
  'map.border.even': 'the share the outer ring would hold if the map were even',
  'norms.ratio': "the longest patch token's length after the last block, over the median",
  'norms.outliers': 'how many patch tokens are over 4× the median length after the last block',
  'registers.share': "the registers' share of the class token's attention in the last block",
  'why.same': "the correlation of the top two classes' relevance maps (Chefer et al.)",
  'why.attention': "the correlation of the top class's relevance map with the attention rollout",
};

/** The view keys a step may set: the address's names, with "last" for a layer or block and "top1"/"top2" for a class. */
const VIEW_KEYS = ['model', 'image', 'compare', 'show', 'layer', 'map', 'cmap', 'opacity', 'keep', 'upsample', 'picture', 'patch', 'class', 'figures'];

/**
 * @typedef {object} StepView
 * @property {string} model the Hub model, `hf:org/name[@revision]`
 * @property {string} image a sample's name
 * @property {string | undefined} compare a second Hub model shown beside the first
 * @property {number | 'last' | undefined} layer
 * @property {number | 'top1' | 'top2' | undefined} klass
 * @property {number | 'last' | undefined} figures the Figures panel's block (from 1)
 * @property {URLSearchParams} query the rest, as the address writes them
 */
/** @typedef {{ question: string, choices: string[], answer: number | null, reveal: string }} Ask */
/** @typedef {{ title: string, text: string, view: StepView, ask: Ask | null }} Step */
/** @typedef {{ id: string, language: string, title: string, summary: string, steps: Step[] }} Lesson */

/**
 * Reads a lesson file; throws an Error naming the file and the place.
 * @param {string} text
 * @param {string} file its name, for the messages
 * @returns {Lesson}
 */
export function parseLesson(text, file) {
  const fail = (/** @type {string} */ where, /** @type {string} */ why) => { throw new Error(`${file}: ${where} ${why}`); };
  let json;
  try { json = JSON.parse(text); } catch (e) { fail('is', `not valid JSON (${e.message})`); }
  if (!json || typeof json !== 'object' || Array.isArray(json)) fail('must be', 'an object');
  if (json.format !== 1) fail('format', 'must be 1');
  const string = (/** @type {any} */ v, /** @type {string} */ where) => {
    if (typeof v !== 'string' || !v.trim()) fail(where, 'must be a non-empty string');
    return v;
  };
  const prose = (/** @type {any} */ v, /** @type {string} */ where) => {
    string(v, where);
    for (const [, name] of v.matchAll(/\{([^{}]*)\}/g)) {
      if (!(name in FACTS)) fail(where, `names {${name}}, which is not a number lessons can quote (${Object.keys(FACTS).join(', ')})`);
    }
    return v;
  };
  const id = string(json.id, 'id');
  if (!/^[a-z0-9][a-z0-9-]{0,60}$/.test(id)) fail('id', 'must be lower-case letters, digits and dashes');
  const language = string(json.language, 'language');
  if (!/^[a-z]{2,3}(-[A-Za-z]{2,4})?$/.test(language)) fail('language', 'must be a language code such as en or ko');
  if (!Array.isArray(json.steps) || !json.steps.length) fail('steps', 'must be a list of at least one step');
  const steps = json.steps.map((/** @type {any} */ s, /** @type {number} */ i) => {
    const at = `steps[${i}]`;
    if (!s || typeof s !== 'object') fail(at, 'must be an object');
    const view = readView(s.view, `${at}.view`, fail);
    let ask = null;
    if (s.ask !== undefined) {
      const a = s.ask;
      if (!a || typeof a !== 'object') fail(`${at}.ask`, 'must be an object');
      if (!Array.isArray(a.choices) || a.choices.length < 2 || a.choices.length > 6) fail(`${at}.ask.choices`, 'must list 2 to 6 answers');
      const choices = a.choices.map((/** @type {any} */ c, /** @type {number} */ k) => prose(c, `${at}.ask.choices[${k}]`));
      // No answer: an open prediction, which the model's own numbers settle.
      const answer = a.answer ?? null;
      if (answer !== null && (!Number.isInteger(answer) || answer < 0 || answer >= choices.length)) fail(`${at}.ask.answer`, `must be the index of one of the ${choices.length} choices, from 0, or left out`);
      ask = { question: prose(a.question, `${at}.ask.question`), choices, answer, reveal: prose(a.reveal, `${at}.ask.reveal`) };
    }
    return { title: string(s.title, `${at}.title`), text: prose(s.text, `${at}.text`), view, ask };
  });
  return { id, language, title: string(json.title, 'title'), summary: string(json.summary, 'summary'), steps };
}

/**
 * A step's view, checked as the address checks a link.
 * @param {any} v
 * @param {string} at
 * @param {(where: string, why: string) => never} fail
 * @returns {StepView}
 */
function readView(v, at, fail) {
  if (!v || typeof v !== 'object' || Array.isArray(v)) fail(at, 'must be an object');
  for (const key of Object.keys(v)) if (!VIEW_KEYS.includes(key)) fail(`${at}.${key}`, `is not a view setting (${VIEW_KEYS.join(', ')})`);
  if (typeof v.model !== 'string' || !/^hf:/.test(v.model)) fail(`${at}.model`, 'must name a Hub model, hf:org/name');
  try { parseModelRef(v.model); } catch (e) { fail(`${at}.model`, e.message); }
  if (typeof v.image !== 'string' || !/^[\w.-]{1,80}$/.test(v.image)) fail(`${at}.image`, "must name one of the site's samples");
  if (v.compare !== undefined) {
    if (typeof v.compare !== 'string' || !/^hf:/.test(v.compare)) fail(`${at}.compare`, 'must name a Hub model, hf:org/name');
    try { parseModelRef(v.compare); } catch (e) { fail(`${at}.compare`, e.message); }
  }
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(v)) {
    if (['model', 'image', 'compare'].includes(key)) continue;
    // The model-relative values stand in as numbers for the address's check.
    const stand = (key === 'layer' || key === 'figures') && value === 'last' ? '1' : key === 'class' && /^top[12]$/.test(value) ? '0' : value;
    query.set(key, String(stand));
  }
  const notes = [];
  readQuery(query, notes);
  if (notes.length) fail(at, notes[0].replace(/^The link's (\S+) was left out: /, 'has $1: '));
  const named = (/** @type {string} */ key, /** @type {string[]} */ words) => (words.includes(v[key]) ? v[key] : v[key] === undefined ? undefined : Number(v[key]));
  for (const key of ['layer', 'class', 'figures']) query.delete(key);
  return { model: v.model, image: v.image, compare: v.compare, layer: named('layer', ['last']), klass: named('class', ['top1', 'top2']), figures: named('figures', ['last']), query };
}

/** The {names} a text quotes. */
export const factsIn = (/** @type {string} */ text) => [...text.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1]);

/**
 * A map's shape in numbers: the share its brightest tenth of the patches
 * hold, how many patches it is spread over (the exponential of its
 * entropy), and the share on the grid's outer ring beside that ring's
 * share of the patches. Negative values count as 0.
 * @param {ArrayLike<number>} map [N]
 * @param {[number, number]} grid
 */
export function mapStats(map, [rows, cols]) {
  const n = rows * cols;
  const v = Array.from({ length: n }, (_, i) => Math.max(0, map[i]));
  const total = v.reduce((a, b) => a + b, 0) || 1;
  const sorted = [...v].sort((a, b) => b - a);
  const top10 = sorted.slice(0, Math.max(1, Math.round(n / 10))).reduce((a, b) => a + b, 0) / total;
  const entropy = v.reduce((h, x) => (x > 0 ? h - (x / total) * Math.log(x / total) : h), 0);
  const ring = (/** @type {number} */ i) => i < cols || i >= n - cols || i % cols === 0 || i % cols === cols - 1;
  let border = 0;
  let ringCount = 0;
  for (let i = 0; i < n; i++) {
    if (ring(i)) { border += v[i]; ringCount += 1; }
  }
  return { top10, spread: Math.exp(entropy), border: border / total, borderEven: ringCount / n };
}

/**
 * Pearson's correlation of two maps of the same size.
 * @param {ArrayLike<number>} a
 * @param {ArrayLike<number>} b
 */
export function correlation(a, b) {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) { ma += a[i] / n; mb += b[i] / n; }
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < n; i++) {
    const x = a[i] - ma;
    const y = b[i] - mb;
    ab += x * y; aa += x * x; bb += y * y;
  }
  return aa && bb ? ab / Math.sqrt(aa * bb) : 0;
}
