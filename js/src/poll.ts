/** The poll-timer lifecycle the sidebar and the log view share. */
import { Widget } from '@lumino/widgets';

/**
 * A widget that refreshes itself while it is shown: at once when shown, then every `schedule(ms)`
 * until it is hidden or disposed.
 */
export abstract class PollingWidget extends Widget {
  abstract refresh(): Promise<void>;

  dispose(): void {
    this.cancelPoll();
    super.dispose();
  }

  /** Refresh again after `ms` if still shown (replacing a pending poll). */
  protected schedule(ms: number): void {
    this.cancelPoll();
    if (!this.isDisposed && this.isVisible) {
      this._timer = window.setTimeout(() => void this.refresh(), ms);
    }
  }

  protected cancelPoll(): void {
    window.clearTimeout(this._timer);
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  protected onBeforeHide(): void {
    this.cancelPoll();
  }

  private _timer = 0;
}
