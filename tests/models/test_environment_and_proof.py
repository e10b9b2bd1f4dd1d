"""Models whose behaviour depends on the environment or on chance (issue 26): a Keras 3 model on the torch
backend carries KERAS_BACKEND with its version and serves where the variable is not set, with a lock of only
what it needs; Prophet, which draws random samples in predict, is refused in plain words and registers with
compare="shapes"; a noisy model registers with a tolerance."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from nbserve.errors import SampleError

TIMEOUT = 30


@pytest.fixture(scope="module")
def keras_model():
    """A small Keras 3 model on the torch backend (the variable set as a user sets it, before the import)."""
    before = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = "torch"
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("keras was imported earlier with another backend")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Dense(8)(inputs)))
    X = np.random.default_rng(0).normal(size=(20, 4)).astype("float32")
    yield model, X
    if before is None:
        os.environ.pop("KERAS_BACKEND", None)
    else:
        os.environ["KERAS_BACKEND"] = before


def test_keras_on_torch_serves_where_keras_backend_is_not_set(module_workspace, keras_model, monkeypatch):
    model, X = keras_model
    mv = module_workspace.register(model, name="keras_torch", sample=X, progress=False)
    assert mv.environment == {"KERAS_BACKEND": "torch"} and "KERAS_BACKEND" in repr(mv)
    assert mv.to_dict()["environment"] == {"KERAS_BACKEND": "torch"}
    # only what the model needs: the optional imports of Keras' own modules (matplotlib's plots) stay out
    names = {r.split("==")[0].lower() for r in mv.requirements}
    assert {"keras", "torch", "numpy"} <= names
    assert not names & {"matplotlib", "pillow", "fonttools", "kiwisolver", "contourpy"}, mv.requirements
    # started as the console script or the Jupyter server would: their environment has no KERAS_BACKEND
    monkeypatch.delenv("KERAS_BACKEND")
    inst = module_workspace.serve("keras_torch", runtime="process", progress=False)
    try:
        got = inst.client(timeout=TIMEOUT).predict(X[:5])
        np.testing.assert_allclose(got, model.predict(X[:5], verbose=0), rtol=1e-5)
    finally:
        inst.remove()
    # the console script shows it in the version's details
    out = subprocess.run(
        [sys.executable, "-m", "nbserve.cli", "--json", "versions", "keras_torch"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NBSERVE_HOME": str(module_workspace.home)},
    )
    assert '"KERAS_BACKEND": "torch"' in out.stdout, out.stderr


def test_the_image_sets_the_captured_environment(keras_model, tmp_path, module_workspace):
    """The model image's Dockerfile sets the variables (checked on the build context; the Docker tests
    build and run images of other families)."""
    from nbserve.runtimes.dockerfile import model_context

    mv = module_workspace.get_model("keras_torch")
    model_context(tmp_path / "ctx", mv, "local/python:3.11-bookworm", "nbserve/deps:x", {"a": "b"})
    dockerfile = (tmp_path / "ctx" / "Dockerfile").read_text()
    assert 'KERAS_BACKEND="torch"' in dockerfile.split("ENV NBSERVE_ARTIFACT")[1]


def prophet_model():
    prophet = pytest.importorskip("prophet")
    days = pd.date_range("2024-01-01", periods=90, freq="D")
    history = pd.DataFrame({"ds": days, "y": 10 + np.sin(np.arange(90) / 7) + np.arange(90) * 0.05})
    model = prophet.Prophet(daily_seasonality=False, yearly_seasonality=False).fit(history)
    return model, model.make_future_dataframe(periods=10).tail(10).reset_index(drop=True)


def test_prophet_is_refused_in_plain_words_then_proven_by_shapes(module_workspace):
    model, future = prophet_model()
    with pytest.raises(SampleError) as err:
        module_workspace.register(model, name="prophet", sample=future, progress=False)
    message = str(err.value)
    assert "is not deterministic" in message and "compare='shapes'" in message and "tolerance=" in message
    assert "requirement" not in message.lower()
    inst = module_workspace.serve(model, name="prophet", sample=future, compare="shapes", runtime="process")
    try:
        mv = module_workspace.get_model(inst.model)
        assert mv.proof == {"compare": "shapes"}
        got = inst.client(timeout=TIMEOUT).predict(future)
        expected = model.predict(future)
        assert list(got.columns) == list(expected.columns) and (got.dtypes == expected.dtypes).all()
        np.testing.assert_allclose(got["yhat"], expected["yhat"], rtol=1e-9)  # the trend is not random
    finally:
        inst.remove()


def test_a_noisy_model_registers_with_a_tolerance(module_workspace, diabetes):
    X, _, lr = diabetes
    rng = np.random.default_rng()

    def noisy(x):
        return lr.predict(x) * (1 + rng.normal(0, 1e-4, len(x)))

    with pytest.raises(SampleError, match="not deterministic"):
        module_workspace.register(noisy, sample=X, progress=False)
    mv = module_workspace.register(noisy, sample=X, tolerance=0.01, progress=False)
    assert mv.proof == {"compare": "values", "rtol": 0.01}
