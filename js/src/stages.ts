/**
 * Pure helpers of the sidebar's drawing of a graph of stages (no DOM, no JupyterLab): where each stage goes
 * and what its box says. Unit-tested by test/stages.test.ts.
 */

/** One stage of a served graph, as GET instances/<id>/monitor gives it (nbserve/monitoring.py: stage_summary). */
export interface IStage {
  stage: string;
  /** the registered version the stage runs, e.g. "rentals.clean:1" */
  model: string;
  method: string;
  /** the stages it takes its input from (none: the graph's input) */
  inputs: string[];
  calls: number;
  errors: number;
  p50_ms: number | null;
  p99_ms: number | null;
  mean_ms: number | null;
}

/** "p50 1.2 ms · 0 errors" */
export function stageLine(s: IStage): string {
  const p50 =
    s.p50_ms === null
      ? 'p50 -'
      : `p50 ${s.p50_ms < 10 ? s.p50_ms.toFixed(1) : Math.round(s.p50_ms)} ms`;
  return `${p50} · ${s.errors} error${s.errors === 1 ? '' : 's'}`;
}

/** Stage -> [row, position in the row]: a stage's row is one below its deepest input's (stages in running order). */
export function stageLayout(stages: IStage[]): Map<string, [number, number]> {
  const depth = new Map<string, number>();
  const taken = new Map<number, number>();
  const spots = new Map<string, [number, number]>();
  for (const s of stages) {
    const row = s.inputs.length ? 1 + Math.max(...s.inputs.map(i => depth.get(i) ?? 0)) : 0;
    depth.set(s.stage, row);
    const position = taken.get(row) ?? 0;
    taken.set(row, position + 1);
    spots.set(s.stage, [row, position]);
  }
  return spots;
}

/** What the drawing shows, in words (its aria-label). */
export function describeStages(model: string, stages: IStage[]): string {
  return (
    `graph ${model}: ` +
    stages
      .map(
        s =>
          `${s.stage} (${s.model}, ${stageLine(s)})` +
          (s.inputs.length ? ` after ${s.inputs.join(', ')}` : '')
      )
      .join('; ')
  );
}
