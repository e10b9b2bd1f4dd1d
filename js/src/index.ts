/**
 * nbserve's JupyterLab extension: a left-sidebar panel "Model serving" over the REST API of the
 * nbserve server extension (nbserve/jupyter/).
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget } from '@jupyterlab/apputils';

import { servingIcon } from './icon';
import { LogView, createLogsWidget } from './logs';
import { ServingPanel } from './panel';

const PANEL_ID = 'nbserve-sidebar';

export namespace CommandIDs {
  export const open = 'nbserve:open-panel';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbserve:plugin',
  description: 'Model serving: start and stop the models served from notebooks',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ) => {
    const logViews = new Map<string, MainAreaWidget<LogView>>();
    const openLogs = (id: string, label: string) => {
      let widget = logViews.get(id);
      if (!widget || widget.isDisposed) {
        widget = createLogsWidget(id, label);
        logViews.set(id, widget);
        widget.disposed.connect(() => logViews.delete(id));
        app.shell.add(widget, 'main');
      }
      app.shell.activateById(widget.id);
    };

    // the log view of an instance that is removed goes with it (it would ask for logs that are gone)
    const closeLogs = (id: string) => logViews.get(id)?.dispose();
    const panel = new ServingPanel({ openLogs, closeLogs });
    panel.id = PANEL_ID;
    panel.title.icon = servingIcon;
    panel.title.caption = 'Model serving';
    app.shell.add(panel, 'left', { rank: 900 });
    if (restorer) {
      restorer.add(panel, PANEL_ID);
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'Model serving: open panel',
      caption: 'Show the models served from notebooks and their instances',
      icon: servingIcon,
      execute: () => {
        app.shell.activateById(panel.id);
      }
    });
    if (palette) {
      palette.addItem({ command: CommandIDs.open, category: 'Model serving' });
    }
  }
};

export default plugin;
