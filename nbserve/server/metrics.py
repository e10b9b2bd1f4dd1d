"""Prometheus metrics of a served model, at ``GET /metrics`` (observe.py wires them in and feeds them).

Metrics (labels ``model`` and ``version`` everywhere; ``method`` is the model's method, or ``other`` for any
other route, so that odd paths cannot grow the label set):

* ``nbserve_request_duration_seconds`` histogram (+ ``status``), buckets from 1 ms to the request timeout;
* ``nbserve_requests_total`` (+ ``status``), ``nbserve_requests_in_progress`` (live sum over workers);
* ``nbserve_request_rows`` histogram: rows per model call;
* ``nbserve_model_errors_total`` (+ ``exception``): calls where the model raised;
* streamed answers (streaming.py): ``nbserve_stream_items_total``, ``nbserve_stream_first_item_seconds`` (time
  from the call to its first item), ``nbserve_stream_seconds`` (the whole stream) and ``nbserve_streams_total``
  (+ ``outcome``: complete, disconnected, timeout, error); items per second = items / stream seconds;
* a graph of stages (graph.py) adds, labelled by ``stage`` and ``stage_model`` (the stage's registered version):
  ``nbserve_stage_duration_seconds`` histogram (the stage's own time in a call of the graph) and
  ``nbserve_stage_errors_total`` (+ ``exception``): calls where that stage raised;
* ``nbserve_drift_psi``, ``nbserve_drift_status`` (0 ok, 1 warn, 2 alert, -1 collecting, -2 not computed)
  per feature (+ ``role`` input/output, ``method``, ``feature``), ``nbserve_drift_detected`` (the overall flag) and
  ``nbserve_drift_window_rows``: computed from the merged worker windows when scraped.

Under gunicorn the metrics live in prometheus_client's multiprocess mode: the master (master.py) gives each
instance its own ``PROMETHEUS_MULTIPROC_DIR`` (wiped at start) before prometheus_client is first imported
and marks dead workers; the worker that answers a scrape sums every worker's files. Without it (Flask's test
client, a plain ``make_app``) each app counts in a registry of its own. ``record`` is called off the
request's way (observe.py); benchmarks/metrics_overhead.py measures what it all costs per request.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from .drift.monitor import Monitor
    from .settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
STEPS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000)
ROW_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 100000)
PUSH_SECONDS = 1.0  # how often the housekeeping thread moves what requests noted into the metrics (observe.py)


def buckets(timeout: float) -> list[float]:
    """Duration buckets from 1 ms up to the request timeout (which is the last finite bucket); with no
    timeout (0), up to 10 minutes."""
    top = float(timeout) if timeout else 600.0
    return [b for b in STEPS if b < top] + [top]


def split_model_id(model_id: str) -> tuple[str, str]:
    name, sep, version = str(model_id).rpartition(":")
    return (name, version) if sep and version.isdigit() else (str(model_id), "")


def why_off(settings: Settings) -> str:
    if not settings.metrics:
        return "metrics are off for this instance (serve(..., metrics=True) turns them on; NBSERVE_METRICS=0)"
    return "prometheus_client is not installed in the server's environment"


class Metrics:
    """The model's Prometheus metrics; ``record`` adds a batch of requests' records to them."""

    @classmethod
    def make(cls, model_id: str, timeout: float, method_names: Iterable[str]) -> Metrics | None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            return None
        return cls(model_id, timeout, method_names)

    def __init__(self, model_id: str, timeout: float, method_names: Iterable[str]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.directory = os.environ.get(MULTIPROC_ENV) or None
        self.multiprocess = bool(self.directory) and _multiprocess_values()
        # multiprocess: nothing is registered anywhere (a scrape reads every worker's files); else one
        # registry per app, so many apps in one process (tests) do not collide
        self.registry = None if self.multiprocess else CollectorRegistry()
        self.model, self.version = split_model_id(model_id)
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
        # a reader that wants every request made before it asked waits until this passes its own clock
        self.published = Gauge(
            "nbserve_metrics_published_time_seconds",
            "Unix time up to which a live worker has published its requests (0: a process that serves none)",
            ["model", "version"],
            registry=reg,
            multiprocess_mode="liveall",  # per pid: the master and the job runner hold the gauge at 0
        )
        self.rows = Histogram("nbserve_request_rows", "Rows per model call", base, registry=reg, buckets=ROW_BUCKETS)
        self.errors = Counter(
            "nbserve_model_errors", "Model calls that raised, by exception type", base + ["exception"], registry=reg
        )
        self.stream_items = Counter("nbserve_stream_items", "Items sent by streamed answers", base, registry=reg)
        self.stream_first = Histogram(
            "nbserve_stream_first_item_seconds",
            "Time from a streaming call to its first item",
            base,
            registry=reg,
            buckets=buckets(timeout),
        )
        self.stream_seconds = Histogram(
            "nbserve_stream_seconds", "Duration of streamed answers", base, registry=reg, buckets=buckets(0)
        )
        self.streams = Counter(
            "nbserve_streams",
            "Streamed answers, by how they ended (complete, disconnected, timeout, error)",
            base + ["outcome"],
            registry=reg,
        )
        self._gauge = self.in_progress.labels(self.model, self.version)
        self._published_time = self.published.labels(self.model, self.version)
        self._timeout = timeout
        self._stage_children: list = []  # a graph's: per stage in running order, (duration, name, model id)
        self._bounds = [float(b) for b in buckets(timeout)]
        self._row_bounds = [float(b) for b in ROW_BUCKETS]
        self._published: int | None = None

    def record(self, records: Iterable[tuple], in_progress: int) -> None:
        """Add requests' records (observe.py's tuples) to the metrics: tallied here, then one update of each
        of prometheus_client's (memory-mapped, locked) values per label set, not one per request."""
        durations: dict = {}  # (method, status) -> [counts per bucket (+Inf last), sum]
        rows: dict = {}  # method -> [counts per bucket, sum]
        errors: dict = {}  # (method, exception) -> count
        for method, status, seconds, _rid, nrows, error, *_ in records:
            _tally(durations, (method, status), self._bounds, seconds)
            if nrows is not None and method != "other":
                _tally(rows, method, self._row_bounds, nrows)
            if error is not None:
                errors[(method, error)] = errors.get((method, error), 0) + 1
        for (method, status), (counts, total) in durations.items():
            _add(self.duration.labels(self.model, self.version, method, status), counts, total)
            self.requests.labels(self.model, self.version, method, status).inc(sum(counts))
        for method, (counts, total) in rows.items():
            _add(self.rows.labels(self.model, self.version, method), counts, total)
        for (method, error), n in errors.items():
            self.errors.labels(self.model, self.version, method, error).inc(n)
        if in_progress != self._published:
            self._gauge.set(in_progress)
            self._published = in_progress

    def mark_published(self, up_to: float) -> None:
        self._published_time.set(up_to)

    def record_streams(self, streams: Iterable[tuple[str, float, int, float, str]]) -> None:
        """Add ended streams' records (method, seconds to the first item, items, seconds, outcome)."""
        for method, to_first, items, seconds, outcome in streams:
            labels = (self.model, self.version, method)
            if items:
                self.stream_items.labels(*labels).inc(items)
                self.stream_first.labels(*labels).observe(to_first)
            self.stream_seconds.labels(*labels).observe(seconds)
            self.streams.labels(*labels, outcome).inc()

    def add_stages(self, stages: Iterable[tuple[str, str]]) -> None:
        """The per-stage metrics of a graph; ``stages``: [(name, stage version id)] in running order."""
        from prometheus_client import Counter, Histogram

        labels = ["model", "version", "stage", "stage_model"]
        self.stage_duration = Histogram(
            "nbserve_stage_duration_seconds",
            "Time a stage of a graph took in one call of the graph, by stage and the stage's version",
            labels,
            registry=self.registry,
            buckets=buckets(self._timeout),
        )
        self.stage_errors = Counter(
            "nbserve_stage_errors",
            "Calls of a graph in which this stage raised, by exception type",
            labels + ["exception"],
            registry=self.registry,
        )
        self._stage_children = [
            (self.stage_duration.labels(self.model, self.version, name, model_id), name, model_id)
            for name, model_id in stages
        ]

    def record_stages(self, records: Iterable[tuple[Sequence[float], str | None, str | None]]) -> None:
        """Add a graph's calls (graph.py's tuples: each stage's seconds in running order, the stage that
        raised and its exception) to the stage metrics, tallied first as ``record`` does."""
        children = self._stage_children
        tallies: list[list] = [[[0] * (len(self._bounds) + 1), 0.0] for _ in children]
        errors: dict = {}
        for seconds, failed, exception in records:
            for i, s in enumerate(seconds):
                entry = tallies[i]
                entry[0][bisect_left(self._bounds, s)] += 1
                entry[1] += s
            if failed is not None:
                errors[(failed, exception)] = errors.get((failed, exception), 0) + 1
        for (child, _name, _model_id), (counts, total) in zip(children, tallies):
            if any(counts):
                _add(child, counts, total)
        ids = {name: model_id for _child, name, model_id in children}
        for (name, exception), n in errors.items():
            self.stage_errors.labels(self.model, self.version, name, ids.get(name, ""), exception).inc(n)

    def exposition(self, monitor: Monitor | None = None) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry = CollectorRegistry()
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(registry, path=self.directory)
        elif self.registry is not None:  # always, when not multiprocess
            registry.register(_Forward(self.registry))
        if monitor is not None and monitor.enabled:
            registry.register(_DriftCollector(self, monitor))
        return generate_latest(registry), CONTENT_TYPE_LATEST


def _tally(table: dict, key: object, bounds: Sequence[float], value: float) -> None:
    entry = table.get(key)
    if entry is None:
        entry = table[key] = [[0] * (len(bounds) + 1), 0.0]
    entry[0][bisect_left(bounds, value)] += 1
    entry[1] += value


def _multiprocess_values() -> bool:
    """prometheus_client picks its value class when first imported: multiprocess only if the directory
    was in the environment by then (the master sees to it)."""
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


class _Forward:
    """A registry's metrics, collected into the scrape's registry beside the drift gauges."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


class _DriftCollector:
    def __init__(self, metrics: Metrics, monitor: Monitor) -> None:
        self.metrics, self.monitor = metrics, monitor

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        from .drift import STATUS_CODES

        m = self.metrics
        report = self.monitor.report(f"{m.model}:{m.version}")
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
            values = [m.model, m.version, f["role"], f["method"] or "", f["name"]]
            if f["psi"] is not None:
                psi.add_metric(values, f["psi"])
            status.add_metric(values, STATUS_CODES[f["status"]])
        detected = GaugeMetricFamily(
            "nbserve_drift_detected",
            "1 when at least half the input features drift (PSI at or over the alert threshold)",
            labels=["model", "version"],
        )
        detected.add_metric([m.model, m.version], 1.0 if report["drift"] else 0.0)
        window = GaugeMetricFamily(
            "nbserve_drift_window_rows", "Rows in the live drift window (all workers)", labels=["model", "version"]
        )
        window.add_metric([m.model, m.version], report["window"]["rows"])
        yield from (psi, status, detected, window)


def _add(child: Any, counts: Sequence[int], total: float) -> None:  # a Histogram's labelled child
    """Add tallied observations to a histogram child: its (non-cumulative) bucket values and sum."""
    buckets, value_sum = getattr(child, "_buckets", None), getattr(child, "_sum", None)
    if buckets is None or value_sum is None or len(buckets) != len(counts):  # pragma: no cover
        raise RuntimeError("unexpected prometheus_client Histogram layout")
    for bucket, n in zip(buckets, counts):
        if n:
            bucket.inc(n)
    value_sum.inc(total)
