"""A floor below the Flask baseline: one raw WSGI callable, no framework at all.

    BENCH_MODEL=model.pkl gunicorn --workers 1 --bind 127.0.0.1:PORT baseline_wsgi:app

It shows how much of a request's cost is Flask/Werkzeug rather than the model and JSON.
"""

import os
import pickle

import numpy as np
import orjson

with open(os.environ["BENCH_MODEL"], "rb") as f:
    model = pickle.load(f)

_JSON = [("Content-Type", "application/json")]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/predict" and environ["REQUEST_METHOD"] == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        rows = np.asarray(orjson.loads(environ["wsgi.input"].read(length))["data"], dtype=np.float64)
        body = orjson.dumps({"data": model.predict(rows)}, option=orjson.OPT_SERIALIZE_NUMPY)
        start_response("200 OK", _JSON + [("Content-Length", str(len(body)))])
        return [body]
    if path == "/health":
        body = b'{"status": "ok"}'
        start_response("200 OK", _JSON + [("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", _JSON)
    return [b'{"error": "not found"}']
