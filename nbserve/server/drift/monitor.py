"""Drift's live side: one worker's window of binned requests, and the merged answer of GET /drift."""

from __future__ import annotations

import glob
import json
import os
import random
import threading
import time
from collections import deque
from typing import Any

from .. import housekeeping
from .bins import _why, count, features
from .stats import MIN_ROWS, OVERALL_SHARE, PSI_ALERT, PSI_WARN, compare, not_computed

WINDOW_ROWS = 1000
SAMPLE_REQUESTS = 256  # requests kept for binning per flush (a uniform sample of them under heavier load)
FLUSH_SECONDS = 1.0
FILE_PREFIX = "drift_"


class Monitor:
    """One worker's live counts over a rolling window, and the merged answer of /drift."""

    def __init__(self, reference: dict | None, directory: str | None = None, window: int | None = None):
        self.reference: dict = reference or {}
        self.directory = directory
        self.window = int(window or WINDOW_ROWS)
        self.enabled = bool(self.reference and (self.reference.get("input") or self.reference.get("outputs")))
        if self.enabled:  # in each worker (the thread starts after gunicorn's fork), or at once outside gunicorn
            housekeeping.every(FLUSH_SECONDS, self._tick, "drift")
        self._buffer: list = []
        self._seen = 0  # requests since the last flush (the sample's denominator)
        self._blocks: deque = deque()  # (rows, {key: counts}) oldest first
        self._lock = threading.Lock()
        self._dirty = False
        self._specs: dict = {}
        self._errors: dict = {}  # key -> why its live values could not be binned (this worker)
        if self.enabled:
            for spec in self.reference.get("input", []):
                self._specs[("input", "", spec["name"])] = spec
            for method, specs in self.reference.get("outputs", {}).items():
                for spec in specs:
                    self._specs[("output", method, spec["name"])] = spec

    def add(self, method: str, data: Any, result: Any) -> None:
        """Note one request's input and output (references only; binned later on the housekeeping thread).
        Past SAMPLE_REQUESTS in one flush interval, a uniform sample of them is kept (reservoir sampling)."""
        seen = self._seen = self._seen + 1
        buffer = self._buffer
        if len(buffer) < SAMPLE_REQUESTS:
            buffer.append((method, data, result))
        else:
            slot = int(random.random() * seen)
            if slot < SAMPLE_REQUESTS:
                buffer[slot] = (method, data, result)

    def _tick(self) -> None:
        self.flush()
        self.publish()

    def flush(self) -> None:
        with self._lock:  # the housekeeping thread and a /drift request may both flush
            buf, self._buffer, self._seen = self._buffer, [], 0
        if not buf:
            return
        block = self._bin(buf)
        if block is None:
            return
        with self._lock:
            self._blocks.append(block)
            total = sum(r for r, _ in self._blocks)
            while len(self._blocks) > 1 and total - self._blocks[0][0] >= self.window:
                total -= self._blocks.popleft()[0]
            self._dirty = True

    def publish(self) -> None:
        """Write this worker's window for the others to merge (at most once a second, by the timer,
        and before answering /drift): never on a request's way."""
        if not self.directory or not self._dirty:
            return
        with self._lock:
            self._dirty = False
            window = self._window_counts()
        self._write(window)

    def _bin(self, buf: list[tuple[str, Any, Any]]) -> tuple[int, dict] | None:
        inputs = [d for _, d, _ in buf]
        by_method: dict = {}
        for method, _, result in buf:
            by_method.setdefault(method, []).append(result)
        counts: dict = {}
        rows = 0

        def add(key: str, spec: dict, cols: dict) -> None:
            if spec["kind"] == "unsupported" or spec["name"] not in cols:
                return
            try:
                counts[key] = count(spec, cols[spec["name"]])
            except Exception as exc:  # one column that will not bin is reported, the others still count
                self._errors[key] = f"live values cannot be binned ({_why(exc)})"

        try:
            batch = _concat(inputs)
            cols = dict(features(batch))
            rows = len(batch)
            for spec in self.reference.get("input", []):
                add("input||" + spec["name"], spec, cols)
            for method, results in by_method.items():
                specs = self.reference.get("outputs", {}).get(method)
                if not specs:
                    continue
                cols = dict(features(_concat(results), prefix=method))
                for spec in specs:
                    add(f"output|{method}|{spec['name']}", spec, cols)
        except Exception:  # drift must never fail a request: a batch that will not bin is skipped
            return None
        return rows, counts

    def _window_counts(self) -> dict:
        merged: dict = {}
        rows = 0
        for r, counts in self._blocks:
            rows += r
            for key, c in counts.items():
                merged[key] = merged[key] + c if key in merged else c.copy()
        return {
            "rows": rows,
            "counts": {k: v.tolist() for k, v in merged.items()},
            "errors": dict(self._errors),
            "updated": time.time(),
        }

    def _write(self, window: dict) -> None:
        assert self.directory is not None  # written only where a directory was given
        path = os.path.join(self.directory, f"{FILE_PREFIX}{os.getpid()}.json")
        tmp = f"{path}.{threading.get_ident()}.tmp"
        with open(tmp, "w") as f:
            json.dump(window, f)
        os.replace(tmp, path)

    def merged(self) -> tuple[int, int, dict, dict]:
        """(rows, workers, {key: counts}, {key: error}) over every worker's window (this one flushed first)."""
        self.flush()
        self.publish()
        windows = []
        if self.directory:
            for path in glob.glob(os.path.join(self.directory, f"{FILE_PREFIX}*.json")):
                try:
                    with open(path) as f:
                        windows.append(json.load(f))
                except (OSError, ValueError):
                    continue  # a worker just replacing its file, or one that died mid-write
        else:
            with self._lock:
                windows.append(self._window_counts())
        rows, merged, errors = 0, {}, {}  # type: ignore[var-annotated]
        for w in windows:
            rows += w.get("rows", 0)
            errors.update(w.get("errors", {}))
            for key, c in w.get("counts", {}).items():
                merged[key] = [a + b for a, b in zip(merged[key], c)] if key in merged else list(c)
        return rows, len(windows), merged, errors

    def report(self, model_id: str) -> dict:
        """What GET /drift answers (see the module's docstring)."""
        thresholds = {
            "psi_warn": PSI_WARN,
            "psi_alert": PSI_ALERT,
            "min_rows": MIN_ROWS,
            "overall_share": OVERALL_SHARE,
        }
        if not self.enabled:
            return {
                "model": model_id,
                "available": False,
                "reason": "no reference: the model was registered without a sample (or one with no "
                "columns to compare); register it with sample=... to watch for drift",
                "thresholds": thresholds,
                "features": [],
                "drift": False,
            }
        rows, workers, merged, errors = self.merged()
        ref_rows = int(self.reference.get("rows", 0))
        feats = []
        for (role, method, name), spec in self._specs.items():
            key = f"{role}|{method}|{name}"
            if key in errors:
                feature = not_computed(spec, errors[key], rows=int(sum(merged.get(key) or [])))
            else:
                counts = merged.get(key) or [0] * (len(spec.get("shares", [])) + 1)
                feature = compare(spec, counts, ref_rows)
            feats.append({"role": role, "method": method or None, **feature})
        inputs = [f for f in feats if f["role"] == "input" and f["status"] != "not_computed"]
        drifted = [f["name"] for f in inputs if f["drifted"]]
        judged = [f for f in inputs if f["status"] != "collecting"]
        return {
            "model": model_id,
            "available": True,
            "window": {"rows": rows, "size": self.window, "workers": workers},
            "reference_rows": ref_rows,
            "thresholds": thresholds,
            "features": feats,
            "drifted_features": drifted,
            "drifted_outputs": [f"{f['method']}:{f['name']}" for f in feats if f["role"] == "output" and f["drifted"]],
            "drift": bool(judged) and len(drifted) >= OVERALL_SHARE * len(inputs),
        }


def _concat(items: list) -> Any:
    import sys

    first = items[0]
    if len(items) == 1:
        return first
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(first, (pd.DataFrame, pd.Series)):
        return pd.concat(items, ignore_index=True)
    if np is not None and isinstance(first, np.ndarray):
        return np.concatenate(items)
    return first


def version_directory(directory: str | None, model_id: str) -> str | None:
    """Where the workers' windows of one served version go: a split serves several from one worker (routing.py)."""
    if not directory:
        return None
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in str(model_id))[:100]
    path = os.path.join(directory, f"drift-{safe}")
    os.makedirs(path, exist_ok=True)
    return path


def forget_worker(directory: str, pid: int) -> None:
    """Drop a dead worker's windows (gunicorn's child_exit), as prometheus_client drops its live gauges."""
    for path in [directory, *glob.glob(os.path.join(directory, "drift-*"))]:
        try:
            os.remove(os.path.join(path, f"{FILE_PREFIX}{pid}.json"))
        except OSError:
            pass
