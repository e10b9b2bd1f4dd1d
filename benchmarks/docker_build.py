"""Docker runtime: cold build vs rebuild of a new model version, container start, image size.

    NBSERVE_BASE_IMAGE=local/python:3.11-bookworm python benchmarks/docker_build.py [--starts 3]

Baselines run in the same call:
* the cold build (no image reused, no Docker layer cache, wheels downloaded into a fresh home) against
  which the rebuild of a new model version with the same requirements is compared;
* the process runtime's start-to-healthy, against which the container's start is compared;
* the base image's size, against which the model image's size is compared.
Everything it makes is in a temporary registry and removed at the end (containers and images by label).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from nbserve.runtimes.docker import engine_available, remove_labelled
from nbserve.workspace import Workspace


class Phases:
    """A progress callback that notes when each phase of a build began (from its messages)."""

    MARKS = (
        ("wheels", "downloading"),
        ("wheels", "wheelhouse"),
        ("deps image", "dependency"),
        ("model image", "image nbserve/"),
        ("readiness", "readiness check: starting"),
    )

    def __init__(self):
        self.start = time.perf_counter()
        self.first = {}
        self.cached = []

    def __call__(self, message, fraction=None):
        now = time.perf_counter() - self.start
        for phase, prefix in self.MARKS:
            if message.startswith(prefix) and phase not in self.first:
                self.first[phase] = now
        if "steps from the layer cache" in message:
            self.cached.append(message.split(": built, ")[-1])

    def split(self, total):
        order = sorted(self.first.items(), key=lambda kv: kv[1])
        out = {}
        for i, (phase, began) in enumerate(order):
            end = order[i + 1][1] if i + 1 < len(order) else total
            out[phase] = end - began
        return out


def fmt(split):
    return ", ".join(f"{k} {v:.1f} s" for k, v in split.items())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=3, help="container starts to time (median reported)")
    args = parser.parse_args()
    if not engine_available():
        sys.exit("no Docker engine answers: run .ci/setup-docker (as root), then this again")

    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression, Ridge

    X, y = load_diabetes(return_X_y=True)
    home = tempfile.mkdtemp(prefix="nbserve-bench-docker-")
    ws = Workspace(home)
    rt = ws.runtime("docker")
    try:
        v1 = ws.register(LinearRegression().fit(X, y), name="diabetes", sample=X, progress=False)
        v2 = ws.register(Ridge(alpha=0.5).fit(X, y), name="diabetes", sample=X, progress=False)
        assert v1.requirements == v2.requirements

        cold_p = Phases()
        cold = rt.build(v1, progress=cold_p, cache=False)
        warm_p = Phases()
        warm = rt.build(v2, progress=warm_p)
        t = time.perf_counter()
        again = rt.build(v2, progress=lambda *a, **k: None)
        reuse = time.perf_counter() - t
        assert again.id == warm.id

        client = rt.client
        base = client.images.get(os.environ.get("NBSERVE_BASE_IMAGE") or rt.images.base_image_name(v1))
        history = client.images.get(warm.id).history()

        starts = {}
        for runtime in ("process", "docker"):
            times = []
            for _ in range(args.starts):
                t = time.perf_counter()
                inst = ws.serve(v2.id, runtime=runtime, progress=False)
                times.append(time.perf_counter() - t)
                inst.remove()
            starts[runtime] = statistics.median(times)

        print(
            f"cold build of {cold.tag} (wheels downloaded, no layer cache): {cold.build_seconds:6.1f} s "
            f"({fmt(cold_p.split(cold.build_seconds))})"
        )
        print(
            f"rebuild for {warm.model} (same requirements):                {warm.build_seconds:6.1f} s "
            f"({fmt(warm_p.split(warm.build_seconds))}; {warm_p.cached[-1]})"
        )
        print(f"  rebuild / cold = {warm.build_seconds / cold.build_seconds:.3f}")
        mi = warm_p.split(warm.build_seconds).get("model image")
        ci = cold_p.split(cold.build_seconds).get("model image", 0) + cold_p.split(cold.build_seconds).get(
            "deps image", 0
        )
        if mi and ci:
            print(f"  docker build alone (no readiness check): {mi:.1f} s vs {ci:.1f} s cold = {mi / ci:.3f}")
        print(f"build when the image exists (found by label):      {reuse:6.2f} s")
        print(
            f"start to healthy, docker (median of {args.starts}):           {starts['docker']:6.2f} s; "
            f"process runtime {starts['process']:.2f} s; docker / process = "
            f"{starts['docker'] / starts['process']:.2f}"
        )
        layers = []
        for h in history:
            if h.get("Size", 0) > 1e5:
                dest = re.search(r"COPY \S+ in (\S+)", h.get("CreatedBy") or "")
                layers.append(f"{dest.group(1) if dest else 'base'} {h['Size'] / 1e6:.1f} MB")
        print(
            f"image size {warm.size / 1e6:.0f} MB vs base {base.attrs['Size'] / 1e6:.0f} MB "
            f"(x{warm.size / base.attrs['Size']:.2f}); layers over 100 kB: {', '.join(layers)}"
        )
    finally:
        for inst in ws.instances():
            ws.remove(inst.id)
        remove_labelled(str(ws.home))


if __name__ == "__main__":
    main()
