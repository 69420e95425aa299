// @ts-check
// Guided lessons (www/lessons/, docs/lessons.md): each step sets the view
// (a Hub model, a sample, the layer and map) and explains it with this
// model's own numbers, with a question to answer before the answer shows.
// A step is an address (`?lesson=ID&step=N&lang=ko`). The lessons say what
// they will download, and how much, before they do; a model that cannot be
// had says so and points at the steps whose models this browser has.
import { correlation, factsIn, mapStats, parseLesson } from './lesson-format.js';
import { readQuery } from './address.js';
import { fitView } from './controls.js';
import { classifySample } from './gallery.js';
import { parseModelRef } from './hub.js';
import { keptModels } from './hubcache.js';
import { hubEndpoint, loadHubModel, mb, suggested } from './hubpage.js';
import { nextLoad, run } from './models.js';
import { describeShare, normStats } from './figures.js';
import { state, until, update } from './store.js';
import { chosenMap } from './view.js';
import { explain, fetchRelevance } from './why.js';
import { $ } from './dom.js';

/** @typedef {import('./lesson-format.js').Lesson} Lesson */
/** @typedef {import('./lesson-format.js').Step} Step */

/** The lessons' own words around the teacher's text. */
const UI = {
  en: {
    heading: 'Lessons', language: 'Language', close: 'Close the lesson', back: 'Back', next: 'Next', reveal: 'Show the answer',
    count: (n, m) => `Step ${n} of ${m}`, uses: 'Uses', here: 'in this browser', toGet: (s) => `${s} to download, once`,
    nothing: 'nothing to download', unknown: 'size unknown',
    nextGets: (title, size) => `Next (downloads ${title}, ${size})`,
    loading: (title) => `Loading ${title}…`, working: 'Computing this step…',
    failed: (title, why) => `This step needs ${title}, which could not be loaded: ${why}`,
    offline: (steps) => `Steps whose models this browser has: ${steps}.`, noneKept: 'This browser has none of this lesson\'s models yet.',
    noLesson: (id) => `There is no lesson “${id}” on this site.`,
    stopped: 'Another model was loaded, so this step stopped: Next or Back runs a step again.',
    imageFailed: (image) => `The sample “${image}” could not be shown (the message above says why).`,
    noSample: (image) => `This step shows the sample “${image}”, which this site does not have.`,
    answerMark: ' — the answer', guessMark: ' — your guess',
  },
  ko: {
    heading: '수업', language: '언어', close: '수업 닫기', back: '이전', next: '다음', reveal: '답 보기',
    count: (n, m) => `${m}단계 중 ${n}단계`, uses: '사용 모델', here: '이 브라우저에 있음', toGet: (s) => `처음 한 번 ${s} 내려받기`,
    nothing: '내려받을 것 없음', unknown: '크기 모름',
    nextGets: (title, size) => `다음 (${title} 내려받기, ${size})`,
    loading: (title) => `${title} 불러오는 중…`, working: '이 단계를 계산하는 중…',
    failed: (title, why) => `이 단계에는 ${title} 모델이 필요한데 불러오지 못했습니다: ${why}`,
    offline: (steps) => `이 브라우저에 모델이 있는 단계: ${steps}.`, noneKept: '이 수업의 모델이 아직 이 브라우저에 없습니다.',
    noLesson: (id) => `이 사이트에는 “${id}” 수업이 없습니다.`,
    stopped: '다른 모델을 불러와서 이 단계가 멈췄습니다. 다음이나 이전을 누르면 다시 실행합니다.',
    imageFailed: (image) => `샘플 “${image}” 이미지를 보여 줄 수 없습니다 (이유는 위 메시지에 있습니다).`,
    noSample: (image) => `이 단계는 샘플 “${image}” 이미지를 쓰는데, 이 사이트에는 없습니다.`,
    answerMark: ' — 답', guessMark: ' — 내 예측',
  },
};
const ui = (/** @type {string} */ lang) => UI[lang] ?? UI.en;

/** A Hub reference as the address writes the model in use (`hf:org/name[@rev]`). */
function linkOf(/** @type {string} */ ref) {
  const { repo, revision } = parseModelRef(ref);
  return `hf:${repo}${revision === 'main' ? '' : `@${revision}`}`;
}

/** A model's name and size as the host's gallery gives them. */
function aboutModel(/** @type {string} */ ref) {
  const { repo } = parseModelRef(ref);
  const entry = suggested(repo);
  return { repo, title: entry?.title ?? repo, bytes: entry?.bytes ?? 0 };
}

/**
 * Wires the lessons. `ready` settles once the worker and the Hub's list
 * are; `defaults` is the page's first view (a step sets what it names, the
 * rest is the default); `figures` opens the Figures panel.
 * @param {{ ready: Promise<unknown>, defaults: import('./store.js').View, figures: { open: (block: number) => void },
 *   compare: { start: (ref: string) => Promise<void>, stop: () => void } }} options
 */
export function setupLessons({ ready, defaults, figures, compare }) {
  /** @type {{ lessons: string[], languages: Record<string, string> }} */
  let index = { lessons: [], languages: { en: 'English' } };
  /** @type {Map<string, Promise<Lesson>>} */
  const files = new Map();
  let lang = (() => {
    const asked = new URLSearchParams(location.search).get('lang');
    if (asked) return asked;
    try { return localStorage.getItem('vitrine-lang') ?? 'en'; } catch { return 'en'; }
  })();
  /** @type {Lesson | null} */
  let lesson = null;
  let applying = 0; // the newest step asked for: an older one stops where it is
  /** The lesson's model load under way, which a later step with the same model awaits. */
  let loading = /** @type {{ link: string, seq: number, done: Promise<boolean> } | null} */ (null);

  const listed = fetch('lessons/lessons.json').then((r) => (r.ok ? r.json() : { lessons: [] })).then((j) => {
    index = { lessons: Array.isArray(j.lessons) ? j.lessons.filter((id) => /^[a-z0-9-]+$/.test(id)) : [], languages: j.languages ?? index.languages };
    if (!index.languages[lang]) lang = 'en';
  }).catch(() => {});

  /** Lesson `id` in `language` (English where it has no such translation). */
  function load(/** @type {string} */ id, /** @type {string} */ language) {
    const key = `${id}.${language}`;
    if (!files.has(key)) {
      files.set(key, fetch(`lessons/${key}.json`).then(async (r) => {
        if (r.status === 404 && language !== 'en') return load(id, 'en');
        if (!r.ok) throw new Error(`lessons/${key}.json: HTTP ${r.status}`);
        const parsed = parseLesson(await r.text(), `lessons/${key}.json`);
        if (parsed.id !== id) throw new Error(`lessons/${key}.json: its id is “${parsed.id}”, not “${id}”`);
        return parsed;
      }));
      files.get(key)?.catch(() => files.delete(key)); // tried again next time
    }
    return /** @type {Promise<Lesson>} */ (files.get(key));
  }

  /** The lesson's models, each with its size and whether this browser has it. */
  async function modelsOf(/** @type {Lesson} */ l) {
    const kept = await keptModels().catch(() => []);
    const refs = [...new Set(l.steps.flatMap((s) => [s.view.model, ...(s.view.compare ? [s.view.compare] : [])]))];
    return refs.map((ref) => {
      const m = aboutModel(ref);
      return { ...m, ref, kept: kept.some((k) => k.endpoint === hubEndpoint() && k.repo === m.repo) };
    });
  }

  /** What a lesson uses, said before anything is downloaded. */
  async function usesText(/** @type {Lesson} */ l) {
    const t = ui(l.language);
    const models = await modelsOf(l);
    const toGet = models.filter((m) => !m.kept);
    const bytes = toGet.reduce((a, m) => a + m.bytes, 0);
    const each = models.map((m) => `${m.title} (${m.kept ? t.here : m.bytes ? mb(m.bytes) : t.unknown})`).join(', ');
    return `${t.uses}: ${each}: ${toGet.length ? t.toGet(toGet.some((m) => !m.bytes) ? `${mb(bytes)}+` : mb(bytes)) : t.nothing}.`;
  }

  async function showChooser() {
    await listed;
    $('lessons-bar').hidden = !index.lessons.length;
    $('lessons-title').textContent = ui(lang).heading;
    $('lessons-lang-label').textContent = ui(lang).language;
    const picker = /** @type {HTMLSelectElement} */ ($('lessons-lang'));
    picker.replaceChildren(...Object.entries(index.languages).map(([k, v]) => new Option(v, k)));
    picker.value = lang;
    const items = await Promise.all(index.lessons.map(async (id) => {
      const li = document.createElement('li');
      try {
        const l = await load(id, lang);
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'lesson-pick';
        button.dataset.lesson = id;
        const name = document.createElement('strong');
        name.textContent = l.title;
        const summary = document.createElement('span');
        summary.textContent = l.summary;
        const uses = document.createElement('span');
        uses.className = 'hint';
        uses.textContent = await usesText(l);
        button.append(name, summary, uses);
        button.addEventListener('click', () => {
          open(id, 1);
          $('lesson').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
          $('lesson-title').focus();
        });
        li.append(button);
      } catch (e) {
        li.className = 'hint';
        li.textContent = e.message;
      }
      return li;
    }));
    $('lessons').replaceChildren(...items);
  }

  /** Opens lesson `id` at step `n` (from 1); false when there is no such lesson. */
  async function open(/** @type {string} */ id, /** @type {number} */ n) {
    try {
      lesson = await load(id, lang);
    } catch (e) {
      $('lessons-status').textContent = index.lessons.includes(id) || !/404/.test(e.message) ? e.message : ui(lang).noLesson(id);
      return false;
    }
    $('lesson').hidden = false;
    return showStep(Math.max(1, Math.min(n, lesson.steps.length)));
  }

  function close() {
    applying += 1;
    lesson = null;
    $('lesson').hidden = true;
    $('present-lesson').textContent = '';
    delete document.body.dataset.lesson;
    update({ lesson: null });
  }

  /**
   * Shows step `n` of the open lesson: its model, its image, its view, then
   * its words with the numbers filled in. Resolves true once shown, false
   * when it could not be (said in the panel) or a newer step took over.
   */
  async function showStep(/** @type {number} */ n) {
    if (!lesson) return false;
    const l = lesson;
    const mine = ++applying;
    const stale = () => mine !== applying;
    const step = l.steps[n - 1];
    const t = ui(l.language);
    update({ lesson: { id: l.id, step: n, lang: l.language } });
    delete document.body.dataset.lesson;
    document.body.dataset.lessonPending = `${l.id}.${l.language}:${n}`;
    $('lesson').lang = l.language;
    $('lesson-title').textContent = l.title;
    $('lesson-prev').textContent = t.back;
    $('lesson-close').textContent = t.close;
    $('lesson-lang').setAttribute('aria-label', t.language);
    $('lesson-count').textContent = t.count(n, l.steps.length);
    $('lesson-step-title').textContent = step.title;
    $('lesson-text').replaceChildren();
    $('lesson-ask').hidden = true;
    $('present-lesson').textContent = `${l.title} · ${n}/${l.steps.length} · ${step.title}`;
    const status = $('lesson-status');
    $('lesson-uses').textContent = await usesText(l);
    $('lesson-prev').disabled = n === 1;
    await labelNext(l, n);
    if (stale()) return false;

    const model = aboutModel(step.view.model);
    await ready;
    if (stale()) return false;
    const link = linkOf(step.view.model);
    if (state.source?.link !== link) {
      status.textContent = t.loading(model.title);
      // A step before this one may be loading the same model: it is awaited, not started again.
      if (loading?.link !== link) {
        const seq = nextLoad();
        loading = { link, seq, done: loadHubModel(step.view.model, { seq, bytes: model.bytes }) };
      }
      const { seq, done } = loading;
      const loaded = await done;
      if (loading?.seq === seq) loading = null;
      if (stale()) return false;
      if (!loaded || state.applied !== seq) {
        // Another load was asked for since (a model the user gave), or this one failed.
        if (seq !== state.loads) status.textContent = t.stopped;
        else status.replaceChildren(`${t.failed(model.title, state.notices.error)} `, ...(await offlineSteps(l)));
        document.body.dataset.lessonFailed = `${l.id}:${n}`;
        return false;
      }
    }
    status.textContent = t.working;
    const { info } = state;
    const image = step.view.image;
    const errorBefore = state.notices.error;
    if ((state.given?.sample !== image || (!state.current && !state.given)) && !(await classifySample(image))) {
      if (!stale()) status.textContent = t.noSample(image);
      return false;
    }
    if (stale()) return false;
    await until((s) => s.info !== info || (s.current?.sample === image) || (s.notices.error !== errorBefore && s.notices.error !== ''));
    if (stale()) return false;
    if (state.info !== info || state.current?.sample !== image) {
      status.textContent = state.info !== info ? t.stopped : t.imageFailed(image);
      return false;
    }

    // The view: what the step names, the page's defaults for the rest.
    const current = /** @type {import('./store.js').Shown} */ (state.current);
    const depth = info.config.depth;
    const { view: asked, patch } = readQuery(step.view.query, []);
    const layer = step.view.layer === 'last' || step.view.layer === undefined ? depth - 1 : step.view.layer;
    const order = Array.from(current.result.probabilities.keys()).sort((a, b) => current.result.probabilities[b] - current.result.probabilities[a]);
    update({ view: fitView({ ...defaults, ...asked, layer }, info), patch: patch ?? -1 });
    const { klass } = step.view;
    if (klass !== undefined && info.config.num_classes) explain(klass === 'top1' ? order[0] : klass === 'top2' ? order[1] ?? order[0] : Math.min(klass, order.length - 1));
    if (step.view.figures !== undefined) figures.open(step.view.figures === 'last' ? depth : step.view.figures);
    // The second model beside the first, or none.
    if (step.view.compare && state.compare !== step.view.compare) compare.start(step.view.compare);
    else if (!step.view.compare && state.compare) compare.stop();

    const texts = [step.text, ...(step.ask ? [step.ask.question, ...step.ask.choices, step.ask.reveal] : [])];
    const facts = await factsFor(texts.flatMap(factsIn), order);
    if (stale()) return false;
    $('lesson-text').replaceChildren(...paragraphs(step.text, facts));
    if (step.ask) showAsk(step.ask, facts, t);
    status.textContent = '';
    $('lesson-uses').textContent = await usesText(l); // what this browser has now
    if (stale()) return false;
    delete document.body.dataset.lessonPending;
    delete document.body.dataset.lessonFailed;
    document.body.dataset.lesson = `${l.id}.${l.language}:${n}`; // for tests: this step is shown
    return true;
  }

  /** The Next button says when the next step downloads a model, and how much. */
  async function labelNext(/** @type {Lesson} */ l, /** @type {number} */ n) {
    const t = ui(l.language);
    const next = $('lesson-next');
    next.disabled = n === l.steps.length;
    next.textContent = t.next;
    const after = l.steps[n];
    if (!after) return;
    const now = l.steps[n - 1].view;
    const wanted = [after.view.model, after.view.compare].filter((ref) => ref && ref !== now.model && ref !== now.compare);
    const models = await modelsOf(l);
    const m = models.find((x) => wanted.includes(x.ref) && !x.kept);
    if (m) next.textContent = t.nextGets(m.title, m.bytes ? mb(m.bytes) : t.unknown);
  }

  /** The steps whose models this browser has (each a button to it), or that it has none. */
  async function offlineSteps(/** @type {Lesson} */ l) {
    const t = ui(l.language);
    const models = await modelsOf(l);
    const kept = (/** @type {string | undefined} */ ref) => !ref || Boolean(models.find((m) => m.ref === ref)?.kept);
    const have = l.steps.map((s, i) => (kept(s.view.model) && kept(s.view.compare) ? i + 1 : 0)).filter(Boolean);
    if (!have.length) return [t.noneKept];
    const [before, after] = t.offline('\0').split('\0');
    const buttons = have.flatMap((n, i) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'lesson-goto';
      b.textContent = String(n);
      b.addEventListener('click', () => showStep(n));
      return i ? [', ', b] : [b];
    });
    return [before, ...buttons, after];
  }

  /**
   * The numbers `names` asks for, as text, for the model, image and view
   * now shown; `order` is the classes by probability.
   * @param {string[]} names
   * @param {number[]} order
   */
  async function factsFor(names, order) {
    const { info, current } = state;
    if (!info || !current) return {};
    const c = info.config;
    const p = current.result.probabilities;
    const pct = (/** @type {number} */ x) => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;
    const [rows, cols] = info.grid;
    /** @type {Record<string, string>} */
    const facts = {
      model: info.name, layers: String(c.depth), heads: String(c.num_heads), patches: String(rows * cols),
      registers: String(c.reg_tokens), size: String(c.img_size[0]), layer: String(state.view.layer),
    };
    // As the top-5 list gives them.
    const top = (/** @type {number} */ k) => (order.length > k ? [info.labels[order[k]], `${(100 * p[order[k]]).toFixed(1)}%`] : ['—', '—']);
    [facts.top1, facts['top1.p']] = top(0);
    [facts.top2, facts['top2.p']] = top(1);
    if (names.some((x) => x.startsWith('map.'))) {
      if (state.view.show === 'relevance' && current.why >= 0) await fetchRelevance(current, current.why);
      const { map } = chosenMap(state);
      if (map) {
        const s = mapStats(map, current.result.grid);
        Object.assign(facts, { 'map.top10': pct(s.top10), 'map.spread': s.spread.toFixed(0), 'map.border': pct(s.border), 'map.border.even': pct(s.borderEven) });
      }
    }
    if (names.some((x) => x.startsWith('norms.') || x === 'registers.share')) {
      const { figures: f } = await run({ type: 'figures' });
      const norms = normStats(f.tokenNorms, info.prefixTokens, c.depth - 1, info.grid);
      facts['norms.ratio'] = `${norms.ratio.toFixed(1)}×`;
      facts['norms.outliers'] = String(norms.outliers);
      const share = describeShare(f.registerShare, c.depth);
      facts['registers.share'] = share ? pct(share.perLayer[c.depth - 1]) : '—';
    }
    if (names.some((x) => x.startsWith('why.')) && order.length >= 2) {
      await Promise.all([fetchRelevance(current, order[0]), fetchRelevance(current, order[1])]);
      const [a, b] = [current.relevance[order[0]], current.relevance[order[1]]];
      if (a && b) {
        facts['why.same'] = correlation(a.chefer, b.chefer).toFixed(2);
        facts['why.attention'] = correlation(a.chefer, current.result.rollout).toFixed(2);
      }
    }
    return facts;
  }

  /** The question, its choices, and the answer once one is chosen. */
  function showAsk(/** @type {import('./lesson-format.js').Ask} */ ask, /** @type {Record<string, string>} */ facts, /** @type {typeof UI.en} */ t) {
    $('lesson-ask').hidden = false;
    $('lesson-question').replaceChildren(...fill(ask.question, facts));
    // A live region that stays in the page, empty until the answer: a reader announces the answer.
    const reveal = $('lesson-reveal');
    reveal.replaceChildren();
    const buttons = ask.choices.map((choice, k) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'lesson-choice';
      b.append(...fill(choice, facts));
      b.addEventListener('click', () => show(k));
      return b;
    });
    const just = document.createElement('button');
    just.type = 'button';
    just.className = 'lesson-just';
    just.textContent = t.reveal;
    just.addEventListener('click', () => show(-1));
    $('lesson-choices').replaceChildren(...buttons, just);
    function show(/** @type {number} */ picked) {
      buttons.forEach((b, k) => {
        b.classList.toggle('right', k === ask.answer);
        b.classList.toggle('wrong', ask.answer !== null && k === picked && k !== ask.answer);
        b.setAttribute('aria-pressed', String(k === picked));
        // Said in words too, not by colour alone.
        const mark = k === ask.answer ? t.answerMark : k === picked ? t.guessMark : '';
        b.querySelector('.mark')?.remove();
        if (mark) b.append(Object.assign(document.createElement('span'), { className: 'mark', textContent: mark }));
      });
      just.hidden = true;
      reveal.replaceChildren(...paragraphs(ask.reveal, facts));
      document.body.dataset.lessonRevealed = String(state.lesson?.step ?? 0);
    }
  }

  /** Steps one way or the other (the Back and Next buttons, the presentation view's arrows). */
  function move(/** @type {number} */ by) {
    if (!lesson || !state.lesson) return;
    const n = state.lesson.step + by;
    if (n >= 1 && n <= lesson.steps.length) showStep(n);
  }

  $('lesson-prev').addEventListener('click', () => move(-1));
  $('lesson-next').addEventListener('click', () => move(1));
  $('lesson-close').addEventListener('click', close);
  for (const id of ['lessons-lang', 'lesson-lang']) {
    $(id).addEventListener('change', async (e) => {
      lang = /** @type {HTMLSelectElement} */ (e.target).value;
      for (const picker of ['lessons-lang', 'lesson-lang']) $(picker).value = lang; // the two agree
      try { localStorage.setItem('vitrine-lang', lang); } catch { /* private mode: not remembered */ }
      showChooser();
      if (lesson && state.lesson) open(lesson.id, state.lesson.step);
    });
  }
  listed.then(() => {
    const picker = /** @type {HTMLSelectElement} */ ($('lesson-lang'));
    picker.replaceChildren(...Object.entries(index.languages).map(([k, v]) => new Option(v, k)));
    picker.value = lang;
  });
  showChooser();

  return {
    /** Opens the link's lesson (`?lesson=ID&step=N`), if it names one: true when that left a model loaded. */
    async openFromLink(/** @type {URLSearchParams} */ params) {
      const id = params.get('lesson');
      if (!id) return false;
      await listed;
      const step = Number(params.get('step') ?? 1);
      await open(id, Number.isInteger(step) && step >= 1 ? step : 1);
      return state.info !== null;
    },
    move,
    isOpen: () => lesson !== null,
    /** The chooser again (what is in this browser changes as models are downloaded). */
    refresh: showChooser,
  };
}

/**
 * A text with its {numbers} filled in, each a span naming what it is.
 * @param {string} text
 * @param {Record<string, string>} facts
 */
function fill(text, facts) {
  const parts = text.split(/\{([^{}]*)\}/);
  return parts.map((part, i) => {
    if (i % 2 === 0) return document.createTextNode(part);
    const span = document.createElement('span');
    span.className = 'fact';
    span.dataset.fact = part;
    span.textContent = facts[part] ?? '—';
    return span;
  });
}

/** A text's paragraphs (blank lines between them), filled in. */
function paragraphs(/** @type {string} */ text, /** @type {Record<string, string>} */ facts) {
  return text.split(/\n\s*\n/).map((para) => {
    const p = document.createElement('p');
    p.append(...fill(para.trim(), facts));
    return p;
  });
}
