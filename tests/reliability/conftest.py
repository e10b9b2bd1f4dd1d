"""Fixtures of the reliability suite, and the closing line with its numbers."""

import pytest
from nbserve_testing import remove_instances
from reliability_tools import TALLY, summary


def pytest_terminal_summary(terminalreporter):
    if TALLY:
        terminalreporter.write_sep("-", summary())


@pytest.fixture(scope="module")
def module_workspace(tmp_path_factory):
    """A registry of the module's own, for instances a whole module shares (a process-runtime start
    costs about two seconds); every instance in it is removed when the module is done."""
    from nbserve.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("nbserve-home"))
    yield ws
    remove_instances(ws)
