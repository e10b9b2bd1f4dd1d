"""The Models section: one row per registered model (latest version), with a form to start an instance."""

from __future__ import annotations

import html

import ipywidgets as widgets

from .. import runtimes
from ..notebook_text import when
from ..workspace import DEFAULT_MAX_BATCH, DEFAULT_MAX_LATENCY_MS
from .base import MUTED, TableSection, put

HEADERS = ("model", "methods", "registered", "start an instance")
# the start form takes what is left and wraps inside its cell; the other columns wrap their text
COLUMNS = "minmax(7em, max-content) minmax(6em, max-content) minmax(8em, max-content) minmax(15em, 1fr)"


TEXT_ROUTES = {"chat": "/v1/chat/completions", "embeddings": "/v1/embeddings"}


def methods_text(mv) -> str:
    """The methods, those that stream marked so, and the OpenAI route of a text function (calls running as
    jobs show in the Jobs section)."""
    streams = set(mv.streams)
    names = [
        f"{html.escape(m)} <small title='answers its items as it makes them (client.stream, or SSE)'>(streams)</small>"
        if m in streams
        else html.escape(m)
        for m in mv.methods
    ]
    text = ", ".join(names)
    if mv.text_kind:
        route = TEXT_ROUTES.get(mv.text_kind, "")
        text += f"<br><small class='nbserve-openai'>OpenAI {html.escape(mv.text_kind)} · <code>{route}</code></small>"
    return text


def registered_where(mv) -> str:
    """'2024-05-01 10:12 · alice@laptop' (who registered it) and, from a shared registry, where its
    instances run (a tooltip)."""
    text = when(mv.created)
    if mv.registered_by:
        text += f" · {html.escape(mv.registered_by)}@{html.escape(mv.registered_host)}"
    running = [p for p in mv.running if p["status"] == "running"]
    if running:
        where = "\n".join(f"{p['registered_by']}@{p['machine']} {p['runtime']} {p['url']}" for p in running)
        text += f" · <span title='{html.escape(where)}'>{len(running)} running</span>"
    return text


class ModelRow:
    def __init__(self, section: ModelsSection, name: str):
        self.name = name
        panel, shared = section.panel, section.shared
        self.cells = [shared.cell() for _ in range(3)]
        self.runtime = widgets.Dropdown(
            options=runtimes.CHOICES,
            value=runtimes.AUTO,
            tooltip="runtime",
            layout=shared.runtime_layout,
            style=shared.runtime_style,
        )
        self.port = widgets.Text(placeholder="any port", layout=shared.port_layout, style=shared.port_style)
        # adaptive batching of concurrent requests (serve(..., batch=True, max_batch, max_latency_ms))
        self.batch = widgets.Checkbox(
            value=False,
            description="batch",
            indent=False,
            tooltip="gather concurrent requests into one model call",
            layout=shared.button_layout,
            style=shared.check_style,
        )
        number = {"disabled": True, "layout": shared.number_layout, "style": shared.number_style}
        self.max_batch = widgets.BoundedIntText(
            value=DEFAULT_MAX_BATCH,
            min=1,
            max=1_000_000,
            description="rows",
            tooltip="max rows per model call",
            **number,
        )
        self.max_latency_ms = widgets.BoundedFloatText(
            value=DEFAULT_MAX_LATENCY_MS, min=0, max=60_000, description="ms", tooltip="max wait for a batch", **number
        )
        self.batch.observe(self._toggle, names="value")
        self.start = shared.button("Start", f"start a new instance of {name} (latest version)", "success")
        self.start.on_click(lambda _: panel.start_model(name))
        self.form = widgets.HBox(
            [self.runtime, self.port, self.batch, self.start], layout=shared.controls_layout
        )  # the limits join the form when batching is ticked
        self.widgets = [*self.cells, self.form]
        self._parts = [self.runtime, self.port, self.batch, self.max_batch, self.max_latency_ms, self.start]

    def _toggle(self, change) -> None:
        on = bool(change["new"])
        self.max_batch.disabled = self.max_latency_ms.disabled = not on
        limits = [self.max_batch, self.max_latency_ms] if on else []
        self.form.children = (self.runtime, self.port, self.batch, *limits, self.start)

    def batching_options(self) -> dict:
        """The serve(...) options of the batching controls: none when the box is not ticked."""
        if not self.batch.value:
            return {}
        return {
            "batch": True,
            "max_batch": int(self.max_batch.value),
            "max_latency_ms": float(self.max_latency_ms.value),
        }

    def update(self, mv, versions: list[int]) -> None:
        kind = (mv.manifest.get("object_type") or "").rsplit(".", 1)[-1]
        count = f"{len(versions)} versions" if len(versions) != 1 else "1 version"
        requirements = html.escape("\n".join(mv.requirements))
        values = (
            f"<b>{html.escape(mv.name)}</b> v{mv.version}<br><small style='{MUTED}' title='{html.escape(kind)}'>"
            f"{count} · <span title='{requirements}'>{len(mv.requirements)} requirements</span></small>",
            methods_text(mv),
            registered_where(mv),
        )
        for cell, value in zip(self.cells, values):
            put(cell, value=value)

    def close(self) -> None:
        for w in [*self.widgets, *self._parts]:
            w.close()  # layouts and styles are the panel's, shared


class ModelsSection(TableSection):
    TITLE = "Models"
    HEADERS = HEADERS
    COLUMNS = COLUMNS
    EMPTY = "No models registered yet: <code>%serve VARIABLE</code> registers and serves one."

    def sync(self, overview) -> None:
        self.sync_rows(
            overview.models,
            key=lambda mv: mv.name,
            make=lambda name: ModelRow(self, name),
            update=lambda row, mv: row.update(mv, overview.versions.get(mv.name, [mv.version])),
        )

    def enable(self, busy: bool) -> None:
        for row in self.rows.values():
            put(row.start, disabled=busy)
