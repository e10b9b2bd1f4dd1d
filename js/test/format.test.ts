/** Unit tests of the sidebar's pure text helpers (node's test runner: `jlpm test`). */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  DATE_UNIT,
  IDriftFeature,
  badgeKind,
  binLabels,
  edgeLabel,
  jobProgress,
  jobTime,
  localTime,
  noLiveNote,
  splitText,
  statusClass
} from '../src/format';

const numeric: IDriftFeature = {
  name: 'age',
  role: 'input',
  method: null,
  kind: 'numeric',
  rows: 0,
  psi: null,
  status: 'collecting',
  reference: { shares: [0.3, 0.4, 0.3, 0], edges: [0.5, 1.25] },
  live: { shares: [0, 0, 0, 0] }
};

test('numeric bins are labelled by the sample edges, with a bin for nulls', () => {
  assert.deepEqual(binLabels(numeric), ['< 0.5', '0.5–1.25', '≥ 1.25', 'null']);
});

test('date bins read as dates, durations in seconds', () => {
  const dates = {
    ...numeric,
    unit: DATE_UNIT,
    reference: { shares: [0.5, 0.5, 0], edges: [19723.5] }
  };
  assert.deepEqual(binLabels(dates), ['< 2024-01-01', '≥ 2024-01-01', 'null']);
  assert.equal(edgeLabel(90, 'seconds'), '90 s');
});

test('categories keep their names, then other and null', () => {
  const plan = {
    ...numeric,
    kind: 'categorical',
    reference: { shares: [0.6, 0.3, 0.1, 0], values: ['pro', 'free'] }
  };
  assert.deepEqual(binLabels(plan), ['pro', 'free', 'other', 'null']);
});

test('a feature without live rows says why instead of showing empty bars', () => {
  assert.equal(noLiveNote(numeric), 'no live rows yet');
  const output = { ...numeric, role: 'output', method: 'predict_proba' };
  assert.equal(noLiveNote(output), 'predict_proba not called yet');
  assert.equal(noLiveNote({ ...numeric, rows: 120 }), null);
  assert.match(
    noLiveNote({ ...numeric, status: 'not_computed', reason: 'mixed types' })!,
    /mixed types/
  );
});

test('log times, badges and status classes', () => {
  assert.match(localTime('2024-05-01T10:12:03.045Z'), /^\d\d:\d\d:03\.045$/);
  assert.equal(localTime(null), '-');
  assert.equal(localTime('not a time'), 'not a time');
  assert.deepEqual(['running', 'starting', 'stopped', 'exited'].map(badgeKind), [
    'ok',
    'busy',
    'idle',
    'bad'
  ]);
  assert.deepEqual([200, 404, 500].map(statusClass), ['ok', 'refused', 'error']);
});

test("a job's progress and time read as the panel and the CLI say them", () => {
  assert.equal(
    jobProgress({ progress: { fraction: 0.4, message: 'step 4 of 10' } }),
    '40% step 4 of 10'
  );
  assert.equal(jobProgress({ progress: { items: 12 } }), '12 items');
  assert.equal(jobProgress({ progress: null }), '-');
  assert.equal(jobTime({ created: 100 }, 104), 'waiting 4 s');
  assert.equal(jobTime({ created: 100, started: 101 }, 281), 'running 3 min');
  assert.equal(jobTime({ created: 100, started: 101, finished: 113 }, 500), 'ran 12 s');
  assert.equal(jobTime({ created: 100, finished: 103 }, 110), 'ended 7 s ago');
});

test('a split reads as each version with its share of the total weight', () => {
  assert.equal(
    splitText({ 'diabetes:1': 90, 'diabetes:2': 10 }),
    'diabetes:1 90% · diabetes:2 10%'
  );
  assert.equal(splitText({ 'lr:2': 1, 'lr:3': 2 }), 'lr:2 33% · lr:3 67%');
  assert.equal(splitText({ 'lr:2': 0 }), 'lr:2 0%');
});
