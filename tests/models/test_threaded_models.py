"""Models with native thread pools (OpenMP in xgboost, lightgbm, HistGradientBoosting; joblib threads in a
RandomForest with n_jobs=-1) answer through a forking gunicorn, with their default threading, exactly as in
the kernel, through every face that starts an instance: live ``serve(obj)`` (the server is also the proof),
``serve(name)`` of a registered version, the ``%serve`` magic in a real IPython shell, the console script
(``nbserve serve NAME``, then ``stop`` and ``start``) and the panel's Start button. They used to hang in
libgomp: the master ran OpenMP work (the replay, or unpickling) before forking the workers.

Each family is fitted and registered once per module; each path starts one instance per family (the process
runtime), asks it three times and removes it."""

import json

import numpy as np
import pytest
import requests
from nbserve_testing import run_cli

TIMEOUT = 20  # seconds per request: a hang fails fast

FAMILIES = ["xgboost", "lightgbm", "histgb", "random_forest"]


def make(family, X, y):
    if family == "xgboost":
        xgboost = pytest.importorskip("xgboost")
        return xgboost.XGBRegressor(n_estimators=20, max_depth=3).fit(X, y)
    if family == "lightgbm":
        lightgbm = pytest.importorskip("lightgbm")
        return lightgbm.LGBMRegressor(n_estimators=20, verbose=-1).fit(X, y)
    if family == "histgb":
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(max_iter=20).fit(X, y)
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=20, n_jobs=-1, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def model_of(diabetes):
    """model_of(family) -> the fitted model, fitted once per module."""
    X, y, _ = diabetes
    made = {}

    def get(family):
        if family not in made:
            made[family] = make(family, X, y)
        return made[family]

    return get


@pytest.fixture(scope="module")
def registered(module_workspace, model_of, diabetes):
    """registered(family) -> the family's model registered under its family name, once per module."""
    X = diabetes[0]
    done = {}

    def get(family):
        if family not in done:
            done[family] = module_workspace.register(model_of(family), name=family, sample=X[:50], progress=False)
        return done[family]

    return get


def assert_answers_like_the_kernel(url, model, X):
    # three requests: the first one hung before, and a pool that broke would break the next ones
    for rows in (X[:7], X[100:103], X[:1]):
        resp = requests.post(url + "/predict", json={"data": rows.tolist()}, timeout=TIMEOUT)
        assert resp.status_code == 200, resp.text
        np.testing.assert_allclose(resp.json()["data"], model.predict(rows), rtol=1e-6)


@pytest.mark.parametrize("path", ["live", "registered"])
@pytest.mark.parametrize("family", FAMILIES)
def test_threaded_model_answers_like_the_kernel(module_workspace, model_of, registered, diabetes, family, path):
    X = diabetes[0]
    model = model_of(family)
    if path == "live":
        inst = module_workspace.serve(model, name=f"{family}_live", sample=X[:50], runtime="process", progress=False)
    else:
        inst = module_workspace.serve(registered(family).id, runtime="process", progress=False)
    try:
        assert_answers_like_the_kernel(inst.url, model, X)
        # the proof's finding that decides where the model loads (server/forksafe.py): xgboost and lightgbm
        # start their OpenMP pool while unpickling, so each worker loads them; the others load in the master
        mv = module_workspace.get_model(inst.model)
        assert mv.manifest["load_starts_threads"] is (family in ("xgboost", "lightgbm"))
        # declared by xgboost on Linux, never imported by a CPU model: not in the lock (nor in an image)
        assert not [r for r in mv.requirements if r.lower().startswith("nvidia")], mv.requirements
    finally:
        inst.remove()


@pytest.mark.parametrize("family", FAMILIES)
def test_threaded_model_through_the_serve_magic(module_workspace, ipython, model_of, diabetes, family, monkeypatch):
    from nbserve.resources import Instance

    X = diabetes[0]
    model = model_of(family)
    monkeypatch.setenv("NBSERVE_HOME", str(module_workspace.home))  # the magic serves into $NBSERVE_HOME
    ipython.user_ns.update(model=model, X50=X[:50])
    try:
        result = ipython.run_cell(f"inst = %serve model --name {family}_magic --sample X50 --runtime process")
        assert result.success, result.error_in_exec
        inst = ipython.user_ns["inst"]
        assert isinstance(inst, Instance) and inst.status == "running" and inst.runtime == "process"
        try:
            assert_answers_like_the_kernel(inst.url, model, X)
        finally:
            inst.remove()
    finally:
        for name in ("model", "X50", "inst"):
            ipython.user_ns.pop(name, None)


def nbserve(home, *args):
    code, out, err = run_cli(home, *args)
    assert code == 0, err
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_threaded_model_through_the_cli_serve_stop_start(module_workspace, model_of, registered, diabetes, family):
    X = diabetes[0]
    mv = registered(family)
    home = module_workspace.home
    url = nbserve(home, "serve", mv.id, "--runtime", "process").strip().splitlines()[-1]
    [inst] = [i for i in json.loads(nbserve(home, "--json", "instances")) if i["url"] == url]
    try:
        assert inst["model"] == mv.id and inst["runtime"] == "process"
        assert_answers_like_the_kernel(url, model_of(family), X)
        assert nbserve(home, "stop", inst["id"]).strip() == f"{inst['id']} stopped"
        # started again from the console: a new server process loads the registered version afresh
        assert nbserve(home, "start", inst["id"]).strip() == f"{inst['id']} running"
        assert_answers_like_the_kernel(module_workspace.get_instance(inst["id"]).url, model_of(family), X)
    finally:
        module_workspace.remove(inst["id"])


@pytest.mark.parametrize("family", FAMILIES)
def test_threaded_model_through_the_panel_start_button(module_workspace, model_of, registered, diabetes, family):
    from nbserve.widgets import Panel

    X = diabetes[0]
    mv = registered(family)
    panel = Panel(module_workspace)
    try:
        before = set(panel.instance_ids)
        row = panel.model_row(mv.name)
        row.runtime.value = "process"
        row.start.click()  # the handler a click in the browser runs
        assert panel.last_error is None and panel.progress.state == "done"
        [new] = set(panel.instance_ids) - before
        inst = module_workspace.get_instance(new)
        try:
            assert inst.model == mv.id and inst.status == "running"
            assert_answers_like_the_kernel(inst.url, model_of(family), X)
        finally:
            inst.remove()
    finally:
        panel.close()
