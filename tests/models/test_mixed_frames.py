"""A mixed-type DataFrame (dates, categories, missing values, booleans, nullable integers, strings) through
a ColumnTransformer pipeline and through xgboost with native categories: the client sends what pandas
holds, the server rebuilds the training dtypes, the answers equal the kernel's, and every bad cell is a
4xx naming its column."""

import numpy as np
import pandas as pd
import pytest
import requests
from frames import check_native_category_model, mixed_pipeline, rentals

from nbserve.server.schema import frame_split

TIMEOUT = 20


@pytest.fixture(scope="module")
def table():
    return rentals()


@pytest.fixture(scope="module")
def pipeline_inst(module_workspace, table):
    frame, target = table
    model = mixed_pipeline(frame, target)
    inst = module_workspace.serve(model, name="rentals", sample=frame, runtime="process", progress=False)
    return inst, model


@pytest.fixture(scope="module")
def xgb_inst(module_workspace, table):
    xgboost = pytest.importorskip("xgboost")
    frame, target = table
    features = frame[["temp", "humidity", "holiday", "season", "riders_yesterday"]]
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3, enable_categorical=True, tree_method="hist")
    model.fit(features, target)
    module_workspace.register(model, name="rentals_xgb", sample=features, progress=False)
    return module_workspace.serve("rentals_xgb", runtime="process", progress=False), model, features


def post(inst, method, data):
    return requests.post(f"{inst.url}/{method}", json={"data": data}, timeout=TIMEOUT)


def test_the_signature_says_what_the_columns_are(pipeline_inst):
    inst, _ = pipeline_inst
    columns = {c["name"]: c for c in inst.client().interface["methods"][0]["input"]["columns"]}
    assert columns["season"]["kind"] == "category" and columns["season"]["categories"] == [
        "autumn",
        "spring",
        "summer",
        "winter",
    ]
    assert columns["day"]["kind"] == "datetime" and columns["day"]["tz"] is None
    assert columns["riders_yesterday"] == {
        "name": "riders_yesterday",
        "dtype": "Int64",
        "kind": "nullable_integer",
        "nullable": True,
    }
    assert columns["holiday"]["kind"] == "boolean" and columns["holiday"]["nullable"] is False
    assert columns["humidity"]["nullable"] is True and columns["temp"]["nullable"] is False
    assert columns["station"]["kind"] == "string" and columns["station"]["nullable"] is True
    spec = requests.get(inst.url + "/openapi.json", timeout=TIMEOUT).json()
    props = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    props = props["properties"]["data"]["items"]["properties"]
    assert props["season"] == {"enum": ["autumn", "spring", "summer", "winter"], "type": "string"}
    assert props["day"] == {"type": "string", "format": "date-time"}
    assert props["riders_yesterday"] == {"type": "integer", "nullable": True}
    assert props["holiday"] == {"type": "boolean"}


def test_the_client_sends_what_pandas_holds_and_the_answers_equal_the_kernels(pipeline_inst, table):
    inst, model = pipeline_inst
    frame, _ = table
    rows = frame.iloc[:40]
    assert rows.isna().any().any()  # NaN, NA and None among them
    client = inst.client(timeout=TIMEOUT)
    np.testing.assert_array_equal(client.predict(rows), model.predict(rows))
    np.testing.assert_allclose(client.predict_proba(rows), model.predict_proba(rows))
    # the same rows as JSON written by hand: dates as ISO 8601 strings, missing values as null
    resp = post(inst, "predict", frame_split(rows))
    assert resp.status_code == 200 and resp.json()["data"] == model.predict(rows).tolist()


BAD_CELLS = [
    ("holiday", "no", "true or false"),
    ("holiday", None, "true or false"),
    ("riders_yesterday", 3.7, "integers"),
    ("season", "monsoon", "one of the categories ['autumn', 'spring', 'summer', 'winter']"),
    ("season", None, "one of the categories"),
    ("day", 1706688000000, "ISO 8601"),
    ("day", "31/01/2024", "ISO 8601"),
    ("day", None, "no missing values"),
    ("temp", None, "no missing values"),
    ("temp", "warm", "numbers"),
]


@pytest.mark.parametrize("column,value,expected", BAD_CELLS, ids=[f"{c}={v!r}" for c, v, _ in BAD_CELLS])
def test_a_bad_cell_is_a_400_naming_the_column_and_what_is_allowed(pipeline_inst, table, column, value, expected):
    inst, _ = pipeline_inst
    frame, _ = table
    body = frame_split(frame.iloc[:3])
    body["data"][1][body["columns"].index(column)] = value
    resp = post(inst, "predict", body)
    assert resp.status_code == 400, resp.text
    message = resp.json()["error"]["message"]
    assert f"column {column!r}" in message and "row 1" in message and expected in message, message


def test_an_empty_batch_is_a_400(pipeline_inst, table):
    inst, _ = pipeline_inst
    frame, _ = table
    for empty in ({"columns": list(frame.columns), "data": []}, []):
        resp = post(inst, "predict", empty)
        assert resp.status_code == 400 and "at least one row" in resp.json()["error"]["message"]


def test_xgboost_with_native_categories_answers_like_the_kernel(xgb_inst):
    inst, model, features = xgb_inst
    check_native_category_model(inst, model, features.iloc[:25], TIMEOUT)


def test_dataframe_and_series_answers_come_back_as_pandas(module_workspace, table):
    frame, _ = table

    def enrich(df):
        out = pd.DataFrame({"day": df["day"] + pd.Timedelta(days=1), "season": df["season"], "warm": df["temp"] > 20})
        return out

    inst = module_workspace.serve(enrich, sample=frame, runtime="process", progress=False)
    try:
        got = inst.client(timeout=TIMEOUT).enrich(frame.iloc[:5])
        pd.testing.assert_frame_equal(got, enrich(frame.iloc[:5]))
    finally:
        inst.remove()


def test_behind_a_proxy_prefix_the_frame_model_answers_like_the_kernel(pipeline_inst, table):
    """As jupyter-server-proxy calls it (tests/ui/test_remote_jupyter.py drives the real proxy): the prefix
    header changes the documented server URL, never the answers."""
    inst, model = pipeline_inst
    frame, _ = table
    prefix = {"X-Forwarded-Context": "/user/alice/proxy/41234"}
    spec = requests.get(f"{inst.url}/openapi.json", headers=prefix, timeout=TIMEOUT).json()
    assert spec["servers"] == [{"url": "/user/alice/proxy/41234/"}]
    rows = frame.iloc[:25]
    resp = requests.post(f"{inst.url}/predict", json={"data": frame_split(rows)}, headers=prefix, timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    np.testing.assert_array_equal(resp.json()["data"], model.predict(rows))
