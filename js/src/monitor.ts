/**
 * The monitoring view of one running instance in the sidebar: request rate, p50/p99 latency and error
 * rate as small SVG time series (built from successive /metrics snapshots, read through the server
 * extension), and the drift of each feature against the registration sample: reference (grey) against
 * live bars per bin, the live bars coloured by the feature's status.
 */
import { IDriftReport, ISnapshot, driftOf, metricsOf } from './api';
import { h, replaceChildren } from './dom';

const SVG = 'http://www.w3.org/2000/svg';
const HISTORY = 60;
const STATUS_COLOURS: { [status: string]: string } = {
  ok: '#2e7d32',
  warn: '#f9a825',
  alert: '#c62828',
  collecting: '#9e9e9e'
};

interface IPoint {
  time: number;
  rate: number;
  p50: number | null;
  p99: number | null;
  errors: number;
}

function svg(tag: string, attrs: { [k: string]: string | number }): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) {
    el.setAttribute(k, String(v));
  }
  return el;
}

/** Cumulative buckets ([le | null for +Inf, count]) summed over the model methods. */
function totals(snap: ISnapshot): {
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

function point(a: ISnapshot, b: ISnapshot): IPoint {
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
    rate: requests / Math.max(b.time - a.time, 1e-3),
    p50: p50 === null ? null : p50 * 1000,
    p99: p99 === null ? null : p99 * 1000,
    errors: requests > 0 ? (100 * (tb.errors - ta.errors)) / requests : 0
  };
}

/** A small line chart of one or two series with its title and the latest value. */
function spark(
  title: string,
  series: { values: (number | null)[]; colour: string }[],
  unit: string
): HTMLElement {
  const width = 200;
  const height = 40;
  const chart = svg('svg', {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': title
  });
  chart.appendChild(
    svg('line', { x1: 0, y1: height - 1, x2: width, y2: height - 1, stroke: '#bdbdbd' })
  );
  const all: number[] = [];
  for (const s of series) {
    for (const v of s.values) {
      if (v !== null) {
        all.push(v);
      }
    }
  }
  const top = Math.max(...all, 1e-9) * 1.15;
  for (const s of series) {
    const n = s.values.length;
    const pts = s.values
      .map((v, i) =>
        v === null
          ? null
          : `${(i / Math.max(n - 1, 1)) * width},${height - 2 - (v / top) * (height - 4)}`
      )
      .filter(Boolean)
      .join(' ');
    if (pts) {
      chart.appendChild(
        svg('polyline', { points: pts, fill: 'none', stroke: s.colour, 'stroke-width': 1.5 })
      );
    }
  }
  const last = series
    .map(s => s.values[s.values.length - 1])
    .map(v => (v === null || v === undefined ? '-' : v < 10 ? v.toFixed(2) : v.toFixed(0)))
    .join(' / ');
  return h(
    'div',
    { className: 'nbserve-spark' },
    h('div', { className: 'nbserve-spark-title' }, `${title}: ${all.length ? last : '-'} ${unit}`),
    chart as unknown as HTMLElement
  );
}

/** Reference (grey) against live (coloured by status) shares per bin of one feature. */
function driftBars(feature: IDriftReport['features'][number]): HTMLElement {
  const width = 96;
  const height = 34;
  const ref = feature.reference.shares;
  const live = feature.live.shares;
  const n = Math.max(ref.length, 1);
  const top = Math.max(...ref, ...live, 1e-9);
  const chart = svg('svg', {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': `${feature.name}: ${feature.status}`
  });
  const slot = width / n;
  ref.forEach((share, i) => {
    const hr = (share / top) * (height - 2);
    chart.appendChild(
      svg('rect', {
        x: i * slot + 1,
        y: height - hr,
        width: slot / 2 - 1,
        height: hr,
        fill: '#90a4ae'
      })
    );
    const hl = ((live[i] ?? 0) / top) * (height - 2);
    chart.appendChild(
      svg('rect', {
        x: i * slot + slot / 2,
        y: height - hl,
        width: slot / 2 - 1,
        height: hl,
        fill: STATUS_COLOURS[feature.status] ?? '#9e9e9e'
      })
    );
  });
  const name = feature.role === 'input' ? feature.name : `→ ${feature.name}`;
  const psi = feature.psi === null ? '' : ` ${feature.psi.toFixed(2)}`;
  return h(
    'div',
    {
      className: `nbserve-drift-feature nbserve-drift-${feature.status}`,
      title: `${feature.status}; PSI${psi}`
    },
    h('div', { className: 'nbserve-drift-name' }, `${name}${psi}`),
    chart as unknown as HTMLElement
  );
}

export class MonitorView {
  readonly node: HTMLElement;

  constructor(readonly id: string) {
    this._traffic = h('div', { className: 'nbserve-sparks' });
    this._caption = h('div', { className: 'nbserve-meta', role: 'status' });
    this._drift = h('div', { className: 'nbserve-drift' });
    this.node = h(
      'div',
      { className: 'nbserve-monitor', 'aria-label': `Monitoring of ${id}` },
      this._traffic,
      this._caption,
      this._drift
    );
  }

  /** Read /metrics and /drift once more and redraw. */
  async refresh(): Promise<void> {
    try {
      const [snap, report] = await Promise.all([metricsOf(this.id), driftOf(this.id)]);
      this._snaps = [...this._snaps, snap].slice(-HISTORY);
      this._render(report);
    } catch (error) {
      this._caption.textContent = `metrics: ${error instanceof Error ? error.message : String(error)}`;
    }
  }

  private _render(report: IDriftReport): void {
    const pts: IPoint[] = [];
    for (let i = 1; i < this._snaps.length; i++) {
      pts.push(point(this._snaps[i - 1], this._snaps[i]));
    }
    replaceChildren(
      this._traffic,
      spark('requests/s', [{ values: pts.map(p => p.rate), colour: '#1976d2' }], ''),
      spark(
        'p50 / p99',
        [
          { values: pts.map(p => p.p50), colour: '#1976d2' },
          { values: pts.map(p => p.p99), colour: '#7b1fa2' }
        ],
        'ms'
      ),
      spark('errors', [{ values: pts.map(p => p.errors), colour: '#c62828' }], '%')
    );
    if (!report.available) {
      this._caption.textContent = report.reason ?? 'no drift reference';
      replaceChildren(this._drift);
      return;
    }
    const drifting = report.drifted_features;
    this._caption.textContent =
      (report.drift ? 'DRIFT · ' : '') +
      (drifting.length ? `drifting: ${drifting.join(', ')}` : 'no feature drifts') +
      ` · window ${report.window.rows} rows`;
    replaceChildren(this._drift, ...report.features.map(driftBars));
  }

  private _snaps: ISnapshot[] = [];
  private _traffic: HTMLElement;
  private _caption: HTMLElement;
  private _drift: HTMLElement;
}
