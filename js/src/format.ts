/**
 * Pure text helpers of the sidebar (no DOM, no JupyterLab): bin labels of a drift feature, times of the
 * request log, the kind of a status badge. Unit-tested by test/*.test.ts.
 */

/** The unit of date bins in a drift report (nbserve/server/drift.py: DATE_UNIT). */
export const DATE_UNIT = 'days since 1970-01-01';

export interface IDriftFeature {
  name: string;
  role: string;
  method: string | null;
  kind: string;
  rows?: number;
  unit?: string;
  psi: number | null;
  status: string;
  reason?: string;
  reference: { shares: number[]; edges?: number[]; values?: unknown[] };
  live: { shares: number[] };
}

/** A bin edge as a reader wants it: a date for date columns, seconds for durations, 3 digits else. */
export function edgeLabel(value: number, unit?: string): string {
  if (unit === DATE_UNIT) {
    return new Date(value * 86400000).toISOString().slice(0, 10);
  }
  if (unit === 'seconds') {
    return `${+value.toPrecision(3)} s`;
  }
  return String(+value.toPrecision(3));
}

/** What each bin of a feature holds: value ranges (by the sample's edges), categories, 'other', 'null'. */
export function binLabels(feature: IDriftFeature): string[] {
  const ref = feature.reference;
  const n = ref.shares.length;
  if (!n) {
    return [];
  }
  let labels: string[];
  if (ref.values) {
    labels = [...ref.values.map(v => String(v)), 'other'];
  } else {
    const edges = (ref.edges ?? []).map(e => edgeLabel(e, feature.unit));
    labels = edges.length
      ? [
          `< ${edges[0]}`,
          ...edges.slice(1).map((e, i) => `${edges[i]}–${e}`),
          `≥ ${edges[edges.length - 1]}`
        ]
      : ['all'];
  }
  return [...labels.slice(0, n - 1), 'null'];
}

/** Why a feature has no live bars: nothing received yet for it (a method never called). */
export function noLiveNote(feature: IDriftFeature): string | null {
  if (feature.status === 'not_computed') {
    return `not computed: ${feature.reason ?? ''}`;
  }
  if (feature.rows) {
    return null;
  }
  return feature.role === 'input' ? 'no live rows yet' : `${feature.method} not called yet`;
}

/** '2024-05-01T10:12:03.123Z' (UTC, as the server logs it) as local 'HH:MM:SS.mmm'. */
export function localTime(stamp: string | null | undefined): string {
  if (!stamp) {
    return '-';
  }
  const t = new Date(stamp);
  if (isNaN(t.getTime())) {
    return stamp;
  }
  const two = (n: number) => String(n).padStart(2, '0');
  return (
    `${two(t.getHours())}:${two(t.getMinutes())}:${two(t.getSeconds())}.` +
    String(t.getMilliseconds()).padStart(3, '0')
  );
}

/** The badge of an instance's status: ok (running), busy (starting), idle (stopped), bad (the rest). */
export function badgeKind(status: string): string {
  if (status === 'running') {
    return 'ok';
  }
  if (status === 'building' || status === 'starting' || status === 'restarting') {
    return 'busy';
  }
  if (status === 'stopped') {
    return 'idle';
  }
  return 'bad'; // exited, failed, missing, unknown
}

/** The class of a request log row by its status: the server's failures stand out. */
export function statusClass(status: number): string {
  return status >= 500 ? 'error' : status >= 400 ? 'refused' : 'ok';
}

/** A job's progress as the method reported it: '40% step 4 of 10', '12 items', or '-'. */
export function jobProgress(job: {
  progress?: { fraction?: number; message?: string; items?: number } | null;
}): string {
  const p = job.progress ?? {};
  const parts: string[] = [];
  if (p.fraction !== undefined && p.fraction !== null) {
    parts.push(`${Math.round(p.fraction * 100)}%`);
  }
  if (p.items !== undefined && p.items !== null) {
    parts.push(`${p.items} items`);
  }
  if (p.message) {
    parts.push(p.message);
  }
  return parts.join(' ') || '-';
}

/** How long a job waited, has run, or ran ('ran 12 s', 'running 3 min', 'waiting 4 s'). */
export function jobTime(
  job: { created: number; started?: number; finished?: number },
  now: number
): string {
  const span = (s: number) =>
    s < 90
      ? `${Math.round(s)} s`
      : s < 5400
        ? `${Math.round(s / 60)} min`
        : `${(s / 3600).toFixed(1)} h`;
  if (job.finished && job.started) {
    return `ran ${span(job.finished - job.started)}`;
  }
  if (job.started) {
    return `running ${span(now - job.started)}`;
  }
  if (job.finished) {
    return `ended ${span(now - job.finished)} ago`;
  }
  return `waiting ${span(now - job.created)}`;
}

/** A split's shares as one line: {"diabetes:1": 90, "diabetes:2": 10} -> "diabetes:1 90% · diabetes:2 10%". */
export function splitText(split: { [version: string]: number }): string {
  const total = Object.values(split).reduce((a, b) => a + b, 0) || 1;
  return Object.entries(split)
    .map(([m, w]) => `${m} ${Math.round((100 * w) / total)}%`)
    .join(' · ');
}
