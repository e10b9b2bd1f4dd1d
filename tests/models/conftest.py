"""Fixtures of the model-family matrix: one registry per module, its instances removed afterwards."""

import pytest


@pytest.fixture(scope="module")
def module_workspace(tmp_path_factory):
    """A registry of the module's own, for instances a whole module shares (a process-runtime start
    costs seconds); every instance in it is removed when the module is done."""
    from nbserve.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("nbserve-home"))
    yield ws
    for inst in ws.instances():
        try:
            ws.remove(inst.id)
        except Exception:
            pass
