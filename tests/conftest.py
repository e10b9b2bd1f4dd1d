"""Shared fixtures. Every test gets its own registry ($NBSERVE_HOME in a temp dir) and leaves no
running instance behind."""

import collections
import os
import sys
from pathlib import Path

import pytest

_WORKER_TALLIES = collections.Counter()  # the reliability suite's tallies, added up from the xdist workers


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    _WORKER_TALLIES.update(getattr(node, "workeroutput", {}).get("nbserve_tally", {}))


def pytest_terminal_summary(terminalreporter):
    """The reliability suite's closing line: its inputs, 5xx, faults (summed over the workers)."""
    sys.path.insert(0, str(Path(__file__).parent / "reliability"))  # the controller loads no test module
    from reliability_tools import TALLY, summary

    tally = _WORKER_TALLIES + TALLY
    if tally:
        terminalreporter.write_sep("-", summary(collections.Counter(tally)))


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
    from nbserve_testing import remove_instances

    from nbserve.workspace import Workspace

    remove_instances(Workspace(path))


@pytest.fixture(scope="module")
def module_workspace(tmp_path_factory):
    """A registry of the module's own, for models and instances a whole module shares (a registration or
    a process-runtime start costs seconds); every instance in it is removed when the module is done."""
    from nbserve_testing import remove_instances

    from nbserve.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("nbserve-home"))
    yield ws
    remove_instances(ws)


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
def ipython(tmp_path_factory):
    """One real InteractiveShell for the session, with its profile in a temp dir and no history file."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    if not InteractiveShell.initialized():
        os.environ["IPYTHONDIR"] = str(tmp_path_factory.mktemp("ipython"))
        config = Config()
        config.HistoryManager.enabled = False
        InteractiveShell.instance(config=config)
    ip = InteractiveShell.instance()
    ip.extension_manager.load_extension("nbserve")
    return ip


@pytest.fixture(scope="session")
def iris():
    """(features DataFrame, target Series, fitted LogisticRegression) on the bundled iris data."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    frame = load_iris(as_frame=True).frame
    X, y = frame.drop(columns="target"), frame["target"]
    return X, y, LogisticRegression(max_iter=1000).fit(X, y)


@pytest.fixture(scope="session")
def container_registry(tmp_path_factory):
    """A real container registry (Debian's docker-registry, the CNCF Distribution registry) on a free port
    of 127.0.0.1, storage in a temp dir; yields "127.0.0.1:PORT". Docker pushes to it without TLS."""
    import shutil
    import socket
    import subprocess
    import time
    import urllib.request

    from nbserve_testing import need

    binary = shutil.which("docker-registry")
    need(binary is not None, "a container registry (docker-registry)", "apt-get install docker-registry (.ci/run does)")
    root = tmp_path_factory.mktemp("registry")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (root / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: nbserve-tests\n"
    )
    log = open(root / "registry.log", "wb")
    proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"docker-registry did not start: {(root / 'registry.log').read_text()[-2000:]}")
        time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


# -- registry backends: the embedded default, and a team's (PostgreSQL + S3-compatible storage) ---------------


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of this session (Debian's binaries, run as an unprivileged user, in a temp dir)."""
    from nbserve_testing import need
    from team_servers import SETUP, Postgres, postgres_missing

    missing = postgres_missing()
    need(missing is None, missing or "", SETUP)
    server = Postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3():
    """SeaweedFS's S3 API on 127.0.0.1 for this session, with one bucket and credentials it checks."""
    from nbserve_testing import need
    from team_servers import SETUP, SeaweedS3, weed_binary

    need(weed_binary() is not None, "SeaweedFS's weed binary", SETUP)
    server = SeaweedS3()
    yield server
    server.stop()


@pytest.fixture(params=["local", "team"])
def backend(request, monkeypatch):
    """A registry test runs twice: on SQLite + local files (the default) and on PostgreSQL + S3 (a team's).
    The environment points at a fresh registry; ``backend.fresh()`` makes another (env for a child process),
    ``backend.use(env)`` switches this process to it."""
    from team_servers import Backend

    for key in ("NBSERVE_REGISTRY_URL", "NBSERVE_ARTIFACTS"):
        monkeypatch.delenv(key, raising=False)
    servers = (request.getfixturevalue("postgres"), request.getfixturevalue("s3")) if request.param == "team" else None
    chosen = Backend(request.param, servers, monkeypatch)
    chosen.use(chosen.fresh())
    return chosen
