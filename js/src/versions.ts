/**
 * A shadow's comparison in the sidebar (issue 22): the live version and the candidate side by side (requests
 * compared, agreement, error, p50/p99 latency of each), a chart of the candidate's answers against the live
 * ones (green where they agree, red where not, the diagonal where they would be equal), and Promote and
 * Discard. Read through the server extension (GET instances/<id>/comparison) on every refresh of the sidebar.
 */
import { IComparison } from './api';
import { h, replaceChildren, svg } from './dom';

const AGREE = '#2e7d32';
const DIFFER = '#c62828';
const QUIET = '#757575';

function ms(value: number | null | undefined): string {
  return value === null || value === undefined ? '-' : `${value.toFixed(2)} ms`;
}

/** "87.5%", or "-" before any copy was compared. */
export function percent(value: number | null | undefined): string {
  return value === null || value === undefined ? '-' : `${(value * 100).toFixed(1)}%`;
}

export class ComparisonView {
  readonly node: HTMLElement;

  constructor(
    private _onAction: (what: 'promote' | 'discard') => void,
    candidate: string
  ) {
    this._table = h('div', { className: 'nbserve-comparison-table' });
    this._chart = h('div', { className: 'nbserve-comparison-chart' });
    this._error = h('div', { className: 'nbserve-error', role: 'alert' });
    this._error.hidden = true;
    const button = (text: string, what: 'promote' | 'discard', title: string) =>
      h(
        'button',
        { className: 'nbserve-button', type: 'button', title, onclick: () => this._onAction(what) },
        text
      );
    this.node = h(
      'div',
      {
        className: 'nbserve-comparison',
        role: 'group',
        'aria-label': `Shadow comparison with ${candidate}`
      },
      this._table,
      this._chart,
      this._error,
      h(
        'div',
        { className: 'nbserve-actions' },
        button('Promote', 'promote', `Serve ${candidate} here, in place, and remove the candidate`),
        button('Discard', 'discard', `Stop and remove the candidate ${candidate}`)
      )
    );
  }

  show(comparison: IComparison): void {
    this.showError(null);
    const s = comparison.summary;
    const error = Object.values(s.errors ?? {})[0];
    const row = (name: string, live: string, candidate: string) =>
      h('tr', {}, h('th', { scope: 'row' }, name), h('td', {}, live), h('td', {}, candidate));
    const agreement = h(
      'span',
      { className: s.agreement === 1 ? 'nbserve-agree' : 'nbserve-differ' },
      percent(s.agreement)
    );
    replaceChildren(
      this._table,
      h(
        'table',
        { className: 'nbserve-table', 'aria-label': `comparison of ${s.candidate} with ${s.live}` },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', {}, ''),
            h('th', { scope: 'col' }, s.live),
            h('th', { scope: 'col' }, s.candidate)
          )
        ),
        h(
          'tbody',
          {},
          row('requests compared', String(s.requests), String(s.requests)),
          h(
            'tr',
            {},
            h('th', { scope: 'row' }, 'agreement'),
            h('td', {}, ''),
            h('td', {}, agreement)
          ),
          row(
            'mean |error|',
            '',
            error && error.mean_abs !== null ? error.mean_abs.toPrecision(4) : '-'
          ),
          row('latency p50', ms(s.latency_ms.live.p50), ms(s.latency_ms.candidate.p50)),
          row('latency p99', ms(s.latency_ms.live.p99), ms(s.latency_ms.candidate.p99)),
          row('failed answers', '', String(s.candidate_failures))
        )
      )
    );
    replaceChildren(this._chart, scatter(comparison));
  }

  showError(message: string | null): void {
    this._error.textContent = message ?? '';
    this._error.hidden = !message;
  }

  setBusy(busy: boolean): void {
    this.node.querySelectorAll('button').forEach(b => ((b as HTMLButtonElement).disabled = busy));
  }

  private _table: HTMLElement;
  private _chart: HTMLElement;
  private _error: HTMLElement;
}

/** The candidate's answers (y) against the live ones (x), one dot per compared row. */
function scatter(comparison: IComparison): SVGElement {
  const { live, candidate } = comparison.summary;
  const width = 260;
  const height = 150;
  const pad = { left: 42, right: 8, top: 8, bottom: 30 };
  const description = `answers: ${candidate} (y) against ${live} (x), green where they agree, red where not`;
  const chart = svg('svg', {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': description,
    class: 'nbserve-chart'
  });
  const points = comparison.points.filter(p => p[0] !== null && p[1] !== null) as [
    number,
    number,
    boolean
  ][];
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  chart.appendChild(
    svg(
      'text',
      { x: pad.left + plotW / 2, y: height - 4, 'text-anchor': 'middle', class: 'nbserve-axis' },
      live
    )
  );
  chart.appendChild(
    svg(
      'text',
      {
        x: 10,
        y: pad.top + plotH / 2,
        'text-anchor': 'middle',
        class: 'nbserve-axis',
        transform: `rotate(-90 10 ${pad.top + plotH / 2})`
      },
      candidate
    )
  );
  if (!points.length) {
    chart.appendChild(
      svg(
        'text',
        {
          x: pad.left + plotW / 2,
          y: pad.top + plotH / 2,
          'text-anchor': 'middle',
          class: 'nbserve-note-text'
        },
        'no copied requests yet'
      )
    );
    return chart;
  }
  const values = points.flatMap(p => [p[0], p[1]]);
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (high === low) {
    high += 1;
    low -= 1;
  }
  const x = (v: number) => pad.left + ((v - low) / (high - low)) * plotW;
  const y = (v: number) => pad.top + plotH - ((v - low) / (high - low)) * plotH;
  chart.appendChild(
    svg('line', {
      x1: x(low),
      y1: y(low),
      x2: x(high),
      y2: y(high),
      stroke: QUIET,
      'stroke-dasharray': '3 3'
    })
  );
  for (const [a, b, agree] of points) {
    chart.appendChild(
      svg('circle', {
        cx: x(a),
        cy: y(b),
        r: 2.2,
        fill: agree ? AGREE : DIFFER,
        'fill-opacity': 0.75
      })
    );
  }
  for (const v of [low, high]) {
    chart.appendChild(
      svg(
        'text',
        { x: pad.left - 4, y: y(v) + 3, 'text-anchor': 'end', class: 'nbserve-axis' },
        v.toPrecision(3)
      )
    );
    chart.appendChild(
      svg(
        'text',
        { x: x(v), y: pad.top + plotH + 11, 'text-anchor': 'middle', class: 'nbserve-axis' },
        v.toPrecision(3)
      )
    );
  }
  return chart;
}
