"""The panel itself: a header (Refresh, a status line, the remote-access hint), the sections in order, the
progress of the running action, and the thread that refreshes it while it is displayed.

Every refresh reads the workspace once (``Workspace.overview()``: models, version numbers, instances with
their runtime's status) and hands that to each section. Every button calls one plain method of the panel
(``start_model``, ``stop_instance``, ...), so tests and users can drive it from Python as well as by clicking;
actions run one at a time, with the progress view showing, and end with a refresh.

The refresh thread stops when the panel is closed (``panel.close()``), when the frontend reports that no view
shows it any more, or when it is garbage collected; and at most ``MAX_AUTO_REFRESHING`` panels refresh at
once, so re-running a ``%nbserve panel`` cell many times does not pile up threads.
"""

from __future__ import annotations

import html
import threading
import time
import weakref

import ipywidgets as widgets

from .. import runtimes
from ..browser_links import proxy_hint
from ..errors import NbserveError
from ..notebook_progress import ProgressView
from ..notebook_text import error_text
from ..workspace import default_workspace
from .base import ERROR_COLOUR, MUTED, Section, Shared, close_widget, put
from .deployments import DeploymentsSection
from .graphs import GraphsSection
from .instances import InstanceRow, InstancesSection
from .jobs import JobsSection
from .models import ModelRow, ModelsSection
from .monitoring import MonitoringSection, MonitorView
from .request_log import LOG_TAIL, RequestLogSection
from .versions import VersionCard, VersionsSection

REFRESH_SECONDS = 5.0
MAX_AUTO_REFRESHING = 4

_auto_refreshing: list = []  # weakrefs to panels whose refresh thread runs, oldest first
_dismissed_hints: set[str] = set()  # hints dismissed in this kernel: not shown again by any panel


class Panel(widgets.VBox):
    """Models and instances of a workspace, with buttons. ``nbserve.panel()`` makes one.

    ``SECTIONS`` is the order of the parts under the header; a new part is a ``Section`` subclass in a
    module of its own (see widgets/base.py) added here."""

    SECTIONS: tuple[type[Section], ...] = (
        ModelsSection,
        InstancesSection,
        VersionsSection,
        JobsSection,
        MonitoringSection,
        GraphsSection,
        DeploymentsSection,
        RequestLogSection,
    )

    def __init__(self, workspace=None, refresh_seconds: float = REFRESH_SECONDS, **kwargs):
        if workspace is None:
            workspace = default_workspace()
        self.workspace = workspace
        self.refresh_seconds = refresh_seconds
        self.last_error: str | None = None
        self._lock = threading.RLock()  # one refresh or action at a time (clicks vs the refresh thread)
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._seen_view = False
        self.hint_text: str | None = None

        self.shared = shared = Shared()
        self.refresh_button = shared.button("Refresh", "read models and instances again")
        self.refresh_button.icon = "refresh"
        self.refresh_button.on_click(lambda _: self._refresh_quietly())
        self.status = shared.cell()
        self.hint = shared.cell()
        self.dismiss_hint = shared.button("Dismiss", "do not show this hint again in this kernel")
        self.dismiss_hint.on_click(lambda _: self._dismiss_hint())
        self.hint_box = widgets.HBox(
            [self.hint, self.dismiss_hint], layout=widgets.Layout(display="none", align_items="center")
        )
        header = widgets.HBox([self.refresh_button, self.status], layout=shared.controls_layout)
        self.progress = ProgressView(layout=widgets.Layout(display="none"))
        self.sections = [cls(self) for cls in self.SECTIONS]
        self._own = [header, self.refresh_button, self.status, self.hint_box, self.hint, self.dismiss_hint]
        self._own += self.progress.all_widgets()
        super().__init__(
            children=[header, self.hint_box, *(s.box for s in self.sections), self.progress],
            layout=widgets.Layout(width="100%"),
            **kwargs,
        )
        self.add_class("nbserve-notebook-panel")  # for the browser tests, and for a user's own CSS
        # Ask the frontend to count the views showing this panel, so the refresh thread can stop
        # once none does (ipywidgets' experimental _view_count; None means "not tracked").
        self._view_count = 0
        self.refresh()

    def __repr__(self):
        # The text/plain fallback of the display: short and stable, so executed notebooks compare equal.
        return "<nbserve panel>"

    def section(self, kind: type[Section]):
        return next(s for s in self.sections if isinstance(s, kind))

    @property
    def models(self) -> ModelsSection:
        return self.section(ModelsSection)

    @property
    def instances(self) -> InstancesSection:
        return self.section(InstancesSection)

    @property
    def jobs(self) -> JobsSection:
        return self.section(JobsSection)

    @property
    def monitoring(self) -> MonitoringSection:
        return self.section(MonitoringSection)

    @property
    def graphs(self) -> GraphsSection:
        return self.section(GraphsSection)

    @property
    def deployments(self) -> DeploymentsSection:
        return self.section(DeploymentsSection)

    @property
    def versions(self) -> VersionsSection:
        return self.section(VersionsSection)

    def version_card(self, id: str) -> VersionCard:
        """The Versions card of an instance: following, split, history, and its shadow's comparison."""
        return self.versions.cards[id]

    @property
    def request_log(self) -> RequestLogSection:
        return self.section(RequestLogSection)

    # -- reading -------------------------------------------------------------------------------

    def refresh(self):
        """Read the workspace once and update every section; returns the Overview."""
        with self._lock:
            try:
                overview = self.workspace.overview()
            except NbserveError as exc:
                put(
                    self.status,
                    value=f"<span style='color: {ERROR_COLOUR}'>cannot read the registry: "
                    f"{html.escape(error_text(exc))}</span>",
                )
                raise
            for section in self.sections:
                section.sync(overview)
            models, instances = overview.models, overview.instances
            running = [i for i in instances if i.status == "running"]
            put(
                self.status,
                value=f"{len(models)} model{'s' * (len(models) != 1)} · {len(running)} of "
                f"{len(instances)} instance{'s' * (len(instances) != 1)} running · "
                f"<span style='{MUTED}'>refreshed {time.strftime('%H:%M:%S')}</span>",
            )
            self._show_hint(next((h for h in (proxy_hint(i.url) for i in running) if h), None))
            return overview

    def _show_hint(self, hint: str | None) -> None:
        """The remote-access hint, once for the panel, only where the browser is not on this machine (the
        Jupyter server saw it: browser_links.proxy_hint) and until dismissed."""
        self.hint_text = hint if hint is not None and hint not in _dismissed_hints else None
        text = self.hint_text
        put(self.hint, value=f"<small style='{MUTED}'>{html.escape(text)}</small>" if text else "")
        put(self.hint_box.layout, display="" if text else "none")

    def _dismiss_hint(self) -> None:
        if self.hint_text:
            _dismissed_hints.add(self.hint_text)
        self._show_hint(None)

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except NbserveError:
            pass  # the status line says what failed

    def monitor(self, id: str) -> MonitorView:
        """The metrics and drift view of a running instance (its plots, points and drift report)."""
        return self.monitoring.views[id]

    def model_row(self, name: str) -> ModelRow:
        return self.models.rows[name]

    def instance_row(self, id: str) -> InstanceRow:
        return self.instances.rows[id]

    @property
    def model_names(self) -> list[str]:
        return list(self.models.rows)

    @property
    def instance_ids(self) -> list[str]:
        return list(self.instances.rows)

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
        row = self.models.rows.get(name)
        if runtime is None:
            runtime = row.runtime.value if row else runtimes.AUTO
        given = {"batch": batch, "max_batch": max_batch, "max_latency_ms": max_latency_ms}
        if batch is None and row is not None:
            given = {**row.batching_options(), **{k: v for k, v in given.items() if v is not None}}
        batching = {k: v for k, v in given.items() if v is not None and v is not False}  # the core checks them

        def work(say):
            chosen = port if port is not None or row is None else _port(row.port.value)
            return self.workspace.serve(name, runtime=runtime, port=chosen, progress=say, **batching)

        return self.act(
            f"starting {name} ({runtime})", work, lambda inst: f"{inst.id} is serving {inst.model} at {inst.url}"
        )

    def stop_instance(self, id: str):
        return self.act(f"stopping {id}", lambda say: self.workspace.stop(id), lambda inst: f"{id} {inst.status}")

    def start_instance(self, id: str):
        """Start a stopped instance again (a failed start shows the server's log tail)."""
        return self.act(
            f"starting {id}",
            lambda say: self.workspace.start(id, progress=say),
            lambda inst: f"{id} is serving {inst.model} at {inst.url}",
        )

    def rollback_instance(self, id: str):
        """Serve the version the instance served before, in place (same URL, no request dropped)."""
        return self.act(
            f"rolling {id} back",
            lambda say: self.workspace.rollback(id, progress=say),
            lambda inst: f"{inst.model} answers at {inst.url} again",
        )

    def end_split(self, id: str):
        return self.act(
            f"ending the split of {id}",
            lambda say: self.workspace.split(id, None, progress=say),
            lambda inst: f"{inst.model} alone answers at {inst.url}",
        )

    def promote_candidate(self, id: str):
        """Serve the shadow candidate's version at the instance's URL, in place; the candidate goes."""
        return self.act(
            f"promoting the candidate of {id}",
            lambda say: self.workspace.promote(id, progress=say),
            lambda inst: f"{inst.model} now answers at {inst.url}",
        )

    def discard_candidate(self, id: str):
        return self.act(
            f"discarding the candidate of {id}",
            lambda say: self.workspace.discard(id, progress=say),
            lambda inst: f"{id} serves {inst.model}; the candidate is removed",
        )

    def cancel_job(self, id: str, job_id: str):
        """Cancel a job of instance ``id`` (queued: at once; running: its call is stopped)."""
        return self.act(
            f"cancelling job {job_id} of {id}",
            lambda say: self.workspace.cancel_job(id, job_id),
            lambda doc: f"job {job_id}: {'cancelling' if doc.get('cancelling') else doc['status']}",
        )

    def remove_instance(self, id: str):
        return self.act(f"removing {id}", lambda say: self.workspace.remove(id), lambda _: f"{id} removed")

    def update_stage(self, id: str, stage: str, ref: str):
        """Serve the registered version ``ref`` as ``stage`` of the graph instance ``id``, in place."""
        return self.act(
            f"updating {stage} of {id} to {ref}",
            lambda say: self.workspace.update_stage(id, stage, ref, progress=say),
            lambda inst: f"{inst.id} serves {inst.model}: {stage} is {ref}",
        )

    def scale_deployment(self, name: str, replicas: int):
        return self.act(
            f"scaling {name} to {replicas}",
            lambda say: self.workspace.scale_deployment(name, int(replicas), progress=say),
            lambda d: f"{d.name}: {d.ready}/{d.replicas} ready",
        )

    def update_deployment(self, name: str, ref: str):
        return self.act(
            f"updating {name} to {ref}",
            lambda say: self.workspace.update_deployment(name, ref, progress=say),
            lambda d: f"{d.name} serves {d.model} on {d.ready}/{d.replicas} replicas",
        )

    def rollback_deployment(self, name: str):
        return self.act(
            f"rolling back {name}",
            lambda say: self.workspace.rollback_deployment(name, progress=say),
            lambda d: f"{d.name} serves {d.model} on {d.ready}/{d.replicas} replicas",
        )

    def end_deployment_split(self, name: str):
        return self.act(
            f"ending the split of {name}",
            lambda say: self.workspace.split_deployment(name, None, progress=say),
            lambda d: f"{d.name} serves {d.model} alone on {d.ready}/{d.replicas} replicas",
        )

    def remove_deployment(self, name: str):
        return self.act(
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
        self.request_log.show(f"<b>logs of deployment {html.escape(name)}</b> (last {tail} lines)", text)
        return text

    def show_logs(self, id: str, tail: int = LOG_TAIL) -> str:
        """Show the request log of an instance as a table under the sections; returns the raw text."""
        try:
            text = self.workspace.logs(id, tail=tail)
        except NbserveError as exc:
            self._show_failure(f"logs of {id}", error_text(exc))
            return ""
        self.request_log.show(f"<b>request log of {html.escape(id)}</b> (last {tail} lines)", text, id)
        return text

    def clear_logs(self) -> None:
        self.request_log.clear()

    def act(self, title: str, work, describe):
        """Run one action with the progress view showing; on failure show the error and stay usable."""
        with self._lock:
            self._set_busy(True)
            put(self.progress.layout, display="")
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
        put(self.progress.layout, display="")
        if self.progress.state != "working":
            self.progress.begin(title)
        self.progress.fail(text)

    def _set_busy(self, busy: bool) -> None:
        for section in self.sections:
            section.enable(busy)
        self.refresh_button.disabled = busy

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
        for section in self.sections:
            section.close()
        for w in self._own:
            close_widget(w)
        self.shared.close()
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
