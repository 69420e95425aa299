// The page's pure attention helpers, run directly in Node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { colour, headMap, patchRow, thresholdMask } from '../../www/overlay.js';

test('thresholdMask keeps the fewest patches holding the mass (DINO)', () => {
  const map = [0.05, 0.4, 0.1, 0.3, 0.15];
  assert.deepEqual([...thresholdMask(map, 0.6)], [0, 1, 0, 1, 0]); // 0.4 + 0.3 = 0.7 >= 0.6
  assert.deepEqual([...thresholdMask(map, 0.4)], [0, 1, 0, 0, 0]);
  assert.deepEqual([...thresholdMask(map, 0.75)], [0, 1, 0, 1, 1]);
  assert.deepEqual([...thresholdMask(map.map((v) => v * 10), 0.6)], [0, 1, 0, 1, 0], 'unnormalised maps too');
});

test('headMap picks one head or the mean Rust computed', () => {
  // [L=2, H=2, N=3]; clsMean is [L, N].
  const cls = Float32Array.from([0.2, 0.3, 0.5, 0.6, 0.2, 0.2, 0.1, 0.1, 0.8, 0.3, 0.3, 0.4]);
  const clsMean = Float32Array.from([0.4, 0.25, 0.35, 0.2, 0.2, 0.6]);
  const result = { cls, clsMean, heads: 2 };
  assert.deepEqual([...headMap(result, 3, 0, 1)].map((v) => +v.toFixed(6)), [0.6, 0.2, 0.2]);
  assert.deepEqual([...headMap(result, 3, 1, 0)].map((v) => +v.toFixed(6)), [0.1, 0.1, 0.8]);
  assert.deepEqual([...headMap(result, 3, 1, 'mean')].map((v) => +v.toFixed(6)), [0.2, 0.2, 0.6]);
});

test('patchRow reads row 1 + patch of [H, T, T] or of the mean [T, T], without the class-token column', () => {
  // H=2, N=2, T=3: rows are query tokens (CLS, p0, p1).
  const layerAttention = Float32Array.from([0.5, 0.25, 0.25, 0.1, 0.6, 0.3, 0.2, 0.2, 0.6,
    0.5, 0.25, 0.25, 0.3, 0.4, 0.3, 0.0, 0.6, 0.4]);
  const layerMean = Float32Array.from([0.5, 0.25, 0.25, 0.2, 0.5, 0.3, 0.1, 0.4, 0.5]);
  const kept = { layerAttention, layerMean };
  assert.deepEqual([...patchRow(kept, 2, 0, 0)].map((v) => +v.toFixed(6)), [0.6, 0.3]);
  assert.deepEqual([...patchRow(kept, 2, 1, 1)].map((v) => +v.toFixed(6)), [0.6, 0.4]);
  assert.deepEqual([...patchRow(kept, 2, 1, 'mean')].map((v) => +v.toFixed(6)), [0.4, 0.5]);
});

test('colour picks matplotlib\'s own colours (cm.NAME(t) × 255)', () => {
  assert.deepEqual(colour(0), [68, 1, 84]);
  assert.deepEqual(colour(1), [253, 231, 37]);
  assert.deepEqual(colour(2), [253, 231, 37], 'clamped');
  assert.deepEqual(colour(0.5, 'gray'), [128, 128, 128]);
  assert.deepEqual(colour(0.1), [72, 36, 117]);
  assert.deepEqual(colour(0.25), [59, 82, 139]);
  assert.deepEqual(colour(0.999, 'magma'), [252, 253, 191]);
  assert.deepEqual(colour(0.7, 'cividis'), [174, 163, 113]);
});
