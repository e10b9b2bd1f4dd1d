"""Run-wide test setup: no test or notebook ever touches the user's ~/.nbserve.

Each example notebook runs (under nbval) against a registry of its own, so its outputs do not depend
on which notebooks ran before; instances the notebooks leave behind are removed at the end.

The suite runs on three pytest-xdist workers (``-n 3 --dist loadfile`` in pyproject's addopts; ``-n 0`` runs
it in one process). Three on CI's two cores, because much of the suite waits (servers starting, containers,
image builds, browsers): in a clean-clone run the Docker unit took 877 s on one worker and the other units
1,849 s on the other two, 932 s of wall time, where two workers would need about 1,360 s.
A unit of work is a whole test file, so a module's fixtures (served instances, images) are made once, on one
worker; every test that needs Docker is one unit, "docker", so images are built one at a time and each
requirements lock once for the run (test_docker.py's cold build first, the deps image the others reuse). Units
start longest first (the order below, measured with ``--durations=0``), so that no worker is left with a long
one at the end. The hypothesis profiles are here too: "ci" (the default) and "long"
(``pytest --hypothesis-profile=long``).
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Fuzzing: every property runs derandomized (the same inputs each run: a CI failure is reproducible), no
# example database, no deadline (a real server's answer time is not the property). "long" is for a quiet
# machine before a release: ten times the inputs, fresh ones each run.
settings.register_profile(
    "ci", max_examples=100, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
settings.register_profile("long", settings.get_profile("ci"), max_examples=1000, derandomize=False)
settings.load_profile("ci")  # `--hypothesis-profile=long` loads the other after this file is read

_RUN_HOME = Path(tempfile.mkdtemp(prefix="nbserve-test-"))
os.environ["NBSERVE_HOME"] = str(_RUN_HOME / "default")
_notebook_homes = set()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # nbval starts a notebook's kernel when its first cell is set up; the kernel inherits this env
    path = Path(str(item.fspath))
    if path.suffix == ".ipynb":
        home = _RUN_HOME / path.stem
        _notebook_homes.add(home)
        os.environ["NBSERVE_HOME"] = str(home)


def pytest_sessionfinish(session):
    sys.path.insert(0, str(Path(__file__).parent / "tests"))  # also when only notebooks/ ran
    from nbserve_testing import remove_instances

    from nbserve.workspace import Workspace

    for home in _notebook_homes | {_RUN_HOME / "default"}:
        if home.exists():
            remove_instances(Workspace(home))
    try:
        from nbserve.runtimes.docker import engine_available, remove_labelled
    except ImportError:
        return
    if engine_available():  # the images the notebooks built
        remove_labelled(str(_RUN_HOME) + os.sep)


# -- the workers: units of work and their order ------------------------------------------------------------
#
# pytest-xdist's `--dist loadfile` sends each file whole to one worker; the scheduler below (xdist's hook)
# also keeps every Docker test in one unit, "docker". The workers tag those tests' ids with "@docker" (as
# xdist's loadgroup does with its marks, which pytest 9.2's ids no longer let it do) and the controller,
# which collects nothing itself, reads the tag.

DOCKER = "docker"
# files whose every test uses the Docker engine (the others mark their Docker tests with @pytest.mark.docker)
DOCKER_FILES = {
    "notebooks/02-docker.ipynb",
    "tests/test_deploy_kubernetes.py",
    "tests/test_deploy_routes.py",
    "tests/test_deploy_swarm.py",
    "tests/test_docker.py",
}
# inside the Docker unit: the cold build of the diabetes lock (test_docker.py's session image, built without
# any cache as on a fresh machine) comes before every other user of that lock, which then reuses it
DOCKER_FIRST = ["tests/test_docker.py"]
# the longest units first (per-file totals of a --durations=0 run); any other file after these, as collected
LONGEST_FIRST = [
    DOCKER,
    "tests/test_registry.py",
    "tests/reliability/test_fuzz_http.py",
    "tests/test_wheel.py",
    "tests/models/test_threaded_models.py",
    "tests/test_benchmarks.py",
    "tests/test_openai_routes.py",
    "tests/test_instance_update.py",
    "tests/models/test_graph.py",
    "tests/test_tooling.py",
    "tests/test_panel.py",
    "tests/test_graph_faces.py",
    "tests/ui/test_faces_fit.py",
    "tests/test_process_runtime.py",
    "tests/ui/test_sidebar.py",
    "tests/test_jupyter_routes.py",
    "tests/ui/test_remote_jupyter.py",
    "tests/test_batching.py",
    "tests/ui/test_monitor_ui.py",
    "tests/test_observability.py",
    "tests/test_team_registry.py",
    "tests/ui/test_panel_ui.py",
    "tests/test_example.py",
    "tests/test_magics.py",
    "tests/test_protocols.py",
]


def _path(item) -> str:
    return item.nodeid.split("::", 1)[0]


def _unit(item) -> str:
    return DOCKER if item.get_closest_marker("docker") or _path(item) in DOCKER_FILES else _path(item)


@pytest.hookimpl(wrapper=True)  # around every other implementation: after pytest's own reordering
def pytest_collection_modifyitems(config, items):
    result = yield
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    first = {name: i for i, name in enumerate(DOCKER_FIRST)}

    def order(item):
        unit = _unit(item)
        return rank.get(unit, len(rank)), first.get(_path(item), len(first)) if unit == DOCKER else 0

    items.sort(key=order)  # stable: a file's tests stay together and in their order
    if hasattr(config, "workerinput"):  # an xdist worker: the controller schedules by these ids
        for item in items:
            if _unit(item) == DOCKER:
                _tag(item, "@" + DOCKER)
    return result


def _tag(item, suffix: str) -> None:
    if hasattr(item, "_id"):  # pytest >= 9.2 keeps a structured id
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(item.nodeid + suffix)
    else:
        item._nodeid = item.nodeid + suffix


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile`, with the Docker unit (the ids the workers tagged) kept whole."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesAndDocker(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return DOCKER if nodeid.endswith("@" + DOCKER) else super()._split_scope(nodeid)

    return FilesAndDocker(config, log)
