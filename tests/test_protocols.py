"""The other protocols a served model speaks (nbserve/server/protocols/): MLflow's scoring protocol, the
Open Inference Protocol (KServe V2: Triton, MLServer) and KServe V1.

In process (Flask's test client): the error forms and statuses, the routes in /openapi.json, the default
method. Against real instances (the process runtime and a Docker container), with the ecosystem's own
clients: tritonclient's InferenceServerClient, payloads made by MLflow's own serialisation (MLflow runs in
its own venv, .ci/setup-mlflow, as its pins fight ours), KServe V1 payloads. Every answer is compared with
the kernel's: the model called here, in the test process.

Two frame models: ``churn`` (float, int, category, bool; also in the Docker image) and ``rentals`` (dates,
NaN, NA and None among floats, nullable integers, categories, booleans and strings: tests/models/frames.py,
HistGradientBoosting behind a ColumnTransformer), in process and on both runtimes.
"""

import io
import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import requests
from models.frames import mixed_pipeline, rentals
from nbserve_testing import base_image, need, need_docker

from nbserve.capture import capture
from nbserve.errors import NbserveError
from nbserve.server import jsonio
from nbserve.server.app import make_app
from nbserve.server.schema import frame_records, frame_split
from nbserve.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
MLFLOW_PYTHON = Path(os.environ.get("NBSERVE_MLFLOW_PYTHON", ROOT / ".venv-mlflow" / "bin" / "python"))
TIMEOUT = 30


@pytest.fixture(scope="session")
def churn():
    """(mixed-type frame, fitted gradient-boosting pipeline): float, int, category and bool columns, one-hot
    encoded before scikit-learn's HistGradientBoostingClassifier (OpenMP: the workers load it after the fork,
    nbserve/server/forksafe.py). The rentals frame below adds dates and missing values."""
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(7)
    n = 400
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 12, n).round(3),
            "age": rng.integers(18, 80, n),
            "region": pd.Categorical(rng.choice(["north", "south", "east", "west"], n)),
            "member": rng.random(n) > 0.5,
        }
    )
    y = ((frame.income + (frame.region == "north") * 8 + frame.member * 5 - frame.age * 0.1) > 52).astype(int)
    encode = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["region"]), remainder="passthrough")
    model = make_pipeline(encode, HistGradientBoostingClassifier(max_iter=40, random_state=0))
    return frame, model.fit(frame, y)


@pytest.fixture(scope="session")
def real_frame():
    """(the rentals frame, its HistGradientBoosting pipeline): the columns real data has."""
    frame, target = rentals()
    return frame, mixed_pipeline(frame, target)


def app_for(obj, sample, model_id="diabetes:1", methods=None, **kw):
    import cloudpickle

    cap = capture(obj, label="m", sample=sample, proof=False, methods=methods)
    return make_app(cloudpickle.loads(cap.pickle), cap.manifest, model_id=model_id, max_body=1_000_000, **kw)


@pytest.fixture(scope="module")
def lr_app(diabetes):
    X, _, lr = diabetes
    return app_for(lr, X).test_client()


@pytest.fixture(scope="module")
def churn_app(churn):
    frame, model = churn
    return app_for(model, frame, model_id="churn:3").test_client()


@pytest.fixture(scope="module")
def rentals_app(real_frame):
    frame, model = real_frame
    return app_for(model, frame, model_id="rentals:1").test_client()


def post(client, path, payload=None, raw=None, content_type="application/json"):
    resp = client.post(path, data=raw if raw is not None else jsonio.dumps(payload), content_type=content_type)
    return resp.status_code, resp.get_json()


# -- in process: answers, error forms, routes ----------------------------------------------------------


def test_every_protocol_answers_what_the_native_route_answers(lr_app, diabetes):
    X, _, lr = diabetes
    want = lr.predict(X[:5]).tolist()
    assert post(lr_app, "/predict", {"data": X[:5].tolist()}) == (200, {"data": want})
    assert post(lr_app, "/invocations", {"inputs": X[:5].tolist()}) == (200, {"predictions": want})
    assert post(lr_app, "/v1/models/diabetes:predict", {"instances": X[:5].tolist()}) == (200, {"predictions": want})
    nested = {"name": "x", "shape": [5, 10], "datatype": "FP64", "data": X[:5].tolist()}
    flat = {**nested, "data": X[:5].ravel().tolist()}
    for tensor in (nested, flat):
        status, body = post(lr_app, "/v2/models/diabetes/versions/1/infer", {"id": "42", "inputs": [tensor]})
        assert status == 200
        assert body == {
            "model_name": "diabetes",
            "model_version": "1",
            "outputs": [{"name": "predict", "datatype": "FP64", "shape": [5], "data": want}],
            "id": "42",
        }


@pytest.mark.parametrize(
    "path, payload, raw, content_type, status, code, says",
    [
        ("/invocations", None, b"{oops", "application/json", 400, "BAD_REQUEST", "not valid JSON"),
        ("/invocations", {"rows": [[1]]}, None, "application/json", 400, "BAD_REQUEST", "exactly one of"),
        (
            "/invocations",
            {"inputs": [[1]], "instances": [[1]]},
            None,
            "application/json",
            400,
            "BAD_REQUEST",
            "exactly one",
        ),
        (
            "/invocations",
            {"inputs": [[1, 2]]},
            None,
            "application/json",
            400,
            "INVALID_PARAMETER_VALUE",
            "shape [N, 10]",
        ),
        (
            "/invocations",
            {"inputs": [[0] * 10], "params": {"alpha": 1}},
            None,
            "application/json",
            400,
            "BAD_REQUEST",
            "no params",
        ),
        ("/invocations", None, b"a,b\n1,2\n", "text/csv", 400, "INVALID_PARAMETER_VALUE", "shape [N, 10]"),
        ("/invocations", None, b"a,b\n1,2,3\n", "text/csv", 400, "BAD_REQUEST", "2 values"),
        ("/invocations", None, b"[[1]]", "text/plain", 415, "BAD_REQUEST", "application/json or text/csv"),
    ],
)
def test_mlflow_errors_are_mlflow_shaped_with_nbserve_statuses(
    lr_app, diabetes, path, payload, raw, content_type, status, code, says
):
    got, body = post(lr_app, path, payload, raw, content_type)
    assert got == status
    assert set(body) == {"error_code", "message"} and body["error_code"] == code
    assert says in body["message"]
    assert post(lr_app, "/invocations", {"inputs": diabetes[0][:1].tolist()})[0] == 200  # still serving


def tensor(name="input-0", shape=(1, 10), datatype="FP64", data=None):
    return {"name": name, "shape": list(shape), "datatype": datatype, "data": data if data is not None else [0.0] * 10}


@pytest.mark.parametrize(
    "path, payload, status, says",
    [
        ("/v2/models/nope/infer", {"inputs": [tensor()]}, 404, "no model 'nope'"),
        ("/v2/models/diabetes/versions/2/infer", {"inputs": [tensor()]}, 404, "no version '2'"),
        ("/v2/models/diabetes/infer", {"inputs": []}, 400, '{"inputs"'),
        ("/v2/models/diabetes/infer", {"inputs": [tensor(shape=[2, 10])]}, 400, "holds 20 values; data has 10"),
        ("/v2/models/diabetes/infer", {"inputs": [tensor(shape=[1, 5], data=[0.0] * 5)]}, 400, "shape [N, 10]"),
        ("/v2/models/diabetes/infer", {"inputs": [tensor(data=["a"] * 10, datatype="BYTES")]}, 400, "got strings"),
        ("/v2/models/diabetes/infer", {"inputs": [tensor(), tensor("b")]}, 400, "one input tensor"),
        ("/v2/models/diabetes/infer", {"inputs": [tensor()], "outputs": [{"name": "fit"}]}, 400, "['predict']"),
        ("/v2/models/diabetes/foo", {}, 404, "no route /v2/models/diabetes/foo"),
    ],
)
def test_v2_errors_are_v2_shaped_and_unknown_models_are_404(lr_app, path, payload, status, says):
    got, body = post(lr_app, path, payload)
    assert got == status
    assert list(body) == ["error"] and isinstance(body["error"], str)
    assert says in body["error"]
    assert lr_app.get("/v2/models/other").status_code == 404
    assert lr_app.get("/v2/models/diabetes/versions/7/ready").status_code == 404


def test_v1_errors_and_unknown_model(lr_app):
    assert post(lr_app, "/v1/models/other:predict", {"instances": [[0] * 10]})[0] == 404
    assert lr_app.get("/v1/models/other").status_code == 404
    status, body = post(lr_app, "/v1/models/diabetes:predict", {"instances": [[1, 2]]})
    assert status == 400 and "shape [N, 10]" in body["error"]
    status, body = post(lr_app, "/v1/models/diabetes:predict", {"rows": []})
    assert status == 400 and "instances" in body["error"]
    # KServe V1's fields, beside OpenAI's (the two share these routes: tests/test_openai_routes.py)
    model = lr_app.get("/v1/models/diabetes").get_json()
    assert (model["name"], model["ready"], model["id"], model["object"]) == ("diabetes", True, "diabetes", "model")
    listing = lr_app.get("/v1/models").get_json()
    assert listing["models"] == ["diabetes"] and [m["id"] for m in listing["data"]] == ["diabetes"]


def test_a_failing_model_is_a_500_in_each_protocols_form(diabetes):
    X = diabetes[0]

    def troublemaker(data):
        if (data > 100).any():  # not on the sample: on the requests below
            raise ZeroDivisionError("the model divided by zero")
        return data.sum(axis=1)

    client = app_for(troublemaker, X, model_id="tm:1").test_client()
    big = [[1000.0] * 10]
    status, body = post(client, "/invocations", {"inputs": big})
    assert status == 500 and body["error_code"] == "INTERNAL_ERROR" and "ZeroDivisionError" in body["message"]
    status, body = post(client, "/v2/models/tm/infer", {"inputs": [tensor(data=big[0])]})
    assert status == 500 and "ZeroDivisionError" in body["error"]
    status, body = post(client, "/v1/models/tm:predict", {"instances": big})
    assert status == 500 and "ZeroDivisionError" in body["error"]


@pytest.mark.parametrize(
    "payload, says",
    [
        ({"inputs": [tensor()], "parameters": True}, "the request: parameters must be an object"),
        ({"inputs": [tensor()], "parameters": [1]}, "the request: parameters must be an object"),
        ({"inputs": [{**tensor(), "parameters": "binary"}]}, "input 'input-0': parameters must be an object"),
        ({"inputs": [tensor()], "outputs": [{"name": "predict", "parameters": 1}]}, "output 'predict': parameters"),
    ],
)
def test_v2_parameters_that_are_not_objects_are_a_400(lr_app, payload, says):
    status, body = post(lr_app, "/v2/models/diabetes/infer", payload)
    assert status == 400 and says in body["error"], body


def test_v2_honours_the_declared_datatype_and_shape(lr_app, churn_app, diabetes, churn):
    X, _, lr = diabetes
    rows = X[:3]
    # an FP32 tensor is read as float32, as Triton reads it: the answer is the kernel's on those float32 values
    got = post(
        lr_app,
        "/v2/models/diabetes/infer",
        {"inputs": [tensor(shape=[3, 10], datatype="FP32", data=rows.ravel().tolist())]},
    )
    assert got[0] == 200, got
    want32 = lr.predict(rows.astype(np.float32).astype(np.float64))
    assert got[1]["outputs"][0]["data"] == want32.tolist() and want32.tolist() != lr.predict(rows).tolist()
    # values that are not of the declared datatype: a 400 naming the input, its datatype and the value
    for datatype, data, says in [
        ("INT64", [0.5] + [0.0] * 9, "input 'input-0' is INT64, of integers; value 0 is 0.5"),
        ("INT8", [300] + [0] * 9, "INT8 holds integers from -128 to 127"),
        ("BOOL", [1] * 10, "input 'input-0' is BOOL, of true or false; value 0 is 1"),
        ("FP64", [True] * 10, "input 'input-0' is FP64, of numbers; value 0 is True"),
        ("FP128", [0.0] * 10, "unknown datatype 'FP128'"),
        (None, [0.0] * 10, "unknown datatype None"),
    ]:
        status, body = post(lr_app, "/v2/models/diabetes/infer", {"inputs": [tensor(datatype=datatype, data=data)]})
        assert status == 400 and says in body["error"], (datatype, body)
    # nested data must have exactly the declared shape (it was passed on unchecked: 3 rows declared as 5)
    for shape, data, says in [
        ([5, 10], rows.tolist(), "shape [5, 10] wants 5 values at []; data has 3 values"),
        ([3, 10], [r[:9] for r in rows.tolist()], "wants 10 values at [0]; data has 9 values"),
        ([3, 10], [rows[0].tolist(), rows[1].tolist(), 7], "wants 10 values at [2]; data has a int"),
        ([30], rows.tolist(), "shape [30] wants 30 values at []"),
    ]:
        status, body = post(lr_app, "/v2/models/diabetes/infer", {"inputs": [tensor(shape=shape, data=data)]})
        assert status == 400 and says in body["error"], (shape, body)
    nested = post(lr_app, "/v2/models/diabetes/infer", {"inputs": [tensor(shape=[3, 10], data=rows.tolist())]})
    assert nested[0] == 200 and nested[1]["outputs"][0]["data"] == lr.predict(rows).tolist()
    # a DataFrame model: one tensor per column, each of its declared datatype
    frame, model = churn
    part = frame.iloc[:4]
    meta = churn_app.get("/v2/models/churn").get_json()
    inputs = {t["name"]: {**t, "shape": [4], "data": part[t["name"]].astype(object).tolist()} for t in meta["inputs"]}
    assert post(churn_app, "/v2/models/churn/infer", {"inputs": list(inputs.values())})[1]["outputs"][0]["data"] == (
        model.predict(part).tolist()
    )
    for column, datatype, data, says in [
        ("member", "BOOL", [1, 0, 1, 0], "input 'member' is BOOL, of true or false; value 0 is 1"),
        ("region", "BYTES", [1, 2, 3, 4], "input 'region' is BYTES, of strings; value 0 is 1"),
        ("age", "INT64", [30, 40.5, 50, 60], "input 'age' is INT64, of integers; value 1 is 40.5"),
        ("age", "INT64", [[30], [40], [50], [60]], "shape [4] is 1-d; data is nested deeper at [0]"),
    ]:
        bad = {**inputs, column: {**inputs[column], "datatype": datatype, "data": data}}
        status, body = post(churn_app, "/v2/models/churn/infer", {"inputs": list(bad.values())})
        assert status == 400 and says in body["error"], (column, body)


def test_one_413_in_every_protocols_form_and_the_client_reads_each_form(diabetes):
    """The same refusal worded once (nbserve/server/errors.py), written in each protocol's form; the
    client's one reader (client.error_from_response) turns each form into a ServerError."""
    from nbserve.client import error_from_response

    X, _, lr = diabetes
    import cloudpickle

    cap = capture(lr, label="m", sample=X, proof=False)
    small = make_app(cloudpickle.loads(cap.pickle), cap.manifest, model_id="diabetes:1", max_body=2_000).test_client()
    big = X[:40].tolist()
    bodies = {
        "/predict": {"data": big},
        "/invocations": {"inputs": big},
        "/v1/models/diabetes:predict": {"instances": big},
        "/v2/models/diabetes/infer": {"inputs": [tensor(shape=[40, 10], data=big)]},
    }
    messages = set()
    for path, payload in bodies.items():
        for chunked in (False, True):
            raw = jsonio.dumps(payload)
            if chunked:  # no Content-Length: read until the limit is crossed (guards._ChunkedLimit)
                env = {"wsgi.input_terminated": True, "CONTENT_LENGTH": ""}
                resp = small.post(
                    path, input_stream=io.BytesIO(raw), environ_overrides=env, content_type="application/json"
                )
            else:
                resp = small.post(path, data=raw, content_type="application/json")
            assert resp.status_code == 413, (path, chunked, resp.data[:200])
            err = error_from_response(resp.status_code, resp.data, path)
            assert err.status == 413 and "limit of 2000 bytes" in str(err) and "max_body=BYTES" in str(err), str(err)
            messages.add(str(err).split(": ", 1)[1])
    assert len(messages) == 1, messages
    # each form read back: nbserve's type, MLflow's error code, KServe's bare message
    status, body = post(small, "/invocations", {"inputs": [[1, 2]]})
    err = error_from_response(status, jsonio.dumps(body))
    assert err.status == 400 and err.type == "INVALID_PARAMETER_VALUE" and "shape [N, 10]" in str(err)
    status, body = post(small, "/v2/models/nope/infer", {"inputs": [tensor()]})
    err = error_from_response(status, jsonio.dumps(body))
    assert err.status == 404 and err.type is None and str(err) == "404: no model 'nope'; this server serves 'diabetes'"
    err = error_from_response(502, b"<html>Bad Gateway</html>", "http://x/predict")
    assert str(err) == "502 from http://x/predict: <html>Bad Gateway</html>"


def test_dataframe_model_takes_one_v2_input_per_column_and_the_mlflow_formats(churn_app, churn):
    frame, model = churn
    rows = frame.iloc[:6]
    meta = churn_app.get("/v2/models/churn").get_json()
    assert meta["inputs"] == [
        {"name": "income", "datatype": "FP64", "shape": [-1]},
        {"name": "age", "datatype": "INT64", "shape": [-1]},
        {"name": "region", "datatype": "BYTES", "shape": [-1]},
        {"name": "member", "datatype": "BOOL", "shape": [-1]},
    ]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
    ]
    inputs = [
        {"name": c, "shape": [6, 1], "datatype": t["datatype"], "data": rows[c].astype(object).tolist()}
        for c, t in zip(rows.columns, meta["inputs"])
    ]
    inputs[2]["data"] = rows.region.astype(str).tolist()
    status, body = post(churn_app, "/v2/models/churn/infer", {"inputs": inputs, "outputs": [{"name": "predict_proba"}]})
    assert status == 200
    (out,) = body["outputs"]
    assert out["name"] == "predict_proba" and out["shape"] == [6, 2]
    np.testing.assert_array_equal(np.reshape(out["data"], (6, 2)), model.predict_proba(rows))
    status, body = post(churn_app, "/v2/models/churn/infer", {"inputs": inputs[:3]})
    assert status == 400 and "missing columns ['member']" in body["error"]
    status, body = post(churn_app, "/v2/models/churn/infer", {"inputs": [*inputs, {**inputs[0], "name": "zip"}]})
    assert status == 400 and "unknown inputs ['zip']" in body["error"]
    # a KServe V1 instance is a record or a row in the schema's column order
    want = model.predict(rows).tolist()
    records = json.loads(rows.to_json(orient="records"))
    assert post(churn_app, "/v1/models/churn:predict", {"instances": records}) == (200, {"predictions": want})
    row_lists = [list(r.values()) for r in records]
    assert post(churn_app, "/v1/models/churn:predict", {"instances": row_lists}) == (200, {"predictions": want})
    status, body = post(churn_app, "/invocations", {"dataframe_records": [{"income": 1.0}]})
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE" and "missing columns" in body["message"]


def v2_inputs(rows, meta, binary_nulls=False):
    """One V2 tensor per column, in JSON: nulls as null, dates as ISO strings (V2 has no null: see the
    README; with ``binary_nulls`` a float's NaN and a nullable integer as FP64 with NaN, as tritonclient
    can send them, written by Python's json as the bare NaN it writes)."""
    split = frame_split(rows)
    out = []
    for i, spec in enumerate(meta["inputs"]):
        data = [row[i] for row in split["data"]]
        datatype = spec["datatype"]
        if binary_nulls and datatype in ("FP64", "INT64") and None in data:
            data, datatype = [float("nan") if v is None else float(v) for v in data], "FP64"
        out.append({"name": spec["name"], "shape": [len(rows)], "datatype": datatype, "data": data})
    return out


def test_real_columns_through_every_protocol(rentals_app, real_frame):
    """Dates, NaN, NA and None through MLflow's four JSON formats and CSV, KServe V1 and V2: the kernel's answers."""
    frame, model = real_frame
    rows = frame.iloc[:40]
    assert rows[["humidity", "riders_yesterday", "station"]].isna().all(axis=0).sum() == 0
    assert rows[["humidity", "riders_yesterday", "station"]].isna().any(axis=0).all()  # NaN, NA and None
    want = model.predict(rows).tolist()
    records = frame_records(rows)
    split = json.loads(rows.to_json(orient="split", index=False, date_format="iso"))  # pandas' own ISO dates
    # as MLflow's serialisation writes them: NaN (not null) for a missing float or string (Python's json)
    with_nan = json.dumps(
        {"dataframe_records": [{k: float("nan") if v is None else v for k, v in r.items()} for r in records]}
    )
    assert "NaN" in with_nan
    for fmt, body in [
        ("dataframe_split", {"dataframe_split": split}),
        ("dataframe_records", {"dataframe_records": records}),
        ("instances", {"instances": records}),
        ("inputs", {"inputs": {c: [r[c] for r in records] for c in rows.columns}}),  # columns, as MLflow's
    ]:
        assert post(rentals_app, "/invocations", body) == (200, {"predictions": want}), fmt
    assert post(rentals_app, "/invocations", raw=with_nan.encode()) == (200, {"predictions": want})
    csv_body = rows.to_csv(index=False).encode()  # empty cells for the nulls, ISO dates
    assert post(rentals_app, "/invocations", raw=csv_body, content_type="text/csv") == (200, {"predictions": want})
    # KServe V1: records, and rows in the schema's column order, nulls as null
    assert post(rentals_app, "/v1/models/rentals:predict", {"instances": records}) == (200, {"predictions": want})
    rows_only = {"instances": frame_split(rows)["data"]}
    assert post(rentals_app, "/v1/models/rentals:predict", rows_only) == (200, {"predictions": want})
    # V2: one tensor per column; the date as BYTES of ISO strings; nulls as JSON null, or NaN in FP64 tensors
    meta = rentals_app.get("/v2/models/rentals").get_json()
    types = {t["name"]: t["datatype"] for t in meta["inputs"]}
    assert types == {
        "temp": "FP64",
        "humidity": "FP64",
        "riders_yesterday": "INT64",
        "holiday": "BOOL",
        "season": "BYTES",
        "station": "BYTES",
        "day": "BYTES",
    }
    for binary_nulls in (False, True):
        inputs = v2_inputs(rows, meta, binary_nulls)
        body = json.dumps({"inputs": inputs, "outputs": [{"name": "predict"}, {"name": "predict_proba"}]})
        status, answer = post(rentals_app, "/v2/models/rentals/infer", raw=body.encode())
        assert status == 200, answer
        predict, proba = answer["outputs"]
        assert predict["data"] == want
        np.testing.assert_allclose(np.reshape(proba["data"], proba["shape"]), model.predict_proba(rows))


@pytest.mark.parametrize(
    "route, column, says",
    [
        ("mlflow-epoch-dates", "day", "ISO 8601"),
        ("mlflow-nan-where-none-allowed", "temp", "null"),
        ("mlflow-csv-bool", "holiday", "true or false"),
        ("v1-unseen-category", "season", "one of the categories"),
        ("v1-fraction-in-integers", "riders_yesterday", "integers"),
        ("v2-empty-date", "day", "missing value"),
        ("v2-number-as-date", "day", "ISO 8601"),
        ("v2-nan-in-bools", "holiday", "true or false"),
    ],
)
def test_real_columns_refused_with_a_4xx_naming_the_column(rentals_app, real_frame, route, column, says):
    frame, _ = real_frame
    rows = frame.iloc[:3]
    records = frame_records(rows)
    meta = rentals_app.get("/v2/models/rentals").get_json()
    inputs = {t["name"]: t for t in v2_inputs(rows, meta)}
    if route == "mlflow-epoch-dates":  # what pandas' to_json wrote by default before pandas 3: epoch milliseconds
        split = frame_split(rows)
        day = split["columns"].index("day")
        for row, stamp in zip(split["data"], rows["day"]):
            row[day] = int(stamp.timestamp() * 1000)
        got = post(rentals_app, "/invocations", {"dataframe_split": split})
    elif route == "mlflow-nan-where-none-allowed":
        records[1]["temp"] = float("nan")
        got = post(rentals_app, "/invocations", raw=json.dumps({"dataframe_records": records}).encode())
    elif route == "mlflow-csv-bool":
        text = rows.assign(holiday=["no", "yes", "no"]).to_csv(index=False)
        got = post(rentals_app, "/invocations", raw=text.encode(), content_type="text/csv")
    elif route == "v1-unseen-category":
        records[2]["season"] = "monsoon"
        got = post(rentals_app, "/v1/models/rentals:predict", {"instances": records})
    elif route == "v1-fraction-in-integers":
        records[0]["riders_yesterday"] = 3.5
        got = post(rentals_app, "/v1/models/rentals:predict", {"instances": records})
    else:
        if route == "v2-empty-date":  # what a V2 client may send for a missing date: the sample had none
            inputs["day"]["data"][1] = ""
        elif route == "v2-number-as-date":
            inputs["day"] = {**inputs["day"], "datatype": "INT64", "data": [1731542400000] * 3}
        else:
            inputs["holiday"]["data"][0] = None
        got = post(rentals_app, "/v2/models/rentals/infer", {"inputs": list(inputs.values())})
    status, body = got
    assert status == 400, body
    message = body.get("message") or body.get("error")
    assert f"column {column!r}" in message and says in message, message
    assert post(rentals_app, "/v1/models/rentals:predict", {"instances": frame_records(rows)})[0] == 200


def test_openapi_and_interface_list_the_protocols(lr_app):
    spec = lr_app.get("/openapi.json").get_json()
    protocols = {p["name"]: p for p in lr_app.get("/interface.json").get_json()["protocols"]}
    assert set(protocols) == {"nbserve", "mlflow", "open-inference-v2", "kserve-v1"}
    assert protocols["mlflow"]["method"] == "predict"
    assert "/v2/models/diabetes/versions/1/infer" in protocols["open-inference-v2"]["routes"]
    assert "/v1/models/diabetes:predict" in protocols["kserve-v1"]["routes"]
    for p in protocols.values():
        for route in p["routes"]:
            assert route in spec["paths"], route  # documented
            assert lr_app.open(route, method=next(iter(spec["paths"][route])).upper()).status_code != 404, route
    assert lr_app.get("/ping").status_code == 200 and lr_app.get("/version").data == b"diabetes:1"
    assert lr_app.get("/v2").get_json()["extensions"] == ["binary_tensor_data"]


def test_auth_covers_the_protocols_but_not_their_health_probes(diabetes):
    from nbserve.server.auth import token_sha256

    X, _, lr = diabetes
    token = "s3cret-token-of-some-length"
    client = app_for(lr, X, auth_sha256=token_sha256(token)).test_client()
    for path, payload in [
        ("/invocations", {"inputs": X[:1].tolist()}),
        ("/v2/models/diabetes/infer", {"inputs": [tensor(data=X[0].tolist())]}),
        ("/v1/models/diabetes:predict", {"instances": X[:1].tolist()}),
    ]:
        assert post(client, path, payload)[0] == 401, path
        resp = client.post(
            path,
            data=jsonio.dumps(payload),
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status_code == 200, path
    for path in ("/v2/models/diabetes", "/v1/models/diabetes", "/version"):
        assert client.get(path).status_code == 401, path
    for path in ("/ping", "/v2/health/live", "/v2/health/ready"):  # probes (Kubernetes, MLflow's client) stay open
        assert client.get(path).status_code == 200, path


def test_default_method_chooses_what_the_protocols_call(churn):
    frame, model = churn
    client = app_for(model, frame, model_id="churn:1", default_method="predict_proba").test_client()
    status, body = post(client, "/invocations", {"dataframe_records": frame.iloc[:3].to_dict(orient="records")})
    assert status == 200
    np.testing.assert_array_equal(body["predictions"], model.predict_proba(frame.iloc[:3]))

    class TwoWays:
        def encode(self, X):
            return X * 2

        def decode(self, X):
            return X / 2

    X = np.ones((3, 2))
    two = ["encode", "decode"]
    client = app_for(TwoWays(), X, model_id="tw:1", methods=two).test_client()
    status, body = post(client, "/invocations", {"inputs": X.tolist()})
    assert status == 404 and "default_method" in body["message"]
    client = app_for(TwoWays(), X, model_id="tw:1", methods=two, default_method="decode").test_client()
    assert post(client, "/invocations", {"inputs": X.tolist()}) == (200, {"predictions": (X / 2).tolist()})
    with pytest.raises(ValueError, match="not one of the model's methods"):
        app_for(TwoWays(), X, model_id="tw:1", methods=two, default_method="predict")


def test_serve_checks_default_method(workspace, diabetes):
    X, _, lr = diabetes
    with pytest.raises(NbserveError, match=r"default_method='predict_proba' is not a method of diabetes"):
        workspace.serve(
            lr, name="diabetes", sample=X, runtime="process", default_method="predict_proba", progress=False
        )
    with pytest.raises(NbserveError, match="default_method must be"):
        workspace.serve(lr, name="diabetes", sample=X, runtime="process", default_method=3, progress=False)
    assert workspace.instances() == [] and workspace.models() == []
    assert not any((workspace.home / "staging").iterdir())  # the draft staged for the proof is gone


# -- real instances, real clients -----------------------------------------------------------------------


# a container's first build of the frame model's dependency layer (pandas, scikit-learn) takes minutes on a
# busy 2-core machine; later runs reuse it
@pytest.fixture(
    scope="module", params=["process", pytest.param("docker", marks=[pytest.mark.docker, pytest.mark.timeout(1200)])]
)
def served(request, tmp_path_factory, diabetes, churn):
    """The diabetes LinearRegression and the churn frame model, served on one runtime for the module."""
    runtime = request.param
    old = os.environ.get("NBSERVE_BASE_IMAGE")
    if runtime == "docker":
        need_docker().close()
        os.environ["NBSERVE_BASE_IMAGE"] = base_image()
    ws = Workspace(tmp_path_factory.mktemp(f"protocols-{runtime}"))
    X, _, lr = diabetes
    frame, model = churn
    lr_inst = ws.serve(lr, name="diabetes", sample=X, runtime=runtime, progress=False)
    # the frame model's protocol routes call predict_proba: default_method travels like the other options
    churn_inst = ws.serve(
        model, name="churn", sample=frame, runtime=runtime, default_method="predict_proba", progress=False
    )
    yield SimpleNamespace(runtime=runtime, lr=lr_inst, churn=churn_inst)
    for inst in ws.instances():
        inst.remove()
    if old is None:
        os.environ.pop("NBSERVE_BASE_IMAGE", None)


def triton(url):
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(
        url=url.removeprefix("http://"), connection_timeout=10, network_timeout=TIMEOUT
    )


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_triton_client_on_the_numpy_model(served, diabetes, binary):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    X, _, lr = diabetes
    client = triton(served.lr.url)
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("diabetes")
        meta = client.get_model_metadata("diabetes")
        assert meta["name"] == "diabetes" and meta["versions"] == ["1"]
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 10]}]
        batch = X[:64]
        inp = httpclient.InferInput("input-0", list(batch.shape), "FP64")
        inp.set_data_from_numpy(batch, binary_data=binary)
        out = httpclient.InferRequestedOutput("predict", binary_data=binary)
        result = client.infer("diabetes", [inp], outputs=[out], request_id="req-1")
        np.testing.assert_array_equal(result.as_numpy("predict"), lr.predict(batch))
        assert result.get_response()["id"] == "req-1"
        # no outputs named: tritonclient asks for binary outputs; the default method answers
        np.testing.assert_array_equal(client.infer("diabetes", [inp]).as_numpy("predict"), lr.predict(batch))
        with pytest.raises(InferenceServerException, match="no model 'iris'") as err:
            client.infer("iris", [inp])
        assert err.value.status() == "404"
        bad = httpclient.InferInput("input-0", [2, 5], "FP64")
        bad.set_data_from_numpy(batch[:2, :5], binary_data=binary)
        with pytest.raises(InferenceServerException, match=r"shape \[N, 10\]") as err:
            client.infer("diabetes", [bad])
        assert err.value.status() == "400"
    finally:
        client.close()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_triton_client_on_the_dataframe_model(served, churn, binary):
    import tritonclient.http as httpclient

    frame, model = churn
    rows = frame.iloc[:50]
    client = triton(served.churn.url)
    try:
        meta = client.get_model_metadata("churn", model_version="1")
        inputs = []
        for spec in meta["inputs"]:
            column = rows[spec["name"]]
            values = column.astype(str).to_numpy(dtype=object) if spec["datatype"] == "BYTES" else column.to_numpy()
            inp = httpclient.InferInput(spec["name"], [len(rows)], spec["datatype"])
            inp.set_data_from_numpy(values, binary_data=binary)
            inputs.append(inp)
        outputs = [httpclient.InferRequestedOutput(o["name"], binary_data=binary) for o in meta["outputs"]]
        result = client.infer("churn", inputs, outputs=outputs, model_version="1")
        np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(rows))
        np.testing.assert_array_equal(result.as_numpy("predict_proba"), model.predict_proba(rows))
        # no outputs named: the default method's (predict_proba, chosen at serve time)
        result = client.infer("churn", inputs)
        assert [o["name"] for o in result.get_response()["outputs"]] == ["predict_proba"]
        np.testing.assert_array_equal(result.as_numpy("predict_proba"), model.predict_proba(rows))
    finally:
        client.close()


def mlflow_payloads(tmp_path, which, value, url):
    """({format: (content type, body)} made by MLflow's own serialisation code, the predictions MLflow's
    ScoringServerClient got from ``url`` for the same value), in MLflow's venv."""
    need(
        MLFLOW_PYTHON.exists(),
        "MLflow (in its own venv)",
        "run .ci/setup-mlflow (it makes .venv-mlflow with mlflow-skinny and pandas)",
    )
    src = tmp_path / f"{which}.json"
    if isinstance(value, pd.DataFrame):
        src.write_text(
            json.dumps(
                {
                    "frame": json.loads(value.to_json(orient="split", index=False, date_format="iso")),
                    "dtypes": value.dtypes.astype(str).to_dict(),
                }
            )
        )
    else:
        src.write_text(json.dumps({"array": value.tolist()}))
    out = tmp_path / f"{which}-payloads"
    proc = subprocess.run(
        [str(MLFLOW_PYTHON), str(ROOT / "tests" / "mlflow_payloads.py"), str(src), str(out), url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    payloads = {
        fmt: (meta["content_type"], (out / meta["file"]).read_bytes())
        for fmt, meta in json.loads((out / "index.json").read_text()).items()
    }
    return payloads, json.loads((out / "client.json").read_text())


def test_mlflow_formats_on_both_models(served, diabetes, churn, tmp_path):
    X, _, lr = diabetes
    frame, model = churn
    for inst, value, want in [
        (served.lr, X[:40], lr.predict(X[:40])),
        (served.churn, frame.iloc[:40], model.predict_proba(frame.iloc[:40])),  # its default_method
    ]:
        payloads, from_client = mlflow_payloads(tmp_path, inst.model.partition(":")[0], value, inst.url)
        np.testing.assert_array_equal(from_client, want)
        assert set(payloads) == {"dataframe_split", "dataframe_records", "instances", "inputs", "csv"}
        for fmt, (content_type, body) in payloads.items():
            resp = requests.post(
                inst.url + "/invocations", data=body, headers={"Content-Type": content_type}, timeout=TIMEOUT
            )
            assert resp.status_code == 200, (inst.model, fmt, resp.text[:500])
            np.testing.assert_array_equal(resp.json()["predictions"], want, err_msg=f"{inst.model} {fmt}")
        assert requests.get(inst.url + "/ping", timeout=TIMEOUT).status_code == 200


def test_kserve_v1_on_both_models(served, diabetes, churn):
    X, _, lr = diabetes
    frame, model = churn
    base = served.lr.url + "/v1/models/diabetes"
    ready = requests.get(base, timeout=TIMEOUT).json()
    assert (ready["name"], ready["ready"]) == ("diabetes", True)  # KServe V1's fields (OpenAI's beside them)
    resp = requests.post(base + ":predict", json={"instances": X[:30].tolist()}, timeout=TIMEOUT)
    np.testing.assert_array_equal(resp.json()["predictions"], lr.predict(X[:30]))
    records = json.loads(frame.iloc[:30].to_json(orient="records"))
    resp = requests.post(served.churn.url + "/v1/models/churn:predict", json={"instances": records}, timeout=TIMEOUT)
    np.testing.assert_array_equal(resp.json()["predictions"], model.predict_proba(frame.iloc[:30]))
    resp = requests.post(served.churn.url + "/v1/models/diabetes:predict", json={"instances": records}, timeout=TIMEOUT)
    assert resp.status_code == 404 and "no model 'diabetes'" in resp.json()["error"]


@pytest.fixture(scope="module", params=["process", pytest.param("docker", marks=[pytest.mark.docker])])
def served_rentals(request, tmp_path_factory, real_frame):
    """The rentals pipeline (HistGradientBoosting over dates, NaN, NA and None) on each runtime. Its lock is
    the churn model's, so its image reuses that dependency layer: only the model's own layer is built."""
    runtime = request.param
    old = os.environ.get("NBSERVE_BASE_IMAGE")
    if runtime == "docker":
        need_docker().close()
        os.environ["NBSERVE_BASE_IMAGE"] = base_image()
    frame, model = real_frame
    ws = Workspace(tmp_path_factory.mktemp(f"protocols-rentals-{runtime}"))
    try:
        inst = ws.serve(model, name="rentals", sample=frame, runtime=runtime, progress=False)
        yield inst
    finally:
        for running in ws.instances():
            running.remove()
        if old is None:
            os.environ.pop("NBSERVE_BASE_IMAGE", None)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_triton_client_on_real_columns(served_rentals, real_frame, binary):
    """tritonclient as its users feed it from pandas: the date as ISO strings (BYTES), a float's NaN as NaN,
    the nullable integer as FP64 with NaN (V2 has no null; README). Rows with a missing string are left out:
    tritonclient writes None as the string "None", which a string column cannot tell from a value."""
    import tritonclient.http as httpclient

    frame, model = real_frame
    rows = frame[frame.station.notna()].iloc[:50]
    assert rows.humidity.isna().any() and rows.riders_yesterday.isna().any()
    client = triton(served_rentals.url)
    try:
        meta = client.get_model_metadata("rentals")
        inputs = []
        for spec in meta["inputs"]:
            column = rows[spec["name"]]
            datatype = spec["datatype"]
            if spec["name"] == "day":
                values = np.array([t.isoformat() for t in column], dtype=object)
            elif datatype == "BYTES":
                values = column.astype(str).to_numpy(dtype=object)
            elif column.isna().any():  # NaN in a float column; Int64 with NA as FP64 with NaN
                values, datatype = column.to_numpy(dtype="float64", na_value=np.nan), "FP64"
            else:
                values = column.to_numpy()
            inp = httpclient.InferInput(spec["name"], [len(rows)], datatype)
            inp.set_data_from_numpy(values, binary_data=binary)
            inputs.append(inp)
        outputs = [httpclient.InferRequestedOutput(o["name"], binary_data=binary) for o in meta["outputs"]]
        result = client.infer("rentals", inputs, outputs=outputs)
        np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(rows))
        np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(rows))
    finally:
        client.close()


def test_mlflow_and_kserve_v1_on_real_columns(served_rentals, real_frame, tmp_path):
    """MLflow's own serialisation of a frame with dates and nulls (NaN literals in its JSON, empty CSV cells)
    and its scoring client; KServe V1 instances with nulls: the kernel's answers."""
    frame, model = real_frame
    rows = frame.iloc[:40]
    want = model.predict(rows)
    payloads, from_client = mlflow_payloads(tmp_path, "rentals", rows, served_rentals.url)
    np.testing.assert_array_equal(from_client, want)
    assert set(payloads) == {"dataframe_split", "dataframe_records", "instances", "inputs", "csv"}
    assert b"NaN" in payloads["dataframe_split"][1]  # MLflow writes missing values as NaN
    for fmt, (content_type, body) in payloads.items():
        resp = requests.post(
            served_rentals.url + "/invocations", data=body, headers={"Content-Type": content_type}, timeout=TIMEOUT
        )
        assert resp.status_code == 200, (fmt, resp.text[:500])
        np.testing.assert_array_equal(resp.json()["predictions"], want, err_msg=fmt)
    url = served_rentals.url + "/v1/models/rentals:predict"
    resp = requests.post(url, json={"instances": frame_records(rows)}, timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    np.testing.assert_array_equal(resp.json()["predictions"], want)
    bad = frame_records(rows.iloc[:2])
    bad[1]["day"] = None  # the sample had no missing dates
    resp = requests.post(url, json={"instances": bad}, timeout=TIMEOUT)
    assert resp.status_code == 400 and "column 'day'" in resp.json()["error"] and "null" in resp.json()["error"]
