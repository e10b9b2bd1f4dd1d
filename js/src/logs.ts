/**
 * An instance's request log (or a start's progress) in a main-area panel, read again while visible: one row
 * per request (time, status, latency, rows, request id; the raw line on demand), the server's own lines
 * between them, and the server's failures highlighted.
 */
import { MainAreaWidget, ToolbarButton } from '@jupyterlab/apputils';
import { refreshIcon } from '@jupyterlab/ui-components';

import { ILogEntry, logs } from './api';
import { NbserveAPIError } from './request';
import { h, replaceChildren } from './dom';
import { localTime, statusClass } from './format';
import { servingIcon } from './icon';
import { messageOf } from './panel';
import { PollingWidget } from './poll';

const REFRESH_MS = 3000;

function row(entry: ILogEntry): HTMLElement {
  const raw = h(
    'details',
    { className: 'nbserve-raw' },
    h('summary', {}, 'raw'),
    h('code', {}, entry.raw)
  );
  if (entry.kind === 'request') {
    const status = entry.status ?? 0;
    return h(
      'tr',
      {
        className: `nbserve-log-request nbserve-log-${statusClass(status)}`,
        'data-status': status
      },
      h('td', {}, localTime(entry.time)),
      h(
        'td',
        { className: 'nbserve-log-status' },
        String(status),
        h('span', { className: 'nbserve-log-path' }, ` ${entry.path ?? ''}`)
      ),
      h(
        'td',
        { className: 'nbserve-num' },
        entry.latency_ms === null || entry.latency_ms === undefined
          ? '-'
          : `${entry.latency_ms.toFixed(1)} ms`
      ),
      h(
        'td',
        { className: 'nbserve-num' },
        entry.rows === null || entry.rows === undefined ? '-' : String(entry.rows)
      ),
      h('td', {}, h('code', {}, entry.request_id ?? ''), raw)
    );
  }
  return h(
    'tr',
    { className: `nbserve-log-server${entry.error ? ' nbserve-log-error' : ''}` },
    h('td', { colspan: 5 }, h('code', {}, entry.text ?? entry.raw))
  );
}

export class LogView extends PollingWidget {
  constructor(readonly instanceId: string) {
    super(REFRESH_MS, `nbserve:logs:${instanceId}`);
    this.addClass('nbserve-logs');
    this._error = h('div', { className: 'nbserve-error', role: 'alert' });
    this._error.hidden = true;
    this._summary = h('div', { className: 'nbserve-meta', role: 'status' }, 'Loading…');
    this._body = h('tbody', {});
    this._table = h(
      'table',
      {
        className: 'nbserve-log-table',
        role: 'log',
        'aria-label': `Logs of ${instanceId}`,
        tabindex: 0
      },
      h(
        'thead',
        {},
        h('tr', {}, ...['time', 'status', 'latency', 'rows', 'request id'].map(t => h('th', {}, t)))
      ),
      this._body
    );
    this.node.append(this._error, this._summary, this._table);
  }

  protected async load(): Promise<void> {
    try {
      const answer = await logs(this.instanceId);
      const entries: ILogEntry[] =
        answer.entries ??
        answer.logs
          .split('\n')
          .filter(Boolean)
          .map(line => ({ kind: 'server', raw: line, text: line, error: false }));
      const atBottom = this.node.scrollTop + this.node.clientHeight >= this.node.scrollHeight - 8;
      const open = new Set(
        Array.from(this._body.querySelectorAll('details[open] code'), c => c.textContent)
      );
      replaceChildren(this._body, ...entries.map(row));
      this._body.querySelectorAll('details').forEach(d => {
        if (open.has(d.querySelector('code')?.textContent ?? null)) {
          d.open = true; // a raw line the reader opened stays open across readings
        }
      });
      const requests = entries.filter(e => e.kind === 'request').length;
      const errors = entries.filter(e => e.error).length;
      this._summary.textContent = entries.length
        ? `${requests} requests` + (errors ? ` · ${errors} server errors` : '')
        : '(no output yet)';
      this._summary.classList.toggle('nbserve-log-has-errors', errors > 0);
      if (atBottom) {
        this.node.scrollTop = this.node.scrollHeight;
      }
      this._error.hidden = true;
    } catch (error) {
      if (error instanceof NbserveAPIError && error.status === 404) {
        this._error.textContent = `${this.instanceId} is gone (removed): its log is no longer kept.`;
        this._error.hidden = false;
        void this.poll.stop(); // nothing more to read
        return;
      }
      this._error.textContent = `Could not read the logs: ${messageOf(error)}`;
      this._error.hidden = false;
      throw error;
    }
  }

  private _table: HTMLElement;
  private _body: HTMLElement;
  private _summary: HTMLElement;
  private _error: HTMLElement;
}

export function createLogsWidget(id: string, label: string): MainAreaWidget<LogView> {
  const content = new LogView(id);
  const widget = new MainAreaWidget({ content });
  widget.id = `nbserve-logs-${id}`;
  widget.title.label = `Logs: ${label}`;
  widget.title.icon = servingIcon;
  widget.title.caption = `Request log of ${label}`;
  widget.title.closable = true;
  widget.toolbar.addItem(
    'refresh',
    new ToolbarButton({
      icon: refreshIcon,
      tooltip: 'Reload the log',
      label: 'Refresh',
      onClick: () => void content.refresh()
    })
  );
  return widget;
}
