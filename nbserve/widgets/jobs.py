"""The Jobs section: the jobs of each running instance (calls queued with ``client.submit(...)`` or
``POST /<method>?async=1``), newest first, with their status, progress and time, and Cancel for those that
wait or run. Shown only while some instance keeps a job."""

from __future__ import annotations

import html

import ipywidgets as widgets

from ..errors import NbserveError
from ..notebook_text import error_text, job_progress, job_time
from .base import ERROR_COLOUR, MUTED, OK_COLOUR, WARN_COLOUR, Section, close_widget, grid, heading, put

HEADERS = ("instance", "job", "status", "progress", "time", "")
COLUMNS = (
    "minmax(7em, max-content) minmax(9em, max-content) minmax(6em, max-content) minmax(8em, 1fr) "
    "minmax(6em, max-content) minmax(5em, max-content)"
)
STATUS_COLOURS = {"succeeded": OK_COLOUR, "failed": ERROR_COLOUR, "running": WARN_COLOUR}
SHOWN = 20  # jobs per instance at most (the newest)


def bar(fraction: float | None) -> str:
    """A small progress bar for a fraction reported by the method."""
    if fraction is None:
        return ""
    width = max(0.0, min(1.0, float(fraction))) * 100
    return (
        "<div style='width: 8em; height: 4px; background: rgba(127,127,127,.25); margin-top: 2px'>"
        f"<div style='width: {width:.0f}%; height: 4px; background: {WARN_COLOUR}'></div></div>"
    )


class JobRow:
    def __init__(self, section: JobsSection, instance: str, job_id: str):
        self.key = (instance, job_id)
        shared, panel = section.shared, section.panel
        self.cells = [shared.cell() for _ in range(5)]
        self.cancel = shared.button("Cancel", f"cancel job {job_id} of {instance}", "warning")
        self.cancel.on_click(lambda _: panel.cancel_job(instance, job_id))
        self.widgets = [*self.cells, self.cancel]
        self.job: dict = {}

    def update(self, instance: str, job: dict) -> None:
        self.job = job
        status = job["status"]
        colour = STATUS_COLOURS.get(status, "inherit")
        ahead = f" · {job['position']} ahead" if job.get("position") else ""
        error = job.get("error") or {}
        progress = job.get("progress") or {}
        values = (
            html.escape(instance),
            f"<code>{html.escape(job['id'])}</code><br><small style='{MUTED}'>{html.escape(job['method'])}</small>",
            f"<span style='color: {colour}' class='nbserve-job-status'>{html.escape(status)}</span>{ahead}",
            html.escape(job_progress(job))
            + bar(progress.get("fraction"))
            + (f"<br><small style='{MUTED}'>{html.escape(error.get('message', ''))}</small>" if error else ""),
            html.escape(job_time(job)),
        )
        for cell, value in zip(self.cells, values):
            put(cell, value=value)
        put(self.cancel.layout, visibility="visible" if status in ("queued", "running") else "hidden")

    def close(self) -> None:
        for w in self.widgets:
            w.close()  # layouts and styles are the panel's, shared


class JobsSection(Section):
    def __init__(self, panel):
        super().__init__(panel)
        shared = self.shared
        self.rows: dict[tuple, JobRow] = {}
        self.errors: dict[str, str] = {}
        self.headers = [shared.cell(f"<b>{h}</b>") for h in HEADERS]
        self.grid = grid(COLUMNS)
        self.title = heading(shared, "Jobs")
        self.note = shared.cell()
        self.box = widgets.VBox([self.title, self.grid, self.note], layout=widgets.Layout(display="none"))

    def jobs(self, instance: str) -> list[dict]:
        """The jobs shown for an instance (what the last refresh read)."""
        return [r.job for key, r in self.rows.items() if key[0] == instance]

    def sync(self, overview) -> None:
        rows, errors = {}, {}
        for inst in overview.instances:
            if inst.status != "running":
                continue
            try:
                found = self.panel.workspace.jobs(inst.id)[:SHOWN]
            except NbserveError as exc:
                if "jobs are off" not in str(exc):
                    errors[inst.id] = error_text(exc)
                continue
            for job in found:
                key = (inst.id, job["id"])
                row = self.rows.pop(key, None) or JobRow(self, inst.id, job["id"])
                row.update(inst.id, job)
                rows[key] = row
        for gone in self.rows.values():
            gone.close()
        self.rows, self.errors = rows, errors
        children = tuple(self.headers + [w for r in rows.values() for w in r.widgets]) if rows else ()
        if self.grid.children != children:
            self.grid.children = children
        put(
            self.note,
            value="".join(
                f"<div style='color: {ERROR_COLOUR}'>{html.escape(i)}: {html.escape(e)}</div>"
                for i, e in errors.items()
            ),
        )
        put(self.box.layout, display="" if rows or errors else "none")

    def enable(self, busy: bool) -> None:
        for row in self.rows.values():
            put(row.cancel, disabled=busy)

    def close(self) -> None:
        for row in self.rows.values():
            row.close()
        self.rows = {}
        for w in (self.box, self.title, self.grid, self.note, *self.headers):
            close_widget(w)
