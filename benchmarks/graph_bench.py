"""What a graph of stages costs: per request against the same three calls composed in one function, and the
rebuild after one stage changes.

    python benchmarks/graph_bench.py [--rounds 8] [--requests 4000] [--no-docker]

1. **Per-request overhead.** Two instances on nbserve's process runtime, one worker each, pinned to CPU 0 with
   wrk on CPU 1 (serve_bench.py's method and helpers): ``chain``, a 3-stage graph (a cleaning function -> the
   diabetes LinearRegression -> a threshold function, each stage its own registered version), and
   ``composed``, one function that makes the same three calls. Each round sends both the same number of 1-row
   POSTs (rotated order) and reads the servers' CPU time from /proc. Prints the median server CPU per request,
   wrk's p50 latency, and the median of the per-round differences and ratios (chain against composed).
2. **Rebuild after one stage changes.** The graph's Docker image is built, then its threshold stage changes:
   the new graph version's image is built (dependency layers and the unchanged stages' layers reused, the new
   stage's layer and the graph's own built) and put through the readiness check, timed; the same for the
   composed function changed the same way (one artifact layer), and for the process runtime the time of
   ``inst.update_stage`` (register the stage and the graph, swap in place). Docker steps need an engine and
   $NBSERVE_BASE_IMAGE (default local/python:3.11-bookworm).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from serve_bench import NbserveServer, cpu_seconds_between, cpu_snapshot, rotations, start, wrk  # noqa: E402


def clean(X):
    return X.clip(-0.2, 0.2)


def threshold(y):
    return (y > 150.0).astype("int64")


def stricter(y):
    return (y > 200.0).astype("int64")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--requests", type=int, default=4000, help="1-row requests per server per round")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--no-docker", action="store_true", help="skip the Docker rebuild")
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("needs wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="nbserve-graph-bench-"))
    os.environ["NBSERVE_HOME"] = str(workdir / "nbserve-home")  # never ~/.nbserve
    import orjson
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    import nbserve

    X, y = load_diabetes(return_X_y=True)
    lr = LinearRegression().fit(X, y)

    def composed(X):
        return threshold(lr.predict(clean(X)))

    expected = composed(X)
    bodies = {"data": {}}
    for kind, rows in (("one", X[:1]), ("check", X)):
        path = workdir / f"data-{kind}.json"
        path.write_bytes(orjson.dumps({"data": rows.tolist()}))
        bodies["data"][kind] = path.read_bytes() if kind == "check" else path
    graph = nbserve.chain(clean, lr, threshold)
    nbserve.register(graph, name="chain", sample=X, progress=False)
    nbserve.register(composed, name="composed", sample=X, methods=["predict"], progress=False)

    servers = [NbserveServer("composed", model="composed"), NbserveServer("chain", model="chain")]
    sessions = {}
    cpu = {s.name: [] for s in servers}
    p50 = {s.name: [] for s in servers}
    try:
        for server in servers:
            _, sessions[server.name] = start(server, bodies, expected)
        warm = max(200, args.requests // 10)
        for server in servers:  # warm up: first requests pay imports and caches
            wrk(server.url, bodies["data"]["one"], warm, args.connections)
        for r, order in rotations(servers, args.rounds):
            for server in order:
                before = cpu_snapshot(sessions[server.name])
                one = wrk(server.url, bodies["data"]["one"], args.requests, args.connections)
                time.sleep(0.05)
                spent = cpu_seconds_between(before, cpu_snapshot(sessions[server.name]))
                cpu[server.name].append(spent / one["requests"] * 1e6)
                p50[server.name].append(one["p50_us"])
            print(
                f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {v[-1]:.0f} us CPU" for n, v in cpu.items()),
                flush=True,
            )
        inst = next(s for s in servers if s.name == "chain").instance
        started = time.monotonic()
        inst.update_stage("threshold", stricter, progress=False)
        process_update = time.monotonic() - started
    finally:
        for server in servers:
            if server.name in sessions:
                server.stop(sessions[server.name])

    print()
    print("| server | server CPU per 1-row request (median) | p50 latency (median) |")
    print("|---|---|---|")
    for server in servers:
        print(
            f"| {server.name} | {statistics.median(cpu[server.name]):,.0f} us | "
            f"{statistics.median(p50[server.name]):,.0f} us |"
        )
    extra = statistics.median(c - b for c, b in zip(cpu["chain"], cpu["composed"]))
    ratio = statistics.median(c / b for c, b in zip(cpu["chain"], cpu["composed"]))
    latency = statistics.median(c - b for c, b in zip(p50["chain"], p50["composed"]))
    print(
        f"\n3-stage chain against the same calls composed in one function: {extra:+.0f} us server CPU per request "
        f"(ratio {ratio:.3f}), {latency:+.0f} us p50 latency (medians of {args.rounds} rounds)"
    )
    print(f"process runtime: update_stage (register the stage and the graph, swap in place) {process_update:.1f} s")

    if not args.no_docker:
        rebuild(nbserve, X, lr, workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def rebuild(nbserve, X, lr, workdir) -> None:
    from nbserve.runtimes.docker import engine_available

    if not engine_available():
        print("no Docker engine: the rebuild was not measured")
        return
    os.environ.setdefault("NBSERVE_BASE_IMAGE", "local/python:3.11-bookworm")
    first = nbserve.build("chain:1", progress=False)
    # the same stage names as chain(clean, lr, threshold) gave them: only the threshold's version changes
    changed = nbserve.chain(clean=clean, linearregression=lr, threshold=stricter)
    changed = nbserve.register(changed, name="chain", sample=X, progress=False)
    said = []
    started = time.monotonic()
    image = nbserve.build(changed, progress=lambda m, *a: said.append(m))
    graph_seconds = time.monotonic() - started

    def composed2(X):
        return stricter(lr.predict(clean(X)))

    nbserve.build("composed", progress=False)
    single = nbserve.register(composed2, name="composed", sample=X, methods=["predict"], progress=False)
    started = time.monotonic()
    nbserve.build(single, progress=False)
    single_seconds = time.monotonic() - started
    import docker

    client = docker.from_env()
    old = {h["Id"] for h in client.images.get(first.id).history()}
    new = [h["Id"] for h in client.images.get(image.id).history()]
    shared = sum(1 for i in new if i in old)
    print(
        f"docker: after one stage changed, the graph's image rebuilt in {graph_seconds:.1f} s with its readiness "
        f"check ({shared} of {len(new)} layers shared with the previous image, the unchanged stages' among them); "
        f"the composed function changed the same way: {single_seconds:.1f} s"
    )
    client.close()


if __name__ == "__main__":
    sys.exit(main())
