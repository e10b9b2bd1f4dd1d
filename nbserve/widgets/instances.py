"""The Instances section: one row per instance (status from its runtime), with Stop, Start, Logs, Remove."""

from __future__ import annotations

import html

import ipywidgets as widgets

from ..errors import NbserveError
from ..notebook_text import duration
from .base import ERROR_COLOUR, LINK_STYLE, MUTED, OK_COLOUR, TableSection, put

HEADERS = ("instance", "status", "address", "uptime", "batching", "")
COLUMNS = (
    "minmax(8em, max-content) minmax(5em, max-content) minmax(10em, max-content) minmax(3em, max-content) "
    "minmax(5em, max-content) minmax(9em, 1fr)"
)
STATUS_COLOURS = {"running": OK_COLOUR, "exited": ERROR_COLOUR, "missing": ERROR_COLOUR}


def batching_text(settings: dict | None, report: dict | None = None) -> str:
    """'off', or 'on · ≤ 64 rows · 10 ms' and, from GET /batching, how many requests each model call served."""
    if not settings:
        return f"<span style='{MUTED}'>off</span>"
    text = f"on · ≤ {settings['max_batch']} rows · {settings['max_latency_ms']:g} ms"
    if report and report.get("model_calls"):
        text += (
            f"<br><small title='in the worker that answered GET /batching'>{report['requests_per_call']:g} "
            f"requests per model call ({report['requests']} in {report['model_calls']})</small>"
        )
    return text


def links(url: str | None, browser: str | None) -> str:
    """The instance's address and its docs; through the Jupyter server too when it proxies (a remote
    browser cannot reach 127.0.0.1 of the server)."""
    if not url:
        return "-"

    def pair(address: str, docs: str, title: str) -> str:
        return (
            f"<a href='{html.escape(address)}' target='_blank' style='{LINK_STYLE}' title='{html.escape(title)}'>"
            f"{html.escape(address)}</a> · <a href='{html.escape(docs)}' target='_blank' style='{LINK_STYLE}'>docs</a>"
        )

    direct = pair(url, f"{url}/docs", "this machine only")
    if browser:
        return pair(browser, f"{browser}docs", "through the Jupyter server") + f"<br><small>direct: {direct}</small>"
    return direct


class InstanceRow:
    def __init__(self, section: InstancesSection, id: str):
        self.id = id
        panel, shared = section.panel, section.shared
        self.cells = [shared.cell() for _ in range(4)]
        self.batching = shared.cell()  # "off", or its limits and (running) requests per model call
        self.stop = shared.button("Stop", f"stop {id}", "warning")
        self.start = shared.button("Start", f"start {id} again", "success")
        self.logs = shared.button("Logs", f"show the request log of {id}")
        self.remove = shared.button("Remove", f"stop {id} and forget it", "danger")
        self.stop.on_click(lambda _: panel.stop_instance(id))
        self.start.on_click(lambda _: panel.start_instance(id))
        self.logs.on_click(lambda _: panel.show_logs(id))
        self.remove.on_click(lambda _: panel.remove_instance(id))
        self.buttons = [self.stop, self.start, self.logs, self.remove]
        self.actions = widgets.HBox(self.buttons, layout=shared.controls_layout)
        self.widgets = [*self.cells, self.batching, self.actions]
        self.status: str | None = None

    def update(self, inst, report: dict | None = None) -> None:
        """``report``: the instance's GET /batching, when it batches and answered."""
        self.status = inst.status
        colour = STATUS_COLOURS.get(inst.status, "#757575")
        url = inst.url if inst.status == "running" else None
        role = ""
        if inst.following:
            role = f"<br><small style='color: {OK_COLOUR}'>following {html.escape(inst.following)}</small>"
        elif inst.candidate_of:
            role = f"<br><small style='{MUTED}'>shadow candidate of {html.escape(inst.candidate_of)}</small>"
        values = (
            f"{html.escape(inst.id)}<br><small style='{MUTED}'>{html.escape(inst.model)}</small>{role}",
            f"<span style='color: {colour}'>{html.escape(inst.status)}</span>"
            f"<br><small style='{MUTED}'>{html.escape(inst.runtime)}</small>",
            links(url, inst.browser_url if url else None),
            duration(inst.uptime),
        )
        for cell, value in zip(self.cells, values):
            put(cell, value=value)
        put(self.batching, value=batching_text(inst.batching, report))
        self.enable(inst.status)

    def enable(self, status: str | None) -> None:
        """Offer what makes sense now; ``None`` (an action is running) disables every button."""
        busy = status is None
        put(self.stop, disabled=busy or status != "running")
        put(self.start, disabled=busy or status == "running")
        put(self.logs, disabled=busy)
        put(self.remove, disabled=busy)

    def close(self) -> None:
        for w in [*self.widgets, *self.buttons]:
            w.close()  # layouts and styles are the panel's, shared


class InstancesSection(TableSection):
    TITLE = "Instances"
    HEADERS = HEADERS
    COLUMNS = COLUMNS
    EMPTY = "No instances: the Start button of a model starts one."

    def sync(self, overview) -> None:
        self.sync_rows(
            sorted(overview.instances, key=lambda i: (i.created, i.id)),
            key=lambda inst: inst.id,
            make=lambda id: InstanceRow(self, id),
            update=lambda row, inst: row.update(inst, self._batching_report(inst)),
        )

    def _batching_report(self, inst) -> dict | None:
        if inst.status != "running" or inst.batching is None:
            return None
        try:
            return self.panel.workspace.batching(inst.id)
        except NbserveError:
            return None  # an instance that stopped answering: its status says so at the next refresh

    def enable(self, busy: bool) -> None:
        for row in self.rows.values():
            row.enable(None if busy else row.status)
