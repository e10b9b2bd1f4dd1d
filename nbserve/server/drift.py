"""Input and output drift against the registration sample.

At registration (nbserve/capture/reference.py) the manifest gets a compact ``reference``: for every
feature of the input (a DataFrame column, a column of a 2-d array) and of each method's output, how the
sample spread over a few bins. A number has quantile edges (deciles of the sample) and the share of
the sample in each bin; a category (strings, booleans, pandas categories) has its most frequent values
and their shares, plus one share for every other value; both also have the share of nulls.

The server bins what it receives by the very same edges (``count``, shared with the capture side, so
both sides bin alike) and keeps only those counts: the requests themselves are never kept, on disk or
elsewhere, once binned. Each worker holds a rolling window of counts (the last ``NBSERVE_DRIFT_WINDOW``
rows, 1000 by default, in blocks) and, under gunicorn, writes it as ``drift_<pid>.json`` into the
instance's metrics directory; ``GET /drift`` sums the windows of every worker and compares them with the
reference:

* the population stability index, PSI = sum((live - ref) * ln(live / ref)) over the bins (shares of 0
  count as 1e-4): below 0.1 ``ok``, from 0.1 ``warn``, from 0.25 ``alert`` (the usual rule of thumb);
* for numbers a two-sample Kolmogorov-Smirnov statistic on the binned distributions (the largest gap
  between the two cumulative shares at the bin edges; the exact statistic is at least that), with its
  asymptotic p-value; for categories Pearson's chi-squared against the reference shares, with a p-value
  from the Wilson-Hilferty approximation;
* a feature *drifts* when its PSI reaches the alert threshold; the answer's overall ``drift`` flag is
  set when at least half the input features drift (as Evidently's dataset drift does). Output features
  are reported beside the inputs and do not count towards that flag.

Dates are binned as days since 1970-01-01 (UTC for a column with a time zone) and durations as seconds,
whatever their unit (``"unit"`` in the feature's reference says so), so the edges read as numbers and a
date column compares alike whether the sample held seconds or nanoseconds. Nulls (NaN, None, NA, NaT) are
a bin of their own: a rise in the null share raises the PSI (and the chi-squared) like any other shift,
and each feature reports both null shares as ``null: {"reference", "live"}``; the KS statistic compares
the non-null values only. A column whose values cannot be binned (in the sample or live) is reported
with status ``not_computed`` and the ``reason``, never dropped silently nor given a number.

Below ``MIN_ROWS`` live rows a feature's status is ``collecting``: PSI on a handful of rows is noise.
Work per request is one list append; binning happens every ``FLUSH_EVERY`` requests, on the batch, or
within ``FLUSH_SECONDS`` by a timer thread of the worker. Imports nothing else from nbserve (it ships into images).
"""

from __future__ import annotations

import glob
import json
import math
import os
import threading
import time
from collections import deque
from typing import Any

from .dtypes import KINDS, kind_of_dtype

PSI_WARN = 0.1
PSI_ALERT = 0.25
OVERALL_SHARE = 0.5
MIN_ROWS = 100
EPS = 1e-4
WINDOW_ROWS = 1000
FLUSH_EVERY = 64  # requests buffered before binning them (or a second)
FLUSH_SECONDS = 1.0
QUANTILE_BINS = 10
TOP_CATEGORIES = 20
FILE_PREFIX = "drift_"

STATUS_CODES = {"ok": 0, "warn": 1, "alert": 2, "collecting": -1, "not_computed": -2}
DATE_UNIT = "days since 1970-01-01"
DURATION_UNIT = "seconds"


# -- features: the same on both sides ----------------------------------------------------------------


def features(value, prefix: str = "") -> list:
    """[(name, 1-d column)] of a model input or output: DataFrame columns by name, the columns of a
    2-d array as ``x0, x1, ...`` (``prefix[0], ...`` for an output), a 1-d array or Series as one
    feature. Anything else (nested lists, images, dicts) has no features: no drift for it."""
    import sys

    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame):
        return [(f"{prefix}{c}" if prefix else str(c), value[c]) for c in value.columns]
    if pd is not None and isinstance(value, pd.Series):
        return [(prefix or str(value.name or "x"), value)]
    if np is not None and isinstance(value, np.ndarray):
        if value.ndim == 1:
            return [(prefix or "x", value)]
        if value.ndim == 2 and value.shape[1] <= 1000:
            if prefix:
                return [(f"{prefix}[{j}]", value[:, j]) for j in range(value.shape[1])]
            return [(f"x{j}", value[:, j]) for j in range(value.shape[1])]
    return []


def is_numeric(column) -> bool:
    """Binned as numbers (dates and durations too) or as categories: the kind's entry in dtypes.py."""
    dtype = getattr(column, "dtype", None)
    return dtype is not None and KINDS[kind_of_dtype(dtype)].binned == "numeric"


def _time_unit(column) -> str | None:
    """The unit a date (or duration) column is binned in, None for other columns."""
    kind = getattr(getattr(column, "dtype", None), "kind", "O")
    return DATE_UNIT if kind == "M" else DURATION_UNIT if kind == "m" else None


def _numbers(column, unit: str | None = None):
    """A float64 array of a numeric column, NaN for nulls. Dates in days since 1970-01-01 (UTC where the
    column has a time zone) and durations in seconds when ``unit`` says so; without a unit (references
    stored before units existed) as the integers of the column's own unit, as they were binned then."""
    import numpy as np

    if unit is not None or getattr(getattr(column, "dtype", None), "kind", "O") in "mM":
        arr = _naive_times(column)
        nat = np.isnat(arr)
        if unit == DATE_UNIT:
            out = (arr - np.datetime64(0, "s")) / np.timedelta64(1, "D")
        elif unit == DURATION_UNIT:
            out = arr / np.timedelta64(1, "s")
        else:
            out = arr.astype("int64").astype("float64")
        out = np.asarray(out, dtype="float64")
        out[nat] = np.nan
        return out
    arr = column.to_numpy() if hasattr(column, "to_numpy") else np.asarray(column)
    try:
        return arr.astype("float64")
    except (TypeError, ValueError):  # nullable pandas integers with NA
        return np.asarray(column.astype("Float64").to_numpy(dtype="float64", na_value=np.nan))


def _naive_times(column):
    """A numpy datetime64/timedelta64 array of a date or duration column; one with a time zone in UTC."""
    import numpy as np

    tz = getattr(getattr(column, "dtype", None), "tz", None)
    if tz is not None:  # pandas hands tz-aware values out as Timestamp objects: convert, then drop the zone
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    return column.to_numpy() if hasattr(column, "to_numpy") else np.asarray(column)


def _labels(column) -> list:
    """Category labels as strings (None for nulls: None, NaN, pandas' NA and NaT), as the reference stores them."""
    values = column.tolist() if hasattr(column, "tolist") else list(column)
    out: list[str | None] = []
    for v in values:
        if v is None or (isinstance(v, float) and v != v) or type(v).__name__ in ("NAType", "NaTType"):
            out.append(None)
        elif isinstance(v, bool) or type(v).__name__ == "bool_":
            out.append("true" if v else "false")
        else:
            out.append(str(v))
    return out


def count(spec: dict, column):
    """Counts of ``column`` in the bins of ``spec`` (numbers: one per bin, then nulls; categories: one per
    known value, one for any other value, then nulls), as a numpy int64 array."""
    import numpy as np

    if spec["kind"] == "numeric":
        x = _numbers(column, spec.get("unit"))
        null = np.isnan(x)
        edges = np.asarray(spec["edges"], dtype="float64")
        idx = np.searchsorted(edges, x[~null], side="right")
        counts = np.bincount(idx, minlength=len(edges) + 1)
        return np.append(counts, int(null.sum())).astype("int64")
    values = spec["values"]
    index = {v: i for i, v in enumerate(values)}
    counts = np.zeros(len(values) + 2, dtype="int64")
    other, null = len(values), len(values) + 1
    for label in _labels(column):
        counts[null if label is None else index.get(label, other)] += 1
    return counts


def reference_spec(name: str, column) -> dict:
    """The reference of one feature from the sample's column: bins and their shares."""
    import numpy as np

    n = len(column)
    if is_numeric(column):
        unit = _time_unit(column)
        x = _numbers(column, unit)
        finite = x[~np.isnan(x)]
        if len(finite):
            qs = np.quantile(finite, np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1])
            # dates keep seconds (about 11 digits of days): 6 digits would round them to a tenth of a day
            edges = sorted({float(_round(q, 11 if unit else 6)) for q in qs})
        else:
            edges = []
        spec: dict[str, Any] = {"name": name, "kind": "numeric", "edges": edges}
        if unit:
            spec["unit"] = unit
    else:
        labels = [v for v in _labels(column) if v is not None]
        freq: dict = {}
        for v in labels:
            freq[v] = freq.get(v, 0) + 1
        top = sorted(freq, key=lambda v: (-freq[v], v))[:TOP_CATEGORIES]
        spec = {"name": name, "kind": "categorical", "values": top}
    counts = count(spec, column)
    spec["shares"] = [_round(c / n) for c in counts[:-1]] if n else []
    spec["null"] = _round(counts[-1] / n) if n else 0.0
    return spec


def unsupported_spec(name: str, exc: Exception) -> dict:
    """The reference of a feature whose sample column cannot be binned: reported, never compared."""
    return {"name": name, "kind": "unsupported", "reason": f"its values cannot be binned ({_why(exc)})"}


def _why(exc: Exception) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:160]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _round(x: float, digits: int = 6) -> float:
    return float(f"{float(x):.{digits}g}")


# -- statistics ------------------------------------------------------------------------------------


def psi(ref: list, live: list) -> float:
    total = 0.0
    for e, a in zip(ref, live):
        e, a = max(e, EPS), max(a, EPS)
        total += (a - e) * math.log(a / e)
    return total


def _kolmogorov_p(d: float, n: int, m: int) -> float:
    """Asymptotic p-value of a two-sample KS statistic d for samples of n and m."""
    if d <= 0 or n == 0 or m == 0:
        return 1.0
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * d
    total = 0.0
    for k in range(1, 101):
        term = 2 * (-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-10:
            break
    return min(max(total, 0.0), 1.0)


def _chi2_p(stat: float, dof: int) -> float:
    """P(chi2_dof >= stat) by the Wilson-Hilferty normal approximation (no scipy on the served side)."""
    if dof <= 0:
        return 1.0
    z = ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


def not_computed(spec: dict, reason: str, rows: int = 0) -> dict:
    """A feature /drift reports without a verdict, and why."""
    return {
        "name": spec["name"],
        "kind": spec["kind"],
        "rows": rows,
        "reference": {"shares": []},
        "live": {"shares": []},
        "null": None,
        "psi": None,
        "test": None,
        "statistic": None,
        "p_value": None,
        "status": "not_computed",
        "drifted": False,
        "reason": reason,
    }


def compare(spec: dict, counts, ref_rows: int) -> dict:
    """One feature's drift: PSI, the test statistic and p-value, the status, both distributions."""
    if spec["kind"] == "unsupported":
        return not_computed(spec, spec.get("reason") or "its sample values cannot be binned")
    live_rows = int(sum(counts))
    ref_shares = list(spec["shares"]) + [spec.get("null", 0.0)]
    live_shares = [c / live_rows for c in counts] if live_rows else [0.0] * len(ref_shares)
    out = {
        "name": spec["name"],
        "kind": spec["kind"],
        "rows": live_rows,
        "reference": {"shares": ref_shares},
        "live": {"shares": [_round(s) for s in live_shares]},
    }
    out["null"] = {"reference": ref_shares[-1], "live": out["live"]["shares"][-1]}
    if spec["kind"] == "numeric":
        out["reference"]["edges"] = spec["edges"]
        if spec.get("unit"):
            out["unit"] = spec["unit"]
    else:
        out["reference"]["values"] = spec["values"]
    if live_rows < MIN_ROWS:
        out.update(psi=None, test=None, statistic=None, p_value=None, status="collecting", drifted=False)
        return out
    value = psi(ref_shares, live_shares)
    if spec["kind"] == "numeric":
        ref_nn, live_nn = ref_shares[:-1], live_shares[:-1]
        rs, ls = sum(ref_nn) or 1.0, sum(live_nn) or 1.0
        cr = cl = d = 0.0
        for e, a in zip(ref_nn, live_nn):
            cr, cl = cr + e / rs, cl + a / ls
            d = max(d, abs(cr - cl))
        test, stat, p = "ks", d, _kolmogorov_p(d, ref_rows, live_rows)
    else:
        stat = 0.0
        dof = -1
        for e, c in zip(ref_shares, counts):
            if e <= 0 and c == 0:
                continue
            expected = max(e, EPS) * live_rows
            stat += (c - expected) ** 2 / expected
            dof += 1
        test, p = "chi2", _chi2_p(stat, dof)
    status = "alert" if value >= PSI_ALERT else "warn" if value >= PSI_WARN else "ok"
    out.update(
        psi=_round(value),
        test=test,
        statistic=_round(stat),
        p_value=_round(p),
        status=status,
        drifted=status == "alert",
    )
    return out


# -- the live side ---------------------------------------------------------------------------------


class Monitor:
    """One worker's live counts over a rolling window, and the merged answer of /drift."""

    def __init__(self, reference: dict | None, directory: str | None = None, window: int | None = None):
        self.reference: dict = reference or {}
        self.directory = directory
        self.window = int(window or os.environ.get("NBSERVE_DRIFT_WINDOW") or WINDOW_ROWS)
        self.enabled = bool(self.reference and (self.reference.get("input") or self.reference.get("outputs")))
        self._buffer: list = []
        self._blocks: deque = deque()  # (rows, {key: counts}) oldest first
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._dirty = False
        self._specs: dict = {}
        self._errors: dict = {}  # key -> why its live values could not be binned (this worker)
        if self.enabled:
            for spec in self.reference.get("input", []):
                self._specs[("input", "", spec["name"])] = spec
            for method, specs in self.reference.get("outputs", {}).items():
                for spec in specs:
                    self._specs[("output", method, spec["name"])] = spec

    def add(self, method: str, data, result) -> None:
        """Note one request's input and output (kept in memory until the next flush bins them)."""
        if self._pid != os.getpid():
            self._start_timer()
        with self._lock:
            self._buffer.append((method, data, result))
            due = len(self._buffer) >= FLUSH_EVERY
        if due:
            self.flush()

    def _start_timer(self) -> None:
        # one per worker process (threads do not survive gunicorn's fork): an idle worker still hands
        # its last requests to the merged window within FLUSH_SECONDS
        self._pid = os.getpid()
        threading.Thread(target=self._timer, name="nbserve-drift", daemon=True).start()

    def _timer(self) -> None:
        pid = self._pid
        while pid == os.getpid():
            time.sleep(FLUSH_SECONDS)
            try:
                self.flush()
                self.publish()
            except Exception:
                pass  # never let drift bookkeeping take a worker down

    def flush(self) -> None:
        with self._lock:
            buf, self._buffer = self._buffer, []
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

    def _bin(self, buf):
        inputs = [d for _, d, _ in buf]
        by_method: dict = {}
        for method, _, result in buf:
            by_method.setdefault(method, []).append(result)
        counts: dict = {}
        rows = 0

        def add(key, spec, cols):
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


def _concat(items):
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


def forget_worker(directory: str, pid: int) -> None:
    """Drop a dead worker's window (gunicorn's child_exit), as prometheus_client drops its live gauges."""
    try:
        os.remove(os.path.join(directory, f"{FILE_PREFIX}{pid}.json"))
    except OSError:
        pass
