"""Reading what a served model reports about itself (its /metrics and /drift), for every face.

``snapshot`` reads /metrics once into plain data: per model method the request and error counts and
the cumulative latency histogram. Rates and latency quantiles need two snapshots: ``summary`` compares
a snapshot with an earlier one (or with nothing: totals since the start), ``series`` turns a list of
snapshots into the points the panel and the sidebar plot. ``prometheus_config`` writes a scrape config
for the instances (tokens go to files beside each instance, never into the printed config).
"""

from __future__ import annotations

import json
import re
import time

from .errors import NbserveError

TIMEOUT = 5.0
SETTLE_SECONDS = 1.5  # the served workers publish their requests' records every second
# null_ref/null_live: the null shares (a rise is part of the PSI); reason: why a feature is not_computed
DRIFT_COLUMNS = (
    "role",
    "method",
    "name",
    "kind",
    "rows",
    "psi",
    "test",
    "statistic",
    "p_value",
    "status",
    "drifted",
    "null_ref",
    "null_live",
    "reason",
)


def _get(url: str, token: str | None, timeout: float = TIMEOUT):
    import requests

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = requests.get(url, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise NbserveError(f"cannot reach {url}: {exc}") from None
    if resp.status_code != 200:
        from .client import error_from_response

        raise error_from_response(resp.status_code, resp.content, url)
    return resp


def _empty() -> dict:
    # streamed answers: items sent, seconds streamed, and the cumulative histogram of the time to the first item
    return {"requests": 0.0, "errors": 0.0, "sum": 0.0, "buckets": {}, "items": 0.0, "stream_s": 0.0, "first": {}}


def settled_snapshot(url: str, token: str | None = None, timeout: float = TIMEOUT) -> dict:
    """A snapshot holding every request answered before this call: a worker publishes what its requests noted
    once a second (server/observe.py), so read again until every live worker has published past now (at most
    ``SETTLE_SECONDS``; a server on another clock, or an older one that does not say, is read once)."""
    asked = time.time()
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        snap = snapshot(url, token, timeout)
        behind = asked - snap["published"] if snap.get("published") is not None else 0.0
        if behind <= 0 or behind > SETTLE_SECONDS or time.monotonic() + behind > deadline:
            return snap
        time.sleep(behind + 0.02)


def snapshot(url: str, token: str | None = None, timeout: float = TIMEOUT) -> dict:
    """{"time", "in_progress", "methods": {method: {"requests", "errors", "sum", "buckets": [[le, cumulative
    count], ...], "items", "stream_s", "first": [[le, cumulative count], ...]}}} from one scrape of
    ``url``/metrics. ``errors`` counts answers with a 5xx status; ``items``, ``stream_s`` and ``first`` are
    a streaming method's items, seconds streamed, and times to the first item."""
    from prometheus_client.parser import text_string_to_metric_families

    text = _get(url.rstrip("/") + "/metrics", token, timeout).text
    methods: dict = {}
    stages: dict = {}  # a graph's: stage -> stage version -> {"calls", "errors", "sum", "buckets"}
    in_progress = 0.0
    published = None

    def entry(method):
        return methods.setdefault(method, _empty())

    def stage_entry(labels):
        versions = stages.setdefault(labels.get("stage", ""), {})
        return versions.setdefault(
            labels.get("stage_model", ""), {"calls": 0.0, "errors": 0.0, "sum": 0.0, "buckets": {}}
        )

    for family in text_string_to_metric_families(text):
        if family.name in ("nbserve_stream_items", "nbserve_stream_seconds", "nbserve_stream_first_item_seconds"):
            for s in family.samples:
                e = entry(s.labels.get("method", "other"))
                if s.name == "nbserve_stream_items_total":
                    e["items"] += s.value
                elif s.name == "nbserve_stream_seconds_sum":
                    e["stream_s"] += s.value
                elif s.name == "nbserve_stream_first_item_seconds_bucket":
                    le = float(s.labels["le"])
                    e["first"][le] = e["first"].get(le, 0.0) + s.value
            continue
        if family.name == "nbserve_request_duration_seconds":
            for s in family.samples:
                method = s.labels.get("method", "other")
                if s.name.endswith("_bucket"):
                    buckets = entry(method)["buckets"]
                    le = float(s.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + s.value
                elif s.name.endswith("_sum"):
                    entry(method)["sum"] += s.value
        elif family.name == "nbserve_requests":
            for s in family.samples:
                if s.name.endswith("_total"):
                    e = entry(s.labels.get("method", "other"))
                    e["requests"] += s.value
                    if s.labels.get("status", "").startswith("5"):
                        e["errors"] += s.value
        elif family.name == "nbserve_requests_in_progress":
            in_progress = sum(s.value for s in family.samples)
        elif family.name == "nbserve_metrics_published_time_seconds":
            published = min((s.value for s in family.samples if s.value > 0), default=None)
        elif family.name == "nbserve_stage_duration_seconds":
            for s in family.samples:
                e = stage_entry(s.labels)
                if s.name.endswith("_bucket"):
                    le = float(s.labels["le"])
                    e["buckets"][le] = e["buckets"].get(le, 0.0) + s.value
                elif s.name.endswith("_sum"):
                    e["sum"] += s.value
                elif s.name.endswith("_count"):
                    e["calls"] += s.value
        elif family.name == "nbserve_stage_errors":
            for s in family.samples:
                if s.name.endswith("_total"):
                    stage_entry(s.labels)["errors"] += s.value
    for e in methods.values():
        e["buckets"] = sorted([le, c] for le, c in e["buckets"].items())
        e["first"] = sorted([le, c] for le, c in e["first"].items())
    for versions in stages.values():
        for e in versions.values():
            e["buckets"] = sorted([le, c] for le, c in e["buckets"].items())
    snap = {"time": time.time(), "in_progress": in_progress, "methods": methods, "published": published}
    if stages:
        snap["stages"] = stages
    return snap


def batching(url: str, token: str | None = None, timeout: float = TIMEOUT) -> dict:
    """The instance's /batching answer (see nbserve/server/batching.py)."""
    return _get(url.rstrip("/") + "/batching", token, timeout).json()


def serving(url: str, token: str | None = None, timeout: float = TIMEOUT) -> dict:
    """How the instance is served, as its server says (the ``serving`` part of /interface.json: settings,
    workers, native threads per worker)."""
    return _get(url.rstrip("/") + "/interface.json", token, timeout).json().get("serving") or {}


def drift(url: str, token: str | None = None, timeout: float = 30.0) -> dict:
    """The instance's /drift answer (see nbserve/server/drift.py)."""
    return _get(url.rstrip("/") + "/drift", token, timeout).json()


def quantile(q: float, buckets: list) -> float | None:
    """The q-quantile of a cumulative histogram [[le, count], ...], interpolated inside the bucket as
    Prometheus' histogram_quantile does; None with no observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le


def _delta(new: dict, old: dict | None) -> dict:
    if not old:
        return new
    before = dict((le, c) for le, c in old.get("buckets", []))
    first = dict((le, c) for le, c in old.get("first", []))
    return {
        "requests": new["requests"] - old.get("requests", 0.0),
        "errors": new["errors"] - old.get("errors", 0.0),
        "sum": new["sum"] - old.get("sum", 0.0),
        "buckets": [[le, c - before.get(le, 0.0)] for le, c in new["buckets"]],
        "items": new.get("items", 0.0) - old.get("items", 0.0),
        "stream_s": new.get("stream_s", 0.0) - old.get("stream_s", 0.0),
        "first": [[le, c - first.get(le, 0.0)] for le, c in new.get("first", [])],
    }


def _all_methods(snap: dict, include_other: bool = False) -> dict:
    """The model methods' counts summed into one (the "other" routes left out unless asked)."""
    total: dict = _empty()
    for method, e in snap["methods"].items():
        if method == "other" and not include_other:
            continue
        for key in ("requests", "errors", "sum", "items", "stream_s"):
            total[key] += e.get(key, 0.0)
        for key in ("buckets", "first"):
            for le, c in e.get(key, []):
                total[key][le] = total[key].get(le, 0.0) + c
    total["buckets"] = sorted([le, c] for le, c in total["buckets"].items())
    total["first"] = sorted([le, c] for le, c in total["first"].items())
    return total


def _stream_stats(d: dict) -> dict:
    """A streaming method's time to the first item (p50, ms) and items per second of streaming; None without
    streams (the items per second of a text function are its tokens per second, one token an item)."""
    first = quantile(0.5, d.get("first", []))
    return {
        "first_item_p50_ms": None if first is None else first * 1000,
        "items_per_s": d["items"] / d["stream_s"] if d.get("stream_s") else None,
    }


def point(new: dict, old: dict | None = None) -> dict:
    """One plotted point over all model methods between two snapshots (or since the start): time,
    requests per second, error rate (share of 5xx), p50 and p99 latency in milliseconds; time to the first
    item (p50, ms) and items per second of the streams that ended in between."""
    d = _delta(_all_methods(new), _all_methods(old) if old else None)
    seconds = new["time"] - old["time"] if old else None
    p50, p99 = quantile(0.5, d["buckets"]), quantile(0.99, d["buckets"])
    return {
        "time": new["time"],
        "requests": d["requests"],
        "rate": d["requests"] / seconds if seconds else None,
        "error_rate": d["errors"] / d["requests"] if d["requests"] else 0.0,
        "p50_ms": None if p50 is None else p50 * 1000,
        "p99_ms": None if p99 is None else p99 * 1000,
        "in_progress": new["in_progress"],
        **_stream_stats(d),
    }


def series(snapshots: list) -> list[dict]:
    """Points between consecutive snapshots (the first snapshot only starts the series)."""
    return [point(b, a) for a, b in zip(snapshots, snapshots[1:])]


def summary(new: dict, old: dict | None = None) -> list[dict]:
    """One row per model method: requests, errors, error rate, p50/p99 latency (ms), mean latency; for a
    streaming method its items, the time to its first item (p50, ms) and items per second."""
    rows = []
    for method in sorted(new["methods"]):
        d = _delta(new["methods"][method], (old or {}).get("methods", {}).get(method))
        p50, p99 = quantile(0.5, d["buckets"]), quantile(0.99, d["buckets"])
        rows.append(
            {
                "method": method,
                "requests": int(d["requests"]),
                "errors": int(d["errors"]),
                "error_rate": d["errors"] / d["requests"] if d["requests"] else 0.0,
                "p50_ms": None if p50 is None else p50 * 1000,
                "p99_ms": None if p99 is None else p99 * 1000,
                "mean_ms": d["sum"] / d["requests"] * 1000 if d["requests"] else None,
                "items": int(d.get("items", 0)),
                **_stream_stats(d),
            }
        )
    return rows


STAGE_COLUMNS = ("stage", "model", "method", "inputs", "calls", "errors", "p50_ms", "p99_ms", "mean_ms")


def stage_summary(snap: dict, graph: dict | None) -> list[dict]:
    """One row per stage of a served graph (``graph``: its manifest's "graph"), in running order, for the
    stage version it serves: calls since the start, errors (calls in which the stage raised), p50, p99 and
    mean of the stage's own time in ms. Empty for a single model."""
    if not graph:
        return []
    rows = []
    for step in graph["order"]:
        stage = graph["stages"][step["name"]]
        e = (snap.get("stages") or {}).get(step["name"], {}).get(stage["model"]) or {}
        calls, buckets = e.get("calls", 0.0), e.get("buckets", [])
        p50, p99 = quantile(0.5, buckets), quantile(0.99, buckets)
        rows.append(
            {
                "stage": step["name"],
                "model": stage["model"],
                "method": stage["method"],
                "inputs": list(step["inputs"]),
                "calls": int(calls),
                "errors": int(e.get("errors", 0.0)),
                "p50_ms": None if p50 is None else p50 * 1000,
                "p99_ms": None if p99 is None else p99 * 1000,
                "mean_ms": e["sum"] / calls * 1000 if calls else None,
            }
        )
    return rows


def as_frame(rows: list[dict], columns=None, attrs: dict | None = None):
    """A pandas DataFrame of ``rows`` where pandas is installed, else the rows themselves."""
    try:
        import pandas as pd
    except ImportError:
        return rows
    frame = pd.DataFrame(rows, columns=columns)
    if attrs:
        frame.attrs.update(attrs)
    return frame


def drift_frame(report: dict):
    """The features of a /drift report as a DataFrame (overall flag, window and thresholds in .attrs)."""
    rows = []
    for f in report.get("features", []):
        null = f.get("null") or {}
        rows.append(
            {k: f.get(k) for k in DRIFT_COLUMNS} | {"null_ref": null.get("reference"), "null_live": null.get("live")}
        )
    attrs = {k: v for k, v in report.items() if k != "features"}
    return as_frame(rows, columns=list(DRIFT_COLUMNS), attrs=attrs)


def prometheus_config(instances, token_dir, interval: str = "15s") -> str:
    """A Prometheus scrape config (YAML) with one job per running instance: its /metrics, labels
    ``nbserve_instance`` and ``nbserve_model``, and, for an instance with a bearer token, a
    ``credentials_file`` written (mode 0600) under ``token_dir`` rather than the token itself."""
    import json
    import os
    from pathlib import Path
    from urllib.parse import urlparse

    lines = [
        "# Prometheus scrape config for nbserve instances (nbserve prometheus-config)",
        "global:",
        f"  scrape_interval: {interval}",
        "scrape_configs:",
    ]
    for inst in instances:
        if inst.status != "running" or not inst.url:
            continue
        target = urlparse(inst.url)
        lines += [
            f"  - job_name: {json.dumps('nbserve-' + inst.id)}",
            "    metrics_path: /metrics",
            f"    scheme: {target.scheme}",
            "    static_configs:",
            f"      - targets: [{json.dumps(target.netloc)}]",
            f"        labels: {{nbserve_instance: {json.dumps(inst.id)}, nbserve_model: {json.dumps(inst.model)}}}",
        ]
        if inst.auth_token:
            path = Path(token_dir) / f"{inst.id}.token"
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(inst.auth_token)
            lines += ["    authorization:", "      type: Bearer", f"      credentials_file: {json.dumps(str(path))}"]
    return "\n".join(lines) + "\n"


# -- the request log (server/metrics.py writes one JSON line per request into the instance's log) -------------

# the server's own failures: gunicorn's errors, tracebacks, a worker killed, a model that raised (dispatch.py)
_SERVER_ERROR = re.compile(
    r"\[(ERROR|CRITICAL)\]|Traceback \(most recent call last\)|WORKER TIMEOUT|did not start"
    r"|\braised \w*(Error|Exception)\b"
)


def log_entries(text: str) -> list[dict]:
    """The lines of an instance's log as the rows of a table, oldest first.

    A request line becomes ``{"kind": "request", "time", "status", "latency_ms", "rows", "request_id", "method",
    "path", "raw", "error"}`` (``error``: the server failed, a 5xx); every other line (the runtime's own
    messages, gunicorn's, a traceback with its indented lines kept together) ``{"kind": "server", "text",
    "raw", "error"}`` with ``error`` where it reports a failure of the server."""
    entries: list[dict] = []
    block: list[str] = []

    def close_block():
        if block:
            raw = "\n".join(block)
            entries.append({"kind": "server", "text": raw, "raw": raw, "error": bool(_SERVER_ERROR.search(raw))})
            block.clear()

    for line in text.splitlines():
        if not line.strip():
            continue
        entry = _request_line(line)
        if entry is not None:
            close_block()
            entries.append(entry)
        elif block and (line[:1].isspace() or block[0].startswith("Traceback") and not block[-1][:1].isalpha()):
            block.append(line)  # a traceback's frames, and the exception line that ends it
        else:
            close_block()
            block.append(line)
    close_block()
    return entries


def _request_line(line: str) -> dict | None:
    if not line.startswith("{") or '"request_id"' not in line:
        return None
    try:
        data = json.loads(line)
        status = int(data["status"])
    except (ValueError, KeyError, TypeError):
        return None
    return {
        "kind": "request",
        "time": data.get("time"),
        "status": status,
        "latency_ms": data.get("duration_ms"),
        "rows": data.get("rows"),
        "request_id": data.get("request_id"),
        "method": data.get("method"),
        "path": data.get("path"),
        "raw": line,
        "error": status >= 500,
    }
