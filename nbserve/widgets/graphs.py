"""The Graphs section: every running instance that serves a graph of stages, drawn as boxes and arrows, each
stage with the version it runs, its p50 latency and its error count (from the instance's /metrics), and a row of
controls that serves another registered version of one stage in place (``Workspace.update_stage``).

The snapshot the Monitoring section took on this refresh is reused when there is one (one scrape per instance
and refresh); the drawing is an SVG whose aria-label says every stage, version, latency and error count.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from .. import monitoring
from ..errors import NbserveError
from ..notebook_text import error_text
from .base import ERROR_COLOUR, MUTED, Section, close_widget, heading, put

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 190, 58, 46, 18, 6


def layout(rows: list[dict]) -> dict[str, tuple[int, int]]:
    """Stage name -> (column, row): a stage's column is one more than its deepest input's."""
    depth: dict[str, int] = {}
    for r in rows:  # rows are in running order: inputs come first
        depth[r["stage"]] = 1 + max((depth[i] for i in r["inputs"]), default=-1)
    taken: dict[int, int] = {}
    spots = {}
    for r in rows:
        column = depth[r["stage"]]
        spots[r["stage"]] = (column, taken.get(column, 0))
        taken[column] = taken.get(column, 0) + 1
    return spots


def stage_line(r: dict) -> str:
    p50 = "p50 -" if r["p50_ms"] is None else f"p50 {r['p50_ms']:.1f} ms"
    return f"{p50} · {r['errors']} error{'s' * (r['errors'] != 1)}"


def describe(model_id: str, rows: list[dict]) -> str:
    parts = [
        f"{r['stage']} ({r['model']}, {stage_line(r)})" + (f" after {', '.join(r['inputs'])}" if r["inputs"] else "")
        for r in rows
    ]
    return f"graph {model_id}: " + "; ".join(parts)


def svg(model_id: str, rows: list[dict]) -> str:
    """The graph drawn: one box per stage (name, version, p50 and errors), arrows from inputs to stages."""
    spots = layout(rows)
    columns = 1 + max((c for c, _ in spots.values()), default=0)
    height_rows = 1 + max((r for _, r in spots.values()), default=0)
    width = PAD * 2 + columns * BOX_W + (columns - 1) * GAP_X
    height = PAD * 2 + height_rows * BOX_H + (height_rows - 1) * GAP_Y

    def box(name):
        c, r = spots[name]
        return PAD + c * (BOX_W + GAP_X), PAD + r * (BOX_H + GAP_Y)

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
        f"role='img' aria-label='{html.escape(describe(model_id, rows))}' style='max-width: 100%; height: auto'>",
        "<defs><marker id='nbserve-arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' markerHeight='7' "
        "orient='auto'><path d='M0,0 L10,5 L0,10 z' fill='#607d8b'/></marker></defs>",
    ]
    for r in rows:
        x, y = box(r["stage"])
        for source in r["inputs"]:
            sx, sy = box(source)
            parts.append(
                f"<line x1='{sx + BOX_W}' y1='{sy + BOX_H / 2}' x2='{x}' y2='{y + BOX_H / 2}' stroke='#607d8b' "
                f"stroke-width='1.5' marker-end='url(#nbserve-arrow)'/>"
            )
    for r in rows:
        x, y = box(r["stage"])
        failing = r["errors"] > 0
        parts.append(
            f"<g><title>{html.escape(r['stage'])}: {html.escape(r['model'])} ({html.escape(r['method'])}), "
            f"{r['calls']} calls, {html.escape(stage_line(r))}</title>"
            f"<rect x='{x}' y='{y}' width='{BOX_W}' height='{BOX_H}' rx='6' fill='#fafafa' "
            f"stroke='{ERROR_COLOUR if failing else '#90a4ae'}' stroke-width='{2 if failing else 1}'/>"
            f"<text x='{x + 8}' y='{y + 17}' font-size='13' font-weight='bold' fill='#212121'>"
            f"{html.escape(r['stage'])}</text>"
            f"<text x='{x + 8}' y='{y + 33}' font-size='11' fill='#455a64'>{html.escape(r['model'])}</text>"
            f"<text x='{x + 8}' y='{y + 49}' font-size='11' fill='{ERROR_COLOUR if failing else '#455a64'}'>"
            f"{html.escape(stage_line(r))}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


class GraphView:
    """One running graph instance: its drawing and the update-stage controls."""

    def __init__(self, section: GraphsSection, id: str):
        shared, panel = section.shared, section.panel
        self.id = id
        self.rows: list[dict] = []
        self.title = shared.cell()
        self.drawing = shared.wide_cell()
        self.stage = widgets.Dropdown(options=[], layout=widgets.Layout(width="140px", flex="0 0 auto"))
        self.model = widgets.Text(placeholder="NAME:VERSION", layout=widgets.Layout(width="170px", flex="0 0 auto"))
        self.update = shared.button("Update stage", "serve the version typed beside as this stage, in place", "primary")
        self.update.on_click(lambda _: panel.update_stage(id, self.stage.value, self.model.value.strip()))
        self.controls = widgets.HBox([self.stage, self.model, self.update], layout=shared.controls_layout)
        self.box = widgets.VBox([self.title, self.drawing, self.controls], layout=shared.wide_layout)

    def show(self, inst, rows: list[dict]) -> None:
        self.rows = rows
        put(self.title, value=f"<b>{html.escape(inst.id)}</b> · {html.escape(inst.model)}")
        put(self.drawing, value=svg(inst.model, rows))
        names = [r["stage"] for r in rows]
        if list(self.stage.options) != names:
            self.stage.options = names

    def show_error(self, text: str) -> None:
        put(self.drawing, value=f"<span style='color: {ERROR_COLOUR}'>{html.escape(text)}</span>")

    def close(self) -> None:
        for w in (self.stage, self.model):  # their layouts are their own
            close_widget(w)
        for w in (self.title, self.drawing, self.update, self.controls, self.box):
            w.close()  # layouts and styles are the panel's, shared


class GraphsSection(Section):
    def __init__(self, panel):
        super().__init__(panel)
        self.views: dict[str, GraphView] = {}
        self.title = heading(self.shared, "Graphs")
        self.note = self.shared.cell(
            f"<span style='{MUTED}'>each stage: the version it runs, its p50 latency and its errors since the "
            f"instance started</span>"
        )
        self.box = widgets.VBox(layout=widgets.Layout(display="none"))

    def sync(self, overview) -> None:
        ws = self.panel.workspace
        views = {}
        for inst in overview.instances:
            if inst.status != "running":
                continue
            try:
                graph = ws.get_model(inst.model).manifest.get("graph")
            except NbserveError:
                continue
            if not graph:
                continue
            view = self.views.pop(inst.id, None) or GraphView(self, inst.id)
            try:
                view.show(inst, monitoring.stage_summary(self._snapshot(inst), graph))
            except NbserveError as exc:
                view.show_error(error_text(exc))
            except Exception as exc:  # a drawing that fails must not take the panel down
                view.show_error(f"{type(exc).__name__}: {exc}")
            views[inst.id] = view
        for gone in self.views.values():
            gone.close()
        self.views = views
        children = (self.title, self.note, *(v.box for v in views.values())) if views else ()
        if self.box.children != children:
            self.box.children = children
        put(self.box.layout, display="" if views else "none")

    def _snapshot(self, inst) -> dict:
        """The /metrics snapshot the Monitoring section took on this refresh, else a scrape of our own."""
        from .monitoring import MonitoringSection

        view = self.panel.section(MonitoringSection).views.get(inst.id)
        if view is not None and view.snapshots and view.error is None:
            return view.snapshots[-1]
        return self.panel.workspace.metrics_snapshot(inst.id)

    def enable(self, busy: bool) -> None:
        for view in self.views.values():
            put(view.update, disabled=busy)

    def close(self) -> None:
        for view in self.views.values():
            view.close()
        self.views = {}
        close_widget(self.box)
        self.title.close()
        self.note.close()
