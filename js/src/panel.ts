/**
 * The "Model serving" sidebar: registered models (with a Start form) and instances (with
 * Stop/Start/Remove/Logs). One request a reading (GET overview), every few seconds while the sidebar and
 * the browser tab are shown (a Poll that backs off while the server does not answer), at once after every
 * action, and every second while a start is in flight (an image build can take a minute).
 */
import {
  IEntry,
  IModel,
  IStartRequest,
  act,
  comparisonOf,
  listDeployments,
  loopAction,
  monitorOf,
  overview,
  remove,
  startNew
} from './api';
import { DeploymentsSection } from './deployments';
import { h, replaceChildren } from './dom';
import { badgeKind, splitText } from './format';
import { StagesView } from './graph';
import { MonitorView } from './monitor';
import { PollingWidget } from './poll';
import { ComparisonView } from './versions';
import { IStage } from './stages';

const IDLE_REFRESH_MS = 5000;
const BUSY_REFRESH_MS = 1000;
const PENDING = new Set(['building', 'starting']);
const DISMISSED_HINT = 'nbserve:dismissed-hint';

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export interface IServingPanelOptions {
  /** Open the logs of an instance (or of a start in flight) in the main area. */
  openLogs: (id: string, label: string) => void;
  /** Close them (the instance is being removed). */
  closeLogs: (id: string) => void;
}

/** The OpenAI route of a text function (nbserve/server/protocols/openai.py). */
const TEXT_ROUTES: { [kind: string]: string } = {
  chat: '/v1/chat/completions',
  embeddings: '/v1/embeddings'
};

export class ServingPanel extends PollingWidget {
  constructor(options: IServingPanelOptions) {
    super(IDLE_REFRESH_MS, 'nbserve:sidebar');
    this._openLogs = options.openLogs;
    this._closeLogs = options.closeLogs;
    this.addClass('nbserve-panel');
    this.title.caption = 'Model serving';

    const refresh = h(
      'button',
      {
        className: 'nbserve-button nbserve-refresh',
        type: 'button',
        title: 'Refresh models and instances',
        onclick: () => void this.refresh()
      },
      'Refresh'
    );
    this._error = h('div', { className: 'nbserve-error', role: 'alert' });
    this._hintText = h('span', {});
    this._hint = h(
      'div',
      { className: 'nbserve-note nbserve-hint', role: 'note' },
      this._hintText,
      h(
        'button',
        {
          className: 'nbserve-button nbserve-dismiss',
          type: 'button',
          title: 'Do not show this hint again in this browser',
          onclick: () => this._dismissHint()
        },
        'Dismiss'
      )
    );
    this._hint.hidden = true;
    this._modelList = h('ul', { className: 'nbserve-list', 'aria-label': 'Registered models' });
    this._modelsEmpty = h(
      'div',
      { className: 'nbserve-empty' },
      h('p', {}, 'No models registered yet. In a notebook, serve a fitted model with'),
      h('pre', {}, h('code', {}, '%load_ext nbserve\n%serve model_name')),
      h(
        'p',
        {},
        'or register it from Python with ',
        h('code', {}, 'nbserve.register(model, name="...")'),
        '.'
      )
    );
    this._instanceList = h('ul', { className: 'nbserve-list', 'aria-label': 'Model instances' });
    this._instancesEmpty = h(
      'p',
      { className: 'nbserve-empty' },
      'Nothing is being served. Start a model above, or run ',
      h('code', {}, '%serve model_name'),
      ' in a notebook.'
    );
    this._loading = h('p', { className: 'nbserve-empty', 'aria-live': 'polite' }, 'Loading…');
    this._deployments = new DeploymentsSection(
      () => void this.refresh(),
      message => this._showError(message)
    );

    replaceChildren(
      this.node,
      h('header', { className: 'nbserve-header' }, h('h2', {}, 'Model serving'), refresh),
      this._error,
      this._loading,
      h(
        'section',
        { className: 'nbserve-section', 'aria-labelledby': 'nbserve-models-heading' },
        h('h3', { id: 'nbserve-models-heading' }, 'Models'),
        this._modelList,
        this._modelsEmpty
      ),
      h(
        'section',
        { className: 'nbserve-section', 'aria-labelledby': 'nbserve-instances-heading' },
        h('h3', { id: 'nbserve-instances-heading' }, 'Instances'),
        this._hint,
        this._instanceList,
        this._instancesEmpty
      ),
      this._deployments.node
    );
    this._modelsEmpty.hidden = this._instancesEmpty.hidden = true;
  }

  /** One reading of the overview; rejects after showing the error, so that the poll backs off. */
  protected async load(): Promise<void> {
    let reading;
    try {
      reading = await overview();
    } catch (error) {
      this._showError(`Could not load models and instances: ${messageOf(error)}`);
      this._loading.hidden = true;
      throw error;
    }
    this._showError(null);
    this._loading.hidden = true;
    this._renderModels(reading.models, reading.runtimes.choices);
    this._renderInstances(reading.instances);
    this._showHint(reading.hint);
    this.setInterval(
      reading.instances.some(e => PENDING.has(e.status)) ? BUSY_REFRESH_MS : IDLE_REFRESH_MS
    );
    // deployments ask an orchestrator: their failure must not hide models and instances
    listDeployments().then(
      d => this._deployments.render(d),
      () => this._deployments.render([])
    );
  }

  /** The remote-access hint: once, above the instances, until dismissed in this browser. */
  private _showHint(hint: string | null): void {
    const shown = !!hint && window.localStorage.getItem(DISMISSED_HINT) !== hint;
    this._hintText.textContent = shown ? hint : '';
    this._hint.hidden = !shown;
  }

  private _dismissHint(): void {
    window.localStorage.setItem(DISMISSED_HINT, this._hintText.textContent ?? '');
    this._hint.hidden = true;
  }

  private _showError(message: string | null): void {
    this._error.textContent = message ?? '';
    this._error.hidden = !message;
  }

  private _renderModels(models: IModel[], choices: string[]): void {
    const seen = new Set<string>();
    models.forEach((model, index) => {
      let row = this._modelRows.get(model.name);
      if (!row) {
        row = new ModelRow(model.name, choices, r => void this._start(r));
        this._modelRows.set(model.name, row);
      }
      row.update(model);
      seen.add(model.name);
      placeAt(this._modelList, row.node, index);
    });
    dropUnseen(this._modelRows, seen);
    this._modelsEmpty.hidden = models.length > 0;
    this._modelList.hidden = models.length === 0;
  }

  private _renderInstances(entries: IEntry[]): void {
    const seen = new Set<string>();
    entries.forEach((entry, index) => {
      let row = this._instanceRows.get(entry.id);
      if (!row) {
        row = new InstanceRow(
          entry.id,
          (r, what) => void this._act(r, what),
          () => void this.refresh()
        );
        this._instanceRows.set(entry.id, row);
      }
      row.update(entry);
      void row.refreshMonitor(entry.status === 'running' && !entry.job && !row.busy);
      void row.refreshComparison(
        entry.status === 'running' && entry.shadow && !row.busy ? entry.shadow.model : null
      );
      seen.add(entry.id);
      placeAt(this._instanceList, row.node, index);
    });
    dropUnseen(this._instanceRows, seen);
    this._instancesEmpty.hidden = entries.length > 0;
    this._instanceList.hidden = entries.length === 0;
  }

  private async _start(row: ModelRow): Promise<void> {
    const request = row.request();
    if (typeof request === 'string') {
      row.showError(request);
      return;
    }
    row.setBusy(true);
    row.showError(null);
    try {
      const job = await startNew(request);
      row.showNote(`Starting ${job.model} on the ${job.runtime} runtime…`);
      this.setInterval(BUSY_REFRESH_MS);
    } catch (error) {
      row.showError(messageOf(error));
    } finally {
      row.setBusy(false);
      await this.refresh();
    }
  }

  private async _act(row: InstanceRow, what: Action): Promise<void> {
    if (what === 'logs') {
      this._openLogs(row.id, row.label);
      return;
    }
    row.setBusy(true);
    row.showError(null);
    try {
      if (what === 'remove' || what === 'dismiss') {
        this._closeLogs(row.id);
        await remove(row.id);
      } else if (what === 'end-split') {
        await loopAction(row.id, 'split', { weights: null });
      } else if (what === 'rollback' || what === 'promote' || what === 'discard') {
        await loopAction(row.id, what);
      } else {
        await act(row.id, what);
      }
    } catch (error) {
      row.showError(messageOf(error));
    } finally {
      row.setBusy(false);
      await this.refresh();
    }
  }

  private _openLogs: (id: string, label: string) => void;
  private _closeLogs: (id: string) => void;
  private _deployments: DeploymentsSection;
  private _error: HTMLElement;
  private _loading: HTMLElement;
  private _modelList: HTMLElement;
  private _modelsEmpty: HTMLElement;
  private _instanceList: HTMLElement;
  private _instancesEmpty: HTMLElement;
  private _modelRows = new Map<string, ModelRow>();
  private _instanceRows = new Map<string, InstanceRow>();
  private _hint: HTMLElement;
  private _hintText: HTMLElement;
}

/** Put `node` at position `index` of `list` without moving it when it is already there (keeps focus). */
function placeAt(list: HTMLElement, node: HTMLElement, index: number): void {
  if (list.children[index] !== node) {
    list.insertBefore(node, list.children[index] ?? null);
  }
}

function dropUnseen<R extends { node: HTMLElement }>(
  rows: Map<string, R>,
  seen: Set<string>
): void {
  for (const [key, row] of rows) {
    if (!seen.has(key)) {
      row.node.remove();
      rows.delete(key);
    }
  }
}

/** One registered model: what it is, and a form to start an instance of it. */
class ModelRow {
  readonly node: HTMLElement;

  constructor(
    readonly name: string,
    runtimes: string[],
    onStart: (row: ModelRow) => void
  ) {
    this._title = h('span', { className: 'nbserve-title' }, name);
    this._meta = h('div', { className: 'nbserve-meta' });
    this._version = h('select', {
      className: 'nbserve-select',
      'aria-label': `Version of ${name}`
    }) as HTMLSelectElement;
    this._runtime = h(
      'select',
      { className: 'nbserve-select', 'aria-label': `Runtime for ${name}` },
      ...runtimes.map(r => h('option', { value: r }, r))
    ) as HTMLSelectElement;
    this._port = h('input', {
      className: 'nbserve-input nbserve-port',
      type: 'number',
      min: 1,
      max: 65535,
      placeholder: 'any port',
      'aria-label': `Port for ${name}`
    }) as HTMLInputElement;
    // adaptive batching of concurrent requests: serve(..., batch=True, max_batch, max_latency_ms)
    this._batch = h('input', {
      type: 'checkbox',
      'aria-label': `Batch requests for ${name}`,
      onchange: () => this._showBatching()
    }) as HTMLInputElement;
    const limit = (label: string, placeholder: string, min: number) =>
      h('input', {
        className: 'nbserve-input nbserve-limit',
        type: 'number',
        min,
        placeholder,
        title: label,
        'aria-label': `${label} for ${name}`
      }) as HTMLInputElement;
    this._maxBatch = limit('Max batch rows', '64', 1);
    this._maxLatency = limit('Max latency ms', '10', 0);
    this._limits = h(
      'span',
      { className: 'nbserve-limits' },
      this._maxBatch,
      'rows',
      this._maxLatency,
      'ms'
    );
    this._limits.hidden = true;
    this._button = h(
      'button',
      {
        className: 'nbserve-button nbserve-primary',
        type: 'button',
        title: `Start an instance of ${name}`,
        onclick: () => onStart(this)
      },
      'Start'
    ) as HTMLButtonElement;
    this._note = h('div', { className: 'nbserve-note', role: 'status' });
    this._error = h('div', { className: 'nbserve-error', role: 'alert' });
    this._note.hidden = this._error.hidden = true;
    this.node = h(
      'li',
      { className: 'nbserve-item', 'aria-label': `Model ${name}` },
      h('div', { className: 'nbserve-line' }, this._title, this._version),
      this._meta,
      h('div', { className: 'nbserve-form' }, this._runtime, this._port, this._button),
      h(
        'div',
        { className: 'nbserve-form' },
        h(
          'label',
          { className: 'nbserve-check', title: 'Gather concurrent requests into one model call' },
          this._batch,
          'batch'
        ),
        this._limits
      ),
      this._note,
      this._error
    );
  }

  update(model: IModel): void {
    const versions = [...model.versions].sort((a, b) => b - a);
    const key = versions.join(',');
    if (key !== this._versionsKey) {
      const selected = this._version.value;
      replaceChildren(this._version, ...versions.map(v => h('option', { value: v }, `v${v}`)));
      // keep the user's choice across refreshes; otherwise the latest version
      this._version.value = versions.map(String).includes(selected)
        ? selected
        : String(model.version);
      this._versionsKey = key;
    }
    // "sklearn.linear_model._base.LinearRegression" -> "LinearRegression" (the full name is in the tooltip)
    const kind = model.object_type ? `${model.object_type.split('.').pop()} · ` : '';
    const by = model.registered_by ? ` · by ${model.registered_by}@${model.registered_host}` : '';
    const running = (model.running ?? []).filter(p => p.status === 'running');
    const where = running.length ? ` · ${running.length} running` : '';
    const streams = new Set(model.streams ?? []);
    const methods = model.methods.map(m => (streams.has(m) ? `${m} (streams)` : m)).join(', ');
    const text = model.text_kind
      ? ` · OpenAI ${model.text_kind} (${TEXT_ROUTES[model.text_kind] ?? ''})`
      : '';
    this._meta.textContent = `${kind}methods: ${methods}${text}${by}${where}`;
    this._meta.title = [
      model.object_type,
      ...model.requirements,
      ...running.map(p => `running: ${p.registered_by}@${p.machine} ${p.runtime} ${p.url ?? ''}`)
    ]
      .filter(Boolean)
      .join('\n');
  }

  /** The start request from the form, or a message saying what to fix. */
  request(): IStartRequest | string {
    const request: IStartRequest = {
      model: this.name,
      version: Number(this._version.value),
      runtime: this._runtime.value
    };
    const port = this._port.value.trim();
    if (port) {
      const n = Number(port);
      if (!Number.isInteger(n) || n < 1 || n > 65535) {
        return `Port must be a whole number from 1 to 65535, or empty for any free port.`;
      }
      request.port = n;
    }
    if (this._batch.checked) {
      request.batch = true;
      const rows = this._maxBatch.value.trim();
      const ms = this._maxLatency.value.trim();
      if (rows) {
        const n = Number(rows);
        if (!Number.isInteger(n) || n < 1) {
          return 'Max batch must be a whole number of rows, at least 1 (empty: 64).';
        }
        request.max_batch = n;
      }
      if (ms) {
        const n = Number(ms);
        if (!Number.isFinite(n) || n < 0) {
          return 'Max latency must be a number of milliseconds, at least 0 (empty: 10).';
        }
        request.max_latency_ms = n;
      }
    }
    return request;
  }

  private _showBatching(): void {
    this._limits.hidden = !this._batch.checked;
  }

  setBusy(busy: boolean): void {
    this._button.disabled = busy;
  }

  showNote(message: string | null): void {
    this._note.textContent = message ?? '';
    this._note.hidden = !message;
    if (message) {
      window.setTimeout(() => this.showNote(null), 4000);
    }
  }

  showError(message: string | null): void {
    this._error.textContent = message ?? '';
    this._error.hidden = !message;
  }

  private _title: HTMLElement;
  private _meta: HTMLElement;
  private _version: HTMLSelectElement;
  private _runtime: HTMLSelectElement;
  private _port: HTMLInputElement;
  private _batch: HTMLInputElement;
  private _maxBatch: HTMLInputElement;
  private _maxLatency: HTMLInputElement;
  private _limits: HTMLElement;
  private _button: HTMLButtonElement;
  private _note: HTMLElement;
  private _error: HTMLElement;
  private _versionsKey = '';
}

type Action =
  | 'stop'
  | 'start'
  | 'remove'
  | 'dismiss'
  | 'logs'
  | 'rollback'
  | 'end-split'
  | 'promote'
  | 'discard';

/** One instance, or a start in flight or failed (a job). */
class InstanceRow {
  readonly node: HTMLElement;
  label = '';

  constructor(
    readonly id: string,
    private _onAction: (row: InstanceRow, what: Action) => void,
    private _onChange: () => void = () => undefined
  ) {
    this._body = h('div', { className: 'nbserve-body' });
    this._error = h('div', { className: 'nbserve-error', role: 'alert' });
    this._error.hidden = true;
    this._monitorSlot = h('div', { className: 'nbserve-monitor-slot' });
    this._comparisonSlot = h('div', { className: 'nbserve-comparison-slot' });
    this.node = h(
      'li',
      { className: 'nbserve-item' },
      this._body,
      this._comparisonSlot,
      this._monitorSlot,
      this._error
    );
  }

  /** A shadow's comparison while a candidate shadows this instance (read again on every refresh). */
  async refreshComparison(candidate: string | null): Promise<void> {
    if (!candidate) {
      this._comparison?.node.remove();
      this._comparison = null;
      return;
    }
    if (!this._comparison) {
      this._comparison = new ComparisonView(what => this._onAction(this, what), candidate);
      this._comparisonSlot.appendChild(this._comparison.node);
    }
    const view = this._comparison;
    try {
      view.show(await comparisonOf(this.id));
    } catch (error) {
      view.showError(messageOf(error));
    }
  }

  /** Metrics and drift plots while the instance runs (read again on every refresh of the sidebar). */
  async refreshMonitor(running: boolean): Promise<void> {
    if (!running) {
      this._monitor?.node.remove();
      this._monitor = null;
      this._stages?.node.remove();
      this._stages = null;
      return;
    }
    if (!this._monitor) {
      this._monitor = new MonitorView(this.id);
      this._monitorSlot.appendChild(this._monitor.node);
    }
    const monitor = this._monitor;
    try {
      const reading = await monitorOf(this.id);
      monitor.show(reading);
      this._showStages(reading.stages ?? null);
    } catch (error) {
      monitor.showError(messageOf(error));
    }
  }

  /** A graph's stages above its monitoring (a single model has none). */
  private _showStages(stages: IStage[] | null): void {
    if (!stages) {
      this._stages?.node.remove();
      this._stages = null;
      return;
    }
    if (!this._stages) {
      this._stages = new StagesView(this.id, this._onChange);
      this._monitorSlot.insertBefore(this._stages.node, this._monitorSlot.firstChild);
    }
    this._stages.show(this._model, stages);
  }

  /** An action (stop, start, remove) is running on this instance. */
  busy = false;

  update(entry: IEntry): void {
    const key = JSON.stringify([
      entry.status,
      entry.url,
      entry.browser_url,
      entry.message,
      entry.error,
      entry.fraction,
      entry.batching,
      entry.history,
      entry.split,
      entry.shadow,
      entry.following,
      entry.candidate_of
    ]);
    this.label = entry.job ? `start of ${entry.model}` : `${entry.model} (${entry.id})`;
    this._model = entry.model;
    this.node.setAttribute('aria-label', `Instance ${entry.model} ${entry.id}`);
    if (key === this._key) {
      return; // unchanged: keep the DOM (and the focus) as it is
    }
    this._key = key;
    const running = entry.status === 'running';
    const pending = PENDING.has(entry.status);
    const button = (text: string, what: Action, title: string) =>
      h(
        'button',
        {
          className: 'nbserve-button',
          type: 'button',
          title,
          onclick: () => this._onAction(this, what)
        },
        text
      );
    const actions: HTMLElement[] = [];
    if (entry.job) {
      actions.push(button('Logs', 'logs', 'Show the progress of this start'));
      if (!pending) {
        actions.push(button('Dismiss', 'dismiss', 'Forget this failed start'));
      }
    } else {
      actions.push(
        running || pending
          ? button('Stop', 'stop', `Stop ${entry.id}`)
          : button('Start', 'start', `Start ${entry.id} again`),
        button('Remove', 'remove', `Stop ${entry.id} and forget it`),
        button('Logs', 'logs', `Show the server log of ${entry.id}`)
      );
      const before = entry.history ?? [];
      if (running && before.length) {
        actions.push(
          button('Rollback', 'rollback', `Serve ${before[before.length - 1]} here again, in place`)
        );
      }
      if (running && entry.split) {
        actions.push(button('End split', 'end-split', `Serve one version at ${entry.id} again`));
      }
    }
    const loop: HTMLElement[] = [];
    if (entry.following) {
      loop.push(
        h(
          'div',
          {
            className: 'nbserve-meta nbserve-following',
            title: 'A notebook kernel serves every change of this variable here, in place'
          },
          `following ${entry.following}`
        )
      );
    }
    if (entry.candidate_of) {
      loop.push(
        h('div', { className: 'nbserve-meta' }, `shadow candidate of ${entry.candidate_of}`)
      );
    }
    if (entry.split) {
      loop.push(
        h('div', { className: 'nbserve-meta nbserve-split' }, `split: ${splitText(entry.split)}`)
      );
    }
    if (entry.shadow) {
      loop.push(
        h(
          'div',
          { className: 'nbserve-meta' },
          `shadowed by ${entry.shadow.model} (${Math.round(entry.shadow.share * 100)}% of requests)`
        )
      );
    }
    if (entry.history && entry.history.length) {
      loop.push(
        h(
          'div',
          { className: 'nbserve-meta' },
          `served before: ${entry.history.slice(-3).join(', ')}`
        )
      );
    }
    // Through the Jupyter server when it has jupyter-server-proxy (works from a remote browser, behind
    // the Jupyter login), beside the direct address (which only a browser on the same machine reaches).
    const link = (href: string, text: string, title: string) =>
      h(
        'a',
        { className: 'nbserve-link', href, target: '_blank', rel: 'noopener noreferrer', title },
        text
      );
    const url =
      running && entry.url
        ? h(
            'div',
            { className: 'nbserve-links' },
            ...(entry.browser_url
              ? [
                  link(
                    `${entry.browser_url}docs`,
                    entry.browser_url,
                    'Open the Swagger page of this model through the Jupyter server'
                  ),
                  h('span', { className: 'nbserve-note' }, ' · direct: ')
                ]
              : []),
            link(
              `${entry.url}/docs`,
              entry.url,
              'Open the Swagger page of this model (this machine only)'
            )
          )
        : null;
    const message =
      entry.job && entry.message
        ? h('div', { className: entry.error ? 'nbserve-error' : 'nbserve-note' }, entry.message)
        : null;
    replaceChildren(
      this._body,
      h(
        'div',
        { className: 'nbserve-line' },
        h('span', { className: 'nbserve-title' }, entry.model),
        h(
          'span',
          {
            className: `nbserve-badge nbserve-badge-${badgeKind(entry.status)}`,
            title: `status: ${entry.status}`
          },
          entry.status
        )
      ),
      h(
        'div',
        { className: 'nbserve-meta' },
        `${entry.runtime} · ${entry.job ? 'new instance' : entry.id}` +
          (entry.auth ? ' · bearer token required' : '')
      ),
      entry.batching
        ? h(
            'div',
            {
              className: 'nbserve-meta nbserve-batching',
              title:
                'Concurrent requests are gathered into one model call (GET /batching tells how many)'
            },
            `batching: ≤ ${entry.batching.max_batch} rows, ${entry.batching.max_latency_ms} ms`
          )
        : null,
      ...loop,
      url,
      message,
      h('div', { className: 'nbserve-actions' }, ...actions)
    );
  }

  setBusy(busy: boolean): void {
    this.busy = busy;
    if (busy) {
      this._monitor?.node.remove(); // a stop is coming: no more readings of its metrics
      this._monitor = null;
    }
    this._body.querySelectorAll('button').forEach(b => ((b as HTMLButtonElement).disabled = busy));
    this._comparison?.setBusy(busy);
  }

  showError(message: string | null): void {
    this._error.textContent = message ?? '';
    this._error.hidden = !message;
  }

  private _body: HTMLElement;
  private _error: HTMLElement;
  private _monitorSlot: HTMLElement;
  private _monitor: MonitorView | null = null;
  private _comparisonSlot: HTMLElement;
  private _comparison: ComparisonView | null = null;
  private _stages: StagesView | null = null;
  private _model = '';
  private _key = '';
}
