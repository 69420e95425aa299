// The page's modules held to the browser boundary's one declaration
// (www/vitrine.d.ts) and the worker protocol (www/protocol.js): TypeScript
// checks them as JavaScript (tsconfig.json here), with no build step.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const here = import.meta.dirname;

test('the page type-checks against vitrine.d.ts and protocol.js', () => {
  const tsc = path.join(here, 'node_modules/.bin/tsc');
  let output = '';
  try {
    output = execFileSync(tsc, ['-p', here], { encoding: 'utf8' });
  } catch (e) {
    assert.fail(`tsc found type errors:\n${e.stdout}${e.stderr}`);
  }
  assert.equal(output.trim(), '');
});

test('the protocol refuses a request it does not list, naming those it does', async () => {
  const { ANSWERS, checkRequest } = await import('../../www/protocol.js');
  for (const type of Object.keys(ANSWERS)) checkRequest({ type });
  assert.throws(() => checkRequest({ type: 'format-disk' }), /takes no “format-disk” request \(it takes load, classify, walkthrough, figures, featurePca, relevance, attention, memory, unload\)/);
  assert.throws(() => checkRequest({}), /takes no “undefined” request/);
});

test('notes read as sentences', async () => {
  const { sentence } = await import('../../www/store.js');
  assert.equal(sentence('no config.json: inferred from the shapes'), 'No config.json: inferred from the shapes.');
  assert.equal(sentence('Already one.'), 'Already one.');
  assert.equal(sentence('  '), '');
});
