"""inst.update(ref) on the process runtime: a new version at the same URL and port, under a request loop,
without a failed request. The running server loads the new version and forks new workers on the same
listening socket, the old ones finish what they hold (server/master.py); a version registered by another
interpreter gets a new server, to which the old one hands its listening socket. Two model families: a linear
model on a float array, a gradient-boosted model on a DataFrame with mixed column types. The loop's counts and
the time the update took are printed (pytest -s)."""

import json
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
from request_loop import RequestLoop

from nbserve.errors import NbserveError
from nbserve.runtimes.process import _alive
from nbserve.server import control


def report(what, **numbers):
    print(f"\n[deploy-report] {what}: " + json.dumps(numbers))


def health(url):
    with urllib.request.urlopen(url + "/health", timeout=5) as resp:
        return json.loads(resp.read())


def server_status(inst):
    return control.Controller(control.address(inst._row.handle["control"])).call("status", timeout=10)


def update_under_load(ws, v1, v2, body, seconds):
    inst = ws.serve(v1.id, runtime="process", progress=False)
    url, port, old = inst.url, inst.port, dict(inst._row.handle)
    old_workers = set(server_status(inst)["workers"])
    with RequestLoop(lambda: [url], body) as loop:
        time.sleep(1)
        started = time.monotonic()
        inst.update(v2.id, progress=False)
        took = time.monotonic() - started
        loop.run_for_at_least(seconds)
    report(
        f"process update {v1.id}->{v2.id}",
        update_seconds=round(took, 2),
        loop_seconds=round(loop.seconds, 1),
        requests=loop.requests,
        retries=loop.retries,
        failures=len(loop.failures),
    )
    assert not loop.failures, loop.summary()
    assert (inst.url, inst.port, inst.model, inst.status) == (url, port, v2.id, "running")
    assert ws.get_instance(inst.id).model == v2.id  # the registry records the version it serves
    assert health(url)["model"] == v2.id
    status = server_status(inst)
    if inst._row.handle["pid"] == old["pid"]:  # updated in place: the old workers are gone, none left beside
        assert status["model_id"] == v2.id and not status["retiring"]
        assert old_workers.isdisjoint(status["workers"]) and all(not _alive(pid, None) for pid in old_workers)
    else:  # a new server took the socket over: the old one is gone
        assert not _alive(old["pid"], old["start_ticks"])
    return inst, loop


def test_update_a_linear_model_under_a_20_s_loop(workspace, diabetes):
    from sklearn.linear_model import Ridge

    X, y, lr = diabetes
    v1 = workspace.register(lr, name="diabetes", sample=X, progress=False)
    v2 = workspace.register(Ridge(alpha=0.5).fit(X, y), name="diabetes", sample=X, progress=False)
    inst, loop = update_under_load(workspace, v1, v2, {"data": X[:2].tolist()}, seconds=20)
    answers = {round(float(m.predict(X[:2])[0]), 6) for m in (lr, v2.load())}
    assert set(loop.answers) == answers  # both versions answered the loop, nothing else did
    np.testing.assert_allclose(inst.client().predict(X[:5]), v2.load().predict(X[:5]))


def test_update_a_boosted_model_on_a_mixed_dataframe(workspace):
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.normal(50, 10, n),
            "city": pd.Categorical(rng.choice(["paris", "lyon", "nice"], n)),
        }
    )
    target = frame["income"] * 2 + frame["age"] + (frame["city"] == "lyon") * 10
    models = [
        HistGradientBoostingRegressor(max_iter=iters, categorical_features="from_dtype", random_state=0).fit(
            frame, target
        )
        for iters in (20, 40)
    ]
    v1, v2 = (workspace.register(m, name="houses", sample=frame, progress=False) for m in models)
    body = {"data": {"columns": list(frame.columns), "data": frame.head(2).astype(object).values.tolist()}}
    inst, loop = update_under_load(workspace, v1, v2, body, seconds=5)
    np.testing.assert_allclose(inst.client().predict(frame.head(5)), models[1].predict(frame.head(5)))


def test_a_version_of_another_interpreter_gets_a_new_server_that_takes_the_socket_over(
    workspace, diabetes, tmp_path, monkeypatch
):
    """A version registered by another interpreter cannot be loaded by the running server: a new server starts
    under that interpreter on the listening socket the old one hands over (the port never closes)."""
    import os
    import sys

    from sklearn.linear_model import Ridge

    X, y, lr = diabetes
    v1 = workspace.register(lr, name="diabetes", sample=X, progress=False)
    # another virtual environment whose packages are this one's (a .pth file names them)
    import site
    import sysconfig

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {os.path.dirname(os.path.realpath(sys.executable))}\n")
    own_site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    own_site.mkdir(parents=True)
    (own_site / "shared.pth").write_text("\n".join([*site.getsitepackages(), sysconfig.get_paths()["purelib"]]))
    other_python = venv / "bin" / "python3"
    os.symlink(os.path.realpath(sys.executable), other_python)
    with monkeypatch.context() as m:
        m.setattr(sys, "executable", str(other_python))
        v2 = workspace.register(Ridge(alpha=0.5).fit(X, y), name="diabetes", sample=X, progress=False)
    assert v2.python_executable == str(other_python)
    inst, loop = update_under_load(workspace, v1, v2, {"data": X[:2].tolist()}, seconds=3)
    assert inst._row.handle["python"] == str(other_python)
    np.testing.assert_allclose(inst.client().predict(X[:5]), v2.load().predict(X[:5]))


def test_update_refuses_another_model_and_the_docker_runtime_says_why(workspace, diabetes):
    X, y, lr = diabetes
    v1 = workspace.register(lr, name="diabetes", sample=X, progress=False)
    other = workspace.register(lr, name="other", sample=X, progress=False)
    inst = workspace.serve(v1.id, runtime="process", progress=False)
    with pytest.raises(NbserveError, match="not other:1"):
        inst.update(other.id)
    inst.stop()
    with pytest.raises(NbserveError, match="start it first"):
        inst.update(v1.id)
