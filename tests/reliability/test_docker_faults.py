"""Container faults, against a real Docker engine (skipped locally without one, failed in CI):

- the server in the container runs as a non-root user with no capabilities, nothing privileged;
- a worker that crashes inside the container is replaced by gunicorn, without a container restart
  (the image runs gunicorn with nbserve's config, so os._exit(3) does not halt it);
- the engine going away mid-session: listings say "unknown" at once (no hang, no traceback), actions
  raise DockerUnavailableError saying what to do, and everything recovers when the engine is back.

The engine's outage is made between nbserve and the engine (DOCKER_HOST points at a relay socket that
the test cuts and restores), not by stopping dockerd: the engine is shared with other work on the
machine, and what nbserve must handle is the same, a socket that stops answering and comes back.
A container killed from outside and restarted by its restart policy is tested in tests/test_docker.py.
"""

import os
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from reliability_tools import fault, need, wait_until

from nbserve.errors import DockerUnavailableError
from nbserve.workspace import Workspace

pytestmark = pytest.mark.docker

BASE_IMAGE = os.environ.get("NBSERVE_BASE_IMAGE", "local/python:3.11-bookworm")
HOW = "run .ci/setup-docker as root: it starts a Docker engine and makes the base image " + BASE_IMAGE


@pytest.fixture(scope="module")
def engine():
    from nbserve.runtimes.docker import engine_available

    need(engine_available(), "a Docker engine", HOW)
    import docker

    client = docker.from_env()
    try:
        client.images.get(BASE_IMAGE)
        present = True
    except docker.errors.ImageNotFound:
        present = False
    need(present, f"the base image {BASE_IMAGE}", HOW)
    yield client
    client.close()


@pytest.fixture(scope="module")
def docker_home(engine, tmp_path_factory):
    """One registry for the module, so the model's image is built once; its containers are removed at the
    end of the module, its images with the session's (tests/conftest.py): the dependency image of a lock
    is shared by every registry that needs it, and later modules reuse it."""
    from nbserve_testing import remove_instances

    old = os.environ.get("NBSERVE_BASE_IMAGE")
    os.environ["NBSERVE_BASE_IMAGE"] = BASE_IMAGE
    home = tmp_path_factory.mktemp("docker-faults-home")
    yield home
    remove_instances(Workspace(home))
    if old is None:
        os.environ.pop("NBSERVE_BASE_IMAGE", None)


@pytest.fixture(scope="module")
def inst(docker_home):
    return Workspace(docker_home).serve(crasher, sample=["ok"], runtime="docker", progress=False)


def crasher(cmd):
    import os

    if cmd[0] == "exit":
        os._exit(int(cmd[1]))
    return [cmd[0], os.getpid() if cmd[0] == "pid" else 0]


def container_of(engine, inst):
    [container] = engine.containers.list(all=True, filters={"label": f"nbserve.instance={inst.id}"})
    return container


def process_tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except FileNotFoundError:
            pass
    return out


def proc_status(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return fields


def test_the_container_runs_as_non_root_with_no_capabilities(engine, inst):
    container = container_of(engine, inst)
    host = container.attrs["HostConfig"]
    assert not host.get("Privileged") and not host.get("CapAdd"), (host.get("Privileged"), host.get("CapAdd"))
    assert container.attrs["Config"]["User"] not in ("", "0", "root", "0:0")
    tree = process_tree(container.attrs["State"]["Pid"])
    assert len(tree) >= 3  # init, gunicorn's arbiter, a worker
    for pid in tree:  # read from the host: the kernel's view, not the image's claims
        status = proc_status(pid)
        assert status["Uid"][0] != "0" and status["Uid"][1] != "0", (pid, status["Uid"])
        assert int(status["CapEff"][0], 16) == 0 and int(status["CapPrm"][0], 16) == 0, (pid, status["CapEff"])


def test_a_worker_crash_in_the_container_is_replaced_without_a_container_restart(engine, inst):
    container = container_of(engine, inst)
    restarts = container.attrs["RestartCount"]
    url = inst.url + "/crasher"
    pid = requests.post(url, json={"data": ["pid", "0"]}, timeout=10).json()["data"][1]
    for code in ("3", "1"):
        with pytest.raises(requests.ConnectionError):
            requests.post(url, json={"data": ["exit", code]}, timeout=10)
        new = wait_until(lambda: _pid(url), timeout=20)
        assert new != pid
        pid = new
        container.reload()
        assert container.attrs["RestartCount"] == restarts and container.status == "running"
        fault(True)
    assert inst.reload().status == "running"


def _pid(url):
    try:
        return requests.post(url, json={"data": ["pid", "0"]}, timeout=3).json()["data"][1]
    except (requests.RequestException, ValueError, KeyError):
        return None


class Relay:
    """A unix socket that forwards to the engine's, and can be cut (the engine is gone) and restored."""

    def __init__(self, path: Path, target: str):
        self.path, self.target = path, target
        self.listener, self.conns, self.lock = None, [], threading.Lock()

    def start(self):
        self.path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(self.path))
        self.listener.listen(64)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        self.listener.close()
        self.path.unlink(missing_ok=True)
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.conns.clear()


def test_the_engine_going_away_mid_session_gives_clear_errors_and_listings_recover(
    engine, docker_home, inst, monkeypatch, tmp_path
):
    target = (os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock").removeprefix("unix://")
    need(os.path.exists(target), "the Docker engine's unix socket", HOW)
    relay = Relay(tmp_path / "engine.sock", target)
    relay.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{relay.path}")
    ws = Workspace(docker_home)  # a session that reaches the engine through the relay
    try:
        mine = ws.serve("crasher", runtime="docker", progress=False)  # the image is there: no build
        assert {i.id: i.status for i in ws.instances()} == {inst.id: "running", mine.id: "running"}

        relay.cut()
        started = time.monotonic()
        listed = ws.instances()
        assert {i.id: i.status for i in listed} == {inst.id: "unknown", mine.id: "unknown"}
        assert time.monotonic() - started < 10, "a listing must not hang on a lost engine"
        for action in (mine.stop, mine.logs, lambda: ws.serve("crasher", runtime="docker", progress=False)):
            with pytest.raises(DockerUnavailableError, match=r"(lost the|no) Docker engine.*runtime='process'"):
                action()
        fault(True)

        relay.start()  # the engine is back
        wait_until(lambda: {i.status for i in ws.instances()} == {"running"}, timeout=20)
        assert mine.reload().status == "running" and mine.client().crasher(["ok"]) == ["ok", 0]
        mine.stop()
        assert mine.reload().status == "stopped"
    finally:
        relay.cut()
