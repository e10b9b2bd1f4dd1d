"""What a shadow costs the live path: the same served model with and without a candidate copying its requests.

    python benchmarks/shadow_overhead.py [--rounds 6] [--requests 3000]

Instances of the same registered model (diabetes, LinearRegression) on nbserve's process runtime, one worker
each, pinned to CPU 0 with wrk on CPU 1 (serve_bench.py's method and helpers):

* ``no recording``: ``serve(..., record=False)``: no traffic ring, no tap (the request path as before issue 22);
* ``recording``: the default: each model call noted for the traffic ring (GET /traffic);
* ``shadow 100%``: the default, and ``inst.shadow("diabetes:1", share=1.0)``: every request is copied to a
  candidate (another server, not counted) by a thread of the live worker.

Each round sends every server the same number of 1-row POSTs (rotated order) and reads the live server's CPU
time (utime+stime of its master and worker from /proc) over them: what the copies cost the live server's
processes, whatever thread spends it. The caller's latency (wrk's p50/p99) is printed beside. Prints the
median server CPU per request and the median of the per-round ratios against ``recording``.
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
    def __init__(self, name, shadow=False, **options):
        super().__init__(name)
        self.options, self.shadow = options, shadow

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
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--requests", type=int, default=3000, help="1-row requests per server per round")
    ap.add_argument("--connections", type=int, default=4)
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("needs wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2

    workdir, X, lr, bodies = diabetes_registered("nbserve-shadow-bench-")

    servers = [
        Variant("no recording", record=False),
        Variant("recording"),
        Variant("shadow 100%", shadow=True),
    ]
    sessions = {}
    latency = {s.name: [] for s in servers}
    try:
        for server in servers:
            _, sessions[server.name] = start(server, bodies, lr.predict(X))
            if server.shadow:
                server.instance.shadow("diabetes:1", share=1.0, progress=False)
        warm = max(200, args.requests // 10)
        for server in servers:  # warm up: first requests pay imports and caches
            wrk(server.url, bodies["data"]["one"], warm, args.connections)
        cpu = {s.name: [] for s in servers}
        for r, order in rotations(servers, args.rounds):
            for server in order:
                before = cpu_snapshot(sessions[server.name])
                one = wrk(server.url, bodies["data"]["one"], args.requests, args.connections)
                time.sleep(0.6)  # the copies of the last requests leave the worker (its thread drains every 0.25 s)
                spent = cpu_seconds_between(before, cpu_snapshot(sessions[server.name]))
                cpu[server.name].append(spent / one["requests"] * 1e6)
                latency[server.name].append((one["p50_us"] / 1000, one["p99_us"] / 1000))
            print(
                f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {v[-1]:.0f} us" for n, v in cpu.items()), flush=True
            )
        shadowed = next(s for s in servers if s.shadow).instance
        summary = shadowed.comparison(summary=True)
        print(
            f"\nthe candidate compared {summary['requests']} copies (agreement {summary['agreement']:.3f}); "
            f"copies sent/dropped/failed: {summary['copies']['sent']}/{summary['copies']['dropped']}/"
            f"{summary['copies']['failed']}"
        )
    finally:
        for server in servers:
            if server.name in sessions:
                if server.shadow and server.instance is not None:
                    try:
                        server.instance.discard(progress=False)
                    except Exception:
                        pass
                server.stop(sessions[server.name])
        shutil.rmtree(workdir, ignore_errors=True)

    base = cpu["recording"]
    print()
    print("| server | server CPU per 1-row request (median) | ratio to recording (median of rounds) | p50 / p99 ms |")
    print("|---|---|---|---|")
    for name, values in cpu.items():
        ratio = statistics.median(v / b for v, b in zip(values, base))
        p50 = statistics.median(p for p, _ in latency[name])
        p99 = statistics.median(p for _, p in latency[name])
        print(f"| {name} | {statistics.median(values):,.0f} us | {ratio:.3f} | {p50:.2f} / {p99:.2f} |")
    shadow_ratio = statistics.median(v / b for v, b in zip(cpu["shadow 100%"], base))
    ring_ratio = statistics.median(b / n for b, n in zip(base, cpu["no recording"]))
    print(f"\nshadow 100% / recording: live server CPU per 1-row request {shadow_ratio:.3f}")
    print(f"recording / no recording: {ring_ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
