/**
 * Pure arithmetic of the monitoring view (no DOM, no JupyterLab): rates and latency quantiles from two
 * cumulative /metrics snapshots, and the tick values of a chart's axis. Unit-tested by test/*.test.ts.
 */

/** One reading of an instance's /metrics (cumulative; nbserve/monitoring.py: snapshot). */
export interface ISnapshot {
  time: number;
  in_progress: number;
  methods: {
    [method: string]: {
      requests: number;
      errors: number;
      sum: number;
      buckets: [number | null, number][];
      /** a streaming method's items sent, seconds streamed, and cumulative times to the first item */
      items?: number;
      stream_s?: number;
      first?: [number | null, number][];
    };
  };
}

/** A streaming method since the start: its items, the time to its first item (p50, ms), items per second. */
export interface IStreamStats {
  method: string;
  items: number;
  firstP50: number | null;
  perSecond: number | null;
}

/** The streaming methods of a snapshot (those that sent an item), from its cumulative counts. */
export function streamStats(snap: ISnapshot): IStreamStats[] {
  const out: IStreamStats[] = [];
  for (const [method, e] of Object.entries(snap.methods)) {
    if (!e.items) {
      continue;
    }
    const first: [number, number][] = (e.first ?? []).map(([le, c]) => [
      le === null ? Infinity : le,
      c
    ]);
    const p50 = quantile(0.5, first);
    out.push({
      method,
      items: e.items,
      firstP50: p50 === null ? null : p50 * 1000,
      perSecond: e.stream_s ? e.items / e.stream_s : null
    });
  }
  return out.sort((a, b) => a.method.localeCompare(b.method));
}

/** What happened between two snapshots: requests per second, p50/p99 in ms, errors in % of requests. */
export interface IPoint {
  time: number;
  requests: number;
  rate: number;
  p50: number | null;
  p99: number | null;
  errors: number;
}

/** Cumulative buckets ([le | null for +Inf, count]) and counts summed over the model methods. */
export function totals(snap: ISnapshot): {
  requests: number;
  errors: number;
  buckets: Map<number, number>;
} {
  const out = { requests: 0, errors: 0, buckets: new Map<number, number>() };
  for (const [method, e] of Object.entries(snap.methods)) {
    if (method === 'other') {
      continue;
    }
    out.requests += e.requests;
    out.errors += e.errors;
    for (const [le, c] of e.buckets) {
      const bound = le === null ? Infinity : le;
      out.buckets.set(bound, (out.buckets.get(bound) ?? 0) + c);
    }
  }
  return out;
}

/** The q-quantile of a cumulative histogram, interpolated in the bucket (as histogram_quantile does). */
export function quantile(q: number, buckets: [number, number][]): number | null {
  if (!buckets.length || buckets[buckets.length - 1][1] <= 0) {
    return null;
  }
  const rank = q * buckets[buckets.length - 1][1];
  let prevLe = 0;
  let prevC = 0;
  for (const [le, c] of buckets) {
    if (c >= rank) {
      if (le === Infinity) {
        return prevLe;
      }
      return c === prevC ? le : prevLe + ((le - prevLe) * (rank - prevC)) / (c - prevC);
    }
    prevLe = le;
    prevC = c;
  }
  return prevLe;
}

/** The point between snapshots `a` and `b` (b later). */
export function point(a: ISnapshot, b: ISnapshot): IPoint {
  const ta = totals(a);
  const tb = totals(b);
  const bounds = [...tb.buckets.keys()].sort((x, y) => x - y);
  const delta: [number, number][] = bounds.map(le => [
    le,
    tb.buckets.get(le)! - (ta.buckets.get(le) ?? 0)
  ]);
  const requests = tb.requests - ta.requests;
  const p50 = quantile(0.5, delta);
  const p99 = quantile(0.99, delta);
  return {
    time: b.time,
    requests,
    rate: requests / Math.max(b.time - a.time, 1e-3),
    p50: p50 === null ? null : p50 * 1000,
    p99: p99 === null ? null : p99 * 1000,
    errors: requests > 0 ? (100 * (tb.errors - ta.errors)) / requests : 0
  };
}

/** Points between successive snapshots. */
export function series(snaps: ISnapshot[]): IPoint[] {
  const out: IPoint[] = [];
  for (let i = 1; i < snaps.length; i++) {
    out.push(point(snaps[i - 1], snaps[i]));
  }
  return out;
}

/** The top of a chart's value axis: a round number (1, 2 or 5 times a power of ten) at or above `v`. */
export function niceTop(v: number): number {
  if (!(v > 0) || !Number.isFinite(v)) {
    return 1;
  }
  const power = Math.pow(10, Math.floor(Math.log10(v)));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= v * (1 - 1e-9)) {
      return step * power;
    }
  }
  return 10 * power;
}

/** A value as an axis label: short, without trailing zeros (0.25, 3, 1.5k). */
export function tickLabel(v: number): string {
  if (v >= 10000) {
    return `${+(v / 1000).toFixed(1)}k`;
  }
  if (v >= 100) {
    return v.toFixed(0);
  }
  return String(+v.toPrecision(2));
}
