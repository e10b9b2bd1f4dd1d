"""inst.update(ref) on the process runtime: a new version at the same URL and port, under a request loop,
without a failed request (the new server binds beside the old with SO_REUSEPORT; the old drains once the
new answers). Two model families: a linear model on a float array, a gradient-boosted model on a DataFrame
with mixed column types. The loop's counts and the time the update took are printed (pytest -s)."""

import json
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
from request_loop import RequestLoop

from nbserve.errors import NbserveError
from nbserve.runtimes.process import _alive


def report(what, **numbers):
    print(f"\n[deploy-report] {what}: " + json.dumps(numbers))


def health(url):
    with urllib.request.urlopen(url + "/health", timeout=5) as resp:
        return json.loads(resp.read())


def update_under_load(ws, v1, v2, body, seconds):
    inst = ws.serve(v1.id, runtime="process", progress=False)
    url, port, old = inst.url, inst.port, dict(inst._row.handle)
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
    assert not _alive(old["pid"], old["start_ticks"])  # the old server is gone, not left beside
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
