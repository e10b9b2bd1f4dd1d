"""What a served model kept, read back into the notebook as DataFrames in the training schema's dtypes: its
traffic ring (``inst.traffic()``) and a shadow candidate's comparison with it (``inst.comparison()``).

Each record of the server's ring is one model call: the request body as sent, the answer body, the time,
the version and its latency (server/traffic.py); a shadow's record adds the candidate's answer, status and
latency (server/shadow.py). Inputs are decoded by the version's input schema (server/schema.py, the decoder
the server itself uses: categories stay categories, dates dates) and answers rebuilt by its output schema
(client.decode), one row per input row. Request-level fields are the columns starting with ``_``.
"""

from __future__ import annotations

import math

from .errors import NbserveError

META = ("_request", "_time", "_version", "_method", "_request_id", "_latency_ms")


def _pandas():
    try:
        import numpy as np
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas comes with every model family nbserve serves
        raise NbserveError("traffic() and comparison() build pandas DataFrames: pip install pandas") from None
    return np, pd


def _decoder(cache: dict, mv, method: str, part: str):
    key = (mv.id, method, part)
    if key not in cache:
        schema = (mv.signature.get(method) or {}).get(part)
        if part == "input":
            from .server.shared import compile_decoder

            cache[key] = compile_decoder(schema, "ignore")
        else:
            from .client import decode

            cache[key] = lambda body, schema=schema: decode(schema, body)
    return cache[key]


def _rows(value):
    """An input or answer as a DataFrame of its rows (columns named as drift names them: x0, x1, ...)."""
    np, pd = _pandas()
    if isinstance(value, pd.DataFrame):
        return value.reset_index(drop=True)
    if isinstance(value, pd.Series):
        return value.reset_index(drop=True).to_frame(value.name if value.name is not None else "x")
    arr = np.asarray(value)
    if arr.ndim == 1:
        return pd.DataFrame({"x": arr})
    if arr.ndim == 2:
        return pd.DataFrame({f"x{j}": arr[:, j] for j in range(arr.shape[1])})
    return pd.DataFrame({"x": list(arr)})


def _answers(value, prefix: str):
    """An answer as columns named after its side: ``predict``, ``predict[0]``, ``predict.col``."""
    frame = _rows(value)
    if list(frame.columns) == ["x"]:
        return frame.rename(columns={"x": prefix})
    if all(str(c).startswith("x") and str(c)[1:].isdigit() for c in frame.columns):
        return frame.rename(columns={c: f"{prefix}[{str(c)[1:]}]" for c in frame.columns})
    return frame.rename(columns={c: f"{prefix}.{c}" for c in frame.columns})


def _meta(frame, i: int, record: dict) -> None:
    _, pd = _pandas()
    frame["_request"] = i
    frame["_time"] = pd.to_datetime(record.get("t"), unit="s", utc=True)
    frame["_version"] = record.get("v")
    frame["_method"] = record.get("m")
    frame["_request_id"] = record.get("id") or None
    frame["_latency_ms"] = record.get("ms")


def traffic_frame(records: list[dict], versions: dict, drift: dict | None = None):
    """The ring's records as one DataFrame: the input columns as the model took them, an answer column per
    method (``predict``), and ``_request``, ``_time``, ``_version``, ``_method``, ``_request_id``,
    ``_latency_ms``. ``.attrs``: ``features`` (the input columns), ``answers``, ``drift`` ({feature: status}
    from the server's /drift) and ``drift_report``."""
    np, pd = _pandas()
    cache: dict = {}
    parts, features, answers, skipped = [], [], [], 0
    for i, record in enumerate(records):
        mv = versions.get(record.get("v")) or next(iter(versions.values()))
        method, request, answer = str(record.get("m") or ""), record.get("in"), record.get("out")
        if not isinstance(request, dict) or "data" not in request or not isinstance(answer, dict):
            skipped += 1  # a body over the recording limit: its size only was kept
            continue
        inputs = _rows(_decoder(cache, mv, method, "input")(request["data"]))
        outputs = _answers(_decoder(cache, mv, method, "output")(answer), method)
        if len(outputs) != len(inputs):
            outputs = pd.DataFrame({method: [answer.get("data")] * len(inputs)})
        frame = pd.concat([inputs, outputs], axis=1)
        _meta(frame, i, record)
        for c in inputs.columns:
            if c not in features:
                features.append(c)
        for c in outputs.columns:
            if c not in answers:
                answers.append(c)
        parts.append(frame)
    if parts:
        frame = pd.concat(parts, ignore_index=True)
    else:
        frame = pd.DataFrame(columns=[*features, *answers, *META])
    frame = frame[[*features, *answers, *META]]
    statuses = {}
    for f in (drift or {}).get("features", []):
        if f.get("role") == "input":
            statuses[f["name"]] = f.get("status")
    frame.attrs.update(features=features, answers=answers, drift=statuses, drift_report=drift, skipped=skipped)
    return frame


def comparison_frame(records: list[dict], live, candidate, tolerance: float | None = None):
    """A shadow's records as one DataFrame, a row per input row: the inputs, ``live`` and ``candidate``
    answers (``live[0]``... for several outputs), ``agree`` (every output within ``tolerance``, relative,
    NaN equal to NaN; equal for non-numbers), ``abs_error`` (the largest absolute difference of a numeric
    output), ``_live_ms``, ``_candidate_ms``, ``_candidate_status`` and the request's ``_time``."""
    np, pd = _pandas()
    from .capture.compare import ATOL, RTOL

    rtol = tolerance if tolerance is not None else (candidate.proof.get("rtol") or RTOL)
    cache: dict = {}
    parts = []
    for i, record in enumerate(records):
        method, request = str(record.get("m") or ""), record.get("in")
        if not isinstance(request, dict) or "data" not in request:
            continue
        inputs = _rows(_decoder(cache, live, method, "input")(request["data"]))
        ours = _answers(_decoder(cache, live, method, "output")(record.get("out") or {}), "live")
        status = int(record.get("cstatus") or 0)
        theirs = None
        if status == 200 and isinstance(record.get("cout"), dict):
            try:
                theirs = _answers(_decoder(cache, candidate, method, "output")(record["cout"]), "candidate")
            except Exception:
                theirs = None
        if theirs is None or len(theirs) != len(ours) or len(theirs.columns) != len(ours.columns):
            theirs = pd.DataFrame(
                {c.replace("live", "candidate", 1): [np.nan] * len(ours) for c in ours.columns}, index=ours.index
            )
            agree = np.zeros(len(ours), dtype=bool)
            error = np.full(len(ours), np.nan)
        else:
            agree, error = _agreement(ours, theirs, rtol, ATOL)
        frame = pd.concat([inputs, ours, theirs], axis=1)
        frame["agree"] = agree
        frame["abs_error"] = error
        frame["_request"] = i
        frame["_method"] = method
        frame["_live_ms"] = record.get("ms")
        frame["_candidate_ms"] = record.get("cms")
        frame["_candidate_status"] = status
        frame["_time"] = pd.to_datetime(record.get("t"), unit="s", utc=True)
        parts.append(frame)
    if not parts:
        frame = pd.DataFrame(
            columns=[
                "live",
                "candidate",
                "agree",
                "abs_error",
                "_request",
                "_method",
                "_live_ms",
                "_candidate_ms",
                "_candidate_status",
                "_time",
            ]
        )
    else:
        frame = pd.concat(parts, ignore_index=True)
    frame.attrs.update(live=live.id, candidate=candidate.id, rtol=rtol)
    return frame


def _agreement(ours, theirs, rtol: float, atol: float):
    """Per row: whether every output agrees, and the largest absolute difference of the numeric ones."""
    np, pd = _pandas()
    agree = np.ones(len(ours), dtype=bool)
    error = np.full(len(ours), np.nan)
    for a_name, b_name in zip(ours.columns, theirs.columns):
        a, b = ours[a_name], theirs[b_name]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b) and not pd.api.types.is_bool_dtype(a):
            x, y = a.to_numpy(dtype=float, na_value=np.nan), b.to_numpy(dtype=float, na_value=np.nan)
            agree &= np.isclose(x, y, rtol=rtol, atol=atol, equal_nan=True)
            diff = np.abs(x - y)
            error = np.where(np.isnan(error), diff, np.fmax(error, diff))
        else:
            both_missing = a.isna().to_numpy() & b.isna().to_numpy()
            agree &= (a.astype(object).to_numpy() == b.astype(object).to_numpy()) | both_missing
    return agree, error


def summary(frame, copying: dict | None = None) -> dict:
    """The comparison in numbers: agreement rate, the error of each numeric output, latency percentiles of
    each side (per request), the candidate's failed answers and what the live server copied."""
    np, pd = _pandas()
    requests = frame.drop_duplicates("_request") if len(frame) else frame
    out: dict = {
        "live": frame.attrs.get("live"),
        "candidate": frame.attrs.get("candidate"),
        "requests": int(len(requests)),
        "rows": int(len(frame)),
        "agreement": float(frame["agree"].mean()) if len(frame) else math.nan,
        "disagreeing_rows": int((~frame["agree"].astype(bool)).sum()) if len(frame) else 0,
        "rtol": frame.attrs.get("rtol"),
        "errors": {},
        "latency_ms": {},
        "candidate_failures": int((requests["_candidate_status"] != 200).sum()) if len(requests) else 0,
        "copies": copying,
    }
    for col in frame.columns:
        if col == "live" or col.startswith(("live[", "live.")):
            other = "candidate" + col[len("live") :]
            a = pd.to_numeric(frame[col], errors="coerce") if col in frame else None
            b = pd.to_numeric(frame[other], errors="coerce") if other in frame else None
            if a is None or b is None or a.isna().all():
                continue
            diff = (a - b).abs()
            out["errors"][col[len("live") :] or "answer"] = {
                "mean_abs": _num(diff.mean()),
                "max_abs": _num(diff.max()),
                "rmse": _num(math.sqrt(float((diff**2).mean()))) if diff.notna().any() else None,
            }
    for side, col in (("live", "_live_ms"), ("candidate", "_candidate_ms")):
        values = pd.to_numeric(requests[col], errors="coerce").dropna() if len(requests) else pd.Series(dtype=float)
        out["latency_ms"][side] = {
            "p50": _num(values.quantile(0.5)) if len(values) else None,
            "p90": _num(values.quantile(0.9)) if len(values) else None,
            "p99": _num(values.quantile(0.99)) if len(values) else None,
            "mean": _num(values.mean()) if len(values) else None,
        }
    return out


def _num(x):
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else round(x, 6)
