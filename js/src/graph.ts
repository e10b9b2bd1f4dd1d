/**
 * The sidebar's view of a running graph of stages (nbserve.graph / nbserve.chain): the stages drawn top to bottom,
 * each box with the version it runs, its p50 latency and its error count (read with the instance's monitor
 * reading), and a form that serves another registered version of one stage in place (POST
 * instances/<id>/update-stage).
 */
import { updateStage } from './api';
import { h, replaceChildren, svg } from './dom';
import { IStage, describeStages, stageLayout, stageLine } from './stages';

const BOX_W = 150;
const BOX_H = 50;
const GAP_X = 12;
const GAP_Y = 22;
const PAD = 4;

/** The stages as boxes (name, version, p50 and errors) with arrows from each stage's inputs. */
export function drawStages(model: string, stages: IStage[]): SVGElement {
  const spots = stageLayout(stages);
  const rows = 1 + Math.max(0, ...[...spots.values()].map(([r]) => r));
  const across = 1 + Math.max(0, ...[...spots.values()].map(([, p]) => p));
  const width = PAD * 2 + across * BOX_W + (across - 1) * GAP_X;
  const height = PAD * 2 + rows * BOX_H + (rows - 1) * GAP_Y;
  const at = (name: string): [number, number] => {
    const [r, p] = spots.get(name) ?? [0, 0];
    return [PAD + p * (BOX_W + GAP_X), PAD + r * (BOX_H + GAP_Y)];
  };
  const chart = svg('svg', {
    width: '100%',
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': describeStages(model, stages),
    class: 'nbserve-graph-drawing'
  });
  const defs = svg('defs', {});
  const marker = svg('marker', {
    id: 'nbserve-stage-arrow',
    viewBox: '0 0 10 10',
    refX: 10,
    refY: 5,
    markerWidth: 6,
    markerHeight: 6,
    orient: 'auto'
  });
  marker.appendChild(svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'nbserve-graph-arrowhead' }));
  defs.appendChild(marker);
  chart.appendChild(defs);
  for (const s of stages) {
    const [x, y] = at(s.stage);
    for (const input of s.inputs) {
      const [ix, iy] = at(input);
      chart.appendChild(
        svg('line', {
          x1: ix + BOX_W / 2,
          y1: iy + BOX_H,
          x2: x + BOX_W / 2,
          y2: y,
          class: 'nbserve-graph-edge',
          'marker-end': 'url(#nbserve-stage-arrow)'
        })
      );
    }
  }
  for (const s of stages) {
    const [x, y] = at(s.stage);
    const failing = s.errors > 0;
    const box = svg('g', { 'data-stage': s.stage, 'data-errors': s.errors });
    box.appendChild(
      svg(
        'title',
        {},
        `${s.stage}: ${s.model} (${s.method}), ${s.calls} calls, ${stageLine(s)}` +
          (s.p99_ms === null ? '' : `, p99 ${s.p99_ms.toFixed(1)} ms`)
      )
    );
    box.appendChild(
      svg('rect', {
        x,
        y,
        width: BOX_W,
        height: BOX_H,
        rx: 5,
        class: failing ? 'nbserve-graph-box nbserve-graph-failing' : 'nbserve-graph-box'
      })
    );
    box.appendChild(svg('text', { x: x + 6, y: y + 15, class: 'nbserve-graph-name' }, s.stage));
    box.appendChild(svg('text', { x: x + 6, y: y + 30, class: 'nbserve-graph-text' }, s.model));
    box.appendChild(
      svg(
        'text',
        {
          x: x + 6,
          y: y + 44,
          class: failing ? 'nbserve-graph-text nbserve-graph-error' : 'nbserve-graph-text'
        },
        stageLine(s)
      )
    );
    chart.appendChild(box);
  }
  return chart;
}

/** A running graph instance's stages, and the form that updates one of them. */
export class StagesView {
  readonly node: HTMLElement;

  constructor(
    readonly id: string,
    private _onChange: () => void
  ) {
    this._drawing = h('div', { className: 'nbserve-graph' });
    this._stage = h('select', {
      className: 'nbserve-select',
      'aria-label': `Stage of ${id} to update`
    }) as HTMLSelectElement;
    this._model = h('input', {
      className: 'nbserve-input nbserve-version-input',
      type: 'text',
      placeholder: 'NAME:VERSION',
      'aria-label': `Version the stage of ${id} runs next`
    }) as HTMLInputElement;
    this._button = h(
      'button',
      {
        className: 'nbserve-button',
        type: 'button',
        title: 'Serve the version typed beside as this stage, swapped in place',
        onclick: () => void this._update()
      },
      'Update stage'
    ) as HTMLButtonElement;
    this._error = h('div', { className: 'nbserve-error', role: 'alert' });
    this._error.hidden = true;
    this.node = h(
      'div',
      { className: 'nbserve-stages', 'aria-label': `Stages of ${id}` },
      h('div', { className: 'nbserve-spark-title' }, 'stages (p50 and errors since the start)'),
      this._drawing,
      h('div', { className: 'nbserve-actions' }, this._stage, this._model, this._button),
      this._error
    );
  }

  show(model: string, stages: IStage[]): void {
    if (this._busy) {
      return;
    }
    replaceChildren(this._drawing, drawStages(model, stages) as unknown as HTMLElement);
    const names = stages.map(s => s.stage);
    if (names.join(',') !== this._names) {
      const chosen = this._stage.value;
      replaceChildren(this._stage, ...names.map(n => h('option', { value: n }, n)));
      if (names.includes(chosen)) {
        this._stage.value = chosen;
      }
      this._names = names.join(',');
    }
  }

  private async _update(): Promise<void> {
    const model = this._model.value.trim();
    if (!model) {
      this._showError('Type the registered version the stage runs next, e.g. rentals.threshold:2.');
      return;
    }
    this._busy = true;
    this._button.disabled = true;
    this._showError(null);
    try {
      await updateStage(this.id, this._stage.value, model);
      this._model.value = '';
    } catch (error) {
      this._showError(error instanceof Error ? error.message : String(error));
    } finally {
      this._busy = false;
      this._button.disabled = false;
      this._onChange();
    }
  }

  private _showError(message: string | null): void {
    this._error.textContent = message ?? '';
    this._error.hidden = !message;
  }

  private _drawing: HTMLElement;
  private _stage: HTMLSelectElement;
  private _model: HTMLInputElement;
  private _button: HTMLButtonElement;
  private _error: HTMLElement;
  private _names = '';
  private _busy = false;
}
