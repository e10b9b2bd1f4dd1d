"""Time to first prediction: nbserve against the floor, cold and warm, the API and the magic, in fresh processes.

    python benchmarks/first_prediction.py [--rounds 5] [--models linear,pipeline]
    NBSERVE_HOME=$(mktemp -d) python benchmarks/first_prediction.py NAME [--magic]    # one cold run (serve_bench)

For each model (the diabetes linear regression on an array; the HistGradientBoosting pipeline over the mixed
rentals frame of tests/models/frames.py), rounds interleaved, each measurement in a fresh process:

* **floor**: a fresh interpreter imports the model's libraries, unpickles the model and predicts one row,
  timed from its launch to its answer: what no server can beat;
* **cold**: ``nbserve.serve(model, name=..., sample=X, runtime="process")`` on a model not yet registered
  (capture, requirements, the proof, registration, the server's start) to the first answer of its client, in a
  process where the model was fitted and nbserve imported before the clock started, as in a notebook;
* **warm**: in that same process, once the warm server the first serve left behind is ready (the time a
  person takes to refit; the wait is reported), a second serve of another new model;
* **%serve** and **API**: ``inst = %serve model --sample X`` in a real IPython shell against ``nbserve.serve``,
  both cold with warm servers off (NBSERVE_WARM=0), so that only the faces differ; and **notebook**: %serve
  once ``%load_ext nbserve`` has had its warm server ready, as in a notebook whose first cell loads nbserve.

Targets (issue 21): cold <= 1.3 x floor, warm <= 0.3 x cold, %serve <= 1.1 x API. Prints one table per model
and a RESULT line with every run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "models"))  # frames.py: the rentals frame and its pipeline


def build(model: str, variant: int = 0):
    """(fitted model, sample, one row to predict) for a model family; ``variant`` fits another model of it."""
    if model == "linear":
        from sklearn.datasets import load_diabetes
        from sklearn.linear_model import LinearRegression

        X, y = load_diabetes(return_X_y=True)
        n = len(X) if variant == 0 else len(X) // 2
        return LinearRegression().fit(X[:n], y[:n]), X, X[:1]
    from frames import mixed_pipeline, rentals

    frame, target = rentals(seed=variant)
    return mixed_pipeline(frame, target), frame, frame.head(1)


# -- children (one measurement each, in a fresh process) ---------------------------------------------------


def child_floor(model: str, workdir: Path) -> dict:
    import cloudpickle

    fitted, _, row = build(model)
    import frames

    cloudpickle.register_pickle_by_value(frames)  # the floor's interpreter need not find tests/models
    (workdir / "model.pkl").write_bytes(cloudpickle.dumps((fitted, row)))
    script = (
        "import sys, pickle; m, row = pickle.load(open(sys.argv[1], 'rb')); m.predict(row); print('DONE', flush=True)"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script, str(workdir / "model.pkl")], capture_output=True, text=True)
    took = time.perf_counter() - started
    if "DONE" not in out.stdout:
        sys.exit(f"the floor's interpreter failed:\n{out.stderr[-3000:]}")
    return {"floor_s": took}


def _serve_and_predict(serve, fitted, row) -> float:
    started = time.perf_counter()
    inst = serve()
    answer = inst.client(timeout=60).predict(row)
    took = time.perf_counter() - started
    expected = fitted.predict(row)
    inst.remove()  # a process instance outlives its kernel: the benchmark leaves none behind
    assert list(map(float, answer)) == list(map(float, expected)), (answer, expected)
    return took


def child_api(model: str, warm_too: bool) -> dict:
    import nbserve

    fitted, sample, row = build(model)
    result = {
        "cold_s": _serve_and_predict(
            lambda: nbserve.serve(fitted, name="first", sample=sample, runtime="process", progress=False), fitted, row
        )
    }
    if warm_too:
        from nbserve.runtimes import warm

        started = time.perf_counter()
        warm._idle[sys.executable].controller().call("status", timeout=300)  # ready: its imports are done
        result["warm_ready_after_s"] = time.perf_counter() - started
        second, _, _ = build(model, variant=1)
        result["warm_s"] = _serve_and_predict(
            lambda: nbserve.serve(second, name="second", sample=sample, runtime="process", progress=False), second, row
        )
    return result


def child_magic(model: str, wait_for_warm: bool) -> dict:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    fitted, sample, row = build(model)
    shell.user_ns.update(model=fitted, X=sample)
    shell.extension_manager.load_extension("nbserve")
    waited = 0.0
    if wait_for_warm:
        from nbserve.runtimes import warm

        started = time.perf_counter()
        warm._idle[sys.executable].controller().call("status", timeout=300)
        waited = time.perf_counter() - started

    def serve():
        result = shell.run_cell("inst = %serve model --name first --sample X --runtime process", silent=True)
        if not result.success:
            sys.exit(f"%serve failed: {result.error_in_exec or result.error_before_exec}")
        return shell.user_ns["inst"]

    return {"magic_s": _serve_and_predict(serve, fitted, row), "warm_ready_after_s": waited}


# -- the parent ------------------------------------------------------------------------------------------------


def run_child(mode: str, model: str, warm: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="nbserve-bench-") as home:
        env = {**os.environ, "NBSERVE_HOME": home, "NBSERVE_WARM": "1" if warm else "0"}
        proc = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--model", model],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"{mode} run of {model} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(line[7:])


def main_table(rounds: int, models: list[str]) -> None:
    runs: dict = {m: [] for m in models}
    for i in range(rounds):
        for model in models:
            order = ["floor", "api-warm", "magic", "api", "notebook"]
            if i % 2:
                order.reverse()
            got: dict = {}
            for mode in order:
                if mode == "floor":
                    got.update(run_child("floor", model, warm=False))
                elif mode == "api-warm":
                    got.update(run_child("api-warm", model, warm=True))
                elif mode == "api":
                    got["api_s"] = run_child("api", model, warm=False)["cold_s"]
                elif mode == "magic":
                    got["magic_s"] = run_child("magic", model, warm=False)["magic_s"]
                else:
                    got["notebook_s"] = run_child("notebook", model, warm=True)["magic_s"]
            runs[model].append(got)
            print(f"round {i + 1} {model}: " + ", ".join(f"{k} {v:.3f}" for k, v in got.items()), flush=True)
    print()
    for model in models:
        med = {k: statistics.median(r[k] for r in runs[model]) for k in runs[model][0]}
        print(f"## {model} (medians of {rounds} rounds, seconds)\n")
        print(
            "| floor | cold serve | warm serve | warm server ready after | API (warm off) | %serve (warm off) "
            "| %serve after %load_ext |"
        )
        print("|---|---|---|---|---|---|---|")
        print(
            f"| {med['floor_s']:.2f} | {med['cold_s']:.2f} | {med['warm_s']:.2f} | {med['warm_ready_after_s']:.2f} "
            f"| {med['api_s']:.2f} | {med['magic_s']:.2f} | {med['notebook_s']:.2f} |\n"
        )
        for what, ratio, target in (
            ("cold serve / floor", med["cold_s"] / med["floor_s"], 1.3),
            ("warm serve / cold serve", med["warm_s"] / med["cold_s"], 0.3),
            ("%serve / nbserve.serve", med["magic_s"] / med["api_s"], 1.1),
        ):
            print(f"- {what}: {ratio:.2f} (target <= {target}: {'met' if ratio <= target else 'NOT met'})")
        print()
    print("RESULT " + json.dumps(runs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", help="one cold run of the linear model under this name (serve_bench's)")
    ap.add_argument("--magic", action="store_true", help="with NAME: through %%serve")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", default="linear,pipeline")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="linear", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child == "floor":
            with tempfile.TemporaryDirectory() as tmp:
                result = child_floor(args.model, Path(tmp))
        elif args.child in ("api", "api-warm"):
            result = child_api(args.model, warm_too=args.child == "api-warm")
        else:
            result = child_magic(args.model, wait_for_warm=args.child == "notebook")
        print("RESULT " + json.dumps(result), flush=True)
        return
    if args.name:  # one cold run, as serve_bench.py times it
        if not os.environ.get("NBSERVE_HOME"):
            sys.exit("set NBSERVE_HOME to an empty temporary directory (never ~/.nbserve for a benchmark)")
        os.environ["NBSERVE_WARM"] = "0"
        result = child_magic("linear", False) if args.magic else child_api("linear", warm_too=False)
        total = result.get("magic_s", result.get("cold_s"))
        print("RESULT " + json.dumps({"total_s": total, **result}), flush=True)
        return
    main_table(args.rounds, [m for m in args.models.split(",") if m])


if __name__ == "__main__":
    main()
