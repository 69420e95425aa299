// The bench page: N classifications of one image through the same worker
// the app uses, reported as median / p90 / min per stage.
import { fetchModelFiles, parseManifest } from './manifest.js';
import { connect } from './rpc.js';

/** @type {(id: string) => any} */
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const runs = Number(params.get('runs') ?? 30);
const warmup = Number(params.get('warmup') ?? 3);
const memoryRuns = Number(params.get('memory') ?? 0);
const relevanceRuns = Number(params.get('relevance') ?? 0);
const imageUrl = params.get('image') ?? 'samples/chelsea.jpg';

const pageStarted = performance.now();
const worker = connect(params.get('backend'), params.get('simd'));
const { request } = worker;
// The model's files are fetched while the worker starts, as the app does.
const fetching = (async () => {
  const listing = await fetch('models/manifest.json');
  const manifest = parseManifest(await listing.text());
  const name = params.get('model') ?? manifest.default;
  const entry = manifest.models.find((m) => m.name === name);
  if (!entry) throw new Error(`no model named “${name}” in models/manifest.json`);
  return { name, files: await fetchModelFiles(entry) };
})();
fetching.catch(() => {}); // reported by main
// And the image's pixels, as a visitor's image would be in hand.
const picture = (async () => {
  const bitmap = await createImageBitmap(await (await fetch(imageUrl)).blob());
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  canvas.getContext('2d').drawImage(bitmap, 0, 0);
  return { rgba: canvas.getContext('2d').getImageData(0, 0, bitmap.width, bitmap.height).data.buffer, width: bitmap.width, height: bitmap.height };
})();
picture.catch(() => {}); // reported by main

function stats(values) {
  const s = [...values].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { median: at(0.5), p90: at(0.9), min: s[0] };
}

async function main() {
  const { backend, reason, simd, timing } = await worker.ready;
  // Where the start went, from navigation: the page's script, the worker's
  // (which waits for the page), its module's glue, the wasm module.
  const since = (at) => at - performance.timeOrigin;
  const start = { pageMs: pageStarted, workerMs: since(timing.started), gluedMs: since(timing.imported), moduleMs: since(timing.instantiated) };
  $('status').textContent = `Backend ${backend} (${reason}; wasm ${simd}). Loading the model…`;
  const t0 = performance.now();
  const { name, files } = await fetching;
  const fetchedMs = performance.now() - t0; // the wait for the files once the worker is ready
  // ?f16=keep|widen, as on the app page.
  files.keepF16 = { keep: true, widen: false, __proto__: null }[params.get('f16')];
  const { info } = await request({ type: 'load', files });
  // Drop-to-ready: the file's bytes in hand to a model warmed up, as a dropped checkpoint goes.
  const loadMs = performance.now() - t0 - fetchedMs;
  const loaded = await request({ type: 'memory' });

  const { rgba, width, height } = await picture;
  const classify = () => request({ type: 'classify', rgba, width, height, image: 1 });

  const t1 = performance.now();
  const first = await classify();
  const firstClassifyMs = performance.now() - t1;
  const firstResultMs = performance.now(); // from navigation start: load, shader warm-up and one image
  for (let i = 1; i < warmup; i++) await classify();
  $('status').textContent = `Backend ${backend}: ${runs} runs…`;
  const rows = { preprocess: [], forward: [], readback: [], total: [] };
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const { result } = await classify();
    rows.total.push(performance.now() - t0);
    for (const k of ['preprocess', 'forward', 'readback']) rows[k].push(result.timings[k]);
  }
  const report = {
    model: name, backend, reason, simd, runs, warmup, image: imageUrl,
    input: info.preprocess.input_size, parameters: info.parameters, firstResultMs, fetchedMs, loadMs, firstClassifyMs, start,
    wasmBytesLoaded: loaded.wasmBytes,
    top1: first.result.probabilities.indexOf(Math.max(...first.result.probabilities)),
    ms: Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, stats(v)])),
  };
  if (relevanceRuns > 0) {
    // Why this class (the top one): the forward pass again, keeping each
    // block's values, the backward pass and the maps, against a
    // classification's forward pass and read-back.
    $('status').textContent = `Backend ${backend}: ${relevanceRuns} relevance maps…`;
    const top = report.top1;
    for (let i = 0; i < warmup; i++) await request({ type: 'relevance', class: top, image: 1 });
    const total = [];
    const inside = []; // the engine's own forward + backward + read-back, as a classification's forward + read-back
    for (let i = 0; i < relevanceRuns; i++) {
      const t0 = performance.now();
      const { relevance: r } = await request({ type: 'relevance', class: top, image: 1 });
      total.push(performance.now() - t0);
      inside.push(r.timings.forward + r.timings.readback);
    }
    // The page's case: "why this class" is on, so the classification kept
    // its forward pass, and the map runs only the backward pass.
    const after = [];
    for (let i = 0; i < relevanceRuns; i++) {
      await request({ type: 'classify', rgba, width, height, image: 1, forRelevance: true });
      const { relevance: r } = await request({ type: 'relevance', class: top, image: 1 });
      after.push(r.timings.forward + r.timings.readback);
    }
    const forward = stats(rows.forward.map((f, i) => f + rows.readback[i])).median;
    report.relevance = {
      runs: relevanceRuns, ms: stats(total), engineMs: stats(inside),
      perForward: stats(inside).median / forward,
      perClassification: stats(total).median / report.ms.total.median,
      afterForwardMs: stats(after), afterForward: stats(after).median / forward,
    };
  }
  if (memoryRuns > 0) {
    $('status').textContent = `Backend ${backend}: ${memoryRuns} more runs for the memory check…`;
    const before = await request({ type: 'memory' });
    for (let i = 0; i < memoryRuns; i++) await classify();
    const after = await request({ type: 'memory' });
    report.memory = {
      runs: memoryRuns,
      wasmBytes: [before.wasmBytes, after.wasmBytes],
      wasmGrowth: after.wasmBytes / before.wasmBytes - 1,
      // The device's pools (WebGPU); null where the backend has none.
      deviceBytesReserved: before.device && [before.device.bytesReserved, after.device.bytesReserved],
      deviceGrowth: before.device ? after.device.bytesReserved / Math.max(1, before.device.bytesReserved) - 1 : null,
    };
  }
  $('table').tBodies[0].replaceChildren(...Object.entries(report.ms).map(([k, s]) => {
    const tr = document.createElement('tr');
    for (const v of [k, s.median.toFixed(2), s.p90.toFixed(2), s.min.toFixed(2)]) {
      const td = document.createElement('td');
      td.textContent = v;
      tr.append(td);
    }
    return tr;
  }));
  $('json').textContent = JSON.stringify(report, null, 1);
  $('status').textContent = `Done: ${name} on ${backend}, first result ${firstResultMs.toFixed(0)} ms after page load.`;
  window.vitrineBench = report;
  document.body.dataset.done = 'true';
}

main().catch((e) => {
  $('status').textContent = `Bench failed: ${e.message}`;
  window.vitrineBench = { error: e.message };
  document.body.dataset.done = 'true';
});
