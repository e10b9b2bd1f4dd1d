"""The drift reference of a registration: how the sample, and each method's answer on it, spread.

Stored in the manifest as ``reference`` and compared by the server with what it receives
(nbserve/server/drift.py holds the binning, so both sides bin alike)::

    {"rows": 442, "input": [{"name": "age", "kind": "numeric", "edges": [...9 deciles],
                             "shares": [...10], "null": 0.0}, ...],
     "outputs": {"predict": [{"name": "predict", ...}]}}

At most ``MAX_ROWS`` rows of the sample are used (a seeded random subset of larger ones), so the
reference stays a few kilobytes and registration a model call of at most that many rows.
"""

from __future__ import annotations

from ..server.shared import drift_features as features
from ..server.shared import reference_spec, unsupported_spec

MAX_ROWS = 10_000


def subsample(sample, max_rows: int = MAX_ROWS):
    """The sample itself, or a seeded random subset of ``max_rows`` rows of it (in the sample's own type)."""
    try:
        n = len(sample)
    except TypeError:
        return sample
    if n <= max_rows:
        return sample
    import numpy as np

    idx = np.sort(np.random.default_rng(0).choice(n, size=max_rows, replace=False))
    if hasattr(sample, "iloc"):
        return sample.iloc[idx]
    if isinstance(sample, np.ndarray):
        return sample[idx]
    return sample


def reference(sample, outputs: dict) -> dict | None:
    """The reference of ``sample`` and of the method outputs on it ({method: value}); None when the
    sample has no features to compare (not a DataFrame, Series or 1-/2-d array)."""
    inputs = [_spec(name, col) for name, col in features(sample)]
    if not inputs:
        return None
    outs = {}
    for method, value in outputs.items():
        specs = [_spec(name, col) for name, col in features(value, prefix=method)]
        if specs:
            outs[method] = specs
    return {"rows": len(sample), "input": inputs, "outputs": outs}


def _spec(name, column) -> dict:
    """One feature's reference; a column that cannot be binned is kept as unsupported, with the reason
    /drift reports for it (one odd column must not cost the others their drift)."""
    try:
        return reference_spec(name, column)
    except Exception as exc:
        return unsupported_spec(name, exc)


def compute(call, sample, methods) -> dict | None:
    """The reference for ``methods`` called through ``call(name)(data)``. A method that fails on the
    larger sample (it answered on the first rows) is left out of the outputs, never failing the
    registration over drift."""
    part = subsample(sample)
    if not features(part):
        return None
    outputs = {}
    for name in methods:
        try:
            outputs[name] = call(name)(part)
        except Exception:
            continue
    try:
        return reference(part, outputs)
    except Exception:
        return None
