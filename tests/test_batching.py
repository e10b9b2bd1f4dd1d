"""Adaptive batching (nbserve/server/batching.py), on the process runtime's real gunicorn: concurrent
requests get the kernel's answers, a bad request gets its own 4xx (or 500) while its neighbours get theirs,
and the request deadline still holds."""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from nbserve.errors import NbserveError

TIMEOUT = 30


def _post_all(url, bodies, threads=32):
    """POST every body at once (``threads`` at a time); [(status, json)] in the order of ``bodies``."""

    def post(body):
        r = requests.post(url, json=body, timeout=TIMEOUT)
        return r.status_code, r.json()

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(post, bodies))


def test_concurrent_requests_on_an_array_get_the_kernels_answers_and_bad_ones_their_own_400(workspace, diabetes):
    X, _, lr = diabetes
    inst = workspace.serve(lr, name="diabetes", sample=X, runtime="process", batch=True, max_batch=16, progress=False)
    slices = [slice(i, i + 1 + i % 4) for i in range(120)]  # 1 to 4 rows each
    bodies = [{"data": X[s].tolist()} for s in slices]
    for bad in (5, 37, 90):
        bodies[bad] = {"data": [[1.0, 2.0]]}  # 2 columns, the model takes 10
    bodies[61] = {"data": [["x"] * 10]}
    answers = _post_all(inst.url + "/predict", bodies)
    for i, (status, body) in enumerate(answers):
        if i in (5, 37, 90, 61):
            assert status == 400 and body["error"]["type"] == "InvalidInput", (i, body)
        else:
            assert status == 200, (i, body)
            np.testing.assert_allclose(body["data"], lr.predict(X[slices[i]]), rtol=1e-12, atol=1e-9)


def test_requests_share_model_calls_and_each_gets_its_own_rows(workspace):
    # the model answers each row with the number of rows in its call: which requests shared one
    def call_size(x):
        return np.full(len(x), float(len(x)))

    inst = workspace.serve(
        call_size, sample=np.zeros((2, 3)), runtime="process", batch=True, max_batch=64, progress=False
    )
    bodies = [{"data": np.zeros((1 + i % 3, 3)).tolist()} for i in range(96)]
    sizes = []
    for status, body in _post_all(inst.url + "/call_size", bodies):
        assert status == 200, body
        sizes.append(body["data"])
    assert [len(s) for s in sizes] == [1 + i % 3 for i in range(96)]  # each request got its own rows back
    assert max(s[0] for s in sizes) > 3, "concurrent requests never shared a model call"
    assert max(s[0] for s in sizes) <= 64
    report = requests.get(inst.url + "/batching", timeout=TIMEOUT).json()  # what the batcher says it did
    assert report["requests"] == 96 and report["model_calls"] < 96 and report["max_batch"] == 64
    assert report["window"]["wait_ms"]["p99"] >= 0 and report["window"]["call_ms"]["max"] > 0


def _mixed_frame(n, seed=0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.uniform(18, 80, n),
            "visits": rng.integers(0, 20, n),
            "plan": pd.Categorical(rng.choice(["basic", "pro", "team"], n), categories=["basic", "pro", "team"]),
            "region": rng.choice(["north", "south", "east", "west"], n).astype(object),
        }
    )


def test_gradient_boosting_on_a_mixed_frame_one_bad_request_among_good_ones(workspace):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = _mixed_frame(300)
    y = (frame["age"] > 45) ^ (frame["plan"] == "pro")
    model = make_pipeline(
        ColumnTransformer(
            [("cat", OneHotEncoder(handle_unknown="error"), ["plan", "region"])], remainder="passthrough"
        ),
        GradientBoostingClassifier(n_estimators=30, random_state=0),
    ).fit(frame, y)
    inst = workspace.serve(
        model, name="churn", sample=frame, runtime="process", batch=True, max_latency_ms=20, progress=False
    )
    rows = [frame.iloc[i : i + 1 + i % 2] for i in range(80)]
    bodies = [{"data": r.to_dict(orient="records")} for r in rows]
    bodies[11] = {"data": [{"age": 30.0, "visits": 3, "plan": "pro"}]}  # no region: refused before batching
    bodies[47] = {"data": [{"age": 30.0, "visits": 3, "plan": "pro", "region": "mars"}]}  # the model refuses it
    answers = _post_all(inst.url + "/predict_proba", bodies)
    expected = model.predict_proba(frame.iloc[:81])  # one call: rows[i] is frame.iloc[i : i + 1 + i % 2]
    for i, (status, body) in enumerate(answers):
        if i == 11:
            assert status == 400 and "region" in body["error"]["message"], body
        elif i == 47:
            assert status == 500 and body["error"]["type"] == "ModelError", body
        else:
            assert status == 200, (i, body)
            np.testing.assert_allclose(body["data"], expected[i : i + 1 + i % 2], rtol=1e-9)


def test_the_request_deadline_holds_and_the_server_recovers(workspace):
    def nap(x):
        time.sleep(float(x[0, 0]))
        return x[:, 0]

    inst = workspace.serve(nap, sample=np.zeros((1, 1)), runtime="process", batch=True, timeout=1, progress=False)
    started = time.monotonic()
    slow = requests.post(inst.url + "/nap", json={"data": [[4.0]]}, timeout=TIMEOUT)
    assert slow.status_code == 504 and slow.json()["error"]["type"] == "Timeout"
    assert time.monotonic() - started < 3.5
    deadline = time.monotonic() + 20  # the worker is replaced; then the server answers again
    while True:
        try:
            r = requests.post(inst.url + "/nap", json={"data": [[0.0], [0.0]]}, timeout=TIMEOUT)
            if r.status_code == 200:
                assert r.json()["data"] == [0.0, 0.0]
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "the server did not answer again after the timeout"
        time.sleep(0.2)


@pytest.mark.parametrize(
    "options",
    [{"max_batch": 8}, {"batch": True, "max_batch": 0}, {"batch": True, "max_latency_ms": -1}],
)
def test_batching_options_are_checked(workspace, diabetes, options):
    X, _, lr = diabetes
    with pytest.raises(NbserveError, match="max_batch|max_latency_ms"):
        workspace.serve(lr, name="diabetes", sample=X, runtime="process", progress=False, **options)


def test_a_stopped_instance_starts_again_with_batching_from_the_cli_and_the_api(workspace, diabetes):
    from nbserve_testing import run_cli as nbserve

    X, _, lr = diabetes
    workspace.register(lr, name="diabetes", sample=X, progress=False)
    code, _, err = nbserve(workspace.home, "start", "diabetes", "--batch")  # a version: `serve` starts one
    assert code == 1 and "diabetes:1 is registered but has no instance" in err and "nbserve serve diabetes" in err
    inst = workspace.serve("diabetes", runtime="process", progress=False)
    assert inst.batching is None and requests.get(inst.url + "/batching", timeout=TIMEOUT).status_code == 404
    inst.stop()

    code, out, err = nbserve(workspace.home, "start", inst.id, "--batch", "--max-batch", "8", "--max-latency-ms", "3")
    assert code == 0 and f"{inst.id} running (batching)" in out, err
    inst.reload()
    assert inst.batching == {"max_batch": 8, "max_latency_ms": 3.0}  # kept in the registry for later starts
    report = requests.get(inst.url + "/batching", timeout=TIMEOUT).json()
    assert (report["max_batch"], report["max_latency_ms"]) == (8, 3.0)
    answers = _post_all(inst.url + "/predict", [{"data": X[i : i + 1].tolist()} for i in range(64)], threads=16)
    assert all(status == 200 for status, _ in answers)
    np.testing.assert_allclose([b["data"][0] for _, b in answers], lr.predict(X[:64]), rtol=1e-12, atol=1e-9)
    assert requests.get(inst.url + "/batching", timeout=TIMEOUT).json()["requests"] == 64

    code, _, err = nbserve(workspace.home, "start", inst.id, "--no-batch")  # running: changing it needs a stop
    assert code == 1 and "stop it first" in err
    code, _, err = nbserve(workspace.home, "start", inst.id, "--max-batch", "0")
    assert code == 1 and "max_batch must be a number of rows per model call >= 1" in err

    inst.stop()
    inst.start(batch=False, progress=False)  # the Python API: off again
    assert inst.status == "running" and inst.batching is None
    assert requests.get(inst.url + "/batching", timeout=TIMEOUT).status_code == 404
    np.testing.assert_allclose(inst.client(timeout=TIMEOUT).predict(X[:5]), lr.predict(X[:5]), rtol=1e-12)
