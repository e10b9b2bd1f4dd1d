"""Time to first prediction with nbserve, in a fresh interpreter (run by serve_bench.py, or alone):

    NBSERVE_HOME=$(mktemp -d) python benchmarks/first_prediction.py [NAME] [--magic]
    python benchmarks/first_prediction.py --compare 5      # %serve lr beside nbserve.serve(lr), 5 rounds each

Like a notebook: the model is fitted and nbserve imported before the clock starts; the clock runs from
``nbserve.serve(lr, name=..., sample=X, runtime="process")`` on a model not yet registered (capture,
requirement inference and its proof included) to the first answer of the instance's client. With
``--magic`` the clock runs from ``inst = %serve lr --sample X --runtime process`` in a real IPython
shell (an ``InteractiveShell`` with the extension loaded) instead. Prints one ``RESULT {json}`` line
with the total and a timeline of nbserve's own progress messages.

``--compare N`` runs N rounds, each a fresh process per face with a fresh registry, the two faces
alternating, and prints both medians and their ratio (the magic may not be slower than the API).
"""

import json
import os
import sys
import threading
import time
from pathlib import Path


def compare(rounds: int) -> None:
    import statistics
    import subprocess
    import tempfile

    totals = {"api": [], "magic": []}
    before = {"api": [], "magic": []}
    for i in range(rounds):
        for face in ("api", "magic") if i % 2 == 0 else ("magic", "api"):
            with tempfile.TemporaryDirectory(prefix="nbserve-bench-") as home:
                args = [sys.executable, __file__, f"first{i}"] + (["--magic"] if face == "magic" else [])
                proc = subprocess.run(
                    args, env={**os.environ, "NBSERVE_HOME": home}, capture_output=True, text=True, timeout=300
                )
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                sys.exit(f"{face} run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
            result = json.loads(line[7:])
            totals[face].append(result["total_s"])
            # the face's own work before the server process is launched (capture, checks): where a face
            # could add time; the rest (the server starting, importing the model's libraries) is shared
            launch = next((t for t, m in result["timeline"] if m.startswith("starting ")), None)
            before[face].append(launch)
            print(f"round {i + 1}: {face:5s} {totals[face][-1]:.3f} s (server launched at {launch:.3f} s)", flush=True)
    api, magic = statistics.median(totals["api"]), statistics.median(totals["magic"])
    print(
        f"median time to first prediction over {rounds} rounds: nbserve.serve(lr) {api:.3f} s, %serve lr {magic:.3f} s"
    )
    print(f"%serve / nbserve.serve = {magic / api:.3f} (target <= 1.10: {'met' if magic / api <= 1.10 else 'NOT met'})")
    b_api, b_magic = statistics.median(before["api"]), statistics.median(before["magic"])
    print(f"median time until the server process is launched: nbserve.serve {b_api:.3f} s, %serve {b_magic:.3f} s")
    print(
        "RESULT "
        + json.dumps({"api_s": totals["api"], "magic_s": totals["magic"], "ratio": magic / api, "launch_s": before})
    )


if "--compare" in sys.argv:
    compare(int(sys.argv[sys.argv.index("--compare") + 1]))
    sys.exit(0)
if not os.environ.get("NBSERVE_HOME"):
    sys.exit("set NBSERVE_HOME to an empty temporary directory (never ~/.nbserve for a benchmark)")
MAGIC = "--magic" in sys.argv

t_import = time.perf_counter()
from sklearn.datasets import load_diabetes  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402

import nbserve  # noqa: E402

if MAGIC:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.extension_manager.load_extension("nbserve")
import_s = time.perf_counter() - t_import
X, y = load_diabetes(return_X_y=True)
lr = LinearRegression().fit(X, y)
args = [a for a in sys.argv[1:] if not a.startswith("--")]
name = args[0] if args else "first"

timeline = []
started = time.perf_counter()


def progress(message, fraction=None):
    timeline.append([round(time.perf_counter() - started, 4), message])


def watch_staging():
    """Note when the server's replay report and the kernel's handoff appear (see nbserve/workspace.py,
    PendingVersion): they split the wait into the server's start and the kernel's registration."""
    staging = Path(os.environ["NBSERVE_HOME"]) / "staging"
    seen = set()
    while len(seen) < 2 and not stop.is_set():
        for what in ("report.pkl", "handoff.json"):
            if what not in seen and any(staging.glob(f"*/{what}")):
                seen.add(what)
                timeline.append([round(time.perf_counter() - started, 4), f"({what} appeared)"])
        time.sleep(0.002)


stop = threading.Event()
watcher = threading.Thread(target=watch_staging, daemon=True)
watcher.start()
if MAGIC:
    import nbserve.magics

    nbserve.magics.console_progress = progress  # the magic's progress lines (a terminal shell), timed
    shell.user_ns.update(lr=lr, X=X)
    result = shell.run_cell(f"inst = %serve lr --name {name} --sample X --runtime process", silent=True)
    if not result.success:
        sys.exit(f"%serve failed: {result.error_in_exec or result.error_before_exec}")
    inst = shell.user_ns["inst"]
else:
    inst = nbserve.serve(lr, name=name, sample=X, runtime="process", progress=progress)
stop.set()
served = time.perf_counter()
answer = inst.client().predict(X[:1])
done = time.perf_counter()
try:
    assert abs(float(answer[0]) - float(lr.predict(X[:1])[0])) < 1e-9, (answer, lr.predict(X[:1]))
finally:
    inst.remove()
print(
    "RESULT "
    + json.dumps(
        {
            "total_s": done - started,
            "serve_s": served - started,
            "client_s": done - served,
            "import_s": import_s,
            "timeline": timeline,
        }
    )
)
