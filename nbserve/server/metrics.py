"""What a served model tells about itself: Prometheus metrics at ``GET /metrics``, drift at ``GET /drift``
(see drift.py) and one JSON line per request in the instance's log.

``install`` wires all three into the app at load time. Per request the cost is a WSGI wrapper, a few
additions to plain Python tallies (bucket index by bisection), the in-progress gauge, a list append
for drift and one ``write`` of the buffered log line: the tallies reach prometheus_client's (memory-mapped,
locked) values in batches, from a timer thread of each worker every ``PUSH_SECONDS`` and in the worker
that answers a scrape just before it collects, so another worker's last second may show in the next
scrape. benchmarks/metrics_overhead.py measures it against the same server with ``NBSERVE_METRICS=0``.

Metrics (labels ``model`` and ``version`` everywhere; ``method`` is the model's method, or ``other``
for any other route, so that odd paths cannot grow the label set):

* ``nbserve_request_duration_seconds`` histogram (+ ``status``), buckets from 1 ms to the request timeout;
* ``nbserve_requests_total`` (+ ``status``), ``nbserve_requests_in_progress`` (live sum over workers);
* ``nbserve_request_rows`` histogram: rows per model call;
* ``nbserve_model_errors_total`` (+ ``exception``): calls where the model raised;
* ``nbserve_drift_psi``, ``nbserve_drift_status`` (0 ok, 1 warn, 2 alert, -1 collecting, -2 not computed)
  per feature (+ ``role`` input/output, ``method``, ``feature``), ``nbserve_drift_detected`` (the overall flag) and
  ``nbserve_drift_window_rows``: computed from the merged worker windows when scraped.

Under gunicorn the metrics live in prometheus_client's multiprocess mode: gunicorn_conf.py gives each
instance its own ``PROMETHEUS_MULTIPROC_DIR`` (wiped at start) before the workers fork and marks dead
workers; the worker that answers a scrape sums every worker's files. Without it (Flask's test client, a
plain ``make_app``) each app counts in a registry of its own.

The request log line: ``{"time", "request_id", "http", "path", "method", "status", "duration_ms",
"rows"}``; the request id is the client's ``X-Request-ID`` when it sends one (up to 128 printable
characters), else a fresh one, and is echoed back in the response's ``X-Request-ID``. Request bodies are
never logged unless ``NBSERVE_REQUEST_LOG=bodies`` (``serve(..., request_log="bodies")``); the polls
of /health, /metrics, /drift and /batching (a panel or a sidebar asks every few seconds) are not logged.
Lines are written in batches, at the latest a second later.
``NBSERVE_METRICS=0`` turns metrics, drift and the log off.

With a bearer token set, /metrics and /drift need it like every route but /health (guards.py).
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left

from . import drift as _drift
from . import jsonio

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SWITCH_ENV = "NBSERVE_METRICS"
LOG_ENV = "NBSERVE_REQUEST_LOG"
QUIET_PATHS = frozenset({"/health", "/metrics", "/drift", "/batching"})  # polls: not requests to the model
STEPS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000)
ROW_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 100000)
MAX_REQUEST_ID = 128
PUSH_SECONDS = 1.0
LOG_BATCH = 64  # log lines buffered before one write (or a second)
BODY_LOG_LIMIT = 65536


def buckets(timeout: float) -> list[float]:
    """Duration buckets from 1 ms up to the request timeout (which is the last finite bucket); with no
    timeout (0), up to 10 minutes."""
    top = float(timeout) if timeout else 600.0
    return [b for b in STEPS if b < top] + [top]


def enabled() -> bool:
    return os.environ.get(SWITCH_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def split_model_id(model_id: str) -> tuple[str, str]:
    name, sep, version = str(model_id).rpartition(":")
    return (name, version) if sep and version.isdigit() else (str(model_id), "")


def install(app, methods: dict, manifest: dict, model_id: str, timeout: float, error) -> dict:
    """Add /metrics, /drift and the request log to ``app``; returns ``methods`` wrapped to count rows,
    model errors and feed the drift window. A no-op (methods as they are) with NBSERVE_METRICS=0 or
    without prometheus_client, then /metrics and /drift answer 404 with a JSON error saying why."""
    from flask import Response

    why_off = None
    if not enabled():
        why_off = f"metrics are off for this instance ({SWITCH_ENV}=0)"
    else:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            why_off = "prometheus_client is not installed in the server's environment"
    if why_off:

        @app.get("/metrics")
        def metrics_off():
            return error(404, "MetricsOff", why_off)

        @app.get("/drift")
        def drift_off():
            return error(404, "MetricsOff", why_off)

        return methods

    obs = Observer(manifest, model_id, timeout, list(methods))
    app.wsgi_app = obs.middleware(app.wsgi_app)

    @app.get("/metrics")
    def metrics_view():
        body, content_type = obs.exposition()
        return Response(body, content_type=content_type)

    @app.get("/drift")
    def drift_view():
        return Response(jsonio.dumps(obs.monitor.report(model_id)), mimetype="application/json")

    return {name: obs.wrap(name, fn) for name, fn in methods.items()}


class Observer:
    def __init__(self, manifest, model_id, timeout, method_names):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.directory = os.environ.get(MULTIPROC_ENV) or None
        self.multiprocess = bool(self.directory) and _multiprocess_values()
        # multiprocess: nothing is registered anywhere (a scrape reads every worker's files); else one
        # registry per app, so many apps in one process (tests) do not collide
        self.registry = None if self.multiprocess else CollectorRegistry()
        self.model, self.version = split_model_id(model_id)
        self.methods = frozenset(method_names)
        base = ["model", "version", "method"]
        reg = self.registry
        self.duration = Histogram(
            "nbserve_request_duration_seconds",
            "Time to answer a request, by model method and HTTP status",
            base + ["status"],
            registry=reg,
            buckets=buckets(timeout),
        )
        self.requests = Counter("nbserve_requests", "Requests answered", base + ["status"], registry=reg)
        self.in_progress = Gauge(
            "nbserve_requests_in_progress",
            "Requests being answered now (summed over live workers)",
            ["model", "version"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.rows = Histogram("nbserve_request_rows", "Rows per model call", base, registry=reg, buckets=ROW_BUCKETS)
        self.errors = Counter(
            "nbserve_model_errors", "Model calls that raised, by exception type", base + ["exception"], registry=reg
        )
        self.monitor = _drift.Monitor(manifest.get("reference"), self.directory if self.multiprocess else None)
        self._gauge = self.in_progress.labels(self.model, self.version)
        self._bounds = [float(b) for b in buckets(timeout)]
        self._row_bounds = [float(b) for b in ROW_BUCKETS]
        self._tally: dict = {}  # (method, status) -> [counts per bucket (+Inf last), sum]
        self._row_tally: dict = {}  # method -> [counts per bucket, sum]
        self._tally_lock = threading.Lock()
        self._pid = None
        self._local = threading.local()
        mode = os.environ.get(LOG_ENV, "1").strip().lower()
        self.log = mode not in ("0", "false", "no", "off")
        self.log_bodies = mode == "bodies"
        self._second, self._stamp = None, ""
        self._lines: list = []

    # -- per request ---------------------------------------------------------------------------

    def _note(self, tally, key, bounds, value):
        i = bisect_left(bounds, value)
        with self._tally_lock:
            entry = tally.get(key)
            if entry is None:
                entry = tally[key] = [[0] * (len(bounds) + 1), 0.0]
            entry[0][i] += 1
            entry[1] += value

    def push(self) -> None:
        """Move the tallies into prometheus_client's values (the files a scrape reads)."""
        with self._tally_lock:
            tally, self._tally = self._tally, {}
            rows, self._row_tally = self._row_tally, {}
        for (method, status), (counts, total) in tally.items():
            _add(self.duration.labels(self.model, self.version, method, status), counts, total)
            self.requests.labels(self.model, self.version, method, status).inc(sum(counts))
        for method, (counts, total) in rows.items():
            _add(self.rows.labels(self.model, self.version, method), counts, total)

    def _start_pusher(self) -> None:
        # one per worker process (threads do not survive gunicorn's fork)
        import atexit

        self._pid = os.getpid()
        threading.Thread(target=self._pusher, name="nbserve-metrics", daemon=True).start()
        atexit.register(self.write_log)  # a worker that exits cleanly leaves no line behind

    def _pusher(self) -> None:
        pid = self._pid
        while pid == os.getpid():
            time.sleep(PUSH_SECONDS)
            try:
                self.write_log()
                if self._tally or self._row_tally:
                    self.push()
            except Exception:
                pass  # never let bookkeeping take a worker down

    def middleware(self, wsgi_app):
        local = self._local
        methods = self.methods
        gauge = self._gauge
        perf = time.perf_counter

        def observed(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path in QUIET_PATHS:
                return wsgi_app(environ, start_response)
            t0 = perf()
            rid = _request_id(environ.get("HTTP_X_REQUEST_ID"))
            seen = []

            def start(status, headers, exc_info=None):
                seen.append(status)
                headers.append(("X-Request-ID", rid))
                return start_response(status, headers, exc_info)

            body = self._read_body(environ) if self.log_bodies else None
            local.rows = None
            if self._pid != os.getpid():
                self._start_pusher()
            gauge.inc()
            try:
                return wsgi_app(environ, start)
            finally:
                gauge.dec()
                elapsed = perf() - t0
                status = seen[-1][:3] if seen else "500"
                method = path[1:] if path[1:] in methods else "other"
                self._note(self._tally, (method, status), self._bounds, elapsed)
                if self.log:
                    self._log(environ, path, method, status, elapsed, rid, local.rows, body)

        return observed

    def wrap(self, name, fn):
        local = self._local
        note, row_bounds = self._note, self._row_bounds
        monitor = self.monitor
        watch = monitor.enabled

        def call(data):
            n = _rows(data)
            local.rows = n
            if n is not None:
                note(self._row_tally, name, row_bounds, n)
            try:
                result = fn(data)
            except Exception as exc:
                self.errors.labels(self.model, self.version, name, type(exc).__name__).inc()
                raise
            if watch:
                monitor.add(name, data, result)
            return result

        call.__name__ = getattr(fn, "__name__", name)
        return call

    def _log(self, environ, path, method, status, elapsed, rid, rows, body):
        t = time.time()
        second = int(t)
        if second != self._second:  # strftime once a second, not per request
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry = {
            "time": f"{self._stamp}.{int((t - second) * 1000):03d}Z",
            "request_id": rid,
            "http": environ.get("REQUEST_METHOD"),
            "path": path,
            "method": method,
            "status": int(status),
            "duration_ms": round(elapsed * 1000, 3),
            "rows": rows,
        }
        if body is not None:
            entry["body"] = body.decode("utf-8", "replace")[:BODY_LOG_LIMIT]
        lines = self._lines
        lines.append(jsonio.dumps(entry))
        if len(lines) >= LOG_BATCH:
            self.write_log()

    def write_log(self) -> None:
        """Write the buffered log lines in one system call (a line per request costs ~3% CPU of a
        1-row request; the pusher thread writes what is left every second)."""
        with self._tally_lock:
            lines, self._lines = self._lines, []
        if lines:
            try:
                os.write(2, b"\n".join(lines) + b"\n")
            except OSError:
                pass

    @staticmethod
    def _read_body(environ):
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

    # -- scrape --------------------------------------------------------------------------------

    def exposition(self):
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        self.push()
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.directory)
        else:
            registry = CollectorRegistry()
            registry.register(_Forward(self.registry))
        registry.register(_DriftCollector(self))
        return generate_latest(registry), CONTENT_TYPE_LATEST


def _multiprocess_values() -> bool:
    """prometheus_client picks its value class when first imported: multiprocess only if the directory
    was in the environment by then (gunicorn_conf.py sees to it)."""
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


class _Forward:
    """A registry's metrics, collected into the scrape's registry beside the drift gauges."""

    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        return self.registry.collect()


class _DriftCollector:
    def __init__(self, obs: Observer):
        self.obs = obs

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        obs = self.obs
        if not obs.monitor.enabled:
            return
        report = obs.monitor.report(f"{obs.model}:{obs.version}")
        labels = ["model", "version", "role", "method", "feature"]
        psi = GaugeMetricFamily(
            "nbserve_drift_psi", "Population stability index of a feature against the reference", labels=labels
        )
        status = GaugeMetricFamily(
            "nbserve_drift_status",
            "Drift status of a feature: 0 ok, 1 warn, 2 alert, -1 collecting, -2 not computed",
            labels=labels,
        )
        for f in report["features"]:
            values = [obs.model, obs.version, f["role"], f["method"] or "", f["name"]]
            if f["psi"] is not None:
                psi.add_metric(values, f["psi"])
            status.add_metric(values, _drift.STATUS_CODES[f["status"]])
        detected = GaugeMetricFamily(
            "nbserve_drift_detected",
            "1 when at least half the input features drift (PSI at or over the alert threshold)",
            labels=["model", "version"],
        )
        detected.add_metric([obs.model, obs.version], 1.0 if report["drift"] else 0.0)
        window = GaugeMetricFamily(
            "nbserve_drift_window_rows", "Rows in the live drift window (all workers)", labels=["model", "version"]
        )
        window.add_metric([obs.model, obs.version], report["window"]["rows"])
        yield from (psi, status, detected, window)


def _add(child, counts, total) -> None:
    """Add tallied observations to a histogram child: its (non-cumulative) bucket values and sum."""
    buckets, value_sum = getattr(child, "_buckets", None), getattr(child, "_sum", None)
    if buckets is None or value_sum is None or len(buckets) != len(counts):  # pragma: no cover
        raise RuntimeError("unexpected prometheus_client Histogram layout")
    for bucket, n in zip(buckets, counts):
        if n:
            bucket.inc(n)
    value_sum.inc(total)


def _rows(data):
    try:
        return len(data)
    except TypeError:
        return None


def _request_id(given):
    if given and len(given) <= MAX_REQUEST_ID and given.isprintable():
        return given
    return os.urandom(8).hex()
