/** The poll the sidebar and the log view share: @lumino/polling's Poll, paused while hidden, backing off. */
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

/** Longest wait between two readings once failures made the poll back off. */
export const MAX_INTERVAL_MS = 60000;

/**
 * A widget that reads again every `interval` ms while it is shown: at once when shown, then on the poll's
 * schedule. A failed reading (`load` rejects) makes the next come later (Poll's back-off, up to a minute); the
 * poll stands by while the widget or the browser tab is hidden, so a collapsed sidebar asks nothing.
 */
export abstract class PollingWidget extends Widget {
  constructor(interval: number, name: string) {
    super();
    this.poll = new Poll({
      auto: false,
      name,
      factory: () => this.load(),
      frequency: { interval, backoff: true, max: MAX_INTERVAL_MS },
      // standby while this widget is hidden, and (Poll's own rule) while the browser tab is hidden
      standby: () => (this.isVisible ? 'when-hidden' : true)
    });
  }

  /** Read and show; reject on failure (after showing it), so that the poll backs off. */
  protected abstract load(): Promise<void>;

  /** Read again now (a button, an action that changed something). */
  async refresh(): Promise<void> {
    await this.poll.refresh();
  }

  /** Poll every `interval` ms from now on (faster while a start is in flight). */
  protected setInterval(interval: number): void {
    if (this.poll.frequency.interval !== interval) {
      this.poll.frequency = { ...this.poll.frequency, interval };
    }
  }

  dispose(): void {
    this.poll.dispose();
    super.dispose();
  }

  protected onAfterShow(): void {
    void this.poll.start();
    void this.poll.refresh();
  }

  protected readonly poll: Poll;
}
