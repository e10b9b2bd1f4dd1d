"""Register and load times of the registry backends: SQLite + local files (the default, the baseline run in the
same call) and PostgreSQL + S3 (a team's registry).

    python benchmarks/registry_backends.py [--models 10] [--local-only]

The team backend runs against real servers: those of NBSERVE_REGISTRY_URL / NBSERVE_ARTIFACTS (and the AWS
variables) when set, otherwise a PostgreSQL and a SeaweedFS started for the run (tests/team_servers.py).
Capture (pickling, requirement inference) is done once before the clock: what is timed is the registry's part,
``store`` (write the artifact, allocate the version), ``load`` in a fresh workspace on another home (cold: the
artifact is fetched and verified), ``load`` again (warm: from the local cache, verified), and ``models()``.
With ``--local-only`` it uses only the public Workspace API of earlier nbserve versions too, so
``PYTHONPATH=/path/to/old/checkout python benchmarks/registry_backends.py --local-only`` gives a before/after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def quiet(*_args, **_kwargs):
    pass


def measure(models: int) -> dict:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    from nbserve.capture import capture
    from nbserve.workspace import Workspace

    X, y = load_diabetes(return_X_y=True)
    with tempfile.TemporaryDirectory() as tmp:
        writer = Workspace(Path(tmp) / "writer")
        captured = [capture(Ridge(alpha=1 + i).fit(X, y), label="bench", sample=X) for i in range(models)]
        times = {"store": [], "load_cold": [], "load_warm": [], "open": [], "models": []}
        for c in captured:
            t = time.perf_counter()
            writer._store(c, "bench", quiet)
            times["store"].append(time.perf_counter() - t)
        t = time.perf_counter()
        reader = Workspace(Path(tmp) / "reader")  # another machine's home (the same registry by default: its own)
        times["open"].append(time.perf_counter() - t)
        if reader.models() == []:  # the local backend: a home is a registry; read the writer's
            reader = Workspace(Path(tmp) / "writer")
        for i in range(1, models + 1):
            t = time.perf_counter()
            reader.load(f"bench:{i}")
            times["load_cold"].append(time.perf_counter() - t)
        for i in range(1, models + 1):
            t = time.perf_counter()
            reader.load(f"bench:{i}")
            times["load_warm"].append(time.perf_counter() - t)
        for _ in range(5):
            t = time.perf_counter()
            reader.models()
            times["models"].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--local-only", action="store_true")
    args = parser.parse_args()

    saved = {k: os.environ.pop(k) for k in ("NBSERVE_REGISTRY_URL", "NBSERVE_ARTIFACTS") if k in os.environ}
    results = {"sqlite + local files": measure(args.models)}
    if not args.local_only:
        servers = []
        if not saved:
            sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
            from team_servers import Postgres, SeaweedS3

            servers = [Postgres(), SeaweedS3()]
            saved = {"NBSERVE_REGISTRY_URL": servers[0].new_database(), "NBSERVE_ARTIFACTS": servers[1].new_prefix()}
            os.environ.update(servers[1].env())
        os.environ.update(saved)
        try:
            results["postgresql + s3"] = measure(args.models)
        finally:
            for server in servers:
                server.stop()
    base = results["sqlite + local files"]
    print(f"median milliseconds over {args.models} models (ratio to sqlite + local files)")
    print(f"{'backend':<22}" + "".join(f"{k:>18}" for k in base))
    for name, r in results.items():
        print(f"{name:<22}" + "".join(f"{r[k]:>9.1f} ({r[k] / base[k]:4.1f}x)" for k in base))


if __name__ == "__main__":
    main()
