"""What the protocol adapters cost: CPU per request of MLflow's /invocations and the Open Inference
Protocol's /v2/models/{name}/infer against nbserve's own POST /predict, in the same run, on the same
1,000-row input; and the native route now against the native route of the server before the adapters
(the nbserve/server/ package of a git ref, loaded side by side), to show it did not get slower.

    python benchmarks/protocols_bench.py [--rows 1000] [--baseline-ref REF]

Each request is the app's WSGI callable called in process (no socket, no gunicorn: they cost the same
for every route), CPU time (process_time), the minimum over interleaved batches. Two models: the diabetes
LinearRegression on a float array, a gradient-boosting pipeline on a DataFrame with float, int, category
and bool columns. Target: every ratio to the native route at most 1.2.
"""

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent


def environ_for(path, body, content_type="application/json", headers=None):
    env = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": content_type,
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
    for k, v in (headers or {}).items():
        env["HTTP_" + k.upper().replace("-", "_")] = v
    return env


def call(app, request):
    status = []
    out = app(environ_for(*request), lambda s, h, exc=None: status.append(s))
    data = b"".join(out)
    if hasattr(out, "close"):
        out.close()
    return status[0], data


def per_call_us(cases, n, rounds):
    best = {name: float("inf") for name in cases}
    for _ in range(rounds):
        for name, (app, request) in cases.items():
            t = time.process_time()
            for _ in range(n):
                call(app, request)
            best[name] = min(best[name], (time.process_time() - t) / n * 1e6)
    return best


def baseline_server(ref):
    """make_app of nbserve/server/ at ``ref``, imported as a package of its own beside today's."""
    if ref is None:  # the parent of the commit that added the adapters
        added = subprocess.run(
            ["git", "log", "--diff-filter=A", "--format=%H", "--", "nbserve/server/protocols/__init__.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        ref = (added[-1] + "~1") if added else "HEAD"
    tar = subprocess.run(["git", "archive", ref, "nbserve/server"], cwd=ROOT, capture_output=True, check=True).stdout
    where = Path(tempfile.mkdtemp())
    tarfile.open(fileobj=io.BytesIO(tar)).extractall(where, filter="data")
    (where / "nbserve" / "server").rename(where / "nbserve_server_baseline")
    sys.path.insert(0, str(where))
    from nbserve_server_baseline.app import make_app

    return ref, make_app


def v2_tensors(columns):
    """The JSON body tritonclient sends with binary_data=False: one flat tensor per (name, array)."""
    inputs = []
    for name, arr, datatype in columns:
        data = arr.astype(str).tolist() if datatype == "BYTES" else arr.reshape(-1).tolist()
        inputs.append({"name": name, "shape": list(arr.shape), "datatype": datatype, "data": data})
    return orjson.dumps({"inputs": inputs})


def v2_binary(arr, datatype):
    """The body tritonclient sends by default (binary_data=True) for one numeric tensor."""
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(arr.shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": arr.nbytes},
                }
            ],
            "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
        }
    )
    return head + arr.tobytes(), {"Inference-Header-Content-Length": str(len(head))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--n", type=int, default=20, help="calls per batch")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved batches per case")
    ap.add_argument("--baseline-ref", help="git ref of the server before the adapters (default: found by git log)")
    args = ap.parse_args()

    import cloudpickle
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    sys.path.insert(0, str(ROOT))
    from nbserve.capture import capture
    from nbserve.client import encode
    from nbserve.server.app import make_app

    ref, make_baseline = baseline_server(args.baseline_ref)

    def apps(obj, sample, model_id):
        cap = capture(obj, label=model_id.partition(":")[0], sample=sample, proof=False)
        return (
            make_app(cloudpickle.loads(cap.pickle), cap.manifest, model_id=model_id),
            make_baseline(cloudpickle.loads(cap.pickle), cap.manifest, model_id=model_id),
        )

    X, y = load_diabetes(return_X_y=True)
    lr = LinearRegression().fit(X, y)
    rows = np.resize(X, (args.rows, X.shape[1]))
    rng = np.random.default_rng(0)
    n = 2000
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 12, n),
            "age": rng.integers(18, 80, n),
            "region": pd.Categorical(rng.choice(["north", "south", "east", "west"], n)),
            "member": rng.random(n) > 0.5,
        }
    )
    target = (frame.income + frame.member * 5 > 52).astype(int)
    encoder = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["region"]), remainder="passthrough")
    gb = make_pipeline(encoder, GradientBoostingClassifier(n_estimators=30, random_state=0)).fit(frame, target)
    table = frame.iloc[: args.rows]

    lr_app, lr_base = apps(lr, X, "diabetes:1")
    gb_app, gb_base = apps(gb, frame, "churn:1")
    native_lr = ("/predict", orjson.dumps({"data": rows.tolist()}))
    native_gb = ("/predict", orjson.dumps({"data": encode(table)}))
    binary_body, binary_headers = v2_binary(rows, "FP64")
    split = orjson.loads(table.to_json(orient="split", index=False))
    cases = {
        "array  native /predict (before the adapters)": (lr_base, native_lr),
        "array  native /predict": (lr_app, native_lr),
        "array  /invocations inputs": (lr_app, ("/invocations", orjson.dumps({"inputs": rows.tolist()}))),
        "array  /invocations dataframe_split": (
            lr_app,
            ("/invocations", orjson.dumps({"dataframe_split": {"columns": list("abcdefghij"), "data": rows.tolist()}})),
        ),
        "array  /v2 infer (JSON)": (lr_app, ("/v2/models/diabetes/infer", v2_tensors([("input-0", rows, "FP64")]))),
        "array  /v2 infer (binary)": (
            lr_app,
            ("/v2/models/diabetes/infer", binary_body, "application/octet-stream", binary_headers),
        ),
        "frame  native /predict (before the adapters)": (gb_base, native_gb),
        "frame  native /predict": (gb_app, native_gb),
        "frame  /invocations dataframe_split": (gb_app, ("/invocations", orjson.dumps({"dataframe_split": split}))),
        "frame  /v2 infer (JSON)": (
            gb_app,
            (
                "/v2/models/churn/infer",
                v2_tensors(
                    [
                        ("income", table.income.to_numpy(), "FP64"),
                        ("age", table.age.to_numpy(), "INT64"),
                        ("region", table.region.to_numpy(), "BYTES"),
                        ("member", table.member.to_numpy(), "BOOL"),
                    ]
                ),
            ),
        ),
    }
    for name, (app, request) in cases.items():
        status, data = call(app, request)
        assert status.startswith("200"), (name, status, data[:300])
    us = per_call_us(cases, args.n, args.rounds)
    print(f"CPU per {args.rows}-row request, min of {args.rounds} interleaved batches of {args.n} (baseline: {ref})")
    for name, value in us.items():
        model = name.split()[0]
        ratio = value / us[f"{model}  native /predict"]
        print(f"  {name:<46} {value:9.0f} us   {ratio:5.2f}x native")


if __name__ == "__main__":
    main()
