"""Adaptive batching: many small concurrent requests to one model, run as few model calls.

Opt-in per instance (``serve(..., batch=True, max_batch=64, max_latency_ms=10)``: Settings.batch, max_batch,
max_latency_ms). Imports nothing else from nbserve.

The worker (worker.py) reads whole requests without blocking; when it has several ready for batchable methods
(arrays with an open first dimension, DataFrames) it hands them to ``Batcher.run_together`` at once, which
runs each request's app on a helper thread, **one thread at a time** (the main thread waits while one runs):
each request is parsed and validated as without batching, so a bad request gets its own 400 and never
reaches its neighbours, until its model call, where the thread parks. Once every request has either answered
or parked, the main thread makes one model call per group of parked inputs that can be joined (same columns
and dtypes, or same dtype and row shape; up to ``max_batch`` rows), cuts the answer back by each request's
rows, and resumes the parked threads one by one to write their answers.

One thread runs Python at any time, so the model call never waits for the interpreter lock behind request
threads (what kept the threaded design of earlier versions below 2x), and the model is called from the main
thread only, one call at a time, as without batching: models need not be thread-safe, and the request
deadline (deadline.py) interrupts a batched call like any other.

When to run: the worker runs what is ready; if fewer than ``max_batch`` rows are ready and more requests are
being received right now, it reads on for at most ``max_latency_ms`` after the oldest ready one arrived (never
for a full batch: a lone request is not delayed). Under load, the requests that arrive while a batch computes
form the next one. The first parked request of a batch waits at most ``max_latency_ms`` while the others are
parsed: past it, the batch is called with what has parked so far and the rest form the next one.

``GET /batching`` tells what batching did in the worker that answers: model calls, requests per call, and
p50/p99/max of each request's wait and of the model calls (``?reset=1`` starts a new window).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .deadline import RequestTimeout
from .settings import DEFAULT_MAX_BATCH, DEFAULT_MAX_LATENCY_MS  # noqa: F401 - the panel's defaults

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from flask import Flask, Response

    from .deadline import Deadline
    from .http11 import Head
    from .settings import Settings

WINDOW = 10000  # requests (and model calls) that GET /batching summarizes


def batchable(input_schema: dict | None) -> bool:
    """Inputs with a batch dimension: arrays whose first dimension is open, and DataFrames."""
    schema = input_schema or {}
    if schema.get("type") == "ndarray":
        shape = schema.get("shape") or []
        return len(shape) >= 1 and shape[0] is None
    return schema.get("type") == "dataframe"


def install(app: Flask, methods: dict, signature: dict, settings: Settings, deadline: Deadline | None = None) -> dict:
    """When batching is on, the methods routed through one batcher per app (else ``methods`` as they are)."""
    if not settings.batch:
        return methods
    paths = {  # a streaming method answers item by item: its calls are not shared
        f"/{name}"
        for name in methods
        if batchable(signature.get(name, {}).get("input")) and not signature.get(name, {}).get("stream")
    }
    batcher = Batcher(settings.max_batch, settings.max_latency_ms / 1000.0, paths, deadline)
    app.nbserve_batching = batcher  # type: ignore[attr-defined]  # the worker looks for it
    app.config["NBSERVE_BATCH"] = {"max_batch": settings.max_batch, "max_latency_ms": settings.max_latency_ms}

    @app.get("/batching")
    def batching_report() -> Response:
        from flask import Response, request

        from . import jsonio

        report = batcher.report(reset=request.args.get("reset") in ("1", "true"))
        return Response(jsonio.dumps(report), mimetype="application/json")

    return {name: batcher.method(fn, f"/{name}" in paths, name) for name, fn in methods.items()}


class _Item:
    __slots__ = ("fn", "data", "rows", "key", "result", "error", "arrived")

    def __init__(self, fn: Callable[[Any], Any], data: Any, rows: int, key: tuple) -> None:
        self.fn, self.data, self.rows, self.key = fn, data, rows, key
        self.result: Any = None
        self.error: BaseException | None = None
        self.arrived = time.monotonic()


class _Helper:
    """A thread that runs one request's app at a time, handing control back and forth with the main thread."""

    def __init__(self, runner: Batcher) -> None:
        self.runner = runner
        self.go = threading.Semaphore(0)
        self.task: Callable[[], object] | None = None
        self.item: _Item | None = None  # set while parked at a model call
        self.thread = threading.Thread(target=self._loop, name="nbserve-batch", daemon=True)
        self.thread.nbserve_helper = self  # type: ignore[attr-defined]  # submit() finds its helper by its thread
        self.thread.start()

    def _loop(self) -> None:
        while True:
            self.go.acquire()
            task, self.task = self.task, None
            try:
                if task is not None:
                    task()
            except BaseException:
                pass
            self.item = None
            self.runner.back.release()

    def park(self, item: _Item) -> None:
        """Called on this helper's thread at a model call: wait for the main thread's batched call."""
        self.item = item
        self.runner.back.release()
        self.go.acquire()


class Batcher:
    def __init__(self, max_batch: int, max_wait: float, paths: set, deadline: Deadline | None = None) -> None:
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.paths = frozenset(paths)
        self.deadline = deadline
        self.back = threading.Semaphore(0)  # a helper gives control back to the main thread
        self.idle: list[_Helper] = []
        self.pid: int | None = None
        self.calls = self.requests = 0
        self.waits: collections.deque = collections.deque(maxlen=WINDOW)  # ms from arrival to the model call
        self.computes: collections.deque = collections.deque(maxlen=WINDOW)  # ms per model call

    # -- the worker's side ------------------------------------------------------------------------------

    def wants(self, head: Head) -> bool:
        """Whether a request (its parsed head) goes to a batchable method."""
        return head.method == "POST" and head.target.partition("?")[0] in self.paths

    def run_together(self, tasks: Iterable[Callable[[], object]]) -> None:
        """Run ``tasks`` (each answers one request: the app and the writing of its answer) so that their model
        calls are made together. Returns when every task has finished."""
        if self.pid != os.getpid():  # helper threads do not survive gunicorn's fork
            self.pid, self.idle = os.getpid(), []
        parked: list[_Helper] = []
        for task in tasks:
            first = parked[0].item if parked else None
            if first is not None and time.monotonic() - first.arrived >= self.max_wait:
                self._finish(parked)  # the first parked request has waited long enough: its batch goes now
                parked = []
            helper = self.idle.pop() if self.idle else _Helper(self)
            helper.task = task
            self._resume(helper, parked)
        self._finish(parked)

    def _finish(self, parked: list) -> None:
        """Make the parked requests' model calls, and let each write its answer (a request that parks again,
        at a second model call, joins the next round)."""
        while parked:
            self._call_batched([h.item for h in parked])
            resumed, parked = parked, []
            for helper in resumed:
                self._resume(helper, parked)

    def _resume(self, helper: _Helper, parked: list) -> None:
        helper.go.release()
        self.back.acquire()  # until it finishes or parks
        if helper.item is not None:
            parked.append(helper)
        else:
            self.idle.append(helper)

    # -- a request's model call -----------------------------------------------------------------------

    def method(self, fn: Callable[[Any], Any], batched: bool, name: str) -> Callable[[Any], Any]:
        def call(data: Any) -> Any:
            return self.submit(fn, data, batched)

        call.__name__ = getattr(fn, "__name__", name)
        return call

    def submit(self, fn: Callable[[Any], Any], data: Any, batched: bool) -> Any:
        helper = getattr(threading.current_thread(), "nbserve_helper", None)
        if not batched or helper is None or helper.runner is not self:
            self.calls += 1  # alone: a request not run by run_together (a lone one, a test client's)
            self.requests += 1
            return fn(data)
        rows, key = _shape_key(data)
        item = _Item(fn, data, rows, key)
        helper.park(item)
        if item.error is not None:
            raise item.error
        return item.result

    def _call_batched(self, items: list[_Item]) -> None:
        """On the main thread: one model call per group of items that can be joined, up to max_batch rows."""
        groups: dict = {}
        for item in items:
            groups.setdefault(item.key, []).append(item)
        for group in groups.values():
            start = 0
            while start < len(group):
                taken, rows = [group[start]], group[start].rows
                start += 1
                while start < len(group) and rows + group[start].rows <= self.max_batch:
                    taken.append(group[start])
                    rows += group[start].rows
                    start += 1
                self._call(taken)

    def _call(self, items: list[_Item]) -> None:
        began = time.monotonic()
        self.calls += 1
        self.requests += len(items)
        self.waits.extend((began - item.arrived) * 1e3 for item in items)
        deadline = self.deadline
        armed = deadline is not None and deadline.usable()
        try:
            if armed and deadline is not None:
                deadline.begin(f"a batch of {len(items)} requests")
            if len(items) == 1:
                _call_one(items[0])
            else:
                self._call_joined(items)
        except RequestTimeout as exc:
            for item in items:
                item.error = exc
        finally:
            if armed and deadline is not None:
                deadline.end()
        self.computes.append((time.monotonic() - began) * 1e3)

    @staticmethod
    def _call_joined(items: list[_Item]) -> None:
        fn = items[0].fn
        try:
            result = fn(_concat([item.data for item in items]))
            parts = _split(result, [item.rows for item in items])
        except RequestTimeout:
            raise
        except BaseException:
            parts = None
        if parts is None:
            for item in items:
                _call_one(item)
            return
        for item, part in zip(items, parts):
            item.result = part

    def report(self, reset: bool = False) -> dict:
        """What batching did in this worker: model calls, requests, and percentiles of the wait before the
        model call and of the model calls over the last WINDOW of them (``reset``: start a new window)."""
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


def _percentiles(values: Sequence[float]) -> dict | None:
    """p50, p99 and max of sorted ``values``, or None for none."""
    if not values:
        return None
    n = len(values)
    return {
        "p50": round(values[n // 2], 3),
        "p99": round(values[min(n - 1, int(0.99 * n))], 3),
        "max": round(values[-1], 3),
    }


def _call_one(item: _Item) -> None:
    try:
        item.result = item.fn(item.data)
    except RequestTimeout:
        raise
    except BaseException as exc:
        item.error = exc


def _shape_key(data: Any) -> tuple[int, tuple]:
    """(rows, what must match to share a model call): the column names and dtypes, or dtype and row shape."""
    if hasattr(data, "columns"):
        return len(data), tuple(zip(data.columns, data.dtypes))
    return data.shape[0], (data.dtype.str, data.shape[1:])


def _concat(parts: list) -> Any:
    if hasattr(parts[0], "columns"):
        import pandas as pd

        # each request's rows keep their own index: an answer keyed by it (pd.Series(p, index=df.index)) is cut
        # back with each request's labels, as the model alone would have answered it
        return pd.concat(parts)
    import numpy as np

    return np.concatenate(parts)


def _split(result: Any, rows: list[int]) -> list | None:
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
