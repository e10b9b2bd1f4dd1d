"""The baseline nbserve is held to: the thinnest Flask app a user would write by hand for one model.

    BENCH_MODEL=model.pkl gunicorn --workers 1 --bind 127.0.0.1:PORT baseline_flask:app

Plain pickle in, orjson both ways, numpy straight into ``predict``. No input checks, no schema, no
error handling: whatever nbserve's server does on top of this is what its ratios measure.
"""

import os
import pickle

import numpy as np
import orjson
from flask import Flask, Response, request

with open(os.environ["BENCH_MODEL"], "rb") as f:
    model = pickle.load(f)

app = Flask(__name__)


@app.post("/predict")
def predict():
    rows = np.asarray(orjson.loads(request.get_data())["data"], dtype=np.float64)
    body = orjson.dumps({"data": model.predict(rows)}, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, mimetype="application/json")


@app.get("/health")
def health():
    return Response(b'{"status": "ok"}', mimetype="application/json")
