"""Helpers shared by the test modules (imported by name: tests/ is on sys.path through its conftest).

A plain module, not conftest.py: with several conftest.py files loaded, ``from conftest import ...``
picks whichever was imported first.
"""

import os

import pytest

IN_CI = bool(os.environ.get("CI"))
SETUP_DOCKER = "run .ci/setup-docker as root: it starts a Docker engine and makes the base image"


def need(condition: bool, what: str, how: str):
    """Skip locally when a component is missing, with how to get it; in CI a missing component fails."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is not available in CI: .ci/run must set it up ({how})", pytrace=False)
    pytest.skip(f"{what} is not available: {how}")


def remove_instances(workspace) -> None:
    """Teardown: remove every instance of a workspace, whatever state a failed test left it in."""
    for inst in workspace.instances():
        try:
            workspace.remove(inst.id)
        except Exception:
            pass


def base_image() -> str:
    return os.environ.get("NBSERVE_BASE_IMAGE", "local/python:3.11-bookworm")


def need_docker():
    """A Docker client, once an engine answers and the base image exists (else skip, or fail in CI)."""
    from nbserve.runtimes.docker import engine_available

    need(engine_available(), "a Docker engine", SETUP_DOCKER)
    import docker

    client = docker.from_env()
    try:
        client.images.get(base_image())
    except docker.errors.ImageNotFound:
        client.close()
        need(False, f"the base image {base_image()}", SETUP_DOCKER)
    return client


def run_cli(home, *args) -> tuple[int, str, str]:
    """The console script as a user runs it: its own process, only $NBSERVE_HOME and a bare PATH."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "nbserve.cli", *args],
        capture_output=True,
        text=True,
        env={"NBSERVE_HOME": str(home), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    return out.returncode, out.stdout, out.stderr


def frames():
    """tests/models/frames.py (rentals(), mixed_pipeline()) imported as the model tests import it: as the
    top-level module ``frames``, which capture pickles by value (user code). As ``models.frames`` (a module
    of a namespace package, which has no __file__) it would be pickled by reference, and the served side
    could not import it."""
    import sys
    from pathlib import Path

    folder = str(Path(__file__).parent / "models")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import frames

    return frames


def one_row_calls(url: str, method: str, X, threads: int = 16, timeout: float = 30.0, token=None) -> list:
    """Every row of ``X`` (array or DataFrame) as its own request, ``threads`` at once, each thread with its
    own nbserve.Client (every request with ``timeout``); the answers in row order."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import nbserve

    local, clients = threading.local(), []

    def call(i):
        if not hasattr(local, "client"):
            local.client = nbserve.Client(url, timeout=timeout, token=token)
            clients.append(local.client)
        return local.client.call(method, X.iloc[i : i + 1] if hasattr(X, "iloc") else X[i : i + 1])

    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(call, range(len(X))))
    finally:
        for client in clients:
            client.close()


# a module's tests on both runtimes: @pytest.fixture(params=RUNTIMES), then request.getfixturevalue(request.param)
RUNTIMES = ["process", pytest.param("docker", marks=pytest.mark.docker)]


def docker_workspace(tmp_path_factory, name: str):
    """A registry of its own for a module's Docker instances, the base image named for them; every instance
    in it is removed afterwards. A generator for a module fixture: ``yield from docker_workspace(...)``."""
    from nbserve.workspace import Workspace

    need_docker().close()
    patch = pytest.MonkeyPatch()
    patch.setenv("NBSERVE_BASE_IMAGE", base_image())
    workspace = Workspace(tmp_path_factory.mktemp(name))
    try:
        yield workspace
    finally:
        remove_instances(workspace)
        patch.undo()
