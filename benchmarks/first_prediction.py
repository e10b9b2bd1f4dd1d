"""Time to first prediction with nbserve, in a fresh interpreter (run by serve_bench.py, or alone):

    NBSERVE_HOME=$(mktemp -d) python benchmarks/first_prediction.py

Like a notebook: the model is fitted and nbserve imported before the clock starts; the clock runs from
``nbserve.serve(lr, name=..., sample=X, runtime="process")`` on a model not yet registered (capture,
requirement inference and its proof included) to the first answer of the instance's client. Prints
one ``RESULT {json}`` line with the total and a timeline of nbserve's own progress messages.
"""

import json
import os
import sys
import threading
import time
from pathlib import Path

if not os.environ.get("NBSERVE_HOME"):
    sys.exit("set NBSERVE_HOME to an empty temporary directory (never ~/.nbserve for a benchmark)")

t_import = time.perf_counter()
from sklearn.datasets import load_diabetes  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402

import nbserve  # noqa: E402

import_s = time.perf_counter() - t_import
X, y = load_diabetes(return_X_y=True)
lr = LinearRegression().fit(X, y)
name = sys.argv[1] if len(sys.argv) > 1 else "first"

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
