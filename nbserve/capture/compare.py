"""Do two answers agree? The one comparison behind every proof: the kernel's answer against a clean
interpreter's (capture) and against the built image's (the readiness check of runtimes/).

Values are compared as JSON carries them (numpy arrays and pandas objects as nested lists), numbers
to float tolerance, as ``numpy.allclose`` would (rtol 1e-5, atol 1e-8); NaN equals NaN and null.
"""

from __future__ import annotations

import math

NONFINITE = ("Infinity", "-Infinity", "NaN")  # how JSON answers spell them (nbserve/server/dtypes.py)

RTOL, ATOL = 1e-5, 1e-8


def difference(
    expected, got, where: str = "data", here: str = "the kernel", there: str = "the image", rtol: float = RTOL
) -> str | None:
    """None when the answers agree, else where and how they differ first, e.g.
    ``data[0]: 0.0 in the kernel, 1.0 in the image``."""
    return _diff(plain(expected), plain(got), where, here, there, rtol)


def answers_differ(expected, got, rule: dict | None, where: str = "data", here="the kernel", there="the image"):
    """``difference`` by a version's proof rule (capture.proof_rule): values to float precision or within a
    relative tolerance (``{"compare": "values", "rtol": 0.05}``), or only shapes and dtypes (``"shapes"``)."""
    rule = rule or {}
    if rule.get("compare") == "shapes":
        return shape_difference(expected, got, where, here, there)
    return difference(expected, got, where, here, there, rule.get("rtol", RTOL))


def shape_difference(a, b, where: str = "data", here: str = "the kernel", there: str = "the image") -> str | None:
    """None when two answers have the same structure: type, shape and dtype of arrays, columns and dtypes of
    tables, keys of dicts, lengths of lists, the JSON type of scalars; their values may differ."""
    described = _structure(a), _structure(b)
    if described[0] != described[1]:
        return f"{where}: {described[0]} in {here}, {described[1]} in {there}"
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a:
            d = shape_difference(a[k], b[k], f"{where}[{k!r}]", here, there)
            if d:
                return d
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            d = shape_difference(x, y, f"{where}[{i}]", here, there)
            if d:
                return d
    return None


def _structure(value) -> str:
    """What shape_difference compares of one value, in words."""
    if hasattr(value, "dtypes") and hasattr(value, "columns"):  # a DataFrame
        return f"a table of {len(value)} rows with dtypes {dict(zip(map(str, value.columns), map(str, value.dtypes)))}"
    if hasattr(value, "dtype") and hasattr(value, "shape"):  # an array, a Series, a tensor
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, dict):
        return f"an object with keys {sorted(map(str, value))}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    if _is_number(value):
        return "a number or null"
    return type(value).__name__


def plain(value):
    """numpy arrays, pandas objects and numpy scalars as the lists and Python values JSON carries."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a tensor: its values, not grad_fn or device
        value = value.detach().cpu().numpy()
    if hasattr(value, "to_numpy"):  # pandas
        value = value.to_numpy()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _diff(a, b, where, here, there, rtol=RTOL):
    def differ(x, y):
        return f"{where}: {x!r} in {here}, {y!r} in {there}"

    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{where}: keys {sorted(map(str, a))} in {here}, {sorted(map(str, b))} in {there}"
        for k in a:
            d = _diff(a[k], b[k], f"{where}[{k!r}]", here, there, rtol)
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items in {here}, {len(b)} in {there}"
        if a and all(map(_is_number, a)) and all(map(_is_number, b)):
            gaps = [_gap(x, y, rtol) for x, y in zip(a, b)]
            i = max(range(len(gaps)), key=gaps.__getitem__)  # the first of the largest differences
            return f"{where}[{i}]: {a[i]!r} in {here}, {b[i]!r} in {there}" if gaps[i] > 0 else None
        for i, (x, y) in enumerate(zip(a, b)):
            d = _diff(x, y, f"{where}[{i}]", here, there, rtol)
            if d:
                return d
        return None
    if _is_number(a) and _is_number(b):
        return None if _gap(a, b, rtol) == 0 else differ(a, b)
    try:
        same = bool(a == b)
    except Exception:  # an object whose == is not a truth value
        same = repr(a) == repr(b)
    return None if same else differ(a, b)


def _is_number(x) -> bool:
    return (
        x is None
        or _pandas_missing(x)
        or (isinstance(x, str) and x in NONFINITE)
        or (isinstance(x, (int, float, complex)) and not isinstance(x, bool))
    )


def _pandas_missing(x) -> bool:
    """pandas' NA and NaT: missing values whose comparisons are not truth values (a frame's nullable columns)."""
    return type(x).__name__ in ("NAType", "NaTType")


def _missing(x) -> bool:
    # JSON writes NaN as null
    return x is None or _pandas_missing(x) or (isinstance(x, str) and x == "NaN") or (isinstance(x, float) and x != x)


def _gap(x, y, rtol=RTOL) -> float:
    """0 when equal to tolerance, else how far apart (inf when only one is missing)."""
    if _missing(x) or _missing(y):
        return 0.0 if _missing(x) and _missing(y) else math.inf
    x, y = _float(x), _float(y)
    if x == y:
        return 0.0
    gap = abs(x - y)
    if gap <= ATOL + rtol * abs(y):
        return 0.0
    return gap if gap == gap else math.inf


def _float(x):
    return float(x) if isinstance(x, str) else x
