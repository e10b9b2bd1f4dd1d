"""What metrics cost a served model: the same nbserve server with and without them, side by side in one run.

    python benchmarks/metrics_overhead.py [--rounds 10] [--requests 4000]

Three instances of the same registered model (diabetes, LinearRegression) on nbserve's process runtime,
one worker each, all pinned to CPU 0 with wrk on CPU 1 (serve_bench.py's method and helpers):

* ``metrics off``: ``serve(..., metrics=False)`` (NBSERVE_METRICS=0: no /metrics, no drift, no request log);
* ``metrics on``: the default: Prometheus metrics, the drift window and one JSON log line per request;
* ``metrics, no log``: metrics and drift, ``request_log=False``.

Each round sends every server the same number of 1-row POSTs (rotated order) and reads the server's CPU
time (utime+stime of its processes from /proc) over them. Prints the median server CPU per request and
the median of the per-round ratios against ``metrics off`` (the target: at most 1.05).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from serve_bench import (  # noqa: E402
    SERVER_CPU,
    NbserveServer,
    cpu_seconds_between,
    cpu_snapshot,
    diabetes_registered,
    rotations,
    start,
    wrk,
)


class Variant(NbserveServer):
    def __init__(self, name, **options):
        super().__init__(name)
        self.options = options

    def spawn(self, port):
        import nbserve

        def run():
            os.sched_setaffinity(0, {SERVER_CPU})
            try:
                self.instance = nbserve.serve("diabetes", runtime="process", port=port, progress=False, **self.options)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--requests", type=int, default=4000, help="1-row requests per server per round")
    ap.add_argument("--connections", type=int, default=4)
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("needs wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2

    workdir, X, lr, bodies = diabetes_registered("nbserve-metrics-bench-")

    servers = [
        Variant("metrics off", metrics=False),
        Variant("metrics on"),
        Variant("metrics, no log", request_log=False),
    ]
    sessions = {}
    try:
        for server in servers:
            _, sessions[server.name] = start(server, bodies, lr.predict(X))
        warm = max(200, args.requests // 10)
        for server in servers:  # warm up: first requests pay imports and caches
            wrk(server.url, bodies["data"]["one"], warm, args.connections)
        cpu = {s.name: [] for s in servers}
        for r, order in rotations(servers, args.rounds):
            for server in order:
                before = cpu_snapshot(sessions[server.name])
                one = wrk(server.url, bodies["data"]["one"], args.requests, args.connections)
                time.sleep(0.05)
                spent = cpu_seconds_between(before, cpu_snapshot(sessions[server.name]))
                cpu[server.name].append(spent / one["requests"] * 1e6)
            print(
                f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {v[-1]:.0f} us" for n, v in cpu.items()), flush=True
            )
    finally:
        for server in servers:
            if server.name in sessions:
                server.stop(sessions[server.name])
        shutil.rmtree(workdir, ignore_errors=True)

    base = cpu["metrics off"]
    print()
    print("| server | server CPU per 1-row request (median) | ratio to metrics off (median of rounds) |")
    print("|---|---|---|")
    for name, values in cpu.items():
        ratio = statistics.median(v / b for v, b in zip(values, base))
        print(f"| {name} | {statistics.median(values):,.0f} us | {ratio:.3f} |")
    ratio = statistics.median(v / b for v, b in zip(cpu["metrics on"], base))
    print(f"\nmetrics on / metrics off: server CPU per 1-row request {ratio:.3f} (target <= 1.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
