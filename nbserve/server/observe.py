"""What a served model tells about itself, wired into the app: Prometheus metrics at ``GET /metrics``
(metrics.py), one JSON line per request in the instance's log (requestlog.py), and drift at ``GET /drift``
(drift/). Each has its own switch (Settings.metrics, request_log, drift).

On a request's way this costs a WSGI wrapper that notes the time, the request id (the client's
``X-Request-ID``, or the worker's prefix and a counter: no system call), the status and the rows, and appends
one tuple to a queue; the wrapped method appends references to its input and output for drift. Everything
else (bucketing, pushing to prometheus_client's shared values, formatting and writing log lines, binning
drift) runs on the worker's housekeeping thread (housekeeping.py) every ``PUSH_SECONDS``, and in the worker
that answers a scrape just before it collects, so another worker's last second may show in the next scrape.
The in-progress gauge is a plain counter of the worker, published the same way.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from . import housekeeping, jsonio
from .errors import CallError
from .streaming import is_stream

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask, Response

    from .drift.monitor import Monitor
    from .metrics import Metrics
    from .requestlog import RequestLog
    from .settings import Settings

# polls (a panel's, a job's client; and GET /jobs/<id>): not requests to the model
QUIET_PATHS = frozenset({"/health", "/metrics", "/drift", "/batching", "/jobs"})
PUSH_SECONDS = 1.0
MAX_REQUEST_ID = 128
BODY_LOG_LIMIT = 65536
MAX_PENDING = 100_000  # records held between two pushes; past it (a stalled housekeeping thread) the oldest go


def install(app: Flask, methods: dict, manifest: dict, model_id: str, settings: Settings) -> dict:
    """Add /metrics, /drift and the request log to ``app`` as the settings switch them; returns ``methods``
    wrapped to count rows and model errors and feed drift. What is off answers 404 saying how to turn it on."""
    from flask import Response

    from . import drift, metrics, requestlog

    prom = metrics.Metrics.make(model_id, settings.timeout, list(methods)) if settings.metrics else None
    why_metrics = None if prom is not None else metrics.why_off(settings)
    log = requestlog.RequestLog(bodies=settings.request_log == "bodies") if settings.request_log != "off" else None
    monitor = None
    if settings.drift:
        # each version's windows apart: a split serves several from the same worker (routing.py)
        shared = drift.version_directory(_shared_dir(), model_id)
        monitor = drift.Monitor(manifest.get("reference"), shared, settings.drift_window)
    if prom is None and log is None and monitor is None:
        _off_routes(app, why_metrics, "drift is off for this instance (serve(..., drift=True) turns it on)")
        return methods
    obs = Observer(list(methods), prom, log, monitor)
    app.wsgi_app = obs.middleware(app.wsgi_app)  # type: ignore[method-assign,assignment]  # Flask's way to wrap
    # streamed answers report how they went (streaming.py); a graph's stage timings are pushed with these (graph.py)
    app.extensions["nbserve.observer"] = obs
    housekeeping.every(PUSH_SECONDS, obs.push, "metrics and request log")
    if prom is not None:  # a worker that has not pushed yet has published all it served before it started
        housekeeping.on_start(lambda: prom.mark_published(time.time()))

    if prom is not None:

        @app.get("/metrics")
        def metrics_view() -> Response:
            obs.push()
            body, content_type = prom.exposition(monitor)
            return Response(body, content_type=content_type)

    if monitor is not None:

        @app.get("/drift")
        def drift_view() -> Response:
            return Response(jsonio.dumps(monitor.report(model_id)), mimetype="application/json")

    _off_routes(
        app,
        why_metrics if prom is None else None,
        "drift is off for this instance (serve(..., drift=True) turns it on)" if monitor is None else None,
    )
    return {name: obs.wrap(name, fn) for name, fn in methods.items()} if (prom or monitor) else methods


def _shared_dir() -> str | None:
    """Where the workers of a server share their drift windows (the master's directory for prometheus_client's
    multiprocess files, master.py); None in a plain process (a test client's), which keeps its own."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _off_routes(app: Flask, why_metrics: str | None, why_drift: str | None) -> None:
    from . import errors

    if why_metrics:

        @app.get("/metrics")
        def metrics_off() -> Response:
            return errors.response(CallError(404, "MetricsOff", why_metrics))

    if why_drift:

        @app.get("/drift")
        def drift_off() -> Response:
            return errors.response(CallError(404, "DriftOff", why_drift))


class Observer:
    """The per-request hooks, and the push that turns what they noted into metrics and log lines."""

    def __init__(
        self, method_names: Iterable[str], prom: Metrics | None, log: RequestLog | None, monitor: Monitor | None
    ) -> None:
        self.methods = frozenset(method_names)
        self.prom, self.log, self.monitor = prom, log, monitor
        # one record per request: (method, status, seconds, request id, rows, model error, time, verb, path, body)
        self.pending: deque = deque(maxlen=MAX_PENDING)
        self.streams: deque = deque(maxlen=MAX_PENDING)  # ended streams: (method, to first item, items, s, outcome)
        self.in_progress = 0
        self.local = threading.local()
        self.prefix = ""
        self.counter = itertools.count(1)
        self._push_lock = threading.Lock()
        self.followed: list = []  # (drain, record): other per-request records pushed with these (graph.py)
        housekeeping.on_start(self._new_prefix)
        self._new_prefix()

    def _new_prefix(self) -> None:
        """Request ids are this prefix and a counter: random per worker (set after its fork), no syscall each."""
        self.prefix = os.urandom(5).hex()
        self.counter = itertools.count(1)

    # -- per request ------------------------------------------------------------------------------------

    def middleware(self, wsgi_app: WSGIApplication) -> WSGIApplication:
        local, methods, pending = self.local, self.methods, self.pending
        perf = time.perf_counter
        log_bodies = self.log is not None and self.log.bodies

        def observed(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path in QUIET_PATHS or (path.startswith("/jobs/") and environ.get("REQUEST_METHOD") == "GET"):
                return wsgi_app(environ, start_response)  # polls: not requests to the model
            t0 = perf()
            verb = environ.get("REQUEST_METHOD")
            given = environ.get("HTTP_X_REQUEST_ID")
            if given and len(given) <= MAX_REQUEST_ID and given.isprintable():
                rid = given
            else:
                rid = f"{self.prefix}{next(self.counter):06x}"
            seen = []

            def start(
                status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
            ) -> Callable[[bytes], object]:
                seen.append(status)
                headers.append(("X-Request-ID", rid))
                return start_response(status, headers, exc_info)

            body = _read_body(environ) if log_bodies else None
            local.rows = local.error = None
            self.in_progress += 1
            try:
                return wsgi_app(environ, start)
            finally:
                self.in_progress -= 1
                # a protocol's route that calls a model method names it (OpenAI's chat completions)
                method = environ.get("nbserve.method") or (path[1:] if path[1:] in methods else "other")
                status = seen[-1][:3] if seen else "500"
                pending.append(
                    (method, status, perf() - t0, rid, local.rows, local.error, time.time(), verb, path, body)
                )

        return observed

    def wrap(self, name: str, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        local, monitor = self.local, self.monitor

        def call(data: Any) -> Any:
            try:
                local.rows = len(data)
            except TypeError:
                local.rows = None
            try:
                result = fn(data)
            except Exception as exc:
                local.error = type(exc).__name__
                raise
            if monitor is not None:  # a stream's items are not binned (the reference has no output for it)
                monitor.add(name, data, None if is_stream(result) else result)
            return result

        call.__name__ = getattr(fn, "__name__", name)
        return call

    def stream_ended(self, method: str, to_first: float, items: int, seconds: float, outcome: str) -> None:
        """A streamed answer ended (noted once per stream, never per item)."""
        self.streams.append((method if method in self.methods else "other", to_first, items, seconds, outcome))

    def follow(self, drain: Callable[[], list], record: Callable[[list], object]) -> None:
        """Push what ``drain()`` returns into ``record(items)`` with every push (a graph's stage timings)."""
        self.followed.append((drain, record))

    # -- off the request's way ----------------------------------------------------------------------------

    def push(self) -> None:
        """Turn what the requests noted into metrics and log lines (the housekeeping thread, and a scrape)."""
        with self._push_lock:
            drained_at = time.time()
            records = []
            pending = self.pending
            while pending:
                try:
                    records.append(pending.popleft())
                except IndexError:
                    break
            if self.prom is not None:
                self.prom.record(records, self.in_progress)
                streams = self.streams
                ended = []
                while streams:
                    try:
                        ended.append(streams.popleft())
                    except IndexError:
                        break
                if ended:
                    self.prom.record_streams(ended)
                self.prom.mark_published(drained_at)
            if self.log is not None and records:
                self.log.write(records)
            for drain, record in self.followed:
                items = drain()
                if items:
                    record(items)


def _read_body(environ: WSGIEnvironment) -> bytes | None:
    import io

    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length <= 0 or length > BODY_LOG_LIMIT * 16:
        return None
    data = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(data)
    return data
