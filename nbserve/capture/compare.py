"""Do two answers agree? The one comparison behind every proof: the kernel's answer against a clean
interpreter's (capture) and against the built image's (the readiness check of runtimes/).

Values are compared as JSON carries them (numpy arrays and pandas objects as nested lists), numbers
to float tolerance, as ``numpy.allclose`` would (rtol 1e-5, atol 1e-8); NaN equals NaN and null.
"""

from __future__ import annotations

import math

RTOL, ATOL = 1e-5, 1e-8


def difference(expected, got, where: str = "data", here: str = "the kernel", there: str = "the image") -> str | None:
    """None when the answers agree, else where and how they differ first, e.g.
    ``data[0]: 0.0 in the kernel, 1.0 in the image``."""
    return _diff(plain(expected), plain(got), where, here, there)


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


def _diff(a, b, where, here, there):
    def differ(x, y):
        return f"{where}: {x!r} in {here}, {y!r} in {there}"

    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{where}: keys {sorted(map(str, a))} in {here}, {sorted(map(str, b))} in {there}"
        for k in a:
            d = _diff(a[k], b[k], f"{where}[{k!r}]", here, there)
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items in {here}, {len(b)} in {there}"
        if a and all(map(_is_number, a)) and all(map(_is_number, b)):
            gaps = [_gap(x, y) for x, y in zip(a, b)]
            i = max(range(len(gaps)), key=gaps.__getitem__)  # the first of the largest differences
            return f"{where}[{i}]: {a[i]!r} in {here}, {b[i]!r} in {there}" if gaps[i] > 0 else None
        for i, (x, y) in enumerate(zip(a, b)):
            d = _diff(x, y, f"{where}[{i}]", here, there)
            if d:
                return d
        return None
    if _is_number(a) and _is_number(b):
        return None if _gap(a, b) == 0 else differ(a, b)
    try:
        same = bool(a == b)
    except Exception:  # an object whose == is not a truth value
        same = repr(a) == repr(b)
    return None if same else differ(a, b)


def _is_number(x) -> bool:
    return x is None or (isinstance(x, (int, float, complex)) and not isinstance(x, bool))


def _missing(x) -> bool:
    return x is None or x != x  # JSON writes NaN as null


def _gap(x, y) -> float:
    """0 when equal to tolerance, else how far apart (inf when only one is missing)."""
    if _missing(x) or _missing(y):
        return 0.0 if _missing(x) and _missing(y) else math.inf
    if x == y:
        return 0.0
    gap = abs(x - y)
    if gap <= ATOL + RTOL * abs(y):
        return 0.0
    return gap if gap == gap else math.inf
