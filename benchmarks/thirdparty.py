"""The MLflow and BentoML sides of the benchmark, run by *their* interpreters (separate venvs).

serve_bench.py never imports mlflow or bentoml (they conflict with each other and are no dependency of
nbserve); it runs this file with the python it was given (--mlflow-python / --bentoml-python):

    python thirdparty.py mlflow-prepare DIR     fit the model, mlflow.sklearn.save_model into DIR/mlflow-model
    python thirdparty.py bentoml-prepare DIR    fit the model, bentoml.sklearn.save_model into DIR/bentoml-home,
                                                write DIR/bentoml_service.py
    python thirdparty.py mlflow-first DIR       time to first prediction (see first_prediction.py)
    python thirdparty.py bentoml-first DIR      likewise

Each venv fits its own LinearRegression on load_diabetes (deterministic least squares), or, given
BENCH_MODEL (a pickle; the venv then needs the same library versions), saves that model, so the benchmark
can compare every server's answers with the model's own predictions.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BENTO_SERVICE = """
import bentoml
import numpy as np


@bentoml.service(workers=1)
class Diabetes:
    def __init__(self):
        self.model = bentoml.sklearn.load_model("diabetes:latest")

    @bentoml.api
    def predict(self, data: np.ndarray) -> np.ndarray:
        return self.model.predict(data)
"""


def _fit():
    """load_diabetes and its model: the benchmark's own pickle when BENCH_MODEL names one (a model this venv
    could not fit identically, such as xgboost; the venv has the same versions), else a LinearRegression."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    X, y = load_diabetes(return_X_y=True)
    if os.environ.get("BENCH_MODEL"):
        import pickle

        with open(os.environ["BENCH_MODEL"], "rb") as f:
            return X, pickle.load(f)
    return X, LinearRegression().fit(X, y)


def quiet_env(out: Path) -> None:
    """No telemetry, no tracking server, stores inside the benchmark's own temp dir."""
    os.environ.update(
        MLFLOW_TRACKING_URI=f"file://{out}/mlruns",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
        BENTOML_DO_NOT_TRACK="True",
        BENTOML_HOME=str(out / "bentoml-home"),
    )


def mlflow_prepare(out: Path, path_name="mlflow-model"):
    import mlflow.sklearn

    X, lr = _fit()
    if type(lr).__module__.startswith("xgboost"):  # its own flavour: what a user would save it with
        import mlflow.xgboost

        mlflow.xgboost.save_model(lr, str(out / path_name), input_example=X[:2])
    else:
        mlflow.sklearn.save_model(lr, str(out / path_name), input_example=X[:2])
    return X, lr


def bentoml_prepare(out: Path):
    import bentoml

    X, lr = _fit()
    bentoml.sklearn.save_model("diabetes", lr)
    (out / "bentoml_service.py").write_text(BENTO_SERVICE)
    return X, lr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _first_answer(url, body, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.loads(resp.read())
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{url} gave no answer within {timeout} s")


def first_prediction(tool: str, out: Path):
    """From a process holding the fitted model: save it with the tool's API, start its local server,
    wait for the first prediction. The model is fitted before the clock starts, as in a notebook."""
    X, lr = _fit()
    port = _free_port()
    body = json.dumps({"inputs" if tool == "mlflow" else "data": X[:1].tolist()}).encode()
    started = time.perf_counter()
    if tool == "mlflow":
        import mlflow.sklearn

        mlflow.sklearn.save_model(lr, str(out / "first-model"), input_example=X[:2])
        saved = time.perf_counter()
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            str(out / "first-model"),
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "1",
        ]
        url = f"http://127.0.0.1:{port}/invocations"
    else:
        import bentoml

        bentoml.sklearn.save_model("diabetes", lr)
        (out / "bentoml_service.py").write_text(BENTO_SERVICE)
        saved = time.perf_counter()
        cmd = [
            str(Path(sys.executable).parent / "bentoml"),
            "serve",
            "bentoml_service:Diabetes",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        url = f"http://127.0.0.1:{port}/predict"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.Popen(
        cmd, cwd=out, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        answer = _first_answer(url, body)
        done = time.perf_counter()
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    print("RESULT " + json.dumps({"total_s": done - started, "save_s": saved - started, "answer": answer}))


def main():
    what, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    quiet_env(out)
    if what == "mlflow-prepare":
        mlflow_prepare(out)
    elif what == "bentoml-prepare":
        bentoml_prepare(out)
    elif what in ("mlflow-first", "bentoml-first"):
        first_prediction(what.split("-")[0], out)
    else:
        raise SystemExit(f"unknown command {what!r}")


if __name__ == "__main__":
    main()
