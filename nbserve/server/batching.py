"""Adaptive batching: many small concurrent requests to one model, run as few model calls.

Opt-in per instance (``serve(..., batch=True, max_batch=64, max_latency_ms=10)``, which the runtimes pass
as NBSERVE_BATCH, NBSERVE_MAX_BATCH, NBSERVE_MAX_LATENCY_MS; gunicorn_conf then picks the threaded worker
so that one worker holds many requests at once). Imports nothing else from nbserve but guards.

Each request is parsed and validated in its own thread, as without batching, so a bad request gets its own
400 and never reaches its neighbours. Valid inputs go into a queue that one model thread per worker
drains: it takes what is queued (up to ``max_batch`` rows), concatenates it, makes one model call and
splits the answer back by each request's rows.

When to release a batch: BentoML's CorkDispatcher fits the batch cost as a line and waits while waiting
pays; Ray Serve's ``@serve.batch`` waits for a full batch or a timeout. Both guess at arrivals. The server
knows them: it counts the requests that were accepted and are being parsed (``incoming``), which will
reach the queue within a parse time. So the model thread runs what is queued as soon as nothing more is
on its way, waits only for requests that are (never longer than ``max_latency_ms`` after the oldest
queued one arrived), and never waits for a full batch. A lone request is not delayed at all; under load,
the requests that arrive while a batch computes form the next one.

Every model call of a worker runs on that one thread, batchable or not, as the sync worker ran them one
at a time: models need not be thread-safe. A request waits for its answer no longer than the request
deadline (guards): past it, it is answered 504 and the worker is replaced, as without batching.

``GET /batching`` tells what batching did in the worker that answers: model calls, requests per call, and
p50/p99/max of each request's wait in the queue and of the model calls (``?reset=1`` starts a new window).
"""

import collections
import os
import threading
import time

from .guards import RequestTimeout

DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_LATENCY_MS = 10.0
WINDOW = 10000  # requests (and model calls) that GET /batching summarizes


def settings(batch=None, max_batch=None, max_latency_ms=None):
    """(on, max rows per model call, max wait in ms), from the arguments, else the environment."""
    if batch is None:
        batch = os.environ.get("NBSERVE_BATCH", "") not in ("", "0")
    max_batch = int(max_batch or os.environ.get("NBSERVE_MAX_BATCH") or DEFAULT_MAX_BATCH)
    if max_latency_ms is None:
        max_latency_ms = os.environ.get("NBSERVE_MAX_LATENCY_MS") or DEFAULT_MAX_LATENCY_MS
    max_latency_ms = float(max_latency_ms)
    if max_batch < 1 or max_latency_ms < 0:
        raise ValueError(f"max_batch must be >= 1 and max_latency_ms >= 0, got {max_batch}, {max_latency_ms}")
    return bool(batch), max_batch, max_latency_ms


def batchable(input_schema) -> bool:
    """Inputs with a batch dimension: arrays whose first dimension is open, and DataFrames."""
    schema = input_schema or {}
    if schema.get("type") == "ndarray":
        shape = schema.get("shape") or []
        return len(shape) >= 1 and shape[0] is None
    return schema.get("type") == "dataframe"


def install(app, methods: dict, signature: dict, timeout: float, batch=None, max_batch=None, max_latency_ms=None):
    """When batching is on, the methods routed through one batcher per worker (else ``methods`` as is)."""
    on, max_batch, max_latency_ms = settings(batch, max_batch, max_latency_ms)
    if not on:
        return methods
    batcher = Batcher(max_batch, max_latency_ms / 1000.0, timeout)
    paths = {f"/{name}" for name in methods if batchable(signature.get(name, {}).get("input"))}
    app.wsgi_app = _CountIncoming(app.wsgi_app, batcher, paths)
    app.config["NBSERVE_BATCH"] = {"max_batch": max_batch, "max_latency_ms": max_latency_ms}

    @app.get("/batching")
    def batching_report():
        from flask import Response, request

        from . import jsonio

        report = batcher.report(reset=request.args.get("reset") in ("1", "true"))
        return Response(jsonio.dumps(report), mimetype="application/json")

    return {name: batcher.method(fn, f"/{name}" in paths, name) for name, fn in methods.items()}


class _Item:
    __slots__ = ("fn", "data", "rows", "key", "done", "result", "error", "abandoned", "arrived")

    def __init__(self, fn, data, rows, key):
        self.fn, self.data, self.rows, self.key = fn, data, rows, key
        self.done = threading.Event()
        self.result = self.error = None
        self.abandoned = False
        self.arrived = time.monotonic()


class Batcher:
    def __init__(self, max_batch: int, max_wait: float, timeout: float):
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.timeout = timeout or None
        self.cond = threading.Condition(threading.Lock())
        self.queue: list = []
        self.incoming = 0  # requests to a batchable method accepted and not yet queued (or refused)
        self.pid = None  # the process whose model thread runs (threads do not survive gunicorn's fork)
        self.calls = self.requests = 0
        # ms from a request's queueing to its model call
        self.waits: collections.deque = collections.deque(maxlen=WINDOW)
        self.computes: collections.deque = collections.deque(maxlen=WINDOW)  # ms per model call

    # -- request threads ----------------------------------------------------------------------------

    def method(self, fn, batched: bool, name: str):
        def call(data):
            return self.submit(fn, data, batched)

        call.__name__ = getattr(fn, "__name__", name)
        return call

    def arriving(self):
        with self.cond:
            self.incoming += 1

    def gone(self):
        """A counted request leaves without being queued (refused, or failed before its model call)."""
        with self.cond:
            self.incoming -= 1
            self.cond.notify()

    def submit(self, fn, data, batched):
        rows, key = _shape_key(data) if batched else (0, None)
        item = _Item(fn, data, rows, key)
        from flask import request

        counted = request.environ.pop("nbserve.incoming", False)
        with self.cond:
            if self.pid != os.getpid():
                self._start()
            if counted:
                self.incoming -= 1
            self.queue.append(item)
            self.cond.notify()
        if not item.done.wait(self.timeout):
            item.abandoned = True
            raise RequestTimeout
        if item.error is not None:
            raise item.error
        return item.result

    # -- the model thread ---------------------------------------------------------------------------

    def _start(self):
        self.pid = os.getpid()
        self.queue = [item for item in self.queue if not item.abandoned]
        threading.Thread(target=self._run, name="nbserve-batcher", daemon=True).start()

    def _take(self):
        with self.cond:
            while not self.queue:
                self.cond.wait()
            first = self.queue[0]
            if first.key is not None:
                release = first.arrived + self.max_wait
                while self.incoming > 0 and _rows(self.queue) < self.max_batch:
                    left = release - time.monotonic()
                    if left <= 0:
                        break
                    self.cond.wait(left)
            if first.key is None:  # not batchable: alone
                return [self.queue.pop(0)]
            taken, rows, rest = [], 0, []
            for item in self.queue:
                if item.key == first.key and (not taken or rows + item.rows <= self.max_batch):
                    taken.append(item)
                    rows += item.rows
                else:
                    rest.append(item)
            self.queue = rest
            return taken

    def _run(self):
        while True:
            items = [item for item in self._take() if not item.abandoned]
            if not items:
                continue
            began = time.monotonic()
            self.calls += 1
            self.requests += len(items)
            self.waits.extend((began - item.arrived) * 1e3 for item in items)
            if len(items) == 1:
                _call_one(items[0])
            else:
                self._call_batch(items)
            self.computes.append((time.monotonic() - began) * 1e3)

    def report(self, reset=False) -> dict:
        """What batching did in this worker: model calls, requests, and percentiles of the wait in the
        queue and of the model calls over the last WINDOW of them (``reset``: start a new window)."""
        waits, computes = sorted(self.waits), sorted(self.computes)
        report = {
            "pid": os.getpid(),
            "max_batch": self.max_batch,
            "max_latency_ms": self.max_wait * 1e3,
            "model_calls": self.calls,
            "requests": self.requests,
            "requests_per_call": round(self.requests / self.calls, 2) if self.calls else None,
            "window": {
                "requests": len(waits),
                "model_calls": len(computes),
                "wait_ms": _percentiles(waits),
                "call_ms": _percentiles(computes),
            },
        }
        if reset:
            self.waits.clear()
            self.computes.clear()
        return report

    @staticmethod
    def _call_batch(items):
        fn = items[0].fn
        try:
            result = fn(_concat([item.data for item in items]))
            parts = _split(result, [item.rows for item in items])
        except BaseException:
            parts = None
        if parts is None:
            for item in items:
                _call_one(item)
            return
        for item, part in zip(items, parts):
            item.result = part
            item.done.set()


def _percentiles(values):
    """p50, p99 and max of sorted ``values``, or None for none."""
    if not values:
        return None
    n = len(values)
    return {
        "p50": round(values[n // 2], 3),
        "p99": round(values[min(n - 1, int(0.99 * n))], 3),
        "max": round(values[-1], 3),
    }


def _call_one(item):
    try:
        item.result = item.fn(item.data)
    except BaseException as exc:
        item.error = exc
    item.done.set()


def _rows(queue):
    return sum(item.rows for item in queue)


def _shape_key(data):
    """(rows, what must match to share a model call): the column names and dtypes, or dtype and row shape."""
    if hasattr(data, "columns"):
        return len(data), tuple(zip(data.columns, data.dtypes))
    return data.shape[0], (data.dtype.str, data.shape[1:])


def _concat(parts):
    if hasattr(parts[0], "columns"):
        import pandas as pd

        return pd.concat(parts, ignore_index=True)
    import numpy as np

    return np.concatenate(parts)


def _split(result, rows):
    """The model's answer for all rows, cut back into each request's; None when it does not have one
    answer per row (then each request is run alone)."""
    total = sum(rows)
    try:
        if len(result) != total or isinstance(result, (str, bytes, dict)):
            return None
    except TypeError:
        return None
    take = result.iloc.__getitem__ if hasattr(result, "iloc") else result.__getitem__
    parts, start = [], 0
    for n in rows:
        parts.append(take(slice(start, start + n)))
        start += n
    return parts


class _CountIncoming:
    """WSGI middleware: counts requests to batchable methods from the moment they are accepted, so the
    model thread knows what is about to join the queue."""

    def __init__(self, wsgi_app, batcher: Batcher, paths: set):
        self.wsgi_app, self.batcher, self.paths = wsgi_app, batcher, paths

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") not in self.paths or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        self.batcher.arriving()
        environ["nbserve.incoming"] = True
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            if environ.pop("nbserve.incoming", False):  # never queued: a 4xx, or it failed on the way
                self.batcher.gone()
