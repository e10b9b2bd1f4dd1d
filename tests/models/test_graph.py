"""A graph of stages served as one service on the process runtime (nbserve/graphs.py, server/graph.py).

Two graphs, each served once for the module: a chain (a cleaning function over the mixed-type rentals frame ->
the HistGradientBoosting pipeline's predict_proba -> a threshold function) and a fan-out ensemble (a linear
model and an xgboost model on the diabetes array, averaged). The served answers equal the kernel's graph
evaluated in process and the stages composed by hand; each stage is its own registered version; one stage is
updated under a request loop of at least 500 requests with zero failures while the other stages keep their
versions; a stage that raises is a 500 naming it, bad input a 400; metrics are labelled by stage; two stages
pinning different versions of a package are refused when the graph is registered.
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from frames import mixed_pipeline, rentals
from request_loop import RequestLoop

import nbserve
from nbserve.errors import RequirementsError
from nbserve.server.schema import frame_split

TIMEOUT = 30


def clean(df):
    """The first stage: a copy with temperatures clipped; a station that is closed cannot be scored."""
    if (df["station"] == "closed").any():
        raise ValueError("station 'closed' has no rentals to score")
    out = df.copy()
    out["temp"] = out["temp"].clip(-20, 45)
    return out


def threshold(proba):
    return (proba[:, 1] > 0.5).astype("int64")


def stricter(proba):
    return (proba[:, 1] > 0.9).astype("int64")


def mean(answers):
    return (answers["linear"] + answers["boosted"]) / 2


@pytest.fixture(scope="module")
def table():
    return rentals()


@pytest.fixture(scope="module")
def pipe(table):
    return mixed_pipeline(*table)


@pytest.fixture(scope="module")
def chain(module_workspace, table, pipe):
    g = nbserve.chain(clean, (pipe, "predict_proba"), threshold)
    inst = module_workspace.serve(g, name="rentals", sample=table[0], runtime="process", progress=False)
    return g, inst


@pytest.fixture(scope="module")
def ensemble(module_workspace, diabetes):
    xgboost = pytest.importorskip("xgboost")
    from sklearn.linear_model import LinearRegression

    X, y, _ = diabetes
    lin = LinearRegression().fit(X, y)
    boosted = xgboost.XGBRegressor(n_estimators=20, max_depth=3).fit(X, y)
    g = nbserve.graph(linear=lin, boosted=boosted, mean=mean, edges={("linear", "boosted"): "mean"})
    inst = module_workspace.serve(g, name="diabetes", sample=X, runtime="process", progress=False)
    return g, inst, lin, boosted


def post(url, path, data):
    return requests.post(url + path, json={"data": data}, timeout=TIMEOUT)


def test_a_chain_answers_as_the_kernels_graph(chain, table, pipe):
    g, inst = chain
    rows = table[0].iloc[:60]
    assert rows.isna().any().any()  # NaN, NA and None among the rows
    expected = threshold(pipe.predict_proba(clean(rows)))
    got = inst.client(timeout=TIMEOUT).predict(rows)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype == np.int64
    np.testing.assert_array_equal(g(rows), expected)  # the kernel's graph, evaluated here
    np.testing.assert_array_equal(g.predict(rows), expected)


def test_a_fan_out_ensemble_answers_as_the_kernels_graph(ensemble, diabetes):
    g, inst, lin, boosted = ensemble
    X = diabetes[0][:50]
    expected = (lin.predict(X) + boosted.predict(X)) / 2
    got = inst.client(timeout=TIMEOUT).predict(X)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(g(X), expected)
    doc = requests.get(inst.url + "/graph", timeout=TIMEOUT).json()
    assert [(s["name"], s["inputs"]) for s in doc["stages"]] == [
        ("linear", []),
        ("boosted", []),
        ("mean", ["linear", "boosted"]),
    ]
    # the fan-in stage alone takes the dict its inputs make
    answer = post(inst.url, "/stages/mean/mean", {"linear": [1.0, 2.0], "boosted": [3.0, 4.0]})
    assert answer.status_code == 200 and answer.json()["data"] == [2.0, 3.0]


def test_each_stage_is_a_version_of_its_own_and_the_graph_names_them(chain, module_workspace, pipe, table):
    _, inst = chain
    ws = module_workspace
    graph_version = ws.get_model(inst.model)
    assert graph_version.manifest["kind"] == "graph"
    assert graph_version.stages == {
        "clean": "rentals.clean:1",
        "pipeline": "rentals.pipeline:1",
        "threshold": "rentals.threshold:1",
    }
    clean_v, pipe_v, threshold_v = (ws.get_model(ref) for ref in graph_version.stages.values())

    def names(mv):
        return {line.split("==")[0].lower() for line in mv.requirements}

    # each its own lock: the cleaning function needs pandas, not scikit-learn; the threshold only numpy
    assert {"scikit-learn", "pandas"} <= names(pipe_v)
    assert "pandas" in names(clean_v) and "scikit-learn" not in names(clean_v)
    assert "numpy" in names(threshold_v) and not {"pandas", "scikit-learn"} & names(threshold_v)

    # each stage's signature is the sample that reached it: the pipeline takes the cleaned frame
    def columns(schema):
        return [(c["name"], c["dtype"]) for c in schema["columns"]]

    assert columns(pipe_v.signature["predict_proba"]["input"]) == columns(clean_v.signature["clean"]["output"])
    assert threshold_v.signature["threshold"]["input"]["shape"] == [None, 2]
    # the image's lock is the union of the stages' locks
    union = set(clean_v.requirements) | set(pipe_v.requirements) | set(threshold_v.requirements)
    assert set(graph_version.requirements) == union
    # the graph as a registered version runs again in the kernel, its stages loaded from the registry
    rows = table[0].iloc[:10]
    np.testing.assert_array_equal(graph_version.load()(rows), threshold(pipe.predict_proba(clean(rows))))


def test_the_documents_give_the_first_stages_input_and_the_last_stages_output(chain, module_workspace):
    _, inst = chain
    clean_v = module_workspace.get_model("rentals.clean:1")
    interface = requests.get(inst.url + "/interface.json", timeout=TIMEOUT).json()
    (method,) = interface["methods"]
    assert method["name"] == "predict" and method["input"] == clean_v.signature["clean"]["input"]
    assert method["output"] == {"type": "ndarray", "dtype": "int64", "shape": [None]}
    spec = requests.get(inst.url + "/openapi.json", timeout=TIMEOUT).json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    columns = body["properties"]["data"]["items"]["properties"]
    assert set(columns) == {"temp", "humidity", "riders_yesterday", "holiday", "season", "station", "day"}
    answer = spec["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["properties"]["data"]["items"] == {"type": "integer"}
    assert {"/graph", "/stages/clean/clean", "/stages/pipeline/predict_proba", "/stages/threshold/threshold"} <= set(
        spec["paths"]
    )
    doc = requests.get(inst.url + "/graph", timeout=TIMEOUT).json()
    assert doc["model"] == inst.model and doc["output"] == "threshold"
    assert [(s["name"], s["model"], s["method"], s["inputs"]) for s in doc["stages"]] == [
        ("clean", "rentals.clean:1", "clean", []),
        ("pipeline", "rentals.pipeline:1", "predict_proba", ["clean"]),
        ("threshold", "rentals.threshold:1", "threshold", ["pipeline"]),
    ]


def test_every_stage_answers_alone(chain, table, pipe):
    _, inst = chain
    rows = clean(table[0].iloc[:8])
    got = post(inst.url, "/stages/pipeline/predict_proba", frame_split(rows))
    assert got.status_code == 200, got.text
    np.testing.assert_array_equal(np.array(got.json()["data"]), pipe.predict_proba(rows))
    got = post(inst.url, "/stages/pipeline/predict", frame_split(rows))  # its other method, too
    np.testing.assert_array_equal(np.array(got.json()["data"]), pipe.predict(rows))
    missing = post(inst.url, "/stages/nowhere/predict", [1])
    assert missing.status_code == 404 and "clean" in missing.json()["error"]["message"]


def test_a_failing_stage_is_a_500_naming_it_and_bad_input_is_the_callers_400(chain, table):
    _, inst = chain
    before = inst.stages().set_index("stage")
    rows = table[0].iloc[:3].copy()
    rows["station"] = ["north", "closed", None]
    failed = post(inst.url, "/predict", frame_split(rows))
    assert failed.status_code == 500
    error = failed.json()["error"]
    assert error["type"] == "StageError"
    said = "stage 'clean' (rentals.clean:1) raised ValueError: station 'closed' has no rentals to score"
    assert error["message"] == said
    assert "Traceback" not in failed.text and "/" not in error["message"].split("raised")[1]
    bad = post(inst.url, "/predict", frame_split(table[0].iloc[:2].drop(columns=["season"])))
    assert bad.status_code == 400 and "season" in bad.json()["error"]["message"]
    assert post(inst.url, "/predict", frame_split(table[0].iloc[:2])).status_code == 200  # serving on
    # /metrics: the stage's error, labelled by stage, stage version and exception
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(inst.url + "/metrics", timeout=TIMEOUT).text
    errors = {
        (s.labels["stage"], s.labels["stage_model"], s.labels["exception"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "nbserve_stage_errors"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert errors[("clean", "rentals.clean:1", "ValueError")] >= 1 and {k[0] for k in errors} == {"clean"}
    after = inst.stages().set_index("stage")
    assert after.loc["clean", "errors"] == before.loc["clean", "errors"] + 1
    assert after.loc["pipeline", "errors"] == 0 and after.loc["threshold", "errors"] == 0
    assert after.loc["pipeline", "calls"] >= before.loc["pipeline", "calls"] + 1
    assert after.loc["pipeline", "p50_ms"] > 0 and list(after.index) == ["clean", "pipeline", "threshold"]


def test_updating_one_stage_under_a_request_loop_drops_nothing(chain, module_workspace, table, pipe):
    _, inst = chain
    ws = module_workspace
    frame = table[0]
    proba = pipe.predict_proba(clean(frame))[:, 1]
    row = int(np.flatnonzero((proba > 0.5) & (proba < 0.9))[0])  # a row the stricter threshold turns to 0
    body = {"data": frame_split(frame.iloc[[row]])}
    before = ws.get_model(inst.model)
    versions_before = {name: [v.version for v in ws.versions(name)] for name in ("rentals.clean", "rentals.pipeline")}
    url, port = inst.url, inst.port
    with RequestLoop(lambda: [url], body, timeout=TIMEOUT) as loop:
        while loop.requests < 100:
            time.sleep(0.05)
        started = time.monotonic()
        inst.update_stage("threshold", stricter, progress=False)
        took = time.monotonic() - started
        while loop.requests < 500 or loop.answers.get(0.0, 0) < 50:
            assert loop.seconds < 600, loop.summary()
            time.sleep(0.05)
    print(f"\n[graph-report] process update_stage: {took:.2f} s; {loop.summary()}; answers {loop.answers}")
    assert not loop.failures, loop.summary()
    assert loop.requests >= 500 and set(loop.answers) == {1.0, 0.0}  # the old stage's answer, then the new one
    after = ws.get_model(inst.model)
    assert after.version == before.version + 1 and (inst.url, inst.port) == (url, port)
    assert after.stages == {**before.stages, "threshold": "rentals.threshold:2"}
    assert {name: [v.version for v in ws.versions(name)] for name in versions_before} == versions_before
    rows = frame.iloc[:30]
    np.testing.assert_array_equal(inst.client().predict(rows), stricter(pipe.predict_proba(clean(rows))))
    doc = requests.get(url + "/graph", timeout=TIMEOUT).json()
    assert [s["model"] for s in doc["stages"]] == ["rentals.clean:1", "rentals.pipeline:1", "rentals.threshold:2"]


def test_two_stages_pinning_different_versions_of_a_package_are_refused(module_workspace, tmp_path, diabetes):
    """A stage registered in another environment (threadpoolctl 3.0.0 installed there, a copy of this one's
    under that version) cannot share a server with a stage registered here: the graph is refused, naming both
    stages and the package."""
    import site
    import sysconfig
    from importlib import metadata

    import threadpoolctl

    venv = tmp_path / "other-env"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {os.path.dirname(os.path.realpath(sys.executable))}\n")
    own = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    own.mkdir(parents=True)
    (own / "threadpoolctl.py").write_bytes(open(threadpoolctl.__file__, "rb").read())
    dist_info = own / "threadpoolctl-3.0.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: threadpoolctl\nVersion: 3.0.0\n")
    (dist_info / "RECORD").write_text("threadpoolctl.py,,\n")
    (dist_info / "top_level.txt").write_text("threadpoolctl\n")
    (own / "shared.pth").write_text("\n".join([*site.getsitepackages(), sysconfig.get_paths()["purelib"]]))
    python = venv / "bin" / "python3"
    os.symlink(os.path.realpath(sys.executable), python)
    assert metadata.version("threadpoolctl") != "3.0.0"
    script = (
        "import sys, nbserve\n"
        "from sklearn.datasets import load_diabetes\n"
        "from sklearn.linear_model import Ridge\n"
        "X, y = load_diabetes(return_X_y=True)\n"
        "mv = nbserve.register(Ridge().fit(X, y), name='ridge', sample=X, progress=False)\n"
        "print(mv.id, [r for r in mv.requirements if r.startswith('threadpoolctl')])\n"
    )
    env = {**os.environ, "NBSERVE_HOME": str(module_workspace.home)}
    out = subprocess.run([str(python), "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "threadpoolctl==3.0.0" in out.stdout, out.stdout
    X, y, lr = diabetes
    with pytest.raises(RequirementsError) as caught:
        module_workspace.register(
            nbserve.graph(linear=lr, boosted="ridge:1", mean=mean, edges={("linear", "boosted"): "mean"}),
            name="mixed",
            sample=X,
            progress=False,
        )
    message = str(caught.value)
    assert "stage 'linear'" in message and "stage 'boosted' (ridge:1)" in message
    assert "threadpoolctl==3.0.0" in message and f"threadpoolctl=={metadata.version('threadpoolctl')}" in message
    with pytest.raises(nbserve.ModelNotFoundError):
        module_workspace.get_model("mixed")  # nothing of the refused graph was registered as a graph


def test_a_graph_is_checked_when_it_is_made():
    with pytest.raises(nbserve.CaptureError, match="cycle"):
        nbserve.graph(a=clean, b=threshold, edges={"a": "b", "b": "a"})
    with pytest.raises(nbserve.CaptureError, match="ends in one stage"):
        nbserve.graph(a=clean, b=threshold, c=mean, edges={"a": ["b", "c"]})
    with pytest.raises(nbserve.CaptureError, match="'nowhere'"):
        nbserve.graph(a=clean, b=threshold, edges={"a": "nowhere"})
    with pytest.raises(nbserve.CaptureError, match="nbserve.chain"):
        nbserve.graph(a=clean, b=threshold)
    g = nbserve.chain(clean, threshold, threshold)
    assert list(g.stages) == ["clean", "threshold", "threshold_2"]
    assert repr(g) == "<Graph clean -> threshold -> threshold_2>"
