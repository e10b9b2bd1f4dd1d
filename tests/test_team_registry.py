"""A registry a team shares: metadata on PostgreSQL, artifacts on S3 (real servers, tests/team_servers.py).

Two users, each with a home of their own (as on two machines), see one registry; a local registry copies into
a team's once, idempotently, verifying every artifact.
"""

import json

import numpy as np
import pandas as pd
import pytest
import requests

import nbserve
from nbserve import cli
from nbserve.workspace import Workspace


@pytest.fixture
def team(postgres, s3, monkeypatch):
    """PostgreSQL + S3: ``team.fresh()`` is the environment of a new, empty team registry."""
    from team_servers import Backend

    for key in ("NBSERVE_REGISTRY_URL", "NBSERVE_ARTIFACTS"):
        monkeypatch.delenv(key, raising=False)
    return Backend("team", (postgres, s3), monkeypatch)


@pytest.fixture(scope="module")
def boosted():
    """A gradient-boosted classifier on a DataFrame with float, integer and category columns."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :4].copy()
    X["bucket"] = pd.Categorical(np.where(X.iloc[:, 0] > 14, "large", "small"))
    X["count"] = (X.iloc[:, 1] * 10).astype("int64")
    return X, HistGradientBoostingClassifier(max_iter=20, categorical_features="from_dtype").fit(X, y)


def as_user(monkeypatch, user, env):
    monkeypatch.setenv("LOGNAME", user)  # getpass.getuser() reads LOGNAME first
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_two_users_with_their_own_homes_share_one_registry(team, tmp_path, monkeypatch, diabetes, boosted):
    X, y, lr = diabetes
    frame, gbm = boosted
    env = team.fresh()
    as_user(monkeypatch, "alice", env)
    alice = Workspace(tmp_path / "alice")
    alice.register(lr, name="diabetes", sample=X, progress=False)
    alice.register(gbm, name="cancer", sample=frame, progress=False)

    as_user(monkeypatch, "bob", env)
    bob = Workspace(tmp_path / "bob")
    listed = {m.id: m for m in bob.models()}
    assert sorted(listed) == ["cancer:1", "diabetes:1"]
    assert listed["diabetes:1"].registered_by == "alice" and listed["diabetes:1"].registered_host
    served = [bob.serve("diabetes:1", runtime="process", progress=False)]
    try:
        served.append(bob.serve("cancer", runtime="process", progress=False))
        np.testing.assert_allclose(served[0].client().predict(X[:10]), lr.predict(X[:10]))
        np.testing.assert_allclose(served[1].client().predict_proba(frame[:10]), gbm.predict_proba(frame[:10]))
        body = requests.post(served[0].url + "/predict", json={"data": X[:2].tolist()}, timeout=30).json()
        np.testing.assert_allclose(body["data"], lr.predict(X[:2]))

        # alice sees where bob's instances run (machine, user, runtime, URL), as bob's workspace reported them
        as_user(monkeypatch, "alice", env)
        (where,) = alice.get_model("diabetes:1").running
        assert (where["registered_by"], where["runtime"], where["status"], where["url"]) == (
            "bob",
            "process",
            "running",
            served[0].url,
        )
        assert alice.instances() == []  # instances stay per machine: alice has none of her own

        from sklearn.linear_model import Ridge

        v2 = alice.register(Ridge().fit(X, y), name="diabetes", sample=X, progress=False)
        assert v2.id == "diabetes:2"
        as_user(monkeypatch, "bob", env)
        assert bob.get_model("diabetes").id == "diabetes:2"
        assert [m.id for m in bob.versions("diabetes")] == ["diabetes:1", "diabetes:2"]
    finally:
        for inst in served:
            inst.remove()
    assert alice.placements() == []  # removed instances are no longer reported anywhere


def test_a_local_registry_copies_into_a_teams_once_verifying_every_artifact(
    team, tmp_path, monkeypatch, capsys, diabetes, iris
):
    X, y, lr = diabetes
    Xi, _, clf = iris
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "laptop"))
    local = Workspace(tmp_path / "laptop")
    local.register(lr, name="diabetes", sample=X, progress=False)
    from sklearn.linear_model import Ridge

    local.register(Ridge().fit(X, y), name="diabetes", sample=X, progress=False)
    local.register(clf, name="iris", sample=Xi, progress=False)

    env = team.fresh()
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, env[key])
    copy = ["--json", "registry", "copy", "--to", env["NBSERVE_REGISTRY_URL"], "--artifacts", env["NBSERVE_ARTIFACTS"]]
    assert cli.main(copy) == 0
    assert json.loads(capsys.readouterr().out) == {"copied": 3, "present": 0, "artifacts_verified": 3}
    assert cli.main(copy) == 0  # again: nothing new, everything checked
    assert json.loads(capsys.readouterr().out) == {"copied": 0, "present": 3, "artifacts_verified": 3}

    team.use(env)
    shared = Workspace(tmp_path / "colleague")
    assert [(m.id, m.sha256, m.registered_by) for m in shared.versions("diabetes")] == [
        (m.id, m.sha256, m.registered_by) for m in local.versions("diabetes")
    ]
    np.testing.assert_array_equal(shared.load("iris:1").predict(Xi[:5]), clf.predict(Xi[:5]))
    assert shared.registry_info()["metadata"].startswith("postgresql://")

    # a local artifact that changed on disk is refused, named, and nothing of it reaches the team's registry
    for key in ("NBSERVE_REGISTRY_URL", "NBSERVE_ARTIFACTS"):
        monkeypatch.delenv(key)
    bad = local.register(Ridge(alpha=3).fit(X, y), name="diabetes", sample=X, progress=False)
    pkl = bad.artifact_dir / "model.pkl"
    pkl.write_bytes(pkl.read_bytes()[:-3] + b"xyz")
    with pytest.raises(nbserve.ArtifactIntegrityError, match="refusing to unpickle") as refused:
        local.copy_registry(env["NBSERVE_REGISTRY_URL"], env["NBSERVE_ARTIFACTS"], progress=False)
    assert str(pkl) in str(refused.value)
    assert [m.version for m in shared.versions("diabetes")] == [1, 2]
    assert bad.sha256 not in shared.registry.artifacts.list()
