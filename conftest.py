"""Run-wide test setup: no test or notebook ever touches the user's ~/.nbserve.

Each example notebook runs (under nbval) against a registry of its own, so its outputs do not depend
on which notebooks ran before; instances the notebooks leave behind are removed at the end.
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest

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
