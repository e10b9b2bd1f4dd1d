"""``nbserve.panel()``: an ipywidgets panel of registered models and running instances.

Two tables built from ipywidgets (GridBox rows): models, each with a runtime, a port and a Start button;
instances, each with Stop, Start, Logs and Remove. The panel is a thin face over a workspace: every row
comes from ``Workspace.models()``/``instances()`` (status reconciled from the runtimes on every listing)
and every button calls one plain method (``start_model``, ``stop_instance``, ...), so tests and users can
drive it from Python as well as by clicking.

Under the tables, each running instance gets a monitoring view (``_MonitorView``): request rate, p50/p99
latency and error rate as small time series built from the snapshots of /metrics the panel takes on each
refresh, and the drift of each feature against the registration sample (reference against live
histogram, coloured by status), drawn with matplotlib into image widgets (nbserve/plots.py).

While displayed, the panel refreshes itself every few seconds from a background thread. The thread stops
when the panel is closed (``panel.close()``), when the frontend reports that no view shows it any more,
or when it is garbage collected; and at most ``MAX_AUTO_REFRESHING`` panels refresh at once, so re-running
a ``%nbserve panel`` cell many times does not pile up threads.
"""

from __future__ import annotations

import html
import json
import threading
import time
import weakref

import ipywidgets as widgets
from ipywidgets.widgets.widget_bool import CheckboxStyle
from ipywidgets.widgets.widget_description import DescriptionStyle
from ipywidgets.widgets.widget_string import HTMLStyle, TextStyle

from . import runtimes
from .browser_links import proxy_hint
from .errors import NbserveError
from .notebook_progress import ProgressView
from .notebook_text import duration, error_text, when
from .server.batching import DEFAULT_MAX_BATCH, DEFAULT_MAX_LATENCY_MS
from .workspace import default_workspace

REFRESH_SECONDS = 5.0
MAX_AUTO_REFRESHING = 4
LOG_TAIL = 200
LINK_STYLE = "color: var(--jp-content-link-color, #1976d2); text-decoration: underline"

_auto_refreshing: list = []  # weakrefs to panels whose refresh thread runs, oldest first


class _Shared:
    """Layouts and styles shared by every cell and button of one panel. Each is a widget model of its
    own in ipywidgets; sharing them keeps a panel at a few dozen models instead of hundreds, and lets
    ``Panel.close`` close them once, after the rows that use them."""

    def __init__(self):
        self.cell_layout = widgets.Layout(width="auto")
        self.cell_style = HTMLStyle()
        self.button_layout = widgets.Layout(width="auto")
        self.button_style = widgets.ButtonStyle()
        self.runtime_layout = widgets.Layout(width="95px")
        self.runtime_style = DescriptionStyle(description_width="initial")  # also the batching limits' "rows", "ms"
        self.port_layout = widgets.Layout(width="75px")
        self.port_style = TextStyle()
        self.check_style = CheckboxStyle()

    def cell(self, value: str = "") -> widgets.HTML:
        return widgets.HTML(value, layout=self.cell_layout, style=self.cell_style)

    def button(self, description: str, tooltip: str, style: str = "") -> widgets.Button:
        return widgets.Button(
            description=description,
            tooltip=tooltip,
            button_style=style,
            layout=self.button_layout,
            style=self.button_style,
        )

    def close(self) -> None:
        for w in vars(self).values():
            w.close()


def _close(widget) -> None:
    """Close a widget with its own layout and style (ipywidgets' close() leaves those open)."""
    for part in ("layout", "style"):
        sub = getattr(widget, part, None)
        if isinstance(sub, widgets.Widget):
            sub.close()
    widget.close()


def _grid(columns: int) -> widgets.GridBox:
    # max-content columns keep the table compact; overflow scrolls it sideways in a narrow notebook
    return widgets.GridBox(
        layout=widgets.Layout(
            grid_template_columns=f"repeat({columns}, max-content)",
            grid_gap="2px 10px",
            align_items="center",
            overflow="auto",
        )
    )


def _set(widget, **values) -> None:
    """Assign only what changed: a refresh then sends nothing for rows that did not change."""
    for key, value in values.items():
        if getattr(widget, key) != value:
            setattr(widget, key, value)


def batching_text(settings: dict | None, report: dict | None = None) -> str:
    """'off', or 'on · ≤ 64 rows · 10 ms' and, from GET /batching, how many requests each model call served."""
    if not settings:
        return "<span style='opacity: .6'>off</span>"
    text = f"on · ≤ {settings['max_batch']} rows · {settings['max_latency_ms']:g} ms"
    if report and report.get("model_calls"):
        text += (
            f"<br><small title='in the worker that answered GET /batching'>{report['requests_per_call']:g} "
            f"requests per model call ({report['requests']} in {report['model_calls']})</small>"
        )
    return text


def registered_where(mv) -> str:
    """' · alice@laptop' (who registered it) and, from a shared registry, where its instances run (a tooltip)."""
    text = f" · {html.escape(mv.registered_by)}@{html.escape(mv.registered_host)}" if mv.registered_by else ""
    running = [p for p in mv.running if p["status"] == "running"]
    if running:
        where = "\n".join(f"{p['registered_by']}@{p['machine']} {p['runtime']} {p['url']}" for p in running)
        text += f" · <span title='{html.escape(where)}'>{len(running)} running</span>"
    return text


class _ModelRow:
    HEADERS = ("model", "latest", "versions", "methods", "requirements", "created", "runtime", "port", "batching", "")

    def __init__(self, panel: Panel, name: str):
        self.name = name
        shared = panel._shared
        self.cells = [shared.cell() for _ in range(6)]
        self.runtime = widgets.Dropdown(
            options=runtimes.CHOICES, value=runtimes.AUTO, layout=shared.runtime_layout, style=shared.runtime_style
        )
        self.port = widgets.Text(placeholder="any", layout=shared.port_layout, style=shared.port_style)
        # adaptive batching of concurrent requests (serve(..., batch=True, max_batch, max_latency_ms))
        self.batch = widgets.Checkbox(
            value=False,
            description="batch",
            indent=False,
            tooltip="gather concurrent requests into one model call",
            layout=shared.cell_layout,
            style=shared.check_style,
        )
        number = {"disabled": True, "layout": shared.port_layout, "style": shared.runtime_style}
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
        self.batching = widgets.HBox([self.batch, self.max_batch, self.max_latency_ms], layout=shared.cell_layout)
        self.start = shared.button("Start", f"start a new instance of {name} (latest version)", "success")
        self.start.on_click(lambda _: panel.start_model(name))
        self.widgets = [*self.cells, self.runtime, self.port, self.batching, self.start]
        self._parts = [self.batch, self.max_batch, self.max_latency_ms]

    def _toggle(self, change) -> None:
        self.max_batch.disabled = self.max_latency_ms.disabled = not change["new"]

    def batching_options(self) -> dict:
        """The serve(...) options of the batching controls: none when the box is not ticked."""
        if not self.batch.value:
            return {}
        return {
            "batch": True,
            "max_batch": int(self.max_batch.value),
            "max_latency_ms": float(self.max_latency_ms.value),
        }

    def update(self, mv, versions: int) -> None:
        values = (
            f"<b>{html.escape(mv.name)}</b>",
            str(mv.version),
            str(versions),
            html.escape(", ".join(mv.methods)),
            f"<span title='{html.escape(chr(10).join(mv.requirements))}'>{len(mv.requirements)}</span>",
            when(mv.created) + registered_where(mv),
        )
        for cell, value in zip(self.cells, values):
            _set(cell, value=value)

    def close(self) -> None:
        for w in [*self.widgets, *self._parts]:
            w.close()  # layouts and styles are the panel's, shared


def _links(url: str | None, browser: str | None) -> str:
    """The instance's address and its docs; through the Jupyter server too when it proxies (a remote
    browser cannot reach 127.0.0.1 of the server), else with a hint on how to get that."""
    if not url:
        return "-"

    def pair(address: str, docs: str, title: str) -> str:
        return (
            f"<a href='{html.escape(address)}' target='_blank' style='{LINK_STYLE}' title='{html.escape(title)}'>"
            f"{html.escape(address)}</a> · <a href='{html.escape(docs)}' target='_blank' style='{LINK_STYLE}'>docs</a>"
        )

    direct = pair(url, f"{url}/docs", proxy_hint(url) or "this machine only")
    if browser:
        return pair(browser, f"{browser}docs", "through the Jupyter server") + f"<br><small>direct: {direct}</small>"
    return direct


class _InstanceRow:
    HEADERS = ("instance", "model", "runtime", "status", "url", "uptime", "batching", "", "", "", "")

    def __init__(self, panel: Panel, id: str):
        self.id = id
        shared = panel._shared
        self.cells = [shared.cell() for _ in range(6)]
        self.batching = shared.cell()  # "off", or its limits and (running) requests per model call
        self.stop = shared.button("Stop", f"stop {id}", "warning")
        self.start = shared.button("Start", f"start {id} again", "success")
        self.logs = shared.button("Logs", f"show the log tail of {id}")
        self.remove = shared.button("Remove", f"stop {id} and forget it", "danger")
        self.stop.on_click(lambda _: panel.stop_instance(id))
        self.start.on_click(lambda _: panel.start_instance(id))
        self.logs.on_click(lambda _: panel.show_logs(id))
        self.remove.on_click(lambda _: panel.remove_instance(id))
        self.buttons = [self.stop, self.start, self.logs, self.remove]
        self.widgets = [*self.cells, self.batching, *self.buttons]

    def update(self, inst, report: dict | None = None) -> None:
        """``report``: the instance's GET /batching, when it batches and answered."""
        colour = {"running": "#2e7d32", "exited": "#c62828", "missing": "#c62828"}.get(inst.status, "#757575")
        url = inst.url if inst.status == "running" else None
        link = _links(url, inst.browser_url if url else None)
        values = (
            html.escape(inst.id),
            html.escape(inst.model),
            html.escape(inst.runtime),
            f"<span style='color: {colour}'>{html.escape(inst.status)}</span>",
            link,
            duration(inst.uptime),
        )
        for cell, value in zip(self.cells, values):
            _set(cell, value=value)
        _set(self.batching, value=batching_text(inst.batching, report))
        self.enable(inst.status)

    def enable(self, status: str | None) -> None:
        """Offer what makes sense now; ``None`` (an action is running) disables every button."""
        busy = status is None
        _set(self.stop, disabled=busy or status != "running")
        _set(self.start, disabled=busy or status == "running")
        _set(self.logs, disabled=busy)
        _set(self.remove, disabled=busy)

    def close(self) -> None:
        for w in self.widgets:
            w.close()  # layouts and styles are the panel's, shared


class _MonitorView:
    """Metrics and drift plots of one running instance, with the history of its /metrics snapshots."""

    HISTORY = 60  # snapshots kept: five minutes at the default refresh

    def __init__(self, id: str):
        from collections import deque

        self.id = id
        self.snapshots: deque = deque(maxlen=self.HISTORY)
        self.points: list = []
        self.report: dict | None = None
        self.error: str | None = None
        self.title = widgets.HTML()
        self.traffic = widgets.Image(format="png", layout=widgets.Layout(max_width="760px"))
        self.caption = widgets.HTML()
        self.drift = widgets.Image(format="png", layout=widgets.Layout(max_width="760px"))
        self.box = widgets.VBox([self.title, self.traffic, self.caption, self.drift])
        self._drift_key: str | None = None

    @property
    def drifted(self) -> list[str]:
        """Input features the drift view shows in alert (what the red bars say)."""
        return list((self.report or {}).get("drifted_features", []))

    def update(self, workspace, inst) -> None:
        from . import monitoring, plots

        _set(self.title, value=f"<b>{html.escape(inst.id)}</b> · {html.escape(inst.model)}")
        try:
            self.snapshots.append(workspace.metrics_snapshot(inst.id))
            self.points = monitoring.series(list(self.snapshots))
            self.report = workspace.drift(inst.id)
            self.error = None
        except NbserveError as exc:
            self.error = error_text(exc)
            _set(self.caption, value=f"<span style='color: #c62828'>{html.escape(self.error)}</span>")
            return
        self.traffic.value = plots.traffic_png(self.points)
        report = self.report
        key = json.dumps([report.get("window"), [(f["name"], f["live"]) for f in report.get("features", [])]])
        if not report.get("available"):
            caption = f"<i>{html.escape(report.get('reason', 'no drift reference'))}</i>"
        elif report["drifted_features"]:
            flag = "<b style='color: #c62828'>drift</b>" if report["drift"] else "no overall drift"
            caption = (
                f"{flag} · drifting features: <b style='color: #c62828'>"
                f"{html.escape(', '.join(report['drifted_features']))}</b>"
            )
        else:
            caption = "no feature drifts" + (
                "" if report["window"]["rows"] >= report["thresholds"]["min_rows"] else " (still collecting)"
            )
        _set(self.caption, value=caption)
        if key != self._drift_key:  # redraw only when the counts moved
            self.drift.value = plots.drift_png(report)
            self._drift_key = key

    def close(self) -> None:
        for w in (self.title, self.traffic, self.caption, self.drift, self.box):
            _close(w)


class _DeploymentsSection:
    """Deployments (nbserve.deploy): a table read on every refresh and one row of controls acting on the
    deployment chosen in the dropdown. Shown only once a deployment exists."""

    def __init__(self, panel: Panel):
        shared = panel._shared
        self.title = shared.cell("<h3 style='margin: 4px 0'>Deployments</h3>")
        self.table = shared.cell()
        self.choice = widgets.Dropdown(options=[], layout=widgets.Layout(width="160px"))
        self.replicas = widgets.BoundedIntText(value=1, min=0, max=1000, layout=widgets.Layout(width="70px"))
        self.model = widgets.Text(placeholder="NAME:VERSION", layout=widgets.Layout(width="140px"))
        self.scale = shared.button("Scale", "set the number of replicas")
        self.update = shared.button("Update", "roll every replica to the model version typed beside", "primary")
        self.rollback = shared.button("Rollback", "roll back to the version served before the last update")
        self.logs = shared.button("Logs", "show the replicas' log tail")
        self.remove = shared.button("Remove", "remove the deployment and its replicas", "danger")
        self.scale.on_click(lambda _: panel.scale_deployment(self.choice.value, self.replicas.value))
        self.update.on_click(lambda _: panel.update_deployment(self.choice.value, self.model.value.strip()))
        self.rollback.on_click(lambda _: panel.rollback_deployment(self.choice.value))
        self.logs.on_click(lambda _: panel.show_deployment_logs(self.choice.value))
        self.remove.on_click(lambda _: panel.remove_deployment(self.choice.value))
        self.buttons = [self.scale, self.update, self.rollback, self.logs, self.remove]
        self.controls = widgets.HBox([self.choice, self.replicas, self.scale, self.model, *self.buttons[1:]])
        self.box = widgets.VBox([self.title, self.table, self.controls], layout=widgets.Layout(display="none"))
        self.widgets = [
            self.box,
            self.controls,
            self.title,
            self.table,
            self.choice,
            self.replicas,
            self.model,
            *self.buttons,
        ]

    def sync(self, deployments) -> None:
        from .deploy.commands import rows

        _set(self.box.layout, display="" if deployments else "none")
        _set(self.table, value=f"<pre style='margin: 0'>{html.escape(rows(deployments))}</pre>")
        names = [d.name for d in deployments]
        if list(self.choice.options) != names:
            self.choice.options = names

    def enable(self, busy: bool) -> None:
        for b in self.buttons:
            _set(b, disabled=busy)

    def close(self) -> None:
        for w in self.widgets:
            _close(w)


class Panel(widgets.VBox):
    """Models and instances of a workspace, with buttons. ``nbserve.panel()`` makes one."""

    def __init__(self, workspace=None, refresh_seconds: float = REFRESH_SECONDS, **kwargs):
        if workspace is None:
            workspace = default_workspace()
        self.workspace = workspace
        self.refresh_seconds = refresh_seconds
        self.last_error: str | None = None
        self._lock = threading.RLock()  # one refresh or action at a time (clicks vs the refresh thread)
        self._model_rows: dict[str, _ModelRow] = {}
        self._instance_rows: dict[str, _InstanceRow] = {}
        self._monitors: dict[str, _MonitorView] = {}
        self._statuses: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._seen_view = False
        self._logs_id: str | None = None

        self._shared = shared = _Shared()
        self.refresh_button = shared.button("Refresh", "read models and instances again")
        self.refresh_button.icon = "refresh"
        self.refresh_button.on_click(lambda _: self._refresh_quietly())
        self.status = shared.cell()
        self.models_grid, self.instances_grid = _grid(len(_ModelRow.HEADERS)), _grid(len(_InstanceRow.HEADERS))
        self._model_headers = [shared.cell(f"<b>{h}</b>") for h in _ModelRow.HEADERS]
        self._instance_headers = [shared.cell(f"<b>{h}</b>") for h in _InstanceRow.HEADERS]
        # these two are shown or hidden through their layouts: each has its own
        self.no_models = widgets.HTML(
            "<i>No models registered yet: <code>%serve VARIABLE</code> registers and serves one.</i>"
        )
        self.no_instances = widgets.HTML("<i>No instances: the Start button of a model starts one.</i>")
        self.progress = ProgressView(layout=widgets.Layout(display="none"))
        self.logs_title = shared.cell()
        self.hide_logs = shared.button("Hide logs", "hide the log tail")
        self.hide_logs.on_click(lambda _: self.clear_logs())
        self.logs = shared.cell()
        logs_header = widgets.HBox([self.logs_title, self.hide_logs])
        self.logs_box = widgets.VBox([logs_header, self.logs], layout=widgets.Layout(display="none"))
        titles = [
            shared.cell("<h3 style='margin: 4px 0'>Models</h3>"),
            shared.cell("<h3 style='margin: 4px 0'>Instances</h3>"),
        ]
        header = widgets.HBox([self.refresh_button, self.status], layout=widgets.Layout(align_items="center"))
        self.monitor_title = shared.cell("<h3 style='margin: 4px 0'>Monitoring</h3>")
        self.monitor_box = widgets.VBox(layout=widgets.Layout(display="none"))
        # made on first need: a panel without deployments keeps its few dozen widget models
        self.deployments: _DeploymentsSection | None = None
        self.deployments_box = widgets.VBox()
        self._own = [
            self.deployments_box,
            header,
            self.refresh_button,
            self.status,
            *titles,
            self.monitor_title,
            self.monitor_box,
            self.models_grid,
            self.instances_grid,
            *self._model_headers,
            *self._instance_headers,
            self.no_models,
            self.no_instances,
            *self.progress.all_widgets(),
            self.logs_box,
            logs_header,
            self.logs_title,
            self.hide_logs,
            self.logs,
        ]
        super().__init__(
            children=[
                header,
                titles[0],
                self.models_grid,
                self.no_models,
                titles[1],
                self.instances_grid,
                self.no_instances,
                self.monitor_box,
                self.deployments_box,
                self.progress,
                self.logs_box,
            ],
            **kwargs,
        )
        # Ask the frontend to count the views showing this panel, so the refresh thread can stop
        # once none does (ipywidgets' experimental _view_count; None means "not tracked").
        self._view_count = 0
        self.refresh()

    def __repr__(self):
        # The text/plain fallback of the display: short and stable, so executed notebooks compare equal.
        return "<nbserve panel>"

    # -- reading -------------------------------------------------------------------------------

    def refresh(self):
        """Read models and instances (status from the runtimes) and update the rows; returns both lists."""
        with self._lock:
            try:
                models = self.workspace.models()
                counts = {m.name: len(self.workspace.versions(m.name)) for m in models}
                instances = self.workspace.instances()
            except NbserveError as exc:
                _set(
                    self.status,
                    value=f"<span style='color: #c62828'>cannot read the registry: "
                    f"{html.escape(error_text(exc))}</span>",
                )
                raise
            self._sync_models(models, counts)
            self._sync_instances(instances)
            self._sync_monitors(instances)
            try:
                deployments = self.workspace.deployments()
            except NbserveError:  # an engine that stopped answering must not hide the models and instances
                deployments = None
            if deployments and self.deployments is None:
                self.deployments = _DeploymentsSection(self)
                self.deployments_box.children = [self.deployments.box]
            if deployments is not None and self.deployments is not None:
                self.deployments.sync(deployments)
            running = [i for i in instances if i.status == "running"]
            hint = next((h for h in (proxy_hint(i.url) for i in running) if h), None)
            _set(
                self.status,
                value=f"{len(models)} model{'s' * (len(models) != 1)} · {len(running)} of "
                f"{len(instances)} instance{'s' * (len(instances) != 1)} running · "
                f"<span style='opacity: .6'>refreshed {time.strftime('%H:%M:%S')}</span>"
                + (f"<br><small style='opacity: .75'>{html.escape(hint)}</small>" if hint else ""),
            )
            return models, instances

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except NbserveError:
            pass  # the status line says what failed

    def _sync_models(self, models, counts) -> None:
        rows = {}
        for mv in sorted(models, key=lambda m: m.name):
            row = self._model_rows.pop(mv.name, None) or _ModelRow(self, mv.name)
            row.update(mv, counts.get(mv.name, 1))
            rows[mv.name] = row
        for gone in self._model_rows.values():
            gone.close()
        self._model_rows = rows
        children = tuple(self._model_headers + [w for r in rows.values() for w in r.widgets]) if rows else ()
        if self.models_grid.children != children:
            self.models_grid.children = children
        _set(self.no_models.layout, display="none" if rows else "")

    def _sync_instances(self, instances) -> None:
        rows = {}
        for inst in sorted(instances, key=lambda i: (i.created, i.id)):
            row = self._instance_rows.pop(inst.id, None) or _InstanceRow(self, inst.id)
            row.update(inst, self._batching_report(inst))
            rows[inst.id] = row
        for gone in self._instance_rows.values():
            gone.close()
        self._instance_rows = rows
        self._statuses = {i.id: i.status for i in instances}
        children = tuple(self._instance_headers + [w for r in rows.values() for w in r.widgets]) if rows else ()
        if self.instances_grid.children != children:
            self.instances_grid.children = children
        _set(self.no_instances.layout, display="none" if rows else "")

    def _sync_monitors(self, instances) -> None:
        views = {}
        for inst in instances:
            if inst.status != "running":
                continue
            view = self._monitors.pop(inst.id, None) or _MonitorView(inst.id)
            try:
                view.update(self.workspace, inst)
            except Exception as exc:  # a plot that fails must not take the panel down
                view.error = f"{type(exc).__name__}: {exc}"
                _set(view.caption, value=f"<span style='color: #c62828'>{html.escape(view.error)}</span>")
            views[inst.id] = view
        for gone in self._monitors.values():
            gone.close()
        self._monitors = views
        children = (self.monitor_title, *(v.box for v in views.values())) if views else ()
        if self.monitor_box.children != children:
            self.monitor_box.children = children
        _set(self.monitor_box.layout, display="" if views else "none")

    def _batching_report(self, inst) -> dict | None:
        if inst.status != "running" or inst.batching is None:
            return None
        try:
            return self.workspace.batching(inst.id)
        except NbserveError:
            return None  # an instance that stopped answering: its status says so at the next refresh

    def monitor(self, id: str) -> _MonitorView:
        """The metrics and drift view of a running instance (its plots, points and drift report)."""
        return self._monitors[id]

    def model_row(self, name: str) -> _ModelRow:
        return self._model_rows[name]

    def instance_row(self, id: str) -> _InstanceRow:
        return self._instance_rows[id]

    @property
    def model_names(self) -> list[str]:
        return list(self._model_rows)

    @property
    def instance_ids(self) -> list[str]:
        return list(self._instance_rows)

    # -- actions (each button calls one of these) ----------------------------------------------

    def start_model(
        self,
        name: str,
        runtime: str | None = None,
        port: int | None = None,
        batch: bool | None = None,
        max_batch: int | None = None,
        max_latency_ms: float | None = None,
    ):
        """Start a new instance of the latest version of ``name``; runtime, port and batching (as
        ``serve`` takes them) default to the row's."""
        row = self._model_rows.get(name)
        if runtime is None:
            runtime = row.runtime.value if row else runtimes.AUTO
        given = {"batch": batch, "max_batch": max_batch, "max_latency_ms": max_latency_ms}
        if batch is None and row is not None:
            given = {**row.batching_options(), **{k: v for k, v in given.items() if v is not None}}
        batching = {k: v for k, v in given.items() if v is not None and v is not False}  # the core checks them

        def work(say):
            chosen = port if port is not None or row is None else _port(row.port.value)
            return self.workspace.serve(name, runtime=runtime, port=chosen, progress=say, **batching)

        return self._act(
            f"starting {name} ({runtime})", work, lambda inst: f"{inst.id} is serving {inst.model} at {inst.url}"
        )

    def stop_instance(self, id: str):
        return self._act(f"stopping {id}", lambda say: self.workspace.stop(id), lambda inst: f"{id} {inst.status}")

    def start_instance(self, id: str):
        """Start a stopped instance again (a failed start shows the server's log tail)."""
        return self._act(
            f"starting {id}",
            lambda say: self.workspace.start(id, progress=say),
            lambda inst: f"{id} is serving {inst.model} at {inst.url}",
        )

    def remove_instance(self, id: str):
        def work(say):
            self.workspace.remove(id)
            if self._logs_id == id:
                self.clear_logs()

        return self._act(f"removing {id}", work, lambda _: f"{id} removed")

    def scale_deployment(self, name: str, replicas: int):
        return self._act(
            f"scaling {name} to {replicas}",
            lambda say: self.workspace.scale_deployment(name, int(replicas), progress=say),
            lambda d: f"{d.name}: {d.ready}/{d.replicas} ready",
        )

    def update_deployment(self, name: str, ref: str):
        return self._act(
            f"updating {name} to {ref}",
            lambda say: self.workspace.update_deployment(name, ref, progress=say),
            lambda d: f"{d.name} serves {d.model} on {d.ready}/{d.replicas} replicas",
        )

    def rollback_deployment(self, name: str):
        return self._act(
            f"rolling back {name}",
            lambda say: self.workspace.rollback_deployment(name, progress=say),
            lambda d: f"{d.name} serves {d.model} on {d.ready}/{d.replicas} replicas",
        )

    def remove_deployment(self, name: str):
        return self._act(
            f"removing {name}",
            lambda say: self.workspace.remove_deployment(name, progress=say),
            lambda _: f"{name} removed",
        )

    def show_deployment_logs(self, name: str, tail: int = LOG_TAIL) -> str:
        try:
            text = self.workspace.deployment_logs(name, tail=tail)
        except NbserveError as exc:
            self._show_failure(f"logs of {name}", error_text(exc))
            return ""
        _set(self.logs_title, value=f"<b>logs of deployment {html.escape(name)}</b> (last {tail} lines)")
        _set(self.logs, value=f"<pre style='max-height: 24em; overflow: auto; margin: 0'>{html.escape(text)}</pre>")
        _set(self.logs_box.layout, display="")
        return text

    def show_logs(self, id: str, tail: int = LOG_TAIL) -> str:
        """Show the log tail of an instance under the tables; returns the text."""
        try:
            text = self.workspace.logs(id, tail=tail)
        except NbserveError as exc:
            self._show_failure(f"logs of {id}", error_text(exc))
            return ""
        _set(self.logs_title, value=f"<b>logs of {html.escape(id)}</b> (last {tail} lines)")
        _set(
            self.logs,
            value=f"<pre style='max-height: 24em; overflow: auto; margin: 0'>"
            f"{html.escape(text) or '(no log lines yet)'}</pre>",
        )
        _set(self.logs_box.layout, display="")
        self._logs_id = id
        return text

    def clear_logs(self) -> None:
        self._logs_id = None
        _set(self.logs_title, value="")
        _set(self.logs, value="")
        _set(self.logs_box.layout, display="none")

    def _act(self, title: str, work, describe):
        """Run one action with the progress view showing; on failure show the error and stay usable."""
        with self._lock:
            self._set_busy(True)
            _set(self.progress.layout, display="")
            self.progress.begin(title)
            self.last_error = None
            result = None
            try:
                result = work(self.progress)
            except Exception as exc:  # the panel must survive anything; show it rather than lose it
                text = error_text(exc) if isinstance(exc, NbserveError) else f"{type(exc).__name__}: {exc}"
                self._show_failure(title, text)
            else:
                self.progress.done(describe(result))
            finally:
                self._set_busy(False)
                self._refresh_quietly()
            return result

    def _show_failure(self, title: str, text: str) -> None:
        self.last_error = text
        _set(self.progress.layout, display="")
        if self.progress.state != "working":
            self.progress.begin(title)
        self.progress.fail(text)

    def _set_busy(self, busy: bool) -> None:
        for model_row in self._model_rows.values():
            model_row.start.disabled = busy
        for id, instance_row in self._instance_rows.items():
            instance_row.enable(None if busy else self._statuses.get(id))
        self.refresh_button.disabled = busy
        if self.deployments is not None:
            self.deployments.enable(busy)

    # -- auto-refresh --------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        self.start_auto_refresh()  # displayed: keep it current
        return bundle

    def start_auto_refresh(self, seconds: float | None = None) -> None:
        if seconds is not None:
            self.refresh_seconds = seconds
        if self.comm is None or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop_event = threading.Event()
        self._thread = threading.Thread(
            target=_auto_refresh,
            name="nbserve-panel-refresh",
            daemon=True,
            args=(weakref.ref(self), self._stop_event, self.refresh_seconds),
        )
        self._thread.start()
        _auto_refreshing.append(weakref.ref(self))
        live = [r for r in _auto_refreshing if r() is not None and r().auto_refreshing]
        _auto_refreshing[:] = live
        for ref in live[:-MAX_AUTO_REFRESHING]:
            ref().stop_auto_refresh()

    def stop_auto_refresh(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def auto_refreshing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _tick(self) -> bool:
        """One background refresh; False when the thread should stop (closed, or no view left)."""
        if self.comm is None:
            return False
        if self._view_count:
            self._seen_view = True
        elif self._seen_view and self._view_count == 0:
            return False  # every view of it was removed (cell cleared or re-run)
        if not self._lock.acquire(blocking=False):
            return True  # an action is running; it refreshes when done
        try:
            self.refresh()
        except Exception:
            pass  # the status line says what failed; try again next tick
        finally:
            self._lock.release()
        return True

    def close(self):
        if not hasattr(self, "_own"):  # __del__ of a panel whose __init__ failed early
            return super().close()
        self.stop_auto_refresh()
        for row in [*self._model_rows.values(), *self._instance_rows.values(), *self._monitors.values()]:
            row.close()
        self._monitors = {}
        self._model_rows, self._instance_rows = {}, {}
        if self.deployments is not None:
            self.deployments.close()
        for w in self._own:
            _close(w)
        self._shared.close()
        self.layout.close()
        super().close()


def _auto_refresh(ref, stop: threading.Event, seconds: float) -> None:
    # Holds only a weak reference between ticks, so a panel nobody holds can be collected (and stop).
    while not stop.wait(seconds):
        panel = ref()
        if panel is None:
            return
        keep_going = panel._tick()
        del panel
        if not keep_going:
            return


def _port(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit():
        raise NbserveError(f"port must be a number, got {text!r}; leave it empty for any free port")
    return int(text)


def panel(workspace=None, refresh_seconds: float = REFRESH_SECONDS) -> Panel:
    """The panel of models and instances of ``workspace`` (default: the one of $NBSERVE_HOME)."""
    return Panel(workspace, refresh_seconds=refresh_seconds)
