"""The request log of one instance as a table: time, status, latency, rows and request id per request, the
raw line on demand, and the server's own lines (its start, gunicorn's messages, tracebacks) between them,
highlighted where they report a failure. The Logs button of an instance row shows it; it stays until hidden."""

from __future__ import annotations

import datetime
import html

import ipywidgets as widgets

from .. import monitoring
from .base import ERROR_COLOUR, MUTED, WARN_COLOUR, Section, close_widget, put

LOG_TAIL = 200
ERROR_ROW = "background: rgba(198, 40, 40, .10)"
CELL = "padding: 1px 8px 1px 0; vertical-align: top; white-space: nowrap"


def local_time(stamp: str | None) -> str:
    """'2024-05-01T10:12:03.123Z' (UTC, as the server writes it) as local 'HH:MM:SS.mmm'."""
    if not stamp:
        return "-"
    try:
        t = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return html.escape(stamp)
    return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def status_colour(status: int) -> str:
    return ERROR_COLOUR if status >= 500 else WARN_COLOUR if status >= 400 else "inherit"


def table(entries: list[dict]) -> str:
    """The HTML table of ``monitoring.log_entries``."""
    head = "".join(f"<th style='{CELL}; text-align: left'>{h}</th>" for h in ("time", "status", "latency", "rows"))
    lines = [f"<tr>{head}<th style='{CELL}; text-align: left'>request id</th></tr>"]
    for e in entries:
        style = ERROR_ROW if e["error"] else ""
        raw = (
            f"<details><summary style='cursor: pointer; {MUTED}'>raw</summary>"
            f"<code style='white-space: pre-wrap; word-break: break-all'>{html.escape(e['raw'])}</code></details>"
        )
        if e["kind"] == "request":
            latency = "-" if e["latency_ms"] is None else f"{e['latency_ms']:.1f} ms"
            rows = "-" if e["rows"] is None else str(e["rows"])
            lines.append(
                f"<tr style='{style}' class='nbserve-log-request' data-status='{e['status']}'>"
                f"<td style='{CELL}'>{local_time(e['time'])}</td>"
                f"<td style='{CELL}; color: {status_colour(e['status'])}'><b>{e['status']}</b> "
                f"<span style='{MUTED}'>{html.escape(str(e['path']))}</span></td>"
                f"<td style='{CELL}; text-align: right'>{latency}</td><td style='{CELL}; text-align: right'>{rows}</td>"
                f"<td style='{CELL}'><code>{html.escape(str(e['request_id']))}</code>{raw}</td></tr>"
            )
        else:
            colour = f"color: {ERROR_COLOUR}" if e["error"] else MUTED
            lines.append(
                f"<tr style='{style}' class='nbserve-log-server'><td colspan='5' style='padding: 1px 0; {colour}'>"
                f"<code style='white-space: pre-wrap; word-break: break-word'>{html.escape(e['text'])}</code></td></tr>"
            )
    return "<table style='border-collapse: collapse; width: 100%; font-size: 12px'>" + "".join(lines) + "</table>"


class RequestLogSection(Section):
    def __init__(self, panel):
        super().__init__(panel)
        shared = self.shared
        self.id: str | None = None
        self.text = ""
        self.entries: list[dict] = []
        self.title = shared.cell()
        self.hide = shared.button("Hide logs", "hide the request log")
        self.hide.on_click(lambda _: self.clear())
        self.body = widgets.HTML(layout=widgets.Layout(width="100%", max_height="26em", overflow="auto"))
        self.header = widgets.HBox([self.title, self.hide], layout=shared.controls_layout)
        self.box = widgets.VBox([self.header, self.body], layout=widgets.Layout(display="none"))

    def show(self, title: str, text: str, id: str | None = None) -> None:
        self.id, self.text = id, text
        self.entries = monitoring.log_entries(text)
        put(self.title, value=title)
        errors = sum(e["error"] for e in self.entries)
        note = f" · <b style='color: {ERROR_COLOUR}'>{errors} server error{'s' * (errors != 1)}</b>" if errors else ""
        put(self.title, value=f"{title}{note}")
        put(self.body, value=table(self.entries) if self.entries else "<i>(no log lines yet)</i>")
        put(self.box.layout, display="")

    def clear(self) -> None:
        self.id, self.text, self.entries = None, "", []
        put(self.title, value="")
        put(self.body, value="")
        put(self.box.layout, display="none")

    def sync(self, overview) -> None:
        if self.id is not None and self.id not in {i.id for i in overview.instances}:
            self.clear()  # the logs of a removed instance go with it

    def close(self) -> None:
        for w in (self.box, self.header, self.title, self.hide, self.body):
            close_widget(w)
