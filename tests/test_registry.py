"""The registry: versions, lookups, integrity, and writers in several processes at once.

Each test that takes ``backend`` runs twice: on the embedded default (SQLite + local files) and on a team's
registry (PostgreSQL + S3-compatible storage, real servers started by tests/team_servers.py).
"""

import multiprocessing
import os

import numpy as np
import pytest

import nbserve
from nbserve.workspace import Workspace


@pytest.fixture
def workspace(backend, home):
    return Workspace(home)


def test_versions_count_up_and_identical_artifacts_are_not_duplicated(workspace, diabetes):
    X, y, lr = diabetes
    from sklearn.linear_model import LinearRegression

    v1 = workspace.register(lr, name="diabetes", sample=X, progress=False)
    again = workspace.register(lr, name="diabetes", sample=X, progress=False)
    v2 = workspace.register(LinearRegression().fit(X[:200], y[:200]), name="diabetes", sample=X, progress=False)
    assert (v1.id, again.id, v2.id) == ("diabetes:1", "diabetes:1", "diabetes:2")
    assert workspace.get_model("diabetes") == v2
    assert workspace.get_model("diabetes", version=1) == v1
    assert workspace.get_model("diabetes:1") == v1
    assert [m.id for m in workspace.models()] == ["diabetes:2"]
    assert [m.id for m in workspace.versions("diabetes")] == ["diabetes:1", "diabetes:2"]
    np.testing.assert_array_equal(workspace.get_model("diabetes:1").load().predict(X[:3]), lr.predict(X[:3]))


def test_lookups_of_unknown_models_say_what_exists(workspace, diabetes):
    X, _, lr = diabetes
    with pytest.raises(nbserve.ModelNotFoundError, match="no model is registered yet"):
        workspace.get_model("nope")
    workspace.register(lr, name="diabetes", sample=X, progress=False)
    with pytest.raises(nbserve.ModelNotFoundError, match="registered models: diabetes"):
        workspace.get_model("diabets")
    with pytest.raises(nbserve.ModelNotFoundError, match="has no version 7"):
        workspace.get_model("diabetes:7")


def test_bad_names_are_refused_before_anything_is_written(workspace, diabetes):
    X, _, lr = diabetes
    with pytest.raises(nbserve.NbserveError, match="invalid model name"):
        workspace.register(lr, name="../etc", sample=X, progress=False)
    with pytest.raises(nbserve.NbserveError, match="pass name="):
        workspace.register(lr, sample=X, progress=False)
    assert workspace.models() == []
    assert workspace.registry.artifacts.list() == []


def _flip_a_byte(data: bytes) -> bytes:
    data = bytearray(data)
    data[-5] ^= 0xFF
    return bytes(data)


def test_changed_bytes_on_disk_are_refused_at_load(workspace, diabetes):
    X, _, lr = diabetes
    mv = workspace.register(lr, name="diabetes", sample=X, progress=False)
    pkl = mv.artifact_dir / "model.pkl"  # the store itself, or (for a bucket) this machine's cache of it
    pkl.write_bytes(_flip_a_byte(pkl.read_bytes()))
    with pytest.raises(nbserve.ArtifactIntegrityError, match="refusing to unpickle") as refused:
        mv.load()
    assert str(pkl) in str(refused.value)


def test_a_tampered_object_in_the_bucket_is_refused_naming_it(postgres, s3, monkeypatch, tmp_path, iris):
    from team_servers import Backend

    team = Backend("team", (postgres, s3), monkeypatch)
    team.use(team.fresh())
    X, _, clf = iris
    mv = Workspace(tmp_path / "alice").register(clf, name="iris", sample=X, progress=False)
    store = mv._workspace.registry.artifacts
    key = store.key(mv.sha256, "model.pkl")
    s3 = store.client
    s3.put_object(
        Bucket=store.bucket, Key=key, Body=_flip_a_byte(s3.get_object(Bucket=store.bucket, Key=key)["Body"].read())
    )
    bob = Workspace(tmp_path / "bob")  # another machine: nothing cached, it reads the bucket
    with pytest.raises(nbserve.ArtifactIntegrityError, match="refusing to unpickle") as refused:
        bob.load("iris:1")
    assert f"s3://{store.bucket}/{key}" in str(refused.value)
    assert not (bob.home / "cache" / "artifacts" / mv.sha256).exists()  # nothing unverified was cached
    np.testing.assert_array_equal(mv.load().predict(X[:5]), clf.predict(X[:5]))  # alice's verified cache


def _register_in_child(home, seed):  # a process of its own, with a home of its own for a team's registry
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    mv = Workspace(home).register(Ridge(alpha=seed + 1).fit(X, y), name="shared", sample=X, progress=False)
    return mv.version


def test_concurrent_registers_from_processes_get_unique_versions(backend, home):
    homes = [home / f"machine-{i}" if backend.team else home for i in range(4)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        versions = pool.starmap(_register_in_child, [(str(h), i) for i, h in enumerate(homes)])
    assert sorted(versions) == [1, 2, 3, 4]
    ws = Workspace(home)
    assert [m.version for m in ws.versions("shared")] == [1, 2, 3, 4]
    assert len({m.sha256 for m in ws.versions("shared")}) == 4
    assert sorted(ws.registry.artifacts.list()) == sorted(m.sha256 for m in ws.versions("shared"))
    for h in set(homes):  # the local store, or each machine's cache of the bucket
        assert not [
            p for p in os.listdir(h / ("cache/artifacts" if backend.team else "artifacts")) if p.startswith(".")
        ]


def test_leftovers_of_killed_writers_are_swept_once_old(home):
    import time

    Workspace(home)
    old, fresh = home / "artifacts" / ".tmp-old", home / "staging" / "fresh"
    for path in (old, fresh):
        path.mkdir(parents=True)
        (path / "model.pkl").write_bytes(b"half written")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    Workspace(home)  # the next process to open the registry
    assert not old.exists()
    assert fresh.exists()  # may belong to a register still running
