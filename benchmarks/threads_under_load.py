"""A served 1-row HistGradientBoosting predict while other processes keep every core busy, against the same
predict in the kernel under the same load (issue 21's thread budget: each worker's OpenMP/BLAS pools sized to
the cores divided by the workers, overridable with serve(..., threads=N)).

    python benchmarks/threads_under_load.py [--calls 200] [--rounds 3]

One busy process per core (a tight loop) runs for the whole measurement. In each round, interleaved: the
kernel's own ``pipe.predict(row)`` (the model's default threading), the served instance with the default
budget, and one served with ``threads=1``; each the median of ``--calls`` 1-row calls (the served ones through
the instance's client, so they include the HTTP round trip). Prints the medians and served / kernel (target:
at most 1.5). Only 127.0.0.1; the load processes are killed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "models"))


def median_ms(call, n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("NBSERVE_HOME", tempfile.mkdtemp(prefix="nbserve-bench-"))
    os.environ["NBSERVE_WARM"] = "0"
    from frames import mixed_pipeline, rentals

    import nbserve

    frame, target = rentals()
    pipe = mixed_pipeline(frame, target)
    row = frame.head(1)
    default = nbserve.serve(pipe, name="budget", sample=frame, runtime="process", progress=False)
    one = nbserve.serve("budget", runtime="process", threads=1, progress=False)
    budget = default.serving()["threads_per_worker"]
    clients = {"served": default.client(timeout=60), "served, threads=1": one.client(timeout=60)}
    for client in clients.values():
        client.predict(row)  # the first call starts the worker's pools
    pipe.predict(row)
    cores = len(os.sched_getaffinity(0))
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    results: dict = {"kernel": [], **{name: [] for name in clients}}
    try:
        time.sleep(1)
        for i in range(args.rounds):
            order = ["kernel", *clients]
            for name in order if i % 2 == 0 else reversed(order):
                call = (lambda: pipe.predict(row)) if name == "kernel" else (lambda c=clients[name]: c.predict(row))
                results[name].append(median_ms(call, args.calls))
                print(f"round {i + 1} {name}: p50 {results[name][-1]:.2f} ms", flush=True)
    finally:
        for p in load:
            p.kill()
        default.remove()
        one.remove()
    kernel = statistics.median(results["kernel"])
    print(f"\n{cores} busy processes (one per core); the default budget is {budget} thread(s) per worker")
    print("| | p50 of a 1-row predict | served / kernel |\n|---|---|---|")
    for name, values in results.items():
        med = statistics.median(values)
        ratio = "" if name == "kernel" else f"{med / kernel:.2f}"
        print(f"| {name} | {med:.2f} ms | {ratio} |")
    ratio = statistics.median(results["served"]) / kernel
    print(f"\nserved (default budget) / kernel: {ratio:.2f} (target <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
