/** Unit tests of the graph drawing's pure helpers (node's test runner: `jlpm test`). */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { IStage, describeStages, stageLayout, stageLine } from '../src/stages';

function stage(name: string, inputs: string[], extra: Partial<IStage> = {}): IStage {
  return {
    stage: name,
    model: `g.${name}:1`,
    method: 'predict',
    inputs,
    calls: 10,
    errors: 0,
    p50_ms: 1.25,
    p99_ms: 3,
    mean_ms: 1.5,
    ...extra
  };
}

test('a chain goes one stage per row', () => {
  const spots = stageLayout([stage('a', []), stage('b', ['a']), stage('c', ['b'])]);
  assert.deepEqual(
    [...spots.entries()],
    [
      ['a', [0, 0]],
      ['b', [1, 0]],
      ['c', [2, 0]]
    ]
  );
});

test('a fan-out puts its branches side by side and the fan-in below the deepest', () => {
  const spots = stageLayout([
    stage('lin', []),
    stage('xgb', []),
    stage('scale', ['xgb']),
    stage('mean', ['lin', 'scale'])
  ]);
  assert.deepEqual(spots.get('lin'), [0, 0]);
  assert.deepEqual(spots.get('xgb'), [0, 1]);
  assert.deepEqual(spots.get('scale'), [1, 0]);
  assert.deepEqual(spots.get('mean'), [2, 0]);
});

test('a box says the p50 and the errors; the label says every stage', () => {
  assert.equal(stageLine(stage('a', [])), 'p50 1.3 ms · 0 errors');
  assert.equal(stageLine(stage('a', [], { p50_ms: null, errors: 1 })), 'p50 - · 1 error');
  assert.equal(stageLine(stage('a', [], { p50_ms: 125.4, errors: 3 })), 'p50 125 ms · 3 errors');
  assert.equal(
    describeStages('g:2', [stage('a', []), stage('b', ['a'])]),
    'graph g:2: a (g.a:1, p50 1.3 ms · 0 errors); b (g.b:1, p50 1.3 ms · 0 errors) after a'
  );
});
