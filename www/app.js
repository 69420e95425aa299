// The page, wired: the state lives in store.js, the model worker and model
// loading in models.js, images in images.js, drawing in view.js; this file
// connects the controls to them and the views to the state.
import { readQuery, writeQuery } from './address.js';
import { setupCamera } from './camera.js';
import { bindControls, fitView, showControls, viewFor } from './controls.js';
import { classifySample, loadGallery } from './gallery.js';
import { classifyBlob, handleFiles } from './images.js';
import { loadHubModel, setupHub } from './hubpage.js';
import { setupFigures } from './figures.js';
import { setupPca } from './pca.js';
import { setupLearn } from './learn.js';
import { loadSiteModel, nextLoad, reloadModel, run, startWorker } from './models.js';
import { ensureRows, setupPointer } from './pointer.js';
import { onUpdate, notify, sentence, state, until, update } from './store.js';
import { clearResults, renderNotices, renderView, showModel, showOpacity } from './view.js';
import { setupExport } from './export.js';
import { setupPresent } from './present.js';
import { setupLessons } from './lessons.js';
import { setupCompare } from './compare.js';
import { ensureRelevance, explain, fetchRelevance } from './why.js';
import { $ } from './dom.js';
import { siteModel, takeGiven, worker } from './start.js';

const params = new URLSearchParams(location.search);
// What the link asks of the view: applied once, to the first model (and
// image) it brings; what cannot be taken is said as a note.
const linkNotes = [];
// A lesson's link sets the view from its step instead.
let link = params.has('lesson') ? null : readQuery(params, linkNotes);
if (link?.pca) update({ pca: link.pca }); // the PCA's controls, whenever the panel opens
const defaults = { ...state.view };

const render = () => renderView({ ...state, explain });

const learn = setupLearn({
  run,
  state: () => ({ info: state.info, current: state.current, name: state.info?.name }),
  relevance: fetchRelevance,
  onStep: (step) => { if (step !== state.learn) update({ learn: step }); },
});
setupPca({ run });
const figures = setupFigures({ run, onBlock: (block) => { if (block !== state.figures) update({ figures: block }); } });

// ---- views of the state -----------------------------------------------------------------

// What the picture was last drawn with: a change of opacity alone is a style.
let drawn = state.view;
onUpdate((s, changed) => {
  if ('info' in changed && s.info) {
    // A new model: its controls, no results yet; the image the user gave
    // last (perhaps before any model was ready) is answered by it.
    showModel(s.info);
    update({ view: link ? linkedView(s.info) : viewFor(s.info), current: null, patch: -1 });
    learn.update();
    if (link?.size && link.size !== s.info.config.img_size[0]) {
      // The link's input size: the model again at that size, as the Input
      // size menu does; its image waits for it (or, if it cannot, comes at
      // the size in use).
      const px = link.size;
      link.size = null;
      atSize(px, (e) => `The link's size=${px} could not be used: ${e.message}`, () => answerGiven());
      return;
    }
    answerGiven();
    return;
  }
  if ('current' in changed && s.current && link) {
    // The link's patch and class, once its image is shown.
    const [rows, cols] = s.current.result.grid;
    const { patch, klass, learn: step, figures: block } = link;
    link = null;
    if (step !== null) learn.open(step);
    const depth = s.info.config.depth;
    if (block !== null) figures.open(Math.min(block, depth));
    if (block !== null && block > depth) notify({ imageNotes: [...s.notices.imageNotes, `The link's figures=${block} is past this model's ${depth} blocks: the last is shown.`] });
    const classes = s.info.config.num_classes;
    if (klass !== null && klass < classes) explain(klass);
    else if (klass !== null) notify({ imageNotes: [...s.notices.imageNotes, `The link's class ${klass} is past this model's ${classes} classes.`] });
    if (patch !== null && patch < rows * cols) update({ patch });
    else if (patch !== null) notify({ imageNotes: [...s.notices.imageNotes, `The link's patch ${patch} is past this model's ${rows * cols} patches.`] });
  }
  if ('view' in changed) showControls(s.view, s.info);
  if ('current' in changed && s.current) learn.update();
  if ('current' in changed && !s.current) clearResults();
  if (!['current', 'patch', 'view'].some((k) => k in changed)) return;
  // The maps the view needs and the image shown lacks are asked for.
  ensureRelevance();
  ensureRows();
  const only = (key) => Object.keys(s.view).every((k) => k === key || s.view[k] === drawn[k]);
  if (Object.keys(changed).join() === 'view' && only('opacity')) showOpacity(s.view);
  else render();
  drawn = s.view;
});
onUpdate((s, changed) => {
  if ('notices' in changed) renderNotices(s.notices);
});
// When the page first had a model and first showed a result, drawn: for
// the benchmark (tests/perf/first_result.mjs) and the curious.
const once = (name) => { if (!performance.getEntriesByName(name).length) performance.mark(name); };
onUpdate((s, changed) => {
  if ('info' in changed && s.info) once('vitrine:model');
  if ('current' in changed && s.current) once('vitrine:result');
});
// The address follows the view (replacing itself: no history entry a
// move), once the changes pause: a dragged slider changes it many times a
// second, and browsers refuse more than about a hundred replacements in
// half a minute.
let addressTimer = 0;
function writeAddress() {
  const s = state;
  const size = s.info.config.img_size[0] === s.info.nativeSize[0] ? null : s.info.config.img_size[0];
  const query = writeQuery(params, s.view, defaults, {
    size, patch: s.patch, klass: s.current?.why ?? null, learn: s.learn, figures: s.figures, pca: s.pca, image: s.current?.sample ?? null, model: s.source?.link ?? null, lesson: s.lesson, compare: s.compare,
  });
  history.replaceState(history.state, '', `${location.pathname}?${query}${location.hash}`);
  delete document.body.dataset.addressPending; // for tests: the address is the view
}
onUpdate((s, changed) => {
  if (!s.info || !['view', 'patch', 'current', 'info', 'learn', 'figures', 'pca', 'lesson', 'compare'].some((k) => k in changed)) return;
  clearTimeout(addressTimer);
  document.body.dataset.addressPending = 'true';
  addressTimer = setTimeout(writeAddress, 250);
});

/** The image the user gave (perhaps before any model was ready), else the link's sample, classified by the model now in use. */
function answerGiven() {
  const { given } = state;
  if (given) classifyBlob(given.blob, given.truth, '', given.sample);
  else if (link?.image) {
    const name = link.image;
    classifySample(name).then((found) => {
      if (!found) notify({ imageNotes: [`The link's image=${name} is not one of this site's samples.`] });
    });
  }
  if (link && link.patch === null && link.klass === null && link.learn === null && link.figures === null) link = null;
}

/** The view the link asks for on the first model, where it fits; what does not, said. */
function linkedView(info) {
  const asked = link.view;
  const { depth, num_heads: heads, num_classes: classes } = info.config;
  const notes = [...linkNotes];
  if (asked.layer !== undefined && asked.layer >= depth) notes.push(`The link's layer ${asked.layer} is past this model's ${depth} layers: the last is shown.`);
  if (/^\d+$/.test(asked.head ?? '') && Number(asked.head) >= heads) notes.push(`The link's map ${asked.head} is past this model's ${heads} heads.`);
  if (asked.show === 'relevance' && !classes) notes.push('The link asks why a class, but this model is a backbone, with no classes.');
  if (notes.length) notify({ modelNotes: [...state.notices.modelNotes, ...notes.map(sentence)] });
  return fitView({ ...viewFor(info), ...asked }, info);
}

// ---- the controls -----------------------------------------------------------------------

$('file').addEventListener('change', (e) => { handleFiles(e.target.files); e.target.value = ''; });
for (const type of ['dragenter', 'dragover']) {
  document.addEventListener(type, (e) => { e.preventDefault(); $('drop').classList.add('over'); });
}
document.addEventListener('dragleave', () => $('drop').classList.remove('over'));
document.addEventListener('drop', (e) => {
  e.preventDefault();
  $('drop').classList.remove('over');
  handleFiles(e.dataTransfer.files);
});
document.addEventListener('paste', (e) => {
  const item = [...e.clipboardData.items].find((i) => i.kind === 'file');
  if (item) classifyBlob(item.getAsFile());
});
bindControls();
// The address is the view: copied, it opens the page on the same model,
// sample, maps and patch (a user's own image stays here).
$('copy-link').addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText(location.href);
    $('copy-link').textContent = 'Link copied';
    setTimeout(() => { $('copy-link').textContent = 'Copy link'; }, 2000);
  } catch {
    notify({ warning: `The browser did not let the page copy the link; here it is to copy by hand: ${location.href}` });
  }
});
setupExport();
setupPointer();
setupCamera();

// Another input size: its position embeddings interpolated in Rust; the
// image shown is answered again.
$('resolution').addEventListener('change', () => {
  const px = Number($('resolution').value);
  atSize(px, (e) => `Could not run the model at ${px} px: ${e.message}`);
});

/** The model in use again at `px` (its own size: as it came); on failure `fail(e)` is shown and `undone()` heard. */
function atSize(px, fail, undone = () => {}) {
  reloadModel({ imageSize: px === state.info?.nativeSize[0] ? undefined : px }, $('resolution'), fail, () => {
    $('resolution').value = String(state.info.config.img_size[0]); // the size still in use
    undone();
  });
}

// Another state dict of the same training checkpoint (DINO's student rather
// than its teacher).
$('weights-key').addEventListener('change', () => {
  const key = $('weights-key').value;
  reloadModel({ key }, $('weights-key'),
    (e) => `Could not load “${key}”: ${e.message}. The previous weights are still in use.`,
    () => { $('weights-key').value = state.info.weightsKey; });
});

// ---- start ------------------------------------------------------------------------------

/** The page's state: for tests and the curious. */
window.vitrineState = state;
/** The worker's memory (wasm bytes, the device's pools): for tests and the curious. */
window.vitrineMemory = () => run({ type: 'memory' });
/** The relevance maps of class `k` for the image shown, computed afresh: for tests and the curious. */
window.vitrineRelevance = (k) => run({ type: 'relevance', class: k, image: state.current?.id });
loadGallery();
const hubReady = setupHub();
// The site's model is load number 1, taken now: a checkpoint the user drops
// while the worker is still starting comes later, and wins. `?model=hf:…`
// names a model of the Hub instead, and `?lesson=` a lesson whose step
// names its own.
const siteLoad = nextLoad();
const fromHub = /^hf:/i.test(params.get('model') ?? '');
const started = startWorker(params.get('backend'), worker); // start.js began it
const compare = setupCompare({ run });
const lessons = setupLessons({ ready: Promise.all([started, hubReady]), defaults, figures, compare });
setupPresent({ lessons });
/** The second worker's memory, while comparing: for tests and the curious. */
window.vitrineCompareMemory = compare.memory;
onUpdate((s, changed) => {
  if (!('info' in changed)) return;
  // What this browser has changes as models are downloaded.
  lessons.refresh();
  compare.refresh();
});
// `?compare=hf:…`: the second model, once the first has an image to show.
const compareWith = params.get('compare');
if (compareWith) hubReady.then(() => until((s) => s.current !== null)).then(() => compare.start(compareWith));
const fromLesson = params.has('lesson');
started.then(async () => {
  // A lesson's model that could not be had leaves the site's own in use.
  if (fromLesson && await lessons.openFromLink(params)) return;
  if (fromHub && !fromLesson) {
    await hubReady;
    if (await loadHubModel(params.get('model'), { seq: siteLoad })) return;
    // Not loaded (its message is shown): the site's own model, unless the user gave one since.
    if (state.info || state.loads !== siteLoad) return;
    const why = state.notices.error;
    await loadSiteModel(nextLoad());
    if (state.info) notify({ error: `${why} The site's own model is loaded instead.` });
  }
  return loadSiteModel(fromLesson ? nextLoad() : siteLoad, siteModel);
}, () => {}); // a failed start is shown
// What was picked, dropped or pasted before this script ran, in order (start.js kept it).
for (const files of takeGiven()) handleFiles(files);
