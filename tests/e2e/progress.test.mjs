// The load progress helpers (www/progress.js) in Node: what the bar and the
// status line say at each stage, and reading a stream with progress.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { STAGES, describeProgress, eachChunk, streamToBlob } from '../../www/progress.js';

test('the bar only moves forward through the stages, and each stage says what it counts', () => {
  let last = -1;
  for (const stage of STAGES) {
    for (const done of [0, 1, 50, 100]) {
      const { value } = describeProgress(stage, done, 100);
      assert.ok(value >= last && value <= 1, `${stage} ${done}: ${value} after ${last}`);
      last = value;
    }
  }
  assert.equal(last, 1);
  const words = (stage, done, total, gpu) => describeProgress(stage, done, total, { name: 'vit.safetensors', gpu }).text;
  assert.equal(words('reading', 120e6, 346e6), 'Reading vit.safetensors: 120 / 346 MB');
  assert.equal(words('reading', 2.5e6, 0), 'Reading vit.safetensors: 2.5 MB', 'no size known');
  assert.equal(words('converting', 0.5e6, 0.9e6), 'Checking the weights: 0.5 / 0.9 MB');
  assert.equal(words('building', 45e6, 86.6e6, true), 'Uploading the weights to the GPU: 45 / 87 M weights');
  assert.equal(words('building', 4e6, 5.7e6, false), 'Laying out the weights: 4.0 / 5.7 M weights');
  assert.match(words('warm-up', 0, 1, true), /^Warming up: .*shaders/);
  assert.deepEqual(describeProgress('something else', 1, 2), { value: 0, text: '' });
  // Reports past the end (a size that lied) do not run the bar backwards or over.
  assert.equal(describeProgress('reading', 200, 100).value, describeProgress('reading', 100, 100).value);
});

/** A stream of `chunks` (Uint8Arrays). */
const streamOf = (chunks) => new ReadableStream({
  start(c) { for (const x of chunks) c.enqueue(x); c.close(); },
});

test('eachChunk hands over every chunk with the count so far, and stops the stream when told to', async () => {
  const chunks = [new Uint8Array([1, 2, 3]), new Uint8Array([4, 5]), new Uint8Array(3000).fill(7)];
  const seen = [];
  const total = await eachChunk(streamOf(chunks), (c, done) => seen.push([c, done]));
  assert.equal(total, 3005);
  assert.deepEqual(seen.map(([c]) => c), chunks);
  assert.deepEqual(seen.map(([, d]) => d), [3, 5, 3005]);
  assert.equal(await eachChunk(streamOf([]), () => assert.fail('no chunk, nothing handed over')), 0);
  // A sink that refuses a chunk (wasm memory full) stops the source.
  let cancelled = null;
  const source = new ReadableStream({
    pull(c) { c.enqueue(new Uint8Array(10)); },
    cancel(reason) { cancelled = reason; },
  });
  const full = new Error('does not fit');
  await assert.rejects(eachChunk(source, (_, done) => { if (done > 25) throw full; }), full);
  assert.equal(cancelled, full);
});

test('streamToBlob keeps every byte in a Blob, with progress to the size', async () => {
  const chunks = [new Uint8Array(200_000).map((_, i) => i % 251), new Uint8Array([9, 8])];
  const reports = [];
  const blob = await streamToBlob(streamOf(chunks), 200_002, (d, t) => reports.push([d, t]));
  const bytes = new Uint8Array(await blob.arrayBuffer());
  assert.equal(bytes.length, 200_002);
  assert.equal(bytes[1000], 1000 % 251);
  assert.equal(bytes[200_001], 8);
  assert.deepEqual(reports, [[200_000, 200_002], [200_002, 200_002]]);
});
