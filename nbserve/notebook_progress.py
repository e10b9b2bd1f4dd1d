"""A progress bar and the current step, as ipywidgets, usable as a workspace ``progress`` callback.

Workspace methods call ``progress(message, fraction=None)``. Most steps have no fraction (capturing,
proving the pickle in a clean interpreter, starting a server); an image build reports fractions. Without
a fraction the bar still moves (a quarter of the remaining way per step), so a long wait never looks
frozen; the elapsed time is shown next to the step.
"""

from __future__ import annotations

import html
import time

import ipywidgets as widgets

_BAR_STYLES = {"working": "info", "done": "success", "failed": "danger"}


class ProgressView(widgets.VBox):
    """``view = ProgressView(); display(view); ws.serve(..., progress=view)``; then ``done`` or ``fail``."""

    def __init__(self, title: str = "", **kwargs):
        self.bar = widgets.FloatProgress(
            value=0.0, min=0.0, max=1.0, bar_style="info", layout=widgets.Layout(width="220px")
        )
        self.step = widgets.HTML()
        self.error = widgets.HTML()
        super().__init__(children=[widgets.HBox([self.bar, self.step]), self.error], **kwargs)
        self.state = "idle"
        self.steps: list[str] = []
        self.begin(title)

    def all_widgets(self) -> list:
        """This view and every widget inside it (to close them all)."""
        return [self, *self.children, *self.children[0].children]

    def __repr__(self):
        # The text/plain fallback of the display: kept stable so executed notebooks compare equal.
        return "<nbserve progress>"

    def begin(self, title: str = "") -> None:
        self.state = "working"
        self.steps = []
        self._title = title
        self._started = time.monotonic()
        self.bar.value, self.bar.bar_style = 0.0, _BAR_STYLES["working"]
        self.error.value = ""
        self._show(title or "working")

    def __call__(self, message: str, fraction: float | None = None) -> None:
        self.steps.append(message)
        if fraction is not None:
            self.bar.value = max(0.0, min(1.0, float(fraction)))
        else:
            self.bar.value += (0.95 - self.bar.value) * 0.25
        self._show(message)

    def done(self, message: str = "done") -> None:
        self.state = "done"
        self.bar.value, self.bar.bar_style = 1.0, _BAR_STYLES["done"]
        self._show(message)

    def fail(self, message: str, details: str | None = None) -> None:
        """Show the failure: a red bar, the first line next to it, and below it ``details`` (default: the
        whole message, which for a failed start carries the server's log tail)."""
        self.state = "failed"
        self.bar.bar_style = _BAR_STYLES["failed"]
        self._show(f"failed: {message.splitlines()[0] if message else ''}")
        text = message if details is None else details
        self.error.value = (
            ""
            if not text
            else (
                f"<pre style='color: var(--jp-error-color1, #c62828); white-space: pre-wrap; max-height: 20em; "
                f"overflow: auto; margin: 2px 0'>{html.escape(text)}</pre>"
            )
        )

    def _show(self, message: str) -> None:
        elapsed = time.monotonic() - self._started
        prefix = f"<b>{html.escape(self._title)}</b> · " if self._title and message != self._title else ""
        self.step.value = f"{prefix}{html.escape(message)} <span style='opacity: .6'>({elapsed:.1f} s)</span>"
