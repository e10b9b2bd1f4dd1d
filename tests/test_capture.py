"""Capture: methods, pickling by value, the culprit of a pickling failure, requirements, signatures."""

import socket
import subprocess
import sys
import textwrap
from importlib import metadata

import numpy as np
import pytest

import nbserve
from nbserve.capture import capture, resolve_methods
from nbserve.capture.requirements import modules_in_pickle


def test_methods_follow_the_kind_of_object(diabetes, iris):
    _, _, lr = diabetes
    _, _, clf = iris

    def is_bad(x):
        return x

    assert resolve_methods(lr) == ("object", ["predict"])
    assert resolve_methods(clf) == ("object", ["predict", "predict_proba"])
    assert resolve_methods(is_bad) == ("function", ["is_bad"])
    assert resolve_methods(lambda x: x) == ("function", ["predict"])
    assert resolve_methods(clf, methods=["predict_proba"]) == ("object", ["predict_proba"])
    with pytest.raises(nbserve.CaptureError, match="no callable method"):
        resolve_methods(lr, methods=["predict_proba"])
    with pytest.raises(nbserve.CaptureError, match="no predict or transform"):
        resolve_methods(object())


class Cache:
    def __init__(self):
        self.conn = socket.socket()


def test_unpicklable_attribute_is_named_by_its_path(diabetes):
    _, _, fitted = diabetes
    from sklearn.base import clone

    lr = clone(fitted).fit(diabetes[0], diabetes[1])
    lr.cache_ = Cache()
    try:
        with pytest.raises(nbserve.CaptureError) as err:
            capture(lr, label="lr", proof=False)
        assert "lr.cache_.conn: socket" in str(err.value)
    finally:
        lr.cache_.conn.close()


def test_requirements_are_pinned_to_the_kernel_and_hold_no_notebook_machinery(diabetes):
    X, _, lr = diabetes
    reqs = capture(lr, label="lr", sample=X).manifest["requirements"]
    names = {r.split("==")[0].lower(): r.split("==")[1] for r in reqs}
    for dist in ("scikit-learn", "numpy", "scipy", "joblib", "threadpoolctl"):
        assert names[dist] == metadata.version(dist), reqs
    for never in ("ipython", "ipykernel", "jupyter-client", "nbserve", "pytest", "pandas", "flask"):
        assert never not in names, reqs


def test_a_lazy_import_inside_a_captured_function_is_a_requirement(diabetes):
    X, _, lr = diabetes

    def as_frame(data):
        import pandas  # imported only when called: the proof in a clean interpreter finds it

        return pandas.DataFrame({"pred": lr.predict(data)})

    reqs = capture(as_frame, label="as_frame", sample=X).manifest["requirements"]
    assert any(r.startswith("pandas==") for r in reqs), reqs
    assert any(r.startswith("scikit-learn==") for r in reqs), reqs


def test_pickle_scan_finds_the_modules_of_referenced_classes(diabetes):
    _, _, lr = diabetes
    import cloudpickle

    assert {"sklearn", "numpy"} <= modules_in_pickle(cloudpickle.dumps(lr))


def test_local_module_is_pickled_by_value_and_loads_without_its_file(tmp_path, home, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "mylocalfeatures.py").write_text(
        textwrap.dedent("""
        import numpy as np

        def double(x):
            return np.asarray(x) * 2
    """)
    )
    monkeypatch.syspath_prepend(str(src))
    import mylocalfeatures

    mv = nbserve.register(mylocalfeatures.double, name="double", sample=np.arange(6.0).reshape(3, 2), progress=False)
    assert not any("mylocalfeatures" in r for r in mv.requirements)
    assert called_elsewhere(home, tmp_path, "double") == "[[2.0, 2.0]]"


def called_elsewhere(home, cwd, name) -> str:
    """The registered function's answer to ones((1, 2)) where its module does not exist: a fresh interpreter
    with a different working directory and only the registry."""
    code = f"import nbserve, numpy as np; f = nbserve.get_model({name!r}).load(); print(f(np.ones((1, 2))).tolist())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"NBSERVE_HOME": str(home), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_namespace_package_of_local_modules_is_pickled_by_value(tmp_path, home, monkeypatch):
    """A folder of .py files without __init__.py (a project's src/, tests/models/) is the user's code too:
    its modules have no __file__ on the package, and were pickled by reference, failing where served."""
    pkg = tmp_path / "proj" / "nsfeatures"
    pkg.mkdir(parents=True)
    (pkg / "scaling.py").write_text("def triple(x):\n    return x * 3\n")
    monkeypatch.syspath_prepend(str(tmp_path / "proj"))
    from nsfeatures.scaling import triple

    mv = nbserve.register(triple, name="triple", sample=np.arange(6.0).reshape(3, 2), progress=False)
    assert not any("nsfeatures" in r for r in mv.requirements)
    assert called_elsewhere(home, tmp_path, "triple") == "[[3.0, 3.0]]"


def test_sample_that_does_not_fit_is_a_clear_error(diabetes):
    X, _, lr = diabetes
    with pytest.raises(nbserve.SampleError, match=r"lr.predict .*first 5 rows.*pass a sample the model accepts"):
        capture(lr, label="lr", sample=X[:, :3], proof=False)


def test_signature_from_arrays_and_frames(diabetes, iris):
    X, _, lr = diabetes
    Xi, _, clf = iris
    sig = capture(lr, label="lr", sample=X, proof=False).manifest["signature"]
    assert sig["predict"]["input"] == {"type": "ndarray", "dtype": "float64", "shape": [None, 10]}
    assert sig["predict"]["output"] == {"type": "ndarray", "dtype": "float64", "shape": [None]}
    sig = capture(clf, label="clf", sample=Xi, proof=False).manifest["signature"]
    assert sig["predict"]["input"]["type"] == "dataframe"
    assert [c["name"] for c in sig["predict"]["input"]["columns"]] == list(Xi.columns)
    assert sig["predict_proba"]["output"] == {"type": "ndarray", "dtype": "float64", "shape": [None, 3]}


def test_signature_of_dicts_and_lists():
    from nbserve.capture.signature import describe

    sample = {"ids": [1, 2], "x": np.zeros((4, 2), dtype="int32"), "label": "a"}
    assert describe(sample) == {
        "type": "dict",
        "fields": {
            "ids": {"type": "list", "items": {"type": "integer"}},
            "x": {"type": "ndarray", "dtype": "int32", "shape": [None, 2]},
            "label": {"type": "string"},
        },
    }


def test_answers_with_pandas_missing_values_compare_without_error():
    """A frame's nullable columns answer pd.NA and NaT: equal to themselves, different from a value (the
    proof of a function that returns such a frame compared them with == and failed on NA's truth value)."""
    import pandas as pd

    from nbserve.capture.compare import difference

    frame = pd.DataFrame({"n": pd.array([1, None], dtype="Int64"), "day": pd.to_datetime(["2024-01-01", None])})
    assert difference(frame, frame.copy()) is None
    other = frame.copy()
    other.loc[1, "n"] = 3
    assert difference(frame, other) == "data[1][0]: <NA> in the kernel, 3 in the image"
