/**
 * The monitoring view of one running instance in the sidebar: request rate, p50/p99 latency and error rate
 * as small SVG time series with labelled axes (built from successive /metrics snapshots, read through the
 * server extension), and the drift of each feature against the registration sample: the sample's share
 * (grey) against the live share (coloured by the feature's status) per bin, bins labelled by their values.
 * Every chart's aria-label says what its axes show; a chart with nothing to show yet says so. A streaming
 * method's time to its first item and items per second (tokens per second for a text function) head the
 * view, and the instance's jobs (calls queued with ?async=1) follow it, each with Cancel while it waits or runs.
 */
import { IDriftReport, IJob, IMonitor, cancelJob } from './api';
import { h, replaceChildren, svg } from './dom';
import { IDriftFeature, binLabels, jobProgress, jobTime, noLiveNote } from './format';
import { IPoint, ISnapshot, niceTop, series, streamStats, tickLabel } from './metrics';

const HISTORY = 60;
const STATUS_COLOURS: { [status: string]: string } = {
  ok: '#2e7d32',
  warn: '#f9a825',
  alert: '#c62828',
  collecting: '#5c6bc0' // live rows still too few to judge: not the sample's grey
};
const SAMPLE_COLOUR = '#90a4ae';
const ERROR_COLOUR = '#c62828';
const QUIET_COLOUR = '#757575';

/** A line of text in the middle of a chart's plotting area: why there is nothing (or little) to draw. */
function noteText(x: number, y: number, text: string): SVGElement {
  return svg('text', { x, y, class: 'nbserve-note-text', 'text-anchor': 'middle' }, text);
}

/** An <svg> chart whose aria-label says what it draws and what each axis shows. */
function chartSvg(width: number, height: number, description: string): SVGElement {
  return svg('svg', {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': description,
    class: 'nbserve-chart'
  });
}

function clock(seconds: number): string {
  return new Date(seconds * 1000).toTimeString().slice(0, 8);
}

interface ISeries {
  label: string;
  values: (number | null)[];
  colour: string;
}

/** A small line chart: y from 0 to a round top (labelled, with its unit), x the time of each point. */
function lineChart(title: string, unit: string, times: number[], lines: ISeries[]): HTMLElement {
  const width = 220;
  const height = 64;
  const left = 30;
  const bottom = 12;
  const plotW = width - left - 4;
  const plotH = height - bottom - 4;
  const all = lines.flatMap(s => s.values.filter((v): v is number => v !== null));
  const top = niceTop(Math.max(...all, 0));
  const description =
    `${title}: x time (${times.length ? `${clock(times[0])} to ${clock(times[times.length - 1])}` : 'no points yet'})` +
    `, y ${unit} from 0 to ${tickLabel(top)}` +
    (lines.length > 1 ? `, lines ${lines.map(s => s.label).join(' and ')}` : '');
  const chart = chartSvg(width, height, description);
  const y = (v: number) => 4 + plotH - (v / top) * plotH;
  chart.appendChild(
    svg('line', { x1: left, y1: y(0), x2: width - 4, y2: y(0), class: 'nbserve-axis-line' })
  );
  chart.appendChild(
    svg('line', { x1: left, y1: y(0), x2: left, y2: 4, class: 'nbserve-axis-line' })
  );
  chart.appendChild(
    svg(
      'text',
      { x: left - 3, y: y(top) + 6, class: 'nbserve-axis', 'text-anchor': 'end' },
      tickLabel(top)
    )
  );
  chart.appendChild(
    svg('text', { x: left - 3, y: y(0), class: 'nbserve-axis', 'text-anchor': 'end' }, '0')
  );
  if (times.length) {
    chart.appendChild(
      svg('text', { x: left, y: height - 1, class: 'nbserve-axis' }, clock(times[0]))
    );
    chart.appendChild(
      svg(
        'text',
        { x: width - 4, y: height - 1, class: 'nbserve-axis', 'text-anchor': 'end' },
        clock(times[times.length - 1])
      )
    );
  } else {
    chart.appendChild(noteText(left + plotW / 2, 4 + plotH / 2, 'no requests yet'));
  }
  for (const s of lines) {
    const n = s.values.length;
    const pts = s.values
      .map((v, i) => (v === null ? null : `${left + (i / Math.max(n - 1, 1)) * plotW},${y(v)}`))
      .filter(Boolean)
      .join(' ');
    if (pts) {
      chart.appendChild(
        svg('polyline', { points: pts, fill: 'none', stroke: s.colour, 'stroke-width': 1.5 })
      );
      for (const p of pts.split(' ')) {
        const [cx, cy] = p.split(',');
        chart.appendChild(svg('circle', { cx, cy, r: 1.6, fill: s.colour })); // a lone point shows too
      }
    }
  }
  const last = lines
    .map(s => s.values[s.values.length - 1])
    .map(v => (v === null || v === undefined ? '-' : tickLabel(v)))
    .join(' / ');
  const legend =
    lines.length > 1
      ? h(
          'span',
          { className: 'nbserve-legend' },
          ...lines.map(s => h('span', { style: `color: ${s.colour}` }, ` ■ ${s.label}`))
        )
      : null;
  return h(
    'div',
    { className: 'nbserve-spark' },
    h(
      'div',
      { className: 'nbserve-spark-title' },
      `${title} (${unit}): ${all.length ? last : '-'}`,
      legend
    ),
    chart as unknown as HTMLElement
  );
}

/** The sample's share (grey) against the live share per bin of one feature, in % of rows. */
function driftChart(feature: IDriftFeature): HTMLElement {
  const width = 220;
  const height = 58;
  const left = 24;
  const bottom = 10;
  const ref = feature.reference.shares.map(s => 100 * s);
  const live = feature.live.shares.map(s => 100 * s);
  const labels = binLabels(feature);
  const note = noLiveNote(feature);
  const top = niceTop(Math.max(...ref, ...(note ? [] : live), 0));
  const name = feature.role === 'input' ? feature.name : `${feature.method} → ${feature.name}`;
  const psi = feature.psi === null ? '' : ` · PSI ${feature.psi.toFixed(2)}`;
  const first = labels[0] ?? '';
  const lastBin = labels.length > 1 ? labels[labels.length - 2] : '';
  const description =
    `${name}: ${feature.status}${psi}; x bins of ${feature.name} (${first} … ${lastBin}, null), ` +
    `y % of rows from 0 to ${tickLabel(top)}; grey the registration sample, ` +
    (note ? `no live bars: ${note}` : 'coloured the live requests');
  const chart = chartSvg(width, height, description);
  const plotW = width - left - 2;
  const plotH = height - bottom - 4;
  const n = Math.max(ref.length, 1);
  const slot = plotW / n;
  const y = (v: number) => 4 + plotH - (v / top) * plotH;
  chart.appendChild(
    svg(
      'text',
      { x: left - 3, y: 10, class: 'nbserve-axis', 'text-anchor': 'end' },
      `${tickLabel(top)}%`
    )
  );
  chart.appendChild(
    svg('text', { x: left - 3, y: y(0), class: 'nbserve-axis', 'text-anchor': 'end' }, '0')
  );
  chart.appendChild(
    svg('line', { x1: left, y1: y(0), x2: width - 2, y2: y(0), class: 'nbserve-axis-line' })
  );
  ref.forEach((share, i) => {
    const bin = svg('g', {});
    bin.appendChild(
      svg(
        'title',
        {},
        `${labels[i] ?? ''}: sample ${share.toFixed(1)}%` +
          (note ? '' : `, live ${(live[i] ?? 0).toFixed(1)}%`)
      )
    );
    bin.appendChild(
      svg('rect', {
        x: left + i * slot + 1,
        y: y(share),
        width: slot / 2 - 1,
        height: y(0) - y(share),
        fill: SAMPLE_COLOUR
      })
    );
    if (!note) {
      const v = live[i] ?? 0;
      bin.appendChild(
        svg('rect', {
          x: left + i * slot + slot / 2,
          y: y(v),
          width: slot / 2 - 1,
          height: y(0) - y(v),
          fill: STATUS_COLOURS[feature.status] ?? '#9e9e9e'
        })
      );
    }
    chart.appendChild(bin);
  });
  chart.appendChild(svg('text', { x: left, y: height - 1, class: 'nbserve-axis' }, first));
  chart.appendChild(
    svg(
      'text',
      { x: width - 2, y: height - 1, class: 'nbserve-axis', 'text-anchor': 'end' },
      'null'
    )
  );
  if (note) {
    chart.appendChild(noteText(left + plotW / 2, 4 + plotH / 2, note));
  }
  return h(
    'div',
    {
      className: `nbserve-drift-feature nbserve-drift-${feature.status}`,
      title: description,
      'data-feature': feature.name,
      'data-status': feature.status
    },
    h('div', { className: 'nbserve-drift-name' }, `${name}${psi}`),
    chart as unknown as HTMLElement
  );
}

/** The jobs of an instance, newest first: status, progress, time, and Cancel while one waits or runs. */
function jobsTable(id: string, jobs: IJob[], onCancel: (job: IJob) => void): HTMLElement | null {
  if (!jobs.length) {
    return null;
  }
  const now = Date.now() / 1000;
  const rows = jobs.map(job => {
    const open = job.status === 'queued' || job.status === 'running';
    const ahead = job.position ? ` · ${job.position} ahead` : '';
    return h(
      'tr',
      { className: `nbserve-job nbserve-job-${job.status}`, 'data-job': job.id },
      h('td', {}, h('code', {}, job.id.slice(0, 8)), ' ', job.method),
      h('td', { className: 'nbserve-job-status' }, job.status + ahead),
      h(
        'td',
        { title: job.error ? `${job.error.type}: ${job.error.message}` : '' },
        jobProgress(job) + (job.error ? ` · ${job.error.message}` : '')
      ),
      h('td', { className: 'nbserve-num' }, jobTime(job, now)),
      h(
        'td',
        {},
        open
          ? h(
              'button',
              {
                className: 'nbserve-button',
                type: 'button',
                title: `Cancel job ${job.id} of ${id}`,
                onclick: () => onCancel(job)
              },
              'Cancel'
            )
          : null
      )
    );
  });
  return h(
    'table',
    { className: 'nbserve-log-table nbserve-jobs', 'aria-label': `Jobs of ${id}` },
    h('tr', {}, ...['job', 'status', 'progress', 'time', ''].map(t => h('th', {}, t))),
    ...rows
  );
}

export class MonitorView {
  readonly node: HTMLElement;

  constructor(readonly id: string) {
    this._streams = h('div', { className: 'nbserve-meta nbserve-streams' });
    this._traffic = h('div', { className: 'nbserve-sparks' });
    this._caption = h('div', { className: 'nbserve-meta', role: 'status' });
    this._drift = h('div', { className: 'nbserve-drift' });
    this._jobs = h('div', { className: 'nbserve-jobs-slot' });
    this.node = h(
      'div',
      { className: 'nbserve-monitor', 'aria-label': `Monitoring of ${id}` },
      this._streams,
      this._traffic,
      this._caption,
      this._drift,
      this._jobs
    );
  }

  /** Show one reading of the monitor route (the instance may have stopped since: then nothing is drawn). */
  show(reading: IMonitor): void {
    if (!reading.snapshot || !reading.drift) {
      this._caption.textContent = `${reading.status}: no metrics`;
      replaceChildren(this._jobs);
      return;
    }
    this._snaps = [...this._snaps, reading.snapshot].slice(-HISTORY);
    this._render(series(this._snaps), reading.drift);
    this._renderStreams(reading.snapshot, reading.text_kind ?? null);
    this._renderJobs(reading.jobs ?? []);
  }

  /** The jobs as last read (a test reads them; the table shows them). */
  jobs: IJob[] = [];

  private _renderStreams(snap: ISnapshot, textKind: string | null): void {
    const unit = textKind === 'chat' ? 'tokens/s' : 'items/s';
    replaceChildren(
      this._streams,
      ...streamStats(snap).map(s =>
        h(
          'div',
          { className: 'nbserve-stream-stats', 'data-method': s.method },
          `${s.method} streams: first item ${s.firstP50 === null ? '-' : `${tickLabel(s.firstP50)} ms`} (p50)` +
            ` · ${s.perSecond === null ? '-' : tickLabel(s.perSecond)} ${unit} · ${s.items} items`
        )
      )
    );
  }

  private _renderJobs(jobs: IJob[]): void {
    this.jobs = jobs;
    const table = jobsTable(this.id, jobs, job => void this._cancel(job));
    replaceChildren(
      this._jobs,
      table ? h('div', { className: 'nbserve-spark-title' }, 'jobs') : null,
      table
    );
  }

  private async _cancel(job: IJob): Promise<void> {
    const row = this._jobs.querySelector(`[data-job="${job.id}"] .nbserve-job-status`);
    if (row) {
      row.textContent = 'cancelling…';
    }
    try {
      const done = await cancelJob(this.id, job.id);
      this._renderJobs(this.jobs.map(j => (j.id === done.id ? { ...j, ...done } : j)));
    } catch (error) {
      this._caption.textContent = `cancel ${job.id}: ${error instanceof Error ? error.message : String(error)}`;
    }
  }

  showError(message: string): void {
    this._caption.textContent = `metrics: ${message}`;
  }

  private _render(points: IPoint[], report: IDriftReport): void {
    const times = points.map(p => p.time);
    const errors = points.some(p => p.errors > 0);
    replaceChildren(
      this._traffic,
      lineChart('requests', 'requests/s', times, [
        { label: 'rate', values: points.map(p => p.rate), colour: '#1976d2' }
      ]),
      lineChart('latency', 'ms', times, [
        { label: 'p50', values: points.map(p => p.p50), colour: '#1976d2' },
        { label: 'p99', values: points.map(p => p.p99), colour: '#7b1fa2' }
      ]),
      lineChart(errors ? 'errors' : 'errors, none so far', '% of requests', times, [
        {
          label: 'errors',
          values: points.map(p => p.errors),
          colour: errors ? ERROR_COLOUR : QUIET_COLOUR
        }
      ])
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
      ` · over the last ${report.window.rows} rows`;
    replaceChildren(this._drift, ...report.features.map(driftChart));
  }

  private _snaps: ISnapshot[] = [];
  private _streams: HTMLElement;
  private _jobs: HTMLElement;
  private _traffic: HTMLElement;
  private _caption: HTMLElement;
  private _drift: HTMLElement;
}
