// The load progress helpers (www/progress.js) in Node: what the bar and the
// status line say at each stage, and reading a stream with progress.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { STAGES, describeProgress, readBlob, readStream } from '../../www/progress.js';

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

test('readStream gathers every chunk, whatever size was announced, and reports each', async () => {
  const chunks = [new Uint8Array([1, 2, 3]), new Uint8Array([4, 5]), new Uint8Array(3000).fill(7)];
  const all = Uint8Array.from(chunks.flatMap((c) => [...c]));
  for (const announced of [all.length, 0, 4, all.length + 10]) {
    const reports = [];
    const bytes = new Uint8Array(await readStream(streamOf(chunks), announced, (d, t) => reports.push([d, t])));
    assert.deepEqual(bytes, all, `announced ${announced}`);
    assert.deepEqual(reports.map(([d]) => d), [3, 5, all.length]);
    assert.ok(reports.every(([, t]) => t === announced));
  }
  const empty = await readStream(streamOf([]), 0, () => assert.fail('no chunk, no report'));
  assert.equal(empty.byteLength, 0);
});

test('readBlob reads a Blob with progress to its size', async () => {
  const blob = new Blob([new Uint8Array(200_000).map((_, i) => i % 251)]);
  let last = null;
  const bytes = new Uint8Array(await readBlob(blob, (d, t) => { last = [d, t]; }));
  assert.equal(bytes.length, 200_000);
  assert.equal(bytes[1000], 1000 % 251);
  assert.deepEqual(last, [200_000, 200_000]);
});
