"""The notebook loop through the magics in a real IPython shell (issue 22): %serve of a running name updates it in
place with one line, --follow re-serves after every cell that changes the variable (and says why a change it
cannot serve leaves the served version), --unfollow, and %nbserve rollback / split / shadow / comparison /
promote / traffic; on two families, against process-runtime instances whose answers are checked over HTTP."""

import numpy as np
import pytest
import requests
from loop_families import FAMILIES

from nbserve.magics import user_names
from nbserve.workspace import default_workspace


@pytest.fixture
def shell(ipython, home):
    ip = ipython
    yield ip
    from nbserve.follow import follower

    for variable in list(follower(ip, default_workspace).followed):
        follower(ip, default_workspace).unfollow(variable)
    for name in user_names(ip):
        del ip.user_ns[name]


@pytest.fixture
def run(shell, capsys):
    """run(code) -> (ExecutionResult, stdout, stderr) of one cell (the post-cell hook's lines included)."""

    def run(code):
        capsys.readouterr()
        result = shell.run_cell(code)
        out, err = capsys.readouterr()
        assert result.success, f"{code!r} failed: {err[-2000:]}"
        return out, err

    return run


def served(url, rows):
    return np.asarray(requests.post(url + "/predict", json={"data": rows.tolist()}, timeout=30).json()["data"])


def test_re_serve_follow_and_the_loop_verbs_on_a_linear_model(run, shell):
    f = FAMILIES["diabetes"]()
    X = f.sample
    shell.user_ns.update(X=X, y=np.asarray(f.v1.predict(X)) + 1.0, lr=f.v1)
    run("from sklearn.linear_model import LinearRegression, Ridge")
    out, _ = run("inst = %serve lr --sample X --runtime process")
    inst = shell.user_ns["inst"]
    url = inst.url

    shell.user_ns["lr"] = f.v2  # reassigned: %serve again updates the instance in place, one line
    out, _ = run("again = %serve lr --sample X")
    assert out.splitlines()[0] == f"lr:2 now answers at {url}, was lr:1", out
    assert shell.user_ns["again"].id == inst.id
    np.testing.assert_allclose(served(url, X[:5]), f.v2.predict(X[:5]))

    out, _ = run("%serve lr --sample X --follow")
    assert f"lr is unchanged: lr:2 keeps serving at {url}" in out and "following lr" in out
    assert inst.reload().following == "lr" and inst.to_dict()["following"] == "lr"

    out, _ = run("x = 1")  # nothing changed: nothing said, nothing served
    assert out == ""
    out, _ = run("lr.fit(X[:200], y[:200])")  # refit in place
    assert f"lr:3 now answers at {url}, was lr:2" in out
    np.testing.assert_allclose(served(url, X[:5]), shell.user_ns["lr"].predict(X[:5]))

    out, _ = run("lr = LinearRegression().fit(X[:, :8], y)")  # a cell that breaks the schema
    assert "lr changed, but lr:3 keeps serving:" in out and "predict" in out, out
    assert requests.get(url + "/health", timeout=10).json()["model"] == "lr:3"

    out, _ = run("%serve --unfollow lr")
    assert out.strip() == "no longer following lr"
    out, _ = run("lr = Ridge(alpha=2.0).fit(X, y)")
    assert out == "" and inst.reload().model == "lr:3" and inst.following is None

    out, _ = run(f"%nbserve rollback {inst.id}")
    assert f"lr:2 answers at {url} again" in out
    out, _ = run(f"%nbserve split {inst.id} lr:2=50 lr:3=50")
    assert "lr:2 50%, lr:3 50%" in out
    versions = {
        requests.post(url + "/predict", json={"data": X[:1].tolist()}, timeout=10).headers["X-Model-Version"]
        for _ in range(4)
    }
    assert versions == {"lr:2", "lr:3"}
    out, _ = run(f"%nbserve split {inst.id}")
    assert "lr:2 alone" in out or "answers as lr:2 100%" in out

    out, _ = run(f"%nbserve shadow {inst.id} lr:3")
    assert "shadows" in out
    for i in range(20):
        requests.post(url + "/predict", json={"data": X[i : i + 1].tolist()}, timeout=10)
    cmp = shell.run_cell(f"%nbserve comparison {inst.id}")
    assert cmp.success
    out, _ = run(f"%nbserve promote {inst.id}")
    assert f"serves lr:3 at {url}" in out
    out, _ = run(f"%nbserve traffic {inst.id} -n 5")
    assert inst.reload().model == "lr:3"


def test_follow_a_pipeline_over_a_mixed_frame(run, shell):
    f = FAMILIES["rentals"]()
    shell.user_ns.update(frame=f.sample, model=f.v1, target=None)
    out, _ = run("inst = %serve model --sample frame --runtime process --follow")
    inst = shell.user_ns["inst"]
    assert "following model" in out
    client = inst.client(timeout=60)
    rows = f.sample.iloc[:20]
    np.testing.assert_array_equal(client.predict(rows), f.v1.predict(rows))
    shell.user_ns["refit"] = f.v2
    out, _ = run("model = refit")  # reassigned to another fit
    assert f"model:2 now answers at {inst.url}, was model:1" in out
    np.testing.assert_array_equal(client.predict(rows), f.v2.predict(rows))
    out, _ = run("model = lambda rows: refit.predict_proba(rows)")  # answers another shape: callers would break
    assert "model changed, but model:2 keeps serving:" in out and "shape [None, 2]" in out, out
    assert requests.get(inst.url + "/health", timeout=10).json()["model"] == "model:2"
