"""The capacity of one replica: rows per second per core, and the latency at that load.

    .venv/bin/python benchmarks/replica_capacity.py [--requests 3000] [--json out.json]

One nbserve server (the process runtime: the same server code as the image) with one gunicorn worker,
its processes pinned to CPU 0; wrk on CPU 1. For each model and batch size, wrk sends a fixed number of
POSTs over a few connections; the figures are rows/s (requests/s x rows per request) and the p50/p99
latency wrk measured. Models: the diabetes LinearRegression (10 floats per row) and a gradient-boosted
model on a DataFrame with mixed column types (scikit-learn's HistGradientBoostingRegressor; xgboost too,
with --xgboost, where it is installed and serves). From the rows/s of one core, docs/SCALING.md derives
the replicas needed for 1k, 10k and 100k requests per second. Needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from serve_bench import LOAD_CPU, SERVER_CPU, listener_session, session_pids, wrk  # noqa: E402

TARGETS = (1_000, 10_000, 100_000)
HEADROOM = 0.7  # replicas run at 70 % of their measured ceiling (the HPA's CPU target), not at 100 %


def models(with_xgboost: bool):
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression

    X, y = load_diabetes(return_X_y=True)
    yield "diabetes LinearRegression", LinearRegression().fit(X, y), X
    rng = np.random.default_rng(0)
    n = 2000
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.normal(50, 10, n),
            "city": pd.Categorical(rng.choice(["paris", "lyon", "nice", "lille"], n)),
        }
    )
    target = frame["income"] * 2 + frame["age"] + (frame["city"] == "lyon") * 10
    yield (
        "HistGradientBoosting, mixed DataFrame",
        HistGradientBoostingRegressor(max_iter=100, categorical_features="from_dtype").fit(frame, target),
        frame,
    )
    if with_xgboost:
        import xgboost

        yield "xgboost on the diabetes floats", xgboost.XGBRegressor(n_estimators=100, n_jobs=1).fit(X, y), X


def body(sample, rows: int) -> bytes:
    import pandas as pd

    part = sample[:rows] if not isinstance(sample, pd.DataFrame) else sample.head(rows)
    if isinstance(part, pd.DataFrame):
        data = {"columns": list(part.columns), "data": part.astype(object).values.tolist()}
    else:
        data = part.tolist()
    return json.dumps({"data": data}).encode()


def measure(ws, label, model, sample, args) -> list[dict]:
    mv = ws.register(model, name="capacity", sample=sample, progress=False)
    inst = ws.serve(mv.id, runtime="process", workers=1, progress=False)
    out = []
    try:
        for pid in session_pids(listener_session(inst.port)):
            os.sched_setaffinity(pid, {SERVER_CPU})
        for rows, connections in ((1, 4), (100, 2)):
            path = Path(ws.home) / f"body-{rows}.json"
            path.write_bytes(body(sample, rows))
            wrk(inst.url + "/predict", path, 100, connections)  # warm-up
            result = wrk(inst.url + "/predict", path, args.requests, connections)
            rps = result["requests"] / result["seconds"]
            out.append(
                {
                    "model": label,
                    "rows_per_request": rows,
                    "connections": connections,
                    "requests_per_s": round(rps, 1),
                    "rows_per_s_per_core": round(rps * rows, 1),
                    "p50_ms": round(result["p50_us"] / 1000, 2),
                    "p99_ms": round(result["p99_us"] / 1000, 2),
                }
            )
    finally:
        inst.remove()
    return out


def replicas_needed(rps_per_replica: float) -> dict:
    return {str(t): math.ceil(t / (rps_per_replica * HEADROOM)) for t in TARGETS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--xgboost", action="store_true")
    ap.add_argument("--only", help="a substring of the model labels to run")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    os.sched_setaffinity(0, {LOAD_CPU})
    from nbserve.workspace import Workspace

    rows = []
    with tempfile.TemporaryDirectory(prefix="nbserve-capacity-") as home:
        ws = Workspace(home)
        for label, model, sample in models(args.xgboost):
            if args.only and args.only not in label:
                continue
            rows += measure(ws, label, model, sample, args)
    print(f"one replica = 1 gunicorn worker on 1 core (CPU {SERVER_CPU}); wrk on CPU {LOAD_CPU}; {time.ctime()}")
    print(
        f"{'model':40} {'rows/req':>8} {'conns':>5} {'req/s':>8} {'rows/s/core':>12} {'p50 ms':>7} {'p99 ms':>7}"
        f"  replicas for 1k/10k/100k req/s (at {HEADROOM:.0%})"
    )
    for r in rows:
        need = replicas_needed(r["requests_per_s"])
        r["replicas_needed"] = need
        print(
            f"{r['model']:40} {r['rows_per_request']:>8} {r['connections']:>5} {r['requests_per_s']:>8} "
            f"{r['rows_per_s_per_core']:>12} {r['p50_ms']:>7} {r['p99_ms']:>7}  {'/'.join(map(str, need.values()))}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
