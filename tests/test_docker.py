"""The Docker runtime against a real engine: build, run, call, stop/start, restart, reconcile, errors.

Needs an engine and the base image (``.ci/setup-docker`` makes both); skipped locally without them,
failed in CI. One model image is built per session and reused: every registry that registers the same
fitted model gets the same artifact hash, and the runtime finds the image by that label. Everything the
tests make is labelled with a home under this session's temp dir and removed at the end, pass or fail
(tests/conftest.py).
"""

import io
import os
import random
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests
from nbserve_testing import base_image, need_docker

from nbserve.errors import BuildError, DockerUnavailableError, InstanceStartError, NbserveError, PortInUseError
from nbserve.runtimes.docker import DockerRuntime, engine_available
from nbserve.workspace import Workspace


@pytest.fixture(scope="session")
def session_prefix(tmp_path_factory):
    """Labels under this prefix are removed at the end of the session (tests/conftest.py)."""
    return str(Path(tmp_path_factory.getbasetemp()).resolve()) + os.sep


@pytest.fixture(scope="session")
def engine():
    client = need_docker()  # skips locally, fails in CI, without an engine or the base image
    old = os.environ.get("NBSERVE_BASE_IMAGE")
    os.environ["NBSERVE_BASE_IMAGE"] = base_image()
    yield client
    if old is None:
        os.environ.pop("NBSERVE_BASE_IMAGE", None)
    client.close()


@pytest.fixture(scope="session")
def built(engine, tmp_path_factory, diabetes):
    """A registry with diabetes:1 (LinearRegression) and its image, built once for the session from
    scratch (cache=False: wheels downloaded, no image or layer reused), as on a fresh machine."""
    X, y, lr = diabetes
    ws = Workspace(tmp_path_factory.mktemp("docker-home"))
    mv = ws.register(lr, name="diabetes", sample=X, progress=False)
    messages = []
    image = ws.runtime("docker").build(mv, progress=lambda m, f=None: messages.append(m), cache=False)
    return SimpleNamespace(ws=ws, mv=mv, image=image, messages=messages, X=X, y=y, lr=lr)


@pytest.fixture
def ws(engine, workspace):
    """A fresh registry per test; registering the session's model there reuses the session's image."""
    return workspace


def container_of(engine, inst):
    found = engine.containers.list(all=True, filters={"label": f"nbserve.instance={inst.id}"})
    return found[0] if found else None


def host_port(container):
    container.reload()
    return int(container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])


def wait_for(check, timeout=60.0, every=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


# -- images ------------------------------------------------------------------------------------------


@pytest.mark.docker
def test_build_makes_a_labelled_non_root_image_without_wheels_or_pip(built, engine):
    image = engine.images.get(built.image.id)
    # (not `tag in image.tags`: the tag is a convenience that another registry's diabetes:1 may take over;
    # nbserve finds its images by their labels)
    assert built.image.tag == "nbserve/diabetes:1"
    assert built.image.size == image.attrs["Size"] > 0
    assert built.image.model == "diabetes:1"
    labels = image.labels
    assert (labels["nbserve.model"], labels["nbserve.version"], labels["nbserve.sha256"]) == (
        "diabetes",
        "1",
        built.mv.sha256,
    )
    config = image.attrs["Config"]
    assert config["User"] and not config["User"].startswith(("0", "root"))
    assert "/health" in " ".join(config["Healthcheck"]["Test"])
    # the wheelhouse stayed in the dependency image: no layer of the model image copies it
    assert not [h for h in image.history() if "wheels" in (h.get("CreatedBy") or "")]
    out = engine.containers.run(
        image.id,
        [
            "python",
            "-c",
            "import importlib.util as u, os; print(u.find_spec('pip') is None, "
            "os.getuid(), os.path.exists('/tmp/nbserve'))",
        ],
        remove=True,
    )
    assert out.decode().split() == ["True", "10001", "False"]
    # progress named the wheel download, each Dockerfile step of both images, and the readiness check
    text = "\n".join(built.messages)
    assert re.search(r"downloading \d+ pinned wheels|wheelhouse for lock", text)
    assert re.search(r"dependency image \(\d+ packages\): step 4/", text)
    assert "image nbserve/diabetes:1: step 14/14" in text
    assert "readiness check: predict answers as in the kernel" in text
    # the lean venv: test suites and sources dropped, bytecode compiled, the saving shown per package
    assert re.search(r"scipy: -\d+\.\d MB", text) and re.search(r"site-packages \d+ MB -> \d+ MB", text)
    out = engine.containers.run(
        image.id,
        [
            "python",
            "-c",
            "import glob, sklearn, scipy; print(len(glob.glob('/opt/venv/lib/python*/site-packages/*/**/tests', "
            "recursive=True)), len(glob.glob(sklearn.__path__[0] + '/__pycache__/*.pyc')) > 0)",
        ],
        remove=True,
    )
    assert out.decode().split() == ["0", "True"]


@pytest.mark.docker
def test_a_new_version_with_the_same_requirements_reuses_the_dependency_layers(built, engine, diabetes):
    from sklearn.linear_model import Ridge

    X, y, _ = diabetes
    images = []
    # alphas of this session only: another session's identical model would have its image reused whole
    jitter = random.random() * 1e-3
    for alpha in (0.5 + jitter, 1.0 + jitter):
        mv = built.ws.register(Ridge(alpha=alpha).fit(X, y), name="diabetes", sample=X, progress=False)
        assert mv.requirements == built.mv.requirements
        messages = []
        images.append(built.ws.build(mv, progress=lambda m, f=None, messages=messages: messages.append(m)))
        assert any("dependency layers" in m and "reused" in m for m in messages)
        assert not any(m.startswith("downloading") for m in messages)
        # every step up to the server code comes from the cache: only the artifact, its ENV and LABEL are new
        [(cached, total)] = [
            tuple(map(int, re.search(r"(\d+) of (\d+) steps from the layer cache", m).groups()))
            for m in messages
            if "steps from the layer cache" in m
        ]
        assert cached == total - 2 - 3  # 2 FROM lines are not counted as cached
    assert [i.tag for i in images] == ["nbserve/diabetes:2", "nbserve/diabetes:3"]
    first, second = (engine.images.get(i.id).attrs["RootFS"]["Layers"] for i in images)
    # base, user, venv and server layers are the very same; only the artifact layer differs
    assert first[:-1] == second[:-1] and first[-1] != second[-1]
    again = built.ws.build(images[1].model, progress=False)
    assert again.id == images[1].id and again.build_seconds < 5


@pytest.mark.docker
def test_another_registry_with_the_same_model_reuses_the_content_under_its_own_labels(built, ws, engine):
    mv = ws.register(built.lr, name="diabetes", sample=built.X, progress=False)
    assert mv.sha256 == built.mv.sha256
    messages = []
    image = ws.build(mv, progress=lambda m, f=None: messages.append(m))
    assert "the same content exists" in messages[0] and image.build_seconds < 30
    labels = engine.images.get(image.id).labels
    assert labels["nbserve.home"] == str(ws.home) and labels["nbserve.sha256"] == built.mv.sha256
    # found by its own labels the next time; the first registry's image is untouched
    again = []
    assert ws.build(mv, progress=lambda m, f=None: again.append(m)).id == image.id
    assert again == [f"image nbserve/diabetes:1 for diabetes:1 already built ({image.id[:19]}): reused"]
    assert engine.images.get(built.image.id).labels["nbserve.home"] == str(built.ws.home)


@pytest.mark.docker
def test_an_image_built_from_a_model_image_is_never_taken_for_it(built, ws, engine):
    """A user's image FROM a model image inherits its labels (the content key among them) but serves what its
    own ENV says: the next build of that model must not find it and reuse it (a container of it would serve
    nothing; the Swarm rollback test builds exactly such a broken image)."""
    derived, _ = engine.images.build(
        fileobj=io.BytesIO(f"FROM {built.image.id}\nENV NBSERVE_ARTIFACT=/opt/nbserve/artifacts/missing\n".encode()),
        tag="nbserve-test/derived:1",
        labels={"nbserve.home": str(ws.home)},
    )
    assert derived.labels["nbserve.sha256"] == built.mv.sha256  # the inherited content key
    mv = ws.register(built.lr, name="derived-check", sample=built.X, progress=False)
    image = engine.images.get(ws.build(mv, progress=False).id)
    assert f"NBSERVE_ARTIFACT=/opt/nbserve/artifacts/{mv.sha256}" in image.attrs["Config"]["Env"]
    engine.images.remove(derived.id, force=True)


@pytest.mark.docker
def test_one_artifact_under_two_names_in_two_registries_each_image_names_what_it_serves(built, ws, engine):
    """The same fitted model registered as "diabetes" (the session's registry) and as "blue" (another
    registry) and "green" (that registry again): each tag carries its own model, version and home labels,
    a label filter finds it, and an instance of it says which model it serves."""
    blue = ws.register(built.lr, name="blue", sample=built.X, progress=False)
    green = ws.register(built.lr, name="green", sample=built.X, progress=False)
    assert blue.sha256 == green.sha256 == built.mv.sha256
    images = {mv.name: ws.build(mv, progress=False) for mv in (blue, green)}
    for name, image in images.items():
        assert image.tag == f"nbserve/{name}:1"
        found = engine.images.list(
            filters={"label": [f"nbserve.model={name}", "nbserve.version=1", f"nbserve.home={ws.home}"]}
        )
        assert [i.id for i in found] == [image.id]
        labels = found[0].labels
        assert labels["nbserve.home"] == str(ws.home) and labels["nbserve.sha256"] == built.mv.sha256
        assert engine.images.get(image.tag).id == image.id
    assert images["blue"].id != images["green"].id != built.image.id
    assert engine.images.get(built.image.id).labels["nbserve.model"] == "diabetes"

    inst = ws.serve("blue", runtime="docker", progress=False)
    try:
        assert requests.get(inst.url + "/health", timeout=10).json() == {"status": "ok", "model": "blue:1"}
        np.testing.assert_allclose(inst.client().predict(built.X[:3]), built.lr.predict(built.X[:3]))
        assert [(i.id, i.model, i.status) for i in ws.instances(model="blue")] == [(inst.id, "blue:1", "running")]
        assert ws.instances(model="green") == []
        assert container_of(engine, inst).labels["nbserve.model"] == "blue"
    finally:
        inst.remove()


@pytest.mark.docker
def test_missing_base_image_says_it_could_not_be_pulled_and_how_to_provide_one(built, ws):
    mv = ws.register(built.lr, name="diabetes", sample=built.X, progress=False)
    with pytest.raises(BuildError) as err:
        ws.build(mv, base_image="nbserve-test/no-such-python:3.11", progress=False)
    message = str(err.value)
    assert "'nbserve-test/no-such-python:3.11' is not on this machine and could not be pulled" in message
    assert "NBSERVE_BASE_IMAGE" in message and "base_image=" in message


@pytest.mark.docker
def test_a_base_image_with_another_python_is_refused(built, ws, engine, session_prefix, tmp_path):
    # a base whose python3 claims 3.9: made in a second from the real base, labelled for cleanup
    probe = '{"python": "3.9.18", "libc": ["glibc", "2.36"], "machine": "x86_64"}'
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "python3").write_text(f"#!/bin/sh\necho '{probe}'\n")
    (ctx / "python3").chmod(0o755)
    (ctx / "Dockerfile").write_text(
        f"FROM {base_image()}\nCOPY python3 /usr/local/bin/python3\nLABEL nbserve.home={session_prefix}old-python\n"
    )
    engine.images.build(path=str(ctx), tag="nbserve-test/python:3.9", network_mode="none", rm=True)
    mv = ws.register(built.lr, name="diabetes", sample=built.X, progress=False)
    with pytest.raises(BuildError, match=r"has Python 3\.9\.18, but diabetes:1 was pickled by Python 3\.11"):
        ws.build(mv, base_image="nbserve-test/python:3.9", progress=False)


def in_image():
    """True inside a model image: its server runs as the image's own user (this machine may itself be a
    container, so /.dockerenv says nothing)."""
    return os.getuid() == 10001


class _LoadsOnlyOutsideDocker:
    """Answers in the kernel; refuses to unpickle inside a container (as a missing native library would)."""

    def __init__(self):
        self.scale = 1.0  # some state, so that unpickling calls __setstate__

    def predict(self, X):
        return np.asarray(X).sum(axis=1)

    def __setstate__(self, state):
        if in_image():
            raise RuntimeError("libmissing.so: cannot open shared object file")
        self.__dict__.update(state)


@pytest.mark.docker
def test_readiness_check_fails_the_build_with_the_container_log_and_keeps_no_image(built, ws, engine):
    mv = ws.register(_LoadsOnlyOutsideDocker(), name="fragile", sample=built.X[:5], progress=False)
    with pytest.raises(BuildError) as err:
        ws.build(mv, progress=False)
    message = str(err.value)
    assert "did not start" in message and "libmissing.so" in message  # the container's log tail
    assert not engine.images.list(filters={"label": f"nbserve.sha256={mv.sha256}"})


@pytest.mark.docker
def test_readiness_check_names_the_method_and_the_difference(built, ws):
    def in_docker(X):
        return np.full(len(X), float(in_image()))

    mv = ws.register(in_docker, sample=built.X[:5], progress=False)
    with pytest.raises(
        BuildError,
        match=r"in_docker:1\.in_docker answers differently in the image .*: "
        r"data\[0\]: 0\.0 in the kernel, 1\.0 in the image",
    ):
        ws.build(mv, progress=False)


# -- containers --------------------------------------------------------------------------------------


@pytest.mark.docker
def test_serve_call_stop_start_remove(built, ws, engine):
    inst = ws.serve(built.lr, name="diabetes", sample=built.X, runtime="docker", progress=False)
    assert (inst.runtime, inst.status, inst.model) == ("docker", "running", "diabetes:1")
    assert inst.url == f"http://127.0.0.1:{inst.port}"
    np.testing.assert_allclose(inst.client().predict(built.X[:5]), built.lr.predict(built.X[:5]))
    container = container_of(engine, inst)
    assert host_port(container) == inst.port
    assert container.labels["nbserve.model"] == "diabetes" and container.labels["nbserve.version"] == "1"
    assert container.attrs["HostConfig"]["Init"] is True
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
    assert "Listening at" in inst.logs()

    started = time.monotonic()
    inst.stop()
    assert time.monotonic() - started < 5  # init=True: gunicorn gets the SIGTERM
    assert inst.status == "stopped" and ws.instances()[0].status == "stopped"

    inst.start(progress=False)
    assert inst.status == "running"
    assert host_port(container_of(engine, inst)) == inst.port
    np.testing.assert_allclose(inst.client().predict(built.X[:3]), built.lr.predict(built.X[:3]))

    inst.remove()
    assert container_of(engine, inst) is None and ws.instances() == []


@pytest.mark.docker
def test_a_stopped_container_started_with_batching_is_recreated_with_it(built, ws, engine):
    inst = ws.serve(built.lr, name="diabetes", sample=built.X, runtime="docker", progress=False)
    first = container_of(engine, inst).id
    assert requests.get(inst.url + "/batching", timeout=10).status_code == 404
    inst.stop()
    inst.start(batch=True, max_batch=8, max_latency_ms=2, progress=False)
    container = container_of(engine, inst)
    assert container.id != first  # the old container's environment said "no batching"
    report = requests.get(inst.url + "/batching", timeout=10).json()
    assert (report["max_batch"], report["max_latency_ms"]) == (8, 2.0)
    np.testing.assert_allclose(inst.client(timeout=30).predict(built.X[:3]), built.lr.predict(built.X[:3]))
    inst.stop()
    inst.start(progress=False)  # the same settings: the same container again
    assert container_of(engine, inst).id == container.id
    assert requests.get(inst.url + "/batching", timeout=10).json()["max_batch"] == 8


@pytest.mark.docker
def test_start_after_its_port_was_taken_moves_and_records_the_new_port(built, ws, engine):
    inst = ws.serve(built.lr, name="diabetes", sample=built.X, runtime="docker", progress=False)
    old = inst.port
    inst.stop()
    squatter = socket.socket()
    assert wait_for(lambda: squatter.connect_ex(("127.0.0.1", old)) != 0, 5)  # nobody listens there now
    squatter.close()
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", old))
    squatter.listen()
    try:
        inst.start(progress=False)
        assert inst.status == "running" and inst.port != old
        assert host_port(container_of(engine, inst)) == inst.port
        assert Workspace(ws.home).get_instance(inst.id).port == inst.port  # the registry knows it too
        assert inst.client().health()["status"] == "ok"
    finally:
        squatter.close()


@pytest.mark.docker
def test_a_crashed_container_is_restarted_by_its_policy(built, ws, engine):
    inst = ws.serve(built.lr, name="diabetes", sample=built.X, runtime="docker", progress=False)
    container = container_of(engine, inst)
    # SIGKILL from outside, not `docker kill`: the engine treats that as a crash, not a wanted stop
    os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)
    assert wait_for(lambda: container.reload() or container.attrs["RestartCount"] >= 1, 30)
    assert wait_for(lambda: inst.reload().status == "running", 60), inst.status
    assert host_port(container) == inst.port
    np.testing.assert_allclose(inst.client().predict(built.X[:2]), built.lr.predict(built.X[:2]))


@pytest.mark.docker
def test_instances_reconcile_after_the_container_is_removed_with_the_cli(built, ws):
    inst = ws.serve(built.lr, name="diabetes", sample=built.X, runtime="docker", progress=False)
    subprocess.run(["docker", "rm", "-f", f"nbserve-{inst.id}"], check=True, capture_output=True)
    assert [(i.id, i.status) for i in ws.instances()] == [(inst.id, "missing")]
    assert "removed" in inst.logs()
    inst.start(progress=False)  # a new container for the same instance
    assert inst.status == "running" and inst.client().health()["status"] == "ok"


@pytest.mark.docker
def test_instances_after_a_kernel_restart(built, ws):
    inst = ws.serve(built.lr, name="diabetes", sample=built.X, runtime="docker", progress=False)
    fresh = Workspace(ws.home)  # a new process would see just this: the registry on disk and Docker
    [found] = fresh.instances()
    assert (found.id, found.status, found.url, found.runtime) == (inst.id, "running", inst.url, "docker")
    fresh.stop(found.id)
    assert inst.reload().status == "stopped"


@pytest.mark.docker
def test_port_clash_is_a_clear_error_and_leaves_nothing_behind(built, ws, engine):
    first = ws.serve(built.lr, name="diabetes", sample=built.X, runtime="docker", progress=False)
    with pytest.raises(PortInUseError, match=rf"port {first.port} .* is in use"):
        ws.serve("diabetes", runtime="docker", port=first.port, progress=False)
    assert [i.id for i in ws.instances()] == [first.id]
    assert len(engine.containers.list(all=True, filters={"label": f"nbserve.home={ws.home}"})) == 1


@pytest.mark.docker
def test_restart_policy_option(built, ws, engine):
    with pytest.raises(NbserveError, match="restart_policy='sometimes'"):
        ws.serve(
            built.lr, name="diabetes", sample=built.X, runtime="docker", restart_policy="sometimes", progress=False
        )
    inst = ws.serve("diabetes", runtime="docker", restart_policy="unless-stopped", progress=False)
    assert container_of(engine, inst).attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"


class _FailsWithSmallBodies:
    """Loads everywhere except in a server started with max_body=4096: a container that exits at start."""

    def __init__(self):
        self.column = 0

    def predict(self, X):
        return np.asarray(X)[:, 0]

    def __setstate__(self, state):
        if os.environ.get("NBSERVE_MAX_BODY") == "4096":
            raise RuntimeError("refusing to load under a 4096-byte body limit")
        self.__dict__.update(state)


@pytest.mark.docker
def test_a_container_that_exits_at_start_is_an_error_with_its_log(built, ws, engine):
    mv = ws.register(_FailsWithSmallBodies(), name="picky", sample=built.X[:5], progress=False)
    ws.build(mv, progress=False)  # the readiness check passes: it runs without the limit
    with pytest.raises(InstanceStartError) as err:
        ws.serve("picky", runtime="docker", max_body=4096, progress=False)
    assert "refusing to load under a 4096-byte body limit" in str(err.value)
    assert ws.instances() == []
    assert not engine.containers.list(all=True, filters={"label": f"nbserve.home={ws.home}"})


@pytest.mark.docker
def test_auto_runtime_chooses_docker_when_an_engine_answers(engine, ws):
    messages = []
    assert ws.choose_runtime("auto", lambda m, f=None: messages.append(m)) == "docker"
    assert messages == ["runtime 'auto' chose docker"]


# -- without an engine -------------------------------------------------------------------------------


def test_no_engine_is_a_clear_error_and_a_quick_no(workspace, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    started = time.monotonic()
    assert engine_available() is False
    assert time.monotonic() - started < 2
    with pytest.raises(DockerUnavailableError, match=r"no Docker engine answers at unix://.*runtime='process'"):
        DockerRuntime(workspace).client  # noqa: B018 (connecting is what raises)
    assert workspace.choose_runtime("auto", progress=False) == "process"
