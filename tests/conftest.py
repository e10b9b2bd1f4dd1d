"""Shared fixtures. Every test gets its own registry ($NBSERVE_HOME in a temp dir) and leaves no
running instance behind."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def remove_what_tests_made(tmp_path_factory):
    """After the session, pass or fail: every container and image labelled with a registry home under
    this session's temp dir (Docker objects outlive a failed test; they are found by label)."""
    yield
    try:
        from nbserve.runtimes.docker import engine_available, remove_labelled
    except ImportError:
        return
    if engine_available():
        remove_labelled(str(Path(tmp_path_factory.getbasetemp()).resolve()) + os.sep)


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "nbserve-home"
    monkeypatch.setenv("NBSERVE_HOME", str(path))
    yield path
    from nbserve.workspace import Workspace

    ws = Workspace(path)
    for inst in ws.instances():
        try:
            ws.remove(inst.id)
        except Exception:
            pass


@pytest.fixture
def workspace(home):
    from nbserve.workspace import Workspace

    return Workspace(home)


@pytest.fixture(scope="session")
def diabetes():
    """(X, y, fitted LinearRegression) on scikit-learn's bundled diabetes data."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    X, y = load_diabetes(return_X_y=True)
    return X, y, LinearRegression().fit(X, y)


@pytest.fixture(scope="session")
def iris():
    """(features DataFrame, target Series, fitted LogisticRegression) on the bundled iris data."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    frame = load_iris(as_frame=True).frame
    X, y = frame.drop(columns="target"), frame["target"]
    return X, y, LogisticRegression(max_iter=1000).fit(X, y)
