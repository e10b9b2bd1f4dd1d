"""The served app's HTTP contract, in process with Flask's test client: fast, and exact about 4xx."""

import numpy as np
import pytest

from nbserve.capture import capture
from nbserve.server import jsonio
from nbserve.server.app import make_app


def app_for(obj, sample, **kw):
    import cloudpickle

    cap = capture(obj, label="m", sample=sample, proof=False, **kw)
    return make_app(cloudpickle.loads(cap.pickle), cap.manifest, model_id="m:1", max_body=1_000_000)


@pytest.fixture(scope="module")
def lr_client(diabetes):
    X, _, lr = diabetes
    return app_for(lr, X).test_client()


def post(client, path, payload=None, raw=None, **kw):
    resp = client.post(
        path,
        data=raw if raw is not None else jsonio.dumps(payload),
        content_type=kw.pop("content_type", "application/json"),
        **kw,
    )
    return resp.status_code, resp.get_json()


def test_predict_equals_the_model(lr_client, diabetes):
    X, _, lr = diabetes
    status, body = post(lr_client, "/predict", {"data": X[:7].tolist()})
    assert status == 200
    np.testing.assert_array_equal(np.asarray(body["data"]), lr.predict(X[:7]))


def test_health_interface_and_openapi(lr_client):
    assert lr_client.get("/health").get_json() == {"status": "ok", "model": "m:1"}
    iface = lr_client.get("/interface.json").get_json()
    assert iface["model"] == "m:1"
    assert iface["methods"][0]["name"] == "predict"
    assert iface["methods"][0]["input"] == {"type": "ndarray", "dtype": "float64", "shape": [None, 10]}
    spec = lr_client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["data"]["items"]["maxItems"] == 10
    docs = lr_client.get("/docs")
    assert docs.status_code == 200 and b"openapi.json" in docs.data and b"cdn" not in docs.data.lower()


@pytest.mark.parametrize(
    "raw, status, says",
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, '{"data": ...}'),
        (b'{"rows": []}', 400, '{"data": ...}'),
        (b'{"data": [[1, 2, 3]]}', 400, "shape [N, 10]"),
        (b'{"data": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}', 400, "got shape [10]"),
        (b'{"data": [["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]]}', 400, "got strings"),
        (b'{"data": [[1, 2], [1, 2, 3]]}', 400, "different lengths"),
        (b'{"data": []}', 400, "at least one row"),
        (b'{"data": "hello"}', 400, "got a string"),
        (b"\xff\xfe", 400, "not valid JSON"),
    ],
)
def test_bad_input_is_a_4xx_that_says_what_was_expected(lr_client, diabetes, raw, status, says):
    got, body = post(lr_client, "/predict", raw=raw)
    assert got == status
    assert set(body["error"]) == {"type", "message"}
    assert says in body["error"]["message"]
    X = diabetes[0]
    assert post(lr_client, "/predict", {"data": X[:1].tolist()})[0] == 200  # still serving


def test_unknown_method_wrong_verb_and_oversized_body(lr_client):
    status, body = post(lr_client, "/predict_proba", {"data": [[0] * 10]})
    assert status == 404 and "serves ['predict']" in body["error"]["message"]
    resp = lr_client.get("/predict")
    assert resp.status_code == 405 and "POST" in resp.get_json()["error"]["message"]
    status, body = post(lr_client, "/predict", raw=b'{"data": [' + b"1," * 600_000 + b"1]}")
    assert status == 413 and "NBSERVE_MAX_BODY" in body["error"]["message"]


def test_the_default_body_limit_bounds_a_workers_memory_and_says_how_to_raise_it(diabetes, monkeypatch):
    """16 MiB by default (a 64 MiB JSON body took a worker to 1.3 GB: benchmarks/body_memory.py); a 413 names
    the limit and how to raise it, and serve(..., max_body=...) does raise it."""
    import cloudpickle

    X, _, lr = diabetes
    monkeypatch.delenv("NBSERVE_MAX_BODY", raising=False)
    cap = capture(lr, label="m", sample=X, proof=False)
    row = b"[" + b",".join([b"0.5"] * 10) + b"]"
    body = b'{"data": [' + b",".join([row] * 400_000) + b"]}"  # 17.2 MB
    assert 16 * 2**20 < len(body) < 18 * 2**20
    default = make_app(cloudpickle.loads(cap.pickle), cap.manifest, model_id="m:1").test_client()
    status, answer = post(default, "/predict", raw=body)
    assert status == 413, status
    message = answer["error"]["message"]
    assert f"limit of {16 * 2**20} bytes" in message and "max_body=BYTES" in message and "NBSERVE_MAX_BODY" in message
    raised = make_app(cloudpickle.loads(cap.pickle), cap.manifest, model_id="m:1", max_body=32 * 2**20)
    status, answer = post(raised.test_client(), "/predict", raw=body)
    assert status == 200 and len(answer["data"]) == 400_000


def test_the_openapi_document_says_what_the_server_does(diabetes):
    """/metrics and /drift listed, a 400 and a 413 on every POST; with a token, the bearer scheme on every
    operation but the health probes' GETs, each with a 401 (schemathesis --checks all: tests/reliability)."""
    import cloudpickle

    from nbserve.server.auth import token_sha256

    X, _, lr = diabetes
    cap = capture(lr, label="m", sample=X, proof=False)
    for token in (None, "a-token-of-sixteen-chars"):
        digest = token_sha256(token) if token else None
        client = make_app(cloudpickle.loads(cap.pickle), cap.manifest, model_id="m:1", auth_sha256=digest).test_client()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        doc = client.get("/openapi.json", headers=headers).get_json()
        assert {"/metrics", "/drift", "/health", "/predict", "/invocations"} <= set(doc["paths"])
        for path, item in doc["paths"].items():
            for verb, op in item.items():
                if verb == "post":
                    assert {"400", "413"} <= set(op["responses"]), (path, op["responses"].keys())
                probe = verb == "get" and path in ("/health", "/ping", "/v2/health/live", "/v2/health/ready")
                if token and not probe:
                    assert "401" in op["responses"] and "security" not in op, (path, verb)
                    assert client.open(path, method=verb.upper()).status_code == 401, (path, verb)
                elif token:
                    assert op["security"] == [] and client.get(path).status_code == 200, path
        if token:
            assert doc["components"]["securitySchemes"]["bearer"] == {
                "type": "http",
                "scheme": "bearer",
                "description": "Instance.auth_token",
            }
            assert doc["security"] == [{"bearer": []}]
        else:
            assert "security" not in doc and "securitySchemes" not in doc["components"]


VERBS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/health",
        "/interface.json",
        "/openapi.json",
        "/docs",
        "/metrics",
        "/drift",
        "/predict",
        "/invocations",
        "/ping",
        "/version",
        "/v1/models",
        "/v1/models/m",
        "/v1/models/m:predict",
        "/v2",
        "/v2/health/live",
        "/v2/models/m",
        "/v2/models/m/infer",
        "/v2/models/m/versions/1/ready",
    ],
)
def test_every_405_says_in_allow_what_the_route_takes(lr_client, path):
    """RFC 9110: a 405 carries Allow, naming the methods the route answers; each of them is not a 405."""
    allowed = None
    for verb in VERBS:
        resp = lr_client.open(path, method=verb, data=b'{"data": [[0]]}', content_type="application/json")
        if resp.status_code == 405:
            assert "Allow" in resp.headers, (verb, path)
            listed = {m.strip() for m in resp.headers["Allow"].split(",")}
            assert allowed in (None, listed) and verb not in listed, (verb, path, listed)
            allowed = listed
            if verb == "HEAD":
                continue  # no body
            body = resp.get_json()["error"]
            assert body["type"] == "MethodNotAllowed" and all(m in body["message"] for m in listed), body
    assert allowed, f"no verb was refused on {path}"
    for verb in allowed:
        resp = lr_client.open(path, method=verb, data=b'{"data": [[0]]}', content_type="application/json")
        assert resp.status_code != 405, (verb, path)


def test_an_exception_in_the_model_is_a_json_500_and_serving_goes_on():
    def fragile(rows):
        if rows[0] == "boom":
            raise ZeroDivisionError("the model divided by zero")
        return [r.upper() for r in rows]

    client = app_for(fragile, ["a", "b"]).test_client()
    status, body = post(client, "/fragile", {"data": ["boom"]})
    assert status == 500
    assert body["error"] == {
        "type": "ModelError",
        "message": "fragile raised ZeroDivisionError: the model divided by zero",
    }
    assert post(client, "/fragile", {"data": ["x"]}) == (200, {"data": ["X"]})


def test_dataframe_input_in_three_layouts(iris):
    Xi, _, clf = iris
    client = app_for(clf, Xi).test_client()
    expected = clf.predict_proba(Xi[:2]).tolist()
    records = Xi[:2].to_dict(orient="records")
    columns = Xi[:2].to_dict(orient="list")
    split = {"columns": list(Xi.columns), "data": Xi[:2].to_numpy().tolist()}
    for data in (records, columns, split):
        status, body = post(client, "/predict_proba", {"data": data})
        assert status == 200
        np.testing.assert_allclose(body["data"], expected)
    status, body = post(client, "/predict", {"data": [{"sepal length (cm)": 1.0}]})
    assert status == 400 and "missing columns" in body["error"]["message"]
    status, body = post(client, "/predict", {"data": [{c: "x" for c in Xi.columns}]})
    assert status == 400 and "column 'sepal length (cm)'" in body["error"]["message"]
    assert "expected numbers" in body["error"]["message"]
    # found by the fuzzing: pandas raised on these before they reached the model (500s)
    for odd in ({"columns": [None, []], "data": []}, {"columns": ["a", "a"], "data": [[1, 2]]}):
        status, body = post(client, "/predict", {"data": odd})
        assert status == 400 and "distinct column names" in body["error"]["message"]
