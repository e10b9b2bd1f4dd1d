"""The baseline nbserve is held to: the thinnest Flask app a user would write by hand for one model.

    BENCH_MODEL=model.pkl gunicorn --workers 1 --bind 127.0.0.1:PORT baseline_flask:app

Plain pickle in, orjson both ways, numpy straight into ``predict``. No input checks, no schema, no
error handling: whatever nbserve's server does on top of this is what its ratios measure.

For a model over a DataFrame, BENCH_DTYPES names a pickle of the training frame's ``dtypes``: the body's
``{"columns": [...], "data": [[...]]}`` becomes a DataFrame cast to them (dates from ISO strings, the
training categories), the least a hand-written app must do for the model to see what it was trained on.
"""

import os
import pickle

import numpy as np
import orjson
from flask import Flask, Response, request

with open(os.environ["BENCH_MODEL"], "rb") as f:
    model = pickle.load(f)
DTYPES = None
if os.environ.get("BENCH_DTYPES"):
    import pandas as pd

    with open(os.environ["BENCH_DTYPES"], "rb") as f:
        DTYPES = pickle.load(f)


def rows_in(data):
    if DTYPES is None:
        return np.asarray(data, dtype=np.float64)
    return pd.DataFrame(data["data"], columns=data["columns"]).astype(DTYPES)


app = Flask(__name__)


@app.post("/predict")
def predict():
    rows = rows_in(orjson.loads(request.get_data())["data"])
    body = orjson.dumps({"data": model.predict(rows)}, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, mimetype="application/json")


@app.get("/health")
def health():
    return Response(b'{"status": "ok"}', mimetype="application/json")
