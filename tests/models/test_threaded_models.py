"""Models with native thread pools (OpenMP in xgboost, lightgbm, HistGradientBoosting; joblib threads in a
RandomForest with n_jobs=-1) answer through a forking gunicorn, live (the server is also the proof) and
registered, with their default threading, exactly as in the kernel. They used to hang in libgomp: the
master ran OpenMP work (the replay, or unpickling) before forking the workers."""

import numpy as np
import pytest
import requests

TIMEOUT = 20  # seconds per request: a hang fails fast


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


FAMILIES = ["xgboost", "lightgbm", "histgb", "random_forest"]


# live for every family; registered for one model each side of the fork decision (loaded in the workers,
# loaded in the master): the two server code paths (replay.py, forksafe.app_for)
CASES = [(f, "live") for f in FAMILIES] + [("xgboost", "registered"), ("histgb", "registered")]


@pytest.mark.parametrize("family,path", CASES)
def test_threaded_model_answers_like_the_kernel(module_workspace, diabetes, family, path):
    X, y, _ = diabetes
    model = make(family, X, y)
    name = f"{family}_{path}"
    if path == "live":
        inst = module_workspace.serve(model, name=name, sample=X[:50], runtime="process", progress=False)
    else:
        module_workspace.register(model, name=name, sample=X[:50], progress=False)
        inst = module_workspace.serve(name, runtime="process", progress=False)
    try:
        # three requests: the first one hung before, and a pool that broke would break the next ones
        for rows in (X[:7], X[100:103], X[:1]):
            resp = requests.post(inst.url + "/predict", json={"data": rows.tolist()}, timeout=TIMEOUT)
            assert resp.status_code == 200, resp.text
            np.testing.assert_allclose(resp.json()["data"], model.predict(rows), rtol=1e-6)
        # the proof's finding that decides where the model loads (server/forksafe.py): xgboost and lightgbm
        # start their OpenMP pool while unpickling, so each worker loads them; the others load in the master
        mv = module_workspace.get_model(inst.model)
        assert mv.manifest["load_starts_threads"] is (family in ("xgboost", "lightgbm"))
        # declared by xgboost on Linux, never imported by a CPU model: not in the lock (nor in an image)
        assert not [r for r in mv.requirements if r.lower().startswith("nvidia")], mv.requirements
    finally:
        inst.remove()
