/** Unit tests of the sidebar's pure arithmetic (node's test runner: `jlpm test`). */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ISnapshot,
  niceTop,
  point,
  quantile,
  series,
  streamStats,
  tickLabel
} from '../src/metrics';

function snap(time: number, requests: number, errors: number, buckets: [number | null, number][]) {
  return { time, in_progress: 0, methods: { predict: { requests, errors, sum: 0, buckets } } };
}

test('quantile interpolates inside the bucket, as Prometheus histogram_quantile does', () => {
  const buckets: [number, number][] = [
    [0.01, 50],
    [0.1, 90],
    [Infinity, 100]
  ];
  assert.equal(quantile(0.5, buckets), 0.01);
  assert.ok(Math.abs(quantile(0.7, buckets)! - 0.055) < 1e-12);
  assert.equal(quantile(0.99, buckets), 0.1); // in the +Inf bucket: the last finite bound
  assert.equal(quantile(0.5, []), null);
  assert.equal(
    quantile(0.5, [
      [0.01, 0],
      [Infinity, 0]
    ]),
    null
  );
});

test('a point is what happened between two snapshots, over every method but "other"', () => {
  const a: ISnapshot = snap(100, 10, 0, [
    [0.005, 5],
    [0.05, 10],
    [null, 10]
  ]);
  const b: ISnapshot = snap(102, 30, 5, [
    [0.005, 5],
    [0.05, 30],
    [null, 30]
  ]);
  b.methods.other = { requests: 1000, errors: 1000, sum: 0, buckets: [[null, 1000]] };
  const p = point(a, b);
  assert.equal(p.requests, 20);
  assert.equal(p.rate, 10);
  assert.equal(p.errors, 25); // 5 of 20 requests, in %
  assert.ok(p.p50! > 5 && p.p50! <= 50, `p50 ${p.p50} ms`);
  assert.equal(series([a, b, b]).length, 2);
  assert.equal(series([a, b, b])[1].rate, 0);
});

test('axis tops are round numbers at or above the largest value', () => {
  assert.deepEqual([0.7, 1, 1.2, 3, 7, 42, 0].map(niceTop), [1, 1, 2, 5, 10, 50, 1]);
  assert.equal(niceTop(NaN), 1);
  assert.deepEqual([0.25, 3, 150, 12000].map(tickLabel), ['0.25', '3', '150', '12k']);
});

test('stream stats: items per second over the seconds streamed, the first item p50 in ms', () => {
  const s: ISnapshot = {
    time: 10,
    in_progress: 0,
    methods: {
      predict: { requests: 4, errors: 0, sum: 0, buckets: [] },
      generate: {
        requests: 2,
        errors: 0,
        sum: 0,
        buckets: [],
        items: 40,
        stream_s: 2,
        first: [
          [0.01, 0],
          [0.1, 2],
          [null, 2]
        ]
      }
    }
  };
  const stats = streamStats(s);
  assert.equal(stats.length, 1); // predict sent no item: not a stream
  assert.equal(stats[0].method, 'generate');
  assert.equal(stats[0].perSecond, 20);
  assert.ok(Math.abs(stats[0].firstP50! - 55) < 1e-9); // halfway through the 10 to 100 ms bucket
});
