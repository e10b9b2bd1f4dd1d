"""The models the fuzzing aims at: one for each kind of input schema the server decodes.

Each entry gives the live object, the sample it is registered with, a good request, and ``check``:
given a request's ``data`` that got a 200 and the answer, it asserts the answer is right, computed
independently of the server's decoders.
"""

import math

import numpy as np


def _close(got, want):
    # JSON has no inf or NaN: the server writes NaN as null and the infinities as "Infinity" and "-Infinity",
    # which numpy reads back (nbserve/server/dtypes.py): the answer holds exactly the model's values
    want = np.asarray(want, dtype=float)
    np.testing.assert_allclose(np.asarray(got, dtype=float), want, rtol=1e-9, equal_nan=True)


def build(diabetes, iris):
    import pandas as pd

    X, _, lr = diabetes
    Xi, _, clf = iris

    def score(payload):
        """dict input: a list of numbers and a string."""
        total = float(sum(payload["values"]))
        return {"total": total if math.isfinite(total) else None, "label": payload["name"][:10]}

    def parity(x):
        """int64 array input."""
        return (x % 2 == 0).all(axis=1)

    def halve32(x):
        """float32 array input: values past float32's range must be refused, not turned into inf."""
        return x / 2

    def squares(s):
        """float Series input."""
        return s**2

    def lr_check(data, answer):
        _close(answer, lr.predict(np.asarray(data, dtype=float)))

    def iris_check(method):
        def check(data, answer):
            frame = _frame(data, pd)[list(Xi.columns)].astype(float)
            want = getattr(clf, method)(frame)
            _close(answer, want)

        return check

    def score_check(data, answer):
        assert answer == score(data)

    def parity_check(data, answer):
        assert answer == [all(v % 2 == 0 for v in row) for row in data]

    def halve32_check(data, answer):
        # orjson writes a float32 as its shortest float32 repr: compare as float32
        np.testing.assert_array_equal(np.asarray(answer, dtype=np.float32), np.asarray(data, dtype=np.float32) / 2)

    def squares_check(data, answer):
        _close(answer, np.asarray(data, dtype=float) ** 2)

    xs = np.arange(6, dtype=np.int64).reshape(2, 3)
    return {
        "diabetes": dict(obj=lr, sample=X, good=("predict", X[:2].tolist()), checks={"predict": lr_check}),
        "iris": dict(
            obj=clf,
            sample=Xi,
            good=("predict_proba", Xi[:2].to_dict(orient="records")),
            checks={"predict": iris_check("predict"), "predict_proba": iris_check("predict_proba")},
        ),
        "score": dict(
            obj=score,
            sample={"values": [1.0, 2.5], "name": "ab"},
            good=("score", {"values": [1, 2], "name": "x"}),
            checks={"score": score_check},
        ),
        "parity": dict(obj=parity, sample=xs, good=("parity", xs.tolist()), checks={"parity": parity_check}),
        "halve32": dict(
            obj=halve32,
            sample=np.ones((2, 2), dtype=np.float32),
            good=("halve32", [[1, 2]]),
            checks={"halve32": halve32_check},
        ),
        "squares": dict(
            obj=squares,
            sample=pd.Series([1.0, 2.0], name="x"),
            good=("squares", [3.0]),
            checks={"squares": squares_check},
        ),
    }


def _frame(data, pd):
    if isinstance(data, dict) and "columns" in data and "data" in data:
        return pd.DataFrame(data["data"], columns=data["columns"])
    if isinstance(data, dict):
        return pd.DataFrame(data)
    return pd.DataFrame.from_records(data)
