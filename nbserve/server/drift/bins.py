"""Drift's features and bins, the same on both sides: the capture side (nbserve/capture/reference.py) bins the
registration sample with them, the served side (monitor.py) bins live requests by the very same edges."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..dtypes import KINDS, kind_of_dtype

if TYPE_CHECKING:
    import numpy as np

QUANTILE_BINS = 10
TOP_CATEGORIES = 20
DATE_UNIT = "days since 1970-01-01"
DURATION_UNIT = "seconds"


def features(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
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


def is_numeric(column: Any) -> bool:
    """Binned as numbers (dates and durations too) or as categories: the kind's entry in dtypes.py."""
    dtype = getattr(column, "dtype", None)
    return dtype is not None and KINDS[kind_of_dtype(dtype)].binned == "numeric"


def _time_unit(column: Any) -> str | None:
    """The unit a date (or duration) column is binned in, None for other columns."""
    kind = getattr(getattr(column, "dtype", None), "kind", "O")
    return DATE_UNIT if kind == "M" else DURATION_UNIT if kind == "m" else None


def _numbers(column: Any, unit: str | None = None) -> np.ndarray:
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


def _naive_times(column: Any) -> np.ndarray:
    """A numpy datetime64/timedelta64 array of a date or duration column; one with a time zone in UTC."""
    import numpy as np

    tz = getattr(getattr(column, "dtype", None), "tz", None)
    if tz is not None:  # pandas hands tz-aware values out as Timestamp objects: convert, then drop the zone
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    return column.to_numpy() if hasattr(column, "to_numpy") else np.asarray(column)


def _labels(column: Any) -> list[str | None]:
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


def count(spec: dict, column: Any) -> np.ndarray:
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


def reference_spec(name: str, column: Any) -> dict:
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
