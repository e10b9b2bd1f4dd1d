/** An instance's server log (or a start's progress) in a main-area panel, refreshed while visible. */
import { MainAreaWidget, ToolbarButton } from '@jupyterlab/apputils';
import { refreshIcon } from '@jupyterlab/ui-components';

import { logs } from './api';
import { h } from './dom';
import { servingIcon } from './icon';
import { messageOf } from './panel';
import { PollingWidget } from './poll';

const REFRESH_MS = 3000;

export class LogView extends PollingWidget {
  constructor(readonly instanceId: string) {
    super();
    this.addClass('nbserve-logs');
    this._error = h('div', { className: 'nbserve-error', role: 'alert' });
    this._error.hidden = true;
    this._pre = h(
      'pre',
      { role: 'log', 'aria-label': `Logs of ${instanceId}`, tabindex: 0 },
      'Loading…'
    );
    this.node.append(this._error, this._pre);
  }

  async refresh(): Promise<void> {
    this.cancelPoll();
    try {
      const text = await logs(this.instanceId);
      const atBottom = this.node.scrollTop + this.node.clientHeight >= this.node.scrollHeight - 8;
      this._pre.textContent = text || '(no output yet)';
      if (atBottom) {
        this.node.scrollTop = this.node.scrollHeight;
      }
      this._error.hidden = true;
    } catch (error) {
      this._error.textContent = `Could not read the logs: ${messageOf(error)}`;
      this._error.hidden = false;
    }
    this.schedule(REFRESH_MS);
  }

  private _pre: HTMLElement;
  private _error: HTMLElement;
}

export function createLogsWidget(id: string, label: string): MainAreaWidget<LogView> {
  const content = new LogView(id);
  const widget = new MainAreaWidget({ content });
  widget.id = `nbserve-logs-${id}`;
  widget.title.label = `Logs: ${label}`;
  widget.title.icon = servingIcon;
  widget.title.caption = `Server log of ${label}`;
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
