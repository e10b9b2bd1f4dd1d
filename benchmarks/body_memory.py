"""Peak memory of a served model's worker for the largest bodies it takes: what a body limit costs.

A linear model on a [N, 10] float64 array is served by the process runtime; bodies of several sizes
are posted to /predict in two spellings of the same JSON: numbers as ``json.dumps`` writes the data set's
floats (about 20 characters each) and the worst case for amplification, one-character numbers (``0``), where
each number of the body becomes a Python object in the parsed list. Before each post the worker's
peak RSS (VmHWM) is reset (``/proc/PID/clear_refs``, Linux); after it, the peak is read back and printed
beside the idle RSS and the ratio of the growth to the body's size.

    .venv/bin/python benchmarks/body_memory.py [--sizes-mib 4,16,32,64] [--max-body-mib 64]

Prints a table; the README's figure for the default limit comes from here.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import requests


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(c) for c in children]


def body_of(mib: float, cell: str, columns: int = 10) -> bytes:
    """A {"data": [[...], ...]} body of about ``mib`` MiB whose cells are ``cell``."""
    row = "[" + ",".join([cell] * columns) + "]"
    rows = max(1, int(mib * 2**20 // (len(row) + 1)))
    return ('{"data":[' + ",".join([row] * rows) + "]}").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", default="1,4,8,16")
    parser.add_argument("--max-body-mib", type=float, default=None, help="serve with this limit (default: nbserve's)")
    args = parser.parse_args()
    os.environ.setdefault("NBSERVE_HOME", tempfile.mkdtemp(prefix="nbserve-bench-"))
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    from nbserve.workspace import Workspace

    X, y = load_diabetes(return_X_y=True)
    lr = LinearRegression().fit(X, y)
    ws = Workspace(os.environ["NBSERVE_HOME"])
    options = {"max_body": int(args.max_body_mib * 2**20)} if args.max_body_mib else {}
    inst = ws.serve(lr, name="diabetes", sample=X, runtime="process", progress=False, timeout=0, **options)
    try:
        master = inst._row.handle["pid"]
        [worker] = worker_pids(master)
        requests.post(inst.url + "/predict", json={"data": X[:5].tolist()}, timeout=30).raise_for_status()
        typical = json.dumps(float(X[0, 0]))  # a data set float as json writes it
        print(f"worker {worker}; cells: typical {typical!r} ({len(typical)} chars), worst '0'")
        header = ("body MiB", "cell", "status", "idle RSS MiB", "peak RSS MiB", "growth/body")
        print(" ".join(f"{h:>{w}}" for h, w in zip(header, (9, 8, 6, 13, 13, 12))))
        for mib in [float(s) for s in args.sizes_mib.split(",")]:
            for name, cell in (("typical", typical), ("worst", "0")):
                body = body_of(mib, cell)
                Path(f"/proc/{worker}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
                idle = rss_kib(worker, "VmRSS")
                resp = requests.post(
                    inst.url + "/predict", data=body, headers={"Content-Type": "application/json"}, timeout=600
                )
                time.sleep(0.05)
                peak = rss_kib(worker, "VmHWM")
                growth = (peak - idle) * 1024 / len(body)
                print(
                    f"{len(body) / 2**20:9.1f} {name:>8} {resp.status_code:6d} {idle / 1024:13.0f} "
                    f"{peak / 1024:13.0f} {growth:12.1f}"
                )
    finally:
        inst.remove()
    print(f"numpy {np.__version__}")


if __name__ == "__main__":
    main()
