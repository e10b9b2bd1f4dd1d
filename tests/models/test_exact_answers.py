"""Answers exactly as the kernel's (issue 26), each on real model families served by the process runtime:
the pandas index travels (a SARIMAX forecast by date, a frame keyed by customer id), non-finite numbers and
nulls keep their values and the columns their dtypes, integer column labels reach the model, an empty batch
to a text classifier is a 400 that OpenAPI announces, other columns are refused unless the serve ignores
them, a naive date in a column with a time zone reads the same whatever its neighbours."""

import numpy as np
import pandas as pd
import pytest
import requests
from frames import rentals

from nbserve.client import encode
from nbserve.server.schema import frame_split

TIMEOUT = 30


def post(inst, method, data):
    return requests.post(f"{inst.url}/{method}", json={"data": data}, timeout=TIMEOUT)


# -- the index ------------------------------------------------------------------------------------------


def test_a_sarimax_forecast_keeps_its_dates(module_workspace):
    sm = pytest.importorskip("statsmodels.api")
    index = pd.date_range("2020-01-01", periods=48, freq="MS")
    y = pd.Series(10 + np.sin(np.arange(48) / 3) + np.arange(48) * 0.1, index=index, name="sales")
    results = sm.tsa.SARIMAX(y, order=(1, 0, 0), trend="c").fit(disp=False)
    inst = module_workspace.serve(results, name="sales", sample=3, methods=["forecast"], runtime="process")
    try:
        got = inst.client(timeout=TIMEOUT).forecast(6)
        pd.testing.assert_series_equal(got, results.forecast(6))  # dates, freq, name, values
        assert post(inst, "forecast", 2).json()["index"] == ["2024-01-01T00:00:00", "2024-02-01T00:00:00"]
    finally:
        inst.remove()


def churn_model():
    """A gradient-boosted pipeline over the mixed-type rentals frame, indexed by customer id."""
    from frames import mixed_pipeline

    frame, target = rentals()
    frame.index = pd.Index(np.arange(5000, 5000 + len(frame)), name="customer")
    model = mixed_pipeline(frame, target)

    def churn(df):
        """Per customer: the probability, a band (none where the temperature is unknown below zero), and
        a ratio that is infinite where the temperature is zero."""
        p = model.predict_proba(df)[:, 1]
        band = pd.Categorical(np.where(p > 0.5, "high", "low"), categories=["high", "low"])
        with np.errstate(divide="ignore"):
            ratio = p / df["temp"].to_numpy()
        out = pd.DataFrame({"p": p, "band": band, "ratio": ratio}, index=df.index)
        out.loc[df["temp"].to_numpy() < 0, "band"] = np.nan
        return out

    warm = frame[frame["temp"] > 0]  # the sample's first rows (the answers' schema) have no NaN band, no inf
    return churn, pd.concat([warm, frame[frame["temp"] <= 0]])


@pytest.fixture(scope="module")
def churn_inst(module_workspace):
    churn, sample = churn_model()
    inst = module_workspace.serve(churn, sample=sample, runtime="process", progress=False)
    yield inst, churn, sample
    inst.remove()


def test_a_frame_keyed_by_customer_keeps_its_index_nulls_and_infinities(churn_inst):
    inst, churn, sample = churn_inst
    rows = sample.iloc[[0, 1, 2, 3]].copy()
    rows["temp"] = [0.0, -3.0, 12.0, -0.0]  # +inf, a NaN band, a plain row, -inf
    expected = churn(rows)
    assert np.isinf(expected["ratio"]).sum() == 2 and expected["band"].isna().sum() == 1
    got = inst.client(timeout=TIMEOUT).churn(rows)
    pd.testing.assert_frame_equal(got, expected)  # band stays a category with its NaN; +-inf; the customer ids
    body = post(inst, "churn", encode(rows)).json()
    assert body["index"] == rows.index.tolist()
    assert body["data"][0]["ratio"] == "Infinity" and body["data"][3]["ratio"] == "-Infinity"
    assert body["data"][1]["band"] is None and body["data"][0]["band"] in ("high", "low")


def test_a_linear_model_on_an_array_keeps_its_infinities(module_workspace, diabetes):
    X, _, lr = diabetes

    def ratio(x):
        return lr.predict(x) / x[:, 0]

    sample = X[np.abs(X[:, 0]) > 1e-3]
    inst = module_workspace.serve(ratio, sample=sample, runtime="process", progress=False)
    try:
        rows = X[:4].copy()
        rows[:2, 0] = 0.0
        expected = ratio(rows)
        assert np.isinf(expected[:2]).all()
        np.testing.assert_array_equal(inst.client(timeout=TIMEOUT).ratio(rows), expected)
        answer = post(inst, "ratio", rows.tolist()).json()["data"]
        assert answer[:2] == ["Infinity" if v > 0 else "-Infinity" for v in expected[:2]]
    finally:
        inst.remove()


# -- integer column labels and extra columns -----------------------------------------------------------


def integer_labelled():
    frame, target = rentals()
    X = pd.DataFrame({0: frame["temp"], 1: frame["humidity"], 2: frame["season"]})
    return X, target


def test_integer_column_labels_reach_a_column_transformer_pipeline(module_workspace):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    X, y = integer_labelled()
    prep = ColumnTransformer([("num", SimpleImputer(), [0, 1]), ("cat", OneHotEncoder(), [2])])
    model = make_pipeline(prep, HistGradientBoostingClassifier(max_iter=20)).fit(X, y)
    inst = module_workspace.serve(model, name="int_labels", sample=X, runtime="process", progress=False)
    try:
        np.testing.assert_allclose(inst.client(timeout=TIMEOUT).predict_proba(X[:20]), model.predict_proba(X[:20]))
        # another table's columns: a 400 naming them (not the model's 500)
        body = frame_split(X.iloc[:2])
        body["columns"].append("station")
        for row in body["data"]:
            row.append("north")
        resp = post(inst, "predict", body)
        assert resp.status_code == 400 and "unexpected columns ['station']" in resp.json()["error"]["message"]
    finally:
        inst.remove()


def test_lightgbm_with_integer_labels_and_extra_columns_ignored(module_workspace):
    lightgbm = pytest.importorskip("lightgbm")
    X, y = integer_labelled()
    model = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, y)
    inst = module_workspace.serve(
        model, name="lgbm_labels", sample=X, runtime="process", progress=False, extra_columns="ignore"
    )
    try:
        np.testing.assert_allclose(inst.client(timeout=TIMEOUT).predict_proba(X[:20]), model.predict_proba(X[:20]))
        body = frame_split(X.iloc[:3])
        records = [dict(zip(body["columns"], row), comment="dropped") for row in body["data"]]
        resp = post(inst, "predict", records)
        assert resp.status_code == 200, resp.text
        assert resp.json()["data"] == model.predict(X.iloc[:3]).tolist()
        spec = requests.get(inst.url + "/openapi.json", timeout=TIMEOUT).json()
        row = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert "additionalProperties" not in row["properties"]["data"]["items"]
    finally:
        inst.remove()


# -- an empty batch to a list-input method ---------------------------------------------------------------


def tiny_text_classifier():
    """A BERT sequence classifier built from a local config (2 layers, hidden size 32) and a word-level
    tokenizer made from a vocabulary written here: no hub."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification

    words = ["[PAD]", "[UNK]", "great", "bike", "broken", "chain", "lovely", "ride", "flat", "tyre", "again"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    net = BertForSequenceClassification(config).eval()

    def classify(texts):
        encoded = tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in encoded])
        with torch.no_grad():
            logits = net(input_ids=ids, attention_mask=torch.tensor([e.attention_mask for e in encoded])).logits
        return torch.softmax(logits, dim=-1).numpy()

    return classify


@pytest.mark.parametrize("family", ["tfidf", "transformers"])
def test_an_empty_list_to_a_text_classifier_is_a_400_and_openapi_says_min_items(module_workspace, family):
    texts = ["great bike", "broken chain", "lovely ride", "flat tyre again", "great ride", "chain broken again"]
    if family == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, [1, 0, 1, 0, 1, 0])
        inst = module_workspace.serve(model, name="reviews_tfidf", sample=texts, runtime="process", progress=False)
        method, expected = "predict_proba", model.predict_proba(texts[:2])
    else:
        classify = tiny_text_classifier()
        inst = module_workspace.serve(classify, sample=texts, runtime="process", progress=False)
        method, expected = "classify", classify(texts[:2])
    try:
        np.testing.assert_allclose(getattr(inst.client(timeout=TIMEOUT), method)(texts[:2]), expected, rtol=1e-5)
        resp = post(inst, method, [])
        assert resp.status_code == 400, resp.text
        assert "at least 1 item" in resp.json()["error"]["message"]
        spec = requests.get(inst.url + "/openapi.json", timeout=TIMEOUT).json()
        data = spec["paths"][f"/{method}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert data["properties"]["data"]["minItems"] == 1
    finally:
        inst.remove()


# -- one rule for naive dates in a column with a time zone -----------------------------------------------


def test_a_naive_date_in_a_zoned_column_reads_the_same_whatever_its_neighbours(module_workspace):
    frame = pd.DataFrame(
        {"t": pd.date_range("2024-01-01 08:00", periods=6, freq="h", tz="Europe/Paris"), "x": np.arange(6.0)}
    )

    def hours(df):
        return (df["t"].dt.hour * 100 + df["t"].dt.minute).to_numpy()

    inst = module_workspace.serve(hours, sample=frame, runtime="process", progress=False)
    try:
        alone = post(inst, "hours", {"t": ["2024-01-31T08:30:00"], "x": [1.0]}).json()["data"]
        mixed = {"t": ["2024-01-31T08:30:00", "2024-01-31T08:30:00+00:00"], "x": [1.0, 2.0]}
        beside = post(inst, "hours", mixed).json()["data"]
        assert alone == [830] and beside == [830, 930]  # wall time in Paris; the offset converted to Paris
        resp = post(inst, "hours", {"t": ["2024-03-31T02:30:00"], "x": [1.0]})  # no such time in Paris
        assert resp.status_code == 400 and "does not exist" in resp.json()["error"]["message"]
    finally:
        inst.remove()
