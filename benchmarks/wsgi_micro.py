"""Per-request cost of each app's Python code alone: the WSGI callable called in process, no socket,
no gunicorn. It isolates what the app does per request (Flask, decoding, the model, the response) from
the server and the network, so a change to nbserve/server/ can be judged in seconds:

    python benchmarks/wsgi_micro.py [--rows 1] [--profile nbserve]

Prints microseconds of CPU (process_time) per call: the minimum over interleaved batches.
"""

import argparse
import cProfile
import io
import os
import pickle
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

HERE = Path(__file__).resolve().parent


def environ_for(body: bytes):
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/predict",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "SERVER_SOFTWARE": "gunicorn/bench",
        "REMOTE_ADDR": "127.0.0.1",
    }


def call(app, body):
    env = environ_for(body)
    status = []
    out = app(env, lambda s, h, exc=None: status.append(s))
    data = b"".join(out)
    if hasattr(out, "close"):
        out.close()
    return status[0], data


def per_call_us(table, body, n, rounds):
    """CPU microseconds per call for each app: the minimum over ``rounds`` interleaved batches of ``n``
    calls (the minimum is what is left when other processes on a shared machine stay out of the way)."""
    best = {name: float("inf") for name in table}
    for _ in range(rounds):
        for name, app in table.items():
            t = time.process_time()
            for _ in range(n):
                call(app, body)
            best[name] = min(best[name], (time.process_time() - t) / n * 1e6)
    return best


def apps(model_path: Path, X):
    import cloudpickle

    os.environ["BENCH_MODEL"] = str(model_path)
    sys.path.insert(0, str(HERE))
    import baseline_flask
    import baseline_wsgi

    from nbserve.capture import capture
    from nbserve.server.app import make_app

    lr = pickle.loads(model_path.read_bytes())
    cap = capture(lr, label="diabetes", sample=X, proof=False)
    nb = make_app(cloudpickle.loads(cap.pickle), cap.manifest, model_id="diabetes:1")
    return {"nbserve": nb, "bare Flask": baseline_flask.app, "raw WSGI": baseline_wsgi.app}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1)
    ap.add_argument("--n", type=int, default=500, help="calls per batch")
    ap.add_argument("--rounds", type=int, default=30, help="interleaved batches per app")
    ap.add_argument("--profile", help="profile this app instead (name as printed)")
    args = ap.parse_args()
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    X, y = load_diabetes(return_X_y=True)
    lr = LinearRegression().fit(X, y)
    model_path = Path(tempfile.mkdtemp()) / "model.pkl"
    model_path.write_bytes(pickle.dumps(lr))
    body = orjson.dumps({"data": np.resize(X, (args.rows, X.shape[1])).tolist()})
    table = apps(model_path, X)
    for name, app in table.items():
        status, data = call(app, body)
        assert status.startswith("200"), (name, status, data[:300])
    if args.profile:
        app = table[args.profile]
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.n):
            call(app, body)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    for name, us in per_call_us(table, body, args.n, args.rounds).items():
        print(f"{name:>20}: {us:7.1f} us CPU per {args.rows}-row request")


if __name__ == "__main__":
    main()
