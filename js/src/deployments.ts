/** The sidebar's Deployments section: one row per deployment, with Scale, Update, Rollback and Remove.
 * Each button is one call of the REST routes (nbserve/jupyter/handlers.py); the rows come from them. */
import { deploymentAction, IDeployment, removeDeployment } from './api';
import { h, replaceChildren } from './dom';
import { splitText } from './format';

export class DeploymentsSection {
  constructor(
    private _onChange: () => void,
    private _onError: (message: string) => void
  ) {
    this._list = h('ul', { className: 'nbserve-list', 'aria-label': 'Deployments' });
    this.node = h(
      'section',
      { className: 'nbserve-section', 'aria-labelledby': 'nbserve-deployments-heading' },
      h('h3', { id: 'nbserve-deployments-heading' }, 'Deployments'),
      this._list
    );
    this.node.hidden = true;
  }

  readonly node: HTMLElement;

  render(deployments: IDeployment[]): void {
    if (this._busy) {
      return; // a rollout is running: its row stays as it is until it answers
    }
    this.node.hidden = deployments.length === 0;
    replaceChildren(this._list, ...deployments.map(d => this._row(d)));
  }

  private _row(d: IDeployment): HTMLElement {
    const replicas = h('input', {
      type: 'number',
      min: 0,
      value: d.replicas,
      className: 'nbserve-port',
      'aria-label': `replicas of ${d.name}`
    }) as HTMLInputElement;
    const model = h('input', {
      type: 'text',
      placeholder: 'NAME:VERSION',
      className: 'nbserve-port',
      'aria-label': `version to roll ${d.name} to`
    }) as HTMLInputElement;
    const button = (label: string, title: string, run: () => Promise<unknown>): HTMLElement =>
      h(
        'button',
        { className: 'nbserve-button', type: 'button', title, onclick: () => void this._run(run) },
        label
      );
    const where = d.endpoints.length ? d.endpoints.join(' ') : d.directory || '';
    return h(
      'li',
      { className: 'nbserve-row', 'data-deployment': d.name },
      h('div', { className: 'nbserve-row-title' }, `${d.name} · ${d.model} · ${d.target}`),
      h(
        'div',
        { className: 'nbserve-meta' },
        `${d.ready}/${d.replicas} ready · ${d.status}`,
        where ? ` · ${where}` : ''
      ),
      d.notes ? h('div', { className: 'nbserve-meta' }, d.notes) : null,
      d.split
        ? h('div', { className: 'nbserve-meta nbserve-split' }, `split: ${splitText(d.split)}`)
        : null,
      h(
        'div',
        { className: 'nbserve-actions' },
        replicas,
        button('Scale', `set the replicas of ${d.name}`, () =>
          deploymentAction(d.name, 'scale', { replicas: Number(replicas.value) })
        ),
        model,
        button('Update', `roll ${d.name} to the version typed beside`, () =>
          deploymentAction(d.name, 'update', { model: model.value.trim() })
        ),
        button('Rollback', `roll ${d.name} back to its previous version`, () =>
          deploymentAction(d.name, 'rollback')
        ),
        d.split
          ? button('End split', `serve one version on every replica of ${d.name} again`, () =>
              deploymentAction(d.name, 'split', { weights: null })
            )
          : null,
        button('Remove', `remove ${d.name} and its replicas`, () => removeDeployment(d.name))
      )
    );
  }

  private async _run(work: () => Promise<unknown>): Promise<void> {
    this._busy = true;
    try {
      await work();
    } catch (error) {
      this._onError(error instanceof Error ? error.message : String(error));
    } finally {
      this._busy = false;
      this._onChange();
    }
  }

  private _list: HTMLElement;
  private _busy = false;
}
