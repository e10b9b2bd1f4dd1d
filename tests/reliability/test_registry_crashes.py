"""The registry under kill -9 and under concurrency, with real processes.

A child process registers a model and is SIGKILLed at a precise point (it stops there and tells the
parent, which kills it): after the pickle is written, before the artifact's rename into place, and
inside the version's transaction just before COMMIT; on a team's registry also after the pickle's upload
to the bucket, before the manifest's. Nothing half-written may be visible afterwards, and the next register
must work. Then 8 processes register at once: all 8 versions are there, numbered 1 to 8, each loading the
model its process registered. Every test runs on SQLite + local files and on PostgreSQL + S3 (``backend``);
on the latter each process has a home of its own, as on separate machines.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from reliability_tools import TALLY, fault, wait_until

from nbserve.workspace import Workspace

# The child: registers `double` (or `plus_K`) in HOME; with a kill point, it stops there and waits.
CHILD = r"""
import json, os, sys, time
home, point, marker, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
os.environ["NBSERVE_HOME"] = home
from contextlib import contextmanager
from nbserve import registry
from nbserve.store import artifacts, sql
from nbserve.workspace import Workspace

def stop_here():
    with open(marker + ".tmp", "w") as f:
        f.write(point)
    os.replace(marker + ".tmp", marker)
    time.sleep(120)  # the parent kills -9 us here
    os._exit(99)

if point == "pickle-written":  # model.pkl written and fsynced in the temp dir; manifest.json not yet
    real_fsync = os.fsync
    def fsync(fd):
        real_fsync(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
        if ".tmp-" in path and path.endswith("model.pkl"):
            stop_here()
    registry.os.fsync = fsync
elif point == "before-rename":  # both files complete in the temp dir, not yet renamed into place
    real_rename = os.rename
    def rename(src, dst):
        if ".tmp-" in os.fspath(src):
            stop_here()
        return real_rename(src, dst)
    registry.os.rename = rename
elif point == "before-commit":  # the version row inserted, the transaction not committed
    real_tx = sql.SQLMetadata.tx
    @contextmanager
    def tx(self):
        with real_tx(self) as db:
            seen = []
            class Spy:
                def execute(self, statement, args=None):
                    if statement.startswith("INSERT INTO versions"):
                        seen.append(statement)
                    return db.execute(statement, args) if args is not None else db.execute(statement)
            yield Spy()
            if seen:
                stop_here()
    sql.SQLMetadata.tx = tx
elif point == "pickle-uploaded":  # model.pkl in the bucket, manifest.json (the artifact's address) not yet
    real_client = artifacts.S3Artifacts.client.fget
    def client(self):
        c = real_client(self)
        if not hasattr(c, "real_put"):
            c.real_put = c.put_object
            def put_object(**kw):
                done = c.real_put(**kw)
                if kw["Key"].endswith("model.pkl"):
                    stop_here()
                return done
            c.put_object = put_object
        return c
    artifacts.S3Artifacts.client = property(client)
elif point == "go":  # concurrency: wait for the parent's signal so that all start together
    while not os.path.exists(marker):
        time.sleep(0.005)

if k < 0:
    def double(x):
        return [2 * v for v in x]
    model, name = double, "double"
else:
    exec(f"def plus(x):\n    return [v + {k} for v in x]")
    model, name = plus, "shared"
mv = Workspace(home).register(model, name=name, sample=[1, 2], progress=False)
print(json.dumps({"version": mv.version, "sha256": mv.sha256}))
if point == "after-commit":
    stop_here()
"""

KILL_POINTS = ["pickle-written", "before-rename", "before-commit", "after-commit"]
BUCKET_KILL_POINTS = ["pickle-uploaded"]


def child(home, point, marker, k=-1, registry_env=None):
    env = {key: v for key, v in os.environ.items() if not key.startswith("NBSERVE_")}
    env.update(registry_env or {})
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home), point, str(marker), str(k)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def visible_artifacts_verify(ws):
    """Every artifact a reader can see (not a .tmp- staging dir, not a pickle without its manifest in a bucket)
    is complete and verifies, read from the store itself (a bucket, not this machine's cache)."""
    names = ws.registry.artifacts.list()
    for sha in names:
        ws.registry.artifacts.raw(sha)
        ws.registry.verify_artifact(sha)
    return names


def test_kill_9_in_the_middle_of_a_register_leaves_nothing_half_written(backend, tmp_path):
    points = KILL_POINTS + (BUCKET_KILL_POINTS if backend.team else [])
    homes = {p: tmp_path / p for p in points}
    envs = {p: backend.fresh() for p in points}  # a registry for each kill point
    procs = {p: child(homes[p], p, tmp_path / f"{p}.reached", registry_env=envs[p]) for p in points}
    try:
        for point, proc in procs.items():
            marker = tmp_path / f"{point}.reached"
            wait_until(lambda m=marker, p=proc: m.exists() or p.poll() is not None, timeout=60)
            assert marker.exists(), f"{point} never reached: {proc.communicate()[1][-2000:]}"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            assert proc.returncode == -signal.SIGKILL
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def double(x):
        return [2 * v for v in x]

    for point in points:
        backend.use(envs[point])
        ws = Workspace(homes[point])
        with sqlite3.connect(ws.registry.db_path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        models = ws.models()
        visible = visible_artifacts_verify(ws)
        if point == "after-commit":  # killed after the register returned: the version is whole
            assert [m.id for m in models] == ["double:1"] and models[0].load()([3]) == [6]
        else:
            assert models == [], f"{point}: a version became visible: {models}"
            assert visible == [] or point == "before-commit", visible
        # the next register works (and the lock of the killed writer is gone: this does not wait 30 s)
        started = time.monotonic()
        mv = ws.register(double, name="double", sample=[1, 2], progress=False)
        assert time.monotonic() - started < 20
        # (this process's `double` pickles differently from the child's: after a whole version 1, it is 2)
        expected = 2 if point == "after-commit" else 1
        assert mv.version == expected and mv.load()([4]) == [8]
        assert [m.version for m in ws.versions("double")] == list(range(1, expected + 1))
        visible_artifacts_verify(ws)
        fault(True)


def test_8_concurrent_registers_from_8_processes_lose_nothing(backend, tmp_path):
    home, go = tmp_path / "home", tmp_path / "go"
    Workspace(home)  # create the registry before the race, as a user's first register would have
    env = {k: os.environ[k] for k in ("NBSERVE_REGISTRY_URL", "NBSERVE_ARTIFACTS") if k in os.environ}
    homes = [tmp_path / f"machine-{k}" if backend.team else home for k in range(8)]
    procs = [child(homes[k], "go", go, k, registry_env=env) for k in range(8)]
    time.sleep(1.0)  # let all 8 import nbserve and wait at the line
    go.write_text("go")
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    TALLY["concurrent_registers"] += len(procs)
    versions = sorted(r["version"] for r in results)
    assert versions == list(range(1, 9)), versions
    ws = Workspace(home)
    listed = ws.versions("shared")
    assert [m.version for m in listed] == list(range(1, 9))
    # each version is the model its own process registered: plus k answers [1 + k]
    by_sha = {r["sha256"]: k for k, r in enumerate(results)}
    for mv in listed:
        assert mv.load()([1]) == [1 + by_sha[mv.sha256]]
    assert sorted(visible_artifacts_verify(ws)) == sorted(by_sha)


def test_a_writer_killed_inside_its_transaction_blocks_no_one(backend, tmp_path):
    """A writer stopped inside its transaction blocks others only while it lives; killed, it blocks none."""
    home = tmp_path / "home"
    env = {k: os.environ[k] for k in ("NBSERVE_REGISTRY_URL", "NBSERVE_ARTIFACTS") if k in os.environ}
    proc = child(tmp_path / "writer" if backend.team else home, "before-commit", tmp_path / "held", registry_env=env)
    try:
        wait_until(lambda: (tmp_path / "held").exists() or proc.poll() is not None, timeout=60)
        assert (tmp_path / "held").exists(), proc.communicate()[1][-2000:]
        ws = Workspace(home)
        assert ws.models() == []  # readers are not blocked by the open write transaction (WAL)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def triple(x):
        return [3 * v for v in x]

    assert ws.register(triple, name="triple", sample=[1], progress=False).version == 1
    fault(True)
