"""A full disk, for real: the registry home and the temp dir on a tmpfs of a few MB mounted for the test.

A register or serve whose pickle does not fit fails with an NbserveError that says the disk is full and
leaves nothing behind (no staging pickle, no proof directory, no half-written artifact), so the registry
stays usable: the next register and serve of a model that fits work. A process killed in the middle of a
register leaves its scratch directories; the next start removes those of dead owners, never a live one's.
"""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import requests
from nbserve_testing import need, remove_instances
from reliability_tools import fault, wait_until

import nbserve
from nbserve.workspace import Workspace

DISK_MB = 6


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """(registry home, temp dir), both on a tmpfs of DISK_MB MB; unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0755", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    need(done.returncode == 0, f"a small filesystem (mount -t tmpfs: {done.stderr.strip()})", "run the tests as root")
    home, tmp = mnt / "home", mnt / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv("NBSERVE_HOME", str(home))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    ws = Workspace(home)
    try:
        yield ws, home, tmp
    finally:
        remove_instances(ws)
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def used_bytes(root) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def leftovers(home, tmp) -> list:
    """Scratch files a register may leave: staged drafts, proof directories, artifacts' temp dirs."""
    found = [p for p in (home / "staging").glob("*")] if (home / "staging").exists() else []
    found += list(tmp.glob("nbserve-proof-*")) + list((home / "artifacts").glob(".tmp-*"))
    return found + [p for p in (home / "artifacts").glob("*") if not p.name.startswith(".")]


def ballast(model, megabytes: float):
    """``model`` carrying incompressible bytes, so that its pickle is ``megabytes`` long."""
    model.ballast = np.random.default_rng(0).bytes(int(megabytes * 2**20))
    return model


@pytest.mark.parametrize("megabytes", [8.0, 3.5], ids=["pickle-over-the-disk", "second-copy-over-the-disk"])
def test_a_register_that_fills_the_disk_leaves_nothing_and_the_registry_works(small_disk, diabetes, megabytes):
    """8 MB: the first write of the pickle fails (register and serve); 3.5 MB: on the serve path the staged
    draft fits (the server proves it first), its copy into the artifact store does not."""
    ws, home, tmp = small_disk
    X, y, lr = diabetes
    from sklearn.linear_model import LinearRegression

    heavy = ballast(LinearRegression().fit(X, y), megabytes)
    before = used_bytes(home.parent)
    for how in ("register", "serve") if megabytes > DISK_MB else ("serve",):
        with pytest.raises(nbserve.NbserveError, match="no space left") as err:
            if how == "register":
                ws.register(heavy, name="heavy", sample=X[:5], progress=False)
            else:
                ws.serve(heavy, name="heavy", sample=X[:5], runtime="process", progress=False)
        assert str(home.parent) in str(err.value) or "MB free" in str(err.value), str(err.value)
        assert leftovers(home, tmp) == [], (how, leftovers(home, tmp))
        assert used_bytes(home.parent) <= before + 256 * 1024, (how, used_bytes(home.parent) - before)
        assert ws.models() == [] and ws.instances() == []
    fault(True)
    # the registry is usable: a linear model on an array and a gradient-boosted model register and serve
    from sklearn.ensemble import HistGradientBoostingRegressor

    inst = ws.serve(lr, name="diabetes", sample=X, runtime="process", progress=False)
    np.testing.assert_allclose(inst.client().predict(X[:3]), lr.predict(X[:3]))
    gb = HistGradientBoostingRegressor(max_iter=20).fit(X, y)
    mv = ws.register(gb, name="boosted", sample=X[:20], progress=False)
    assert mv.load().predict(X[:2]).tolist() == gb.predict(X[:2]).tolist()
    assert sorted(m.id for m in ws.models()) == ["boosted:1", "diabetes:1"]
    assert requests.get(inst.url + "/health", timeout=5).json()["model"] == "diabetes:1"


# A child that stops inside a register, holding its scratch directory, until the parent kills it -9.
CHILD = r"""
import os, sys, time
home, where = sys.argv[1], sys.argv[2]
os.environ["NBSERVE_HOME"] = home
from nbserve.workspace import PendingVersion, Workspace
from nbserve.capture import draft

ws = Workspace(home)
def slow(x):
    if os.environ.get("NBSERVE_PROOF_PARENT") != str(os.getpid()):
        time.sleep(120)  # in the clean interpreter of the proof: the parent kills us meanwhile
    return [v * 2 for v in x]
os.environ["NBSERVE_PROOF_PARENT"] = str(os.getpid())
if where == "staging":  # a serve's staged draft, as the process runtime's server would prove it
    pending = PendingVersion(ws.home, draft(slow, "slow", [1.0, 2.0]), "slow")
    print(pending.stage_dir, flush=True)
    time.sleep(120)
else:  # a register's proof in a clean interpreter (the Docker path)
    print("proving", flush=True)
    ws.register(slow, name="slow", sample=[1.0, 2.0], progress=False)
"""


def test_the_next_start_removes_what_killed_registers_left_and_nothing_live(tmp_path, monkeypatch):
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBSERVE_")} | {"TMPDIR": str(tmp)}
    procs = {
        where: subprocess.Popen(
            [sys.executable, "-c", CHILD, str(home), where],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for where in ("staging", "proof")
    }
    try:
        wait_until(lambda: list(tmp.glob("nbserve-proof-*/artifact/model.pkl")), timeout=60)
        wait_until(lambda: list((home / "staging").glob("*/artifact/model.pkl")), timeout=60)
        # a live register of this process holds scratch directories too: they must survive the sweep
        monkeypatch.setenv("TMPDIR", str(tmp))
        import tempfile

        monkeypatch.setattr(tempfile, "tempdir", None)
        from nbserve.store import scratch

        live_proof = scratch.make(tmp, scratch.PROOF_PREFIX)
        live_stage = scratch.make(home / "staging")
        for proc in procs.values():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        left = list(tmp.glob("nbserve-proof-*")) + list((home / "staging").glob("*"))
        assert len(left) == 4, left  # two of the killed children's, two live ones
        Workspace(home)  # a start: sweeps what dead owners left
        remaining = set(tmp.glob("nbserve-proof-*")) | set((home / "staging").glob("*"))
        assert remaining == {live_proof, live_stage}, remaining
        fault(True)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
