"""The warm server (runtimes/warm.py): after a serve, the kernel keeps one idle server interpreter with the model's
libraries imported; the next serve adopts it, and the instance it becomes outlives the kernel like any other.
An idle warm server exits with its kernel; NBSERVE_WARM=0 turns the whole thing off. The "kernel" here is a
real separate Python process, so that its exit can be watched."""

import json
import os
import subprocess
import sys
import time

import numpy as np

from nbserve.runtimes import warm
from nbserve.runtimes.process import _alive

KERNEL = """
import json, sys
import nbserve
from nbserve.runtimes import warm
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression

X, y = load_diabetes(return_X_y=True)
first = nbserve.serve(LinearRegression().fit(X, y), name="first", sample=X, runtime="process", progress=False)
server = warm._idle[sys.executable]
server.controller().call("status", timeout=300)  # answers once it has imported what the first model needs
second = LinearRegression().fit(X[:100], y[:100])
inst = nbserve.serve(second, name="second", sample=X, runtime="process", progress=False)
print("RESULT " + json.dumps({
    "instance": inst.id, "pid": inst._row.handle["pid"], "warm_pid": server.proc.pid,
    "next_warm_pid": warm._idle[sys.executable].proc.pid, "expected": second.predict(X[:5]).tolist(),
}))
"""


def test_the_next_serve_adopts_the_warm_server_which_outlives_its_kernel(workspace, diabetes):
    env = {**os.environ, "NBSERVE_HOME": str(workspace.home)}
    env.pop("NBSERVE_WARM", None)
    out = subprocess.run([sys.executable, "-c", KERNEL], env=env, capture_output=True, text=True, timeout=600)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, out.stdout[-2000:] + out.stderr[-3000:]
    result = json.loads(line[7:])
    assert result["pid"] == result["warm_pid"]  # the second instance is the warm server, adopted
    inst = workspace.get_instance(result["instance"])
    assert "(warm)" in inst.logs() and inst.status == "running"
    # its kernel has exited: the adopted server serves on; the idle one it left behind exits too
    X = diabetes[0]
    np.testing.assert_allclose(inst.client(timeout=30).predict(X[:5]), result["expected"])
    deadline = time.monotonic() + 20
    while _alive(result["next_warm_pid"], None) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(result["next_warm_pid"], None), "an idle warm server outlived its kernel"


def test_warm_servers_can_be_turned_off(workspace, diabetes, monkeypatch):
    X, y, lr = diabetes
    monkeypatch.setenv("NBSERVE_WARM", "0")
    idle = warm.take(sys.executable)
    if idle is not None:
        idle.stop()
    workspace.serve(lr, name="cold", sample=X, runtime="process", progress=False)
    assert warm.take(sys.executable) is None
