"""Shared fixtures. Every test gets its own registry ($NBSERVE_HOME in a temp dir) and leaves no
running instance behind."""

import pytest

from nbserve_testing import IN_CI, need  # noqa: F401  (the helpers live in a module of their own)


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
