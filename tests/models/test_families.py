"""More model families served on the process runtime, each answer compared with the kernel's: a
statsmodels results object, a torch nn.Module (predict, and methods=["forward"]), a TF-IDF text pipeline,
a function taking a dict sample with a field that is not per row, and a function over an onnxruntime session
created lazily on its first call."""

import numpy as np
import pytest
import requests

TIMEOUT = 20


def test_statsmodels_results(module_workspace, diabetes):
    sm = pytest.importorskip("statsmodels.api")
    X, y, _ = diabetes
    results = sm.OLS(y, sm.add_constant(X)).fit()
    Xc = sm.add_constant(X)
    inst = module_workspace.serve(results, name="ols", sample=Xc[:50], runtime="process", progress=False)
    try:
        np.testing.assert_allclose(inst.client(timeout=TIMEOUT).predict(Xc[:9]), results.predict(Xc[:9]))
        resp = requests.post(inst.url + "/predict", json={"data": []}, timeout=TIMEOUT)
        assert resp.status_code == 400
    finally:
        inst.remove()


@pytest.fixture(scope="module")
def net():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    return torch, model, np.random.default_rng(0).normal(size=(30, 4)).astype("float32")


def test_a_torch_module_serves_predict_in_eval_mode_numpy_in_and_out(module_workspace, net):
    torch, model, X = net
    model.train()  # dropout on: the served predict must still be deterministic (eval mode)
    inst = module_workspace.serve(model, name="net", sample=X, runtime="process", progress=False)
    try:
        mv = module_workspace.get_model(inst.model)
        assert mv.methods == ["predict"] and mv.signature["predict"]["input"]["dtype"] == "float32"
        model.eval()
        with torch.no_grad():
            expected = model(torch.from_numpy(X[:6])).numpy()
        got = inst.client(timeout=TIMEOUT).predict(X[:6])
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        # float64 JSON numbers are cast to the sample's float32; a wrong width is a 400
        resp = requests.post(inst.url + "/predict", json={"data": [[1.0, 2.0]]}, timeout=TIMEOUT)
        assert resp.status_code == 400 and "shape" in resp.json()["error"]["message"]
        assert any(r.startswith("torch==") for r in mv.requirements)
    finally:
        inst.remove()


def test_a_torch_module_with_methods_forward_passes_the_proof(module_workspace, net):
    _, model, X = net
    mv = module_workspace.register(model, name="net_forward", sample=X, methods=["forward"], progress=False)
    assert mv.methods == ["forward"] and mv.signature["forward"]["output"]["shape"] == [None, 2]


def test_a_tfidf_text_pipeline(module_workspace):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["great bike", "broken chain", "lovely ride", "flat tyre again", "great ride", "chain broken again"]
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, [1, 0, 1, 0, 1, 0])
    inst = module_workspace.serve(model, name="reviews", sample=texts, runtime="process", progress=False)
    try:
        client = inst.client(timeout=TIMEOUT)
        new = ["a great ride", "chain again"]
        np.testing.assert_array_equal(client.predict(new), model.predict(new))
        np.testing.assert_allclose(client.predict_proba(new), model.predict_proba(new))
        resp = requests.post(inst.url + "/predict", json={"data": [1, 2]}, timeout=TIMEOUT)
        assert resp.status_code in (400, 500) and "Traceback" not in resp.text and "site-packages" not in resp.text
    finally:
        inst.remove()


def test_a_dict_sample_slices_only_the_per_row_fields(module_workspace, diabetes):
    X, _, _ = diabetes
    weights = np.linspace(0.5, 1.5, X.shape[1])

    def score(batch):
        assert batch["weights"].shape == (X.shape[1],)  # the whole vector, not its first rows
        return batch["rows"] @ batch["weights"]

    mv = module_workspace.register(score, sample={"rows": X[:40], "weights": weights}, progress=False)
    fields = mv.signature["score"]["input"]["fields"]
    assert fields["rows"]["shape"] == [None, X.shape[1]] and fields["weights"]["shape"] == [X.shape[1]]


def onnx_linear(coef, intercept) -> bytes:
    """A tiny ONNX graph, Y = X @ W + B, as bytes (what a user exports from a training framework)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["XW"]), helper.make_node("Add", ["XW", "B"], ["Y"])],
        "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, len(coef)])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
        initializer=[
            numpy_helper.from_array(np.asarray(coef, dtype=np.float32).reshape(-1, 1), "W"),
            numpy_helper.from_array(np.asarray([intercept], dtype=np.float32), "B"),
        ],
    )
    # an IR version and opset every onnxruntime of the last years reads
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def onnx_predictor(model_bytes):
    """predict(X) over an onnxruntime session created on the first call: the session itself cannot be
    pickled, the bytes in the closure can."""
    session = None

    def predict(X):
        nonlocal session
        if session is None:
            import onnxruntime

            session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
        return session.run(None, {"X": np.asarray(X, dtype=np.float32)})[0][:, 0]

    return predict


def test_an_onnxruntime_session_created_lazily(module_workspace, diabetes):
    from importlib.metadata import version

    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    X, _, lr = diabetes
    predict = onnx_predictor(onnx_linear(lr.coef_, lr.intercept_))
    inst = module_workspace.serve(predict, name="onnx_linear", sample=X[:50], runtime="process", progress=False)
    try:
        mv = module_workspace.get_model(inst.model)
        # pinned to the kernel's onnxruntime; nothing GPU-ish (CUDA or TensorRT runtimes) rides along
        assert f"onnxruntime=={version('onnxruntime')}" in mv.requirements, mv.requirements
        gpu = [r for r in mv.requirements if any(g in r.lower() for g in ("nvidia", "cuda", "tensorrt", "-gpu"))]
        assert not gpu, mv.requirements
        for rows in (X[:7], X[100:103], X[:1]):  # the first call creates the server's session, the next reuse it
            resp = requests.post(inst.url + "/predict", json={"data": rows.tolist()}, timeout=TIMEOUT)
            assert resp.status_code == 200, resp.text
            np.testing.assert_allclose(resp.json()["data"], predict(rows), rtol=1e-6)
        np.testing.assert_allclose(predict(X[:7]), lr.predict(X[:7]), rtol=1e-4)  # float32 of the same model
        resp = requests.post(inst.url + "/predict", json={"data": [[1.0, 2.0]]}, timeout=TIMEOUT)
        assert resp.status_code == 400 and "shape" in resp.json()["error"]["message"]
    finally:
        inst.remove()
