"""The Monitoring section: for each running instance its traffic (request rate, p50/p99 latency, error rate,
built from the /metrics snapshots the panel takes on each refresh) and the drift of each feature against the
registration sample, drawn by nbserve/plots.py into images whose alt text says what each axis shows."""

from __future__ import annotations

import base64
import html
import json
from collections import deque

import ipywidgets as widgets

from ..errors import NbserveError
from ..notebook_text import error_text
from ..plots import Plot
from .base import ERROR_COLOUR, MUTED, Section, close_widget, heading, put


def image(plot) -> str:
    """A plot as an <img> with its description as alt text (and tooltip), scaled to the output's width."""
    data = base64.b64encode(plot.png).decode("ascii")
    alt = html.escape(plot.description)
    return f"<img src='data:image/png;base64,{data}' alt='{alt}' title='{alt}' style='max-width: 100%; height: auto'>"


class MonitorView:
    """Metrics and drift plots of one running instance, with the history of its /metrics snapshots."""

    HISTORY = 60  # snapshots kept: five minutes at the default refresh

    def __init__(self, id: str, shared):
        self.id = id
        self.snapshots: deque = deque(maxlen=self.HISTORY)
        self.points: list = []
        self.report: dict | None = None
        self.error: str | None = None
        self.traffic_plot: Plot | None = None  # the PNG and its description
        self.drift_plot: Plot | None = None
        self.title, self.traffic, self.caption, self.drift = (shared.wide_cell() for _ in range(4))
        self.streams = shared.wide_cell()  # a streaming method's time to the first item and items per second
        self.box = widgets.VBox(
            [self.title, self.streams, self.traffic, self.caption, self.drift], layout=shared.wide_layout
        )
        self._drift_key: str | None = None

    @property
    def drifted(self) -> list[str]:
        """Input features the drift view shows in alert (what the red bars say)."""
        return list((self.report or {}).get("drifted_features", []))

    def update(self, workspace, inst) -> None:
        from .. import monitoring, plots  # matplotlib: loaded once an instance runs

        put(self.title, value=f"<b>{html.escape(inst.id)}</b> · {html.escape(inst.model)}")
        try:
            self.snapshots.append(workspace.metrics_snapshot(inst.id))
            self.points = monitoring.series(list(self.snapshots))
            self.report = workspace.drift(inst.id)
            self.error = None
        except NbserveError as exc:
            self.error = error_text(exc)
            put(self.caption, value=f"<span style='color: {ERROR_COLOUR}'>{html.escape(self.error)}</span>")
            return
        put(self.streams, value=stream_text(monitoring.summary(self.snapshots[-1]), _text_kind(workspace, inst)))
        self.traffic_plot = plots.traffic(self.points)
        put(self.traffic, value=image(self.traffic_plot))
        report = self.report
        key = json.dumps([report.get("window"), [(f["name"], f["live"]) for f in report.get("features", [])]])
        put(self.caption, value=caption(report))
        if key != self._drift_key:  # redraw only when the counts moved
            self.drift_plot = plots.drift(report)
            put(self.drift, value=image(self.drift_plot))
            self._drift_key = key

    def show_error(self, text: str) -> None:
        self.error = text
        put(self.caption, value=f"<span style='color: {ERROR_COLOUR}'>{html.escape(text)}</span>")

    def close(self) -> None:
        for w in (self.title, self.streams, self.traffic, self.caption, self.drift, self.box):
            w.close()  # layouts and styles are the panel's, shared


def _text_kind(workspace, inst) -> str | None:
    try:
        return workspace.get_model(inst.model).text_kind
    except NbserveError:
        return None


def stream_text(rows: list[dict], text_kind: str | None = None) -> str:
    """For each method that streamed: the time to its first item (p50) and its items per second, which are
    tokens per second for a text function (one piece of text an item); '' when nothing streamed yet."""
    unit = "tokens/s" if text_kind == "chat" else "items/s"
    parts = []
    for r in rows:
        if not r.get("items"):
            continue
        first = "-" if r["first_item_p50_ms"] is None else f"{r['first_item_p50_ms']:.0f} ms"
        rate = "-" if r["items_per_s"] is None else f"{r['items_per_s']:.1f} {unit}"
        parts.append(
            f"<span class='nbserve-stream-stats'><b>{html.escape(r['method'])}</b> streams: first item (p50) "
            f"{first} · {rate} · {r['items']} items</span>"
        )
    return "<br>".join(parts)


def caption(report: dict) -> str:
    if not report.get("available"):
        return f"<i>{html.escape(report.get('reason', 'no drift reference'))}</i>"
    window = report["window"]
    rows = f"<span style='{MUTED}'>drift over the last {window['rows']} requests' rows</span>"
    if report["drifted_features"]:
        flag = f"<b style='color: {ERROR_COLOUR}'>drift</b>" if report["drift"] else "no overall drift"
        return (
            f"{flag} · drifting features: <b style='color: {ERROR_COLOUR}'>"
            f"{html.escape(', '.join(report['drifted_features']))}</b> · {rows}"
        )
    if window["rows"] < report["thresholds"]["min_rows"]:
        return f"no drift judged yet: {window['rows']} of the {report['thresholds']['min_rows']} rows it needs"
    return f"no feature drifts · {rows}"


class MonitoringSection(Section):
    def __init__(self, panel):
        super().__init__(panel)
        self.views: dict[str, MonitorView] = {}
        self.title = heading(self.shared, "Monitoring")
        self.box = widgets.VBox(layout=widgets.Layout(display="none"))

    def sync(self, overview) -> None:
        views = {}
        for inst in overview.instances:
            if inst.status != "running":
                continue
            view = self.views.pop(inst.id, None) or MonitorView(inst.id, self.shared)
            try:
                view.update(self.panel.workspace, inst)
            except Exception as exc:  # a plot that fails must not take the panel down
                view.show_error(f"{type(exc).__name__}: {exc}")
            views[inst.id] = view
        for gone in self.views.values():
            gone.close()
        self.views = views
        children = (self.title, *(v.box for v in views.values())) if views else ()
        if self.box.children != children:
            self.box.children = children
        put(self.box.layout, display="" if views else "none")

    def close(self) -> None:
        for view in self.views.values():
            view.close()
        self.views = {}
        close_widget(self.box)
        close_widget(self.title)
