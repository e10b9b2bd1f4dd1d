"""The served app's fast path (see benchmarks/) behaves exactly like the path it shortcuts, under real
gunicorn: a body with a Content-Length is read straight from the stream, a chunked one through
werkzeug, and one over the limit is still a 413 either way."""

import numpy as np
import pytest
import requests

from nbserve.server import jsonio


@pytest.fixture
def served(workspace, diabetes):
    X, _, lr = diabetes
    inst = workspace.serve(lr, name="diabetes", sample=X, runtime="process", max_body=100_000, progress=False)
    yield inst, X, lr
    inst.remove()


def test_a_body_is_the_same_whether_sized_or_chunked(served):
    inst, X, lr = served
    body = jsonio.dumps({"data": X[:50]})
    sized = requests.post(inst.url + "/predict", data=body, headers={"Content-Type": "application/json"}, timeout=10)

    def chunks():  # no Content-Length: requests sends Transfer-Encoding: chunked
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    chunked = requests.post(
        inst.url + "/predict", data=chunks(), headers={"Content-Type": "application/json"}, timeout=10
    )
    assert sized.status_code == chunked.status_code == 200
    assert sized.json() == chunked.json()
    np.testing.assert_array_equal(np.asarray(sized.json()["data"]), lr.predict(X[:50]))
    # a request body of exactly the length declared, then the next request on a fresh connection
    assert requests.post(inst.url + "/predict", data=jsonio.dumps({"data": X[:1]}), timeout=10).status_code == 200


def test_over_the_limit_is_still_a_413_sized_or_chunked(served):
    inst, X, _ = served
    body = jsonio.dumps({"data": np.resize(X, (600, 10))})  # > 100,000 bytes
    assert len(body) > 100_000
    sized = requests.post(inst.url + "/predict", data=body, timeout=10)
    assert sized.status_code == 413 and "NBSERVE_MAX_BODY" in sized.json()["error"]["message"]

    def chunks():
        for i in range(0, len(body), 4096):
            yield body[i : i + 4096]

    try:
        chunked = requests.post(inst.url + "/predict", data=chunks(), timeout=10)
        assert chunked.status_code == 413
    except requests.ConnectionError:
        pass  # the server may close the connection while the client is still sending: also a refusal
    assert requests.get(inst.url + "/health", timeout=5).status_code == 200  # still serving
