"""What following a variable costs a notebook cell, and how long a change takes to answer.

    python benchmarks/follow_check.py [--cells 60] [--mb 100] [--updates 5]

In a real IPython shell (InteractiveShell, nbserve's magics loaded), on the process runtime:

1. **The check after each cell** (``%serve VAR --follow``): for two models of about ``--mb`` MB, a
   KNeighborsRegressor (its training rows: one large array) and a RandomForestRegressor (hundreds of trees: many
   small objects), ``--cells`` cells that change nothing (``x = 1``) run while the model is followed and while
   it is not, interleaved. Prints the follow check's own time per cell (median, p95, max: ``Follower.check``,
   timed around the fingerprint) and the cell's wall time followed / not followed.
2. **Cell end to the new version answering**: the diabetes LinearRegression, followed, refit in ``--updates``
   cells; a thread posts predictions every 2 ms and notes when the first answer comes from the new version
   (X-Model-Version). Prints, per update, the time from the cell's last statement to that answer and to the end
   of the hook (the kernel free again); then the same for one refit of the 100 MB KNeighborsRegressor.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


def shell():
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="nbserve-ipython-"))
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.extension_manager.load_extension("nbserve")
    return ip


def run(ip, code: str) -> float:
    started = time.perf_counter()
    result = ip.run_cell(code, silent=False)
    took = time.perf_counter() - started
    if not result.success:
        raise RuntimeError(f"cell {code!r} failed: {result.error_in_exec or result.error_before_exec}")
    return took


def quantiles(values):
    values = sorted(values)
    return statistics.median(values), values[int(0.95 * (len(values) - 1))], values[-1]


def check_cost(ip, name: str, model, sample, cells: int) -> dict:
    from nbserve.follow import follower
    from nbserve.workspace import default_workspace

    ip.user_ns.update({name: model, "sample_" + name: sample})
    run(ip, f"inst_{name} = %serve {name} --sample sample_{name} --runtime process")
    followed, plain = [], []
    fol = follower(ip, default_workspace)
    for i in range(cells):
        for following in (True, False) if i % 2 else (False, True):
            if following and name not in fol.followed:
                run(ip, f"%serve {name} --sample sample_{name} --follow")
            elif not following and name in fol.followed:
                run(ip, f"%serve --unfollow {name}")
            (followed if following else plain).append(run(ip, "x = 1") * 1000)
    run(ip, f"%serve {name} --sample sample_{name} --follow")
    for _ in range(cells):
        run(ip, "x = 1")
    checks = list(fol.followed[name].checks_ms)[-cells:]
    run(ip, f"%serve --unfollow {name}")
    ip.user_ns[f"inst_{name}"].remove()
    return {"checks": checks, "followed": followed, "plain": plain}


def update_times(ip, variable: str, refits: list[str]) -> list[tuple[float, float]]:
    """(cell end -> the new version's first answer, cell end -> the hook done) for each refit cell."""
    import requests

    inst = ip.user_ns[f"inst_{variable}"]
    url, body = inst.url, ip.user_ns[f"body_{variable}"]
    results = []
    for code in refits:
        before = inst.reload().model
        seen: dict = {}
        stop = threading.Event()

        def poll(stop=stop, before=before, seen=seen):
            session = requests.Session()
            while not stop.is_set():
                try:
                    resp = session.post(url + "/predict", json=body, timeout=30)
                except requests.RequestException:
                    continue
                version = resp.headers.get("X-Model-Version")
                if version and version != before and "first" not in seen:
                    seen["first"] = time.monotonic()
                time.sleep(0.002)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        run(ip, code + "\nimport time as _t; cell_end = _t.monotonic()")
        hook_done = time.monotonic()
        deadline = time.monotonic() + 30
        while "first" not in seen and time.monotonic() < deadline:
            time.sleep(0.005)
        stop.set()
        poller.join(5)
        end = ip.user_ns["cell_end"]
        if "first" not in seen:
            raise RuntimeError(f"{code!r}: no answer from a new version (still {inst.reload().model})")
        results.append((seen["first"] - end, hook_done - end))
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=60)
    ap.add_argument("--mb", type=float, default=100.0)
    ap.add_argument("--updates", type=int, default=5)
    args = ap.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="nbserve-follow-bench-"))
    os.environ["NBSERVE_HOME"] = str(workdir / "nbserve-home")  # never ~/.nbserve
    import numpy as np
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.neighbors import KNeighborsRegressor

    import nbserve
    from nbserve.server.shared import json_dumps, json_loads

    rng = np.random.default_rng(0)
    ip = shell()
    try:
        # about --mb MB each: one large array, and many small objects
        columns = 128
        rows = int(args.mb * 1e6 / (columns * 8))
        big_X = rng.normal(size=(rows, columns))
        knn = KNeighborsRegressor(n_neighbors=3, algorithm="brute").fit(big_X, big_X[:, 0])
        forest_X = rng.normal(size=(40_000, 10))
        forest = RandomForestRegressor(n_estimators=12, random_state=0).fit(forest_X, forest_X @ np.arange(10))
        size = {}
        for name, model in (("knn", knn), ("forest", forest)):
            import pickle

            size[name] = len(pickle.dumps(model)) / 1e6
            if name == "forest":  # grow the forest to the size asked for: as many trees as it takes
                trees = max(1, int(12 * args.mb / size[name]))
                forest = RandomForestRegressor(n_estimators=trees, random_state=0)
                forest.fit(forest_X, forest_X @ np.arange(10))
                size[name] = len(pickle.dumps(forest)) / 1e6
        print(f"models: knn {size['knn']:.0f} MB, forest {size['forest']:.0f} MB ({len(forest.estimators_)} trees)")

        costs = {}
        for name, model, sample in (("knn", knn, big_X[:50]), ("forest", forest, forest_X[:50])):
            costs[name] = check_cost(ip, name, model, sample, args.cells)
            c = costs[name]
            med, p95, top = quantiles(c["checks"])
            print(
                f"{name}: follow check per cell median {med:.2f} ms, p95 {p95:.2f} ms, max {top:.2f} ms; "
                f"cell 'x = 1' median {statistics.median(c['followed']):.2f} ms followed, "
                f"{statistics.median(c['plain']):.2f} ms not followed",
                flush=True,
            )

        X, y = load_diabetes(return_X_y=True)
        ip.user_ns.update(lr=LinearRegression().fit(X, y), X=X, y=y)
        ip.user_ns["body_lr"] = json_loads(json_dumps({"data": X[:2].tolist()}))
        run(ip, "inst_lr = %serve lr --sample X --runtime process --follow")
        refits = [f"lr.fit(X[:{400 - 10 * i}], y[:{400 - 10 * i}])" for i in range(args.updates)]
        small = update_times(ip, "lr", refits)
        for i, (answer, hook) in enumerate(small):
            print(f"diabetes update {i + 1}: new version answers {answer:.2f} s after the cell, hook done {hook:.2f} s")

        ip.user_ns.update(knn=knn, sample_knn=big_X[:50], big_X=big_X)
        ip.user_ns["body_knn"] = json_loads(json_dumps({"data": big_X[:2].tolist()}))
        run(ip, "inst_knn = %serve knn --sample sample_knn --runtime process --follow")
        large = update_times(ip, "knn", ["knn.fit(big_X[::-1], big_X[::-1, 1])"])
        print(
            f"knn ({size['knn']:.0f} MB) update: new version answers {large[0][0]:.2f} s after the cell, "
            f"hook done {large[0][1]:.2f} s"
        )

        print()
        print("| model | size | follow check per cell (median / p95 / max) | cell followed / not followed (median) |")
        print("|---|---|---|---|")
        for name in costs:
            c = costs[name]
            med, p95, top = quantiles(c["checks"])
            ratio = statistics.median(c["followed"]) / statistics.median(c["plain"])
            print(
                f"| {name} | {size[name]:.0f} MB | {med:.2f} / {p95:.2f} / {top:.2f} ms | "
                f"{statistics.median(c['followed']):.2f} / {statistics.median(c['plain']):.2f} ms ({ratio:.2f}) |"
            )
        print()
        print("| update | cell end -> new version answers (median, min-max) | cell end -> kernel free |")
        print("|---|---|---|")
        answers = [a for a, _ in small]
        hooks = [h for _, h in small]
        print(
            f"| diabetes LinearRegression, {len(small)} refits | {statistics.median(answers):.2f} s "
            f"({min(answers):.2f}-{max(answers):.2f}) | {statistics.median(hooks):.2f} s |"
        )
        print(f"| KNeighborsRegressor {size['knn']:.0f} MB, 1 refit | {large[0][0]:.2f} s | {large[0][1]:.2f} s |")
    finally:
        for inst in nbserve.instances():
            try:
                inst.remove()
            except Exception:
                pass
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
