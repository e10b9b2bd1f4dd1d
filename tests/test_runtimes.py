"""The one list of runtimes (nbserve/runtimes/__init__.py): every face offers exactly what it declares,
and no face or core module names a runtime of its own (adding one is its module plus one entry)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nbserve import runtimes
from nbserve.jupyter.handlers import API_PREFIX

pytest_plugins = ("pytest_jupyter.jupyter_server",)

PACKAGE = Path(runtimes.__file__).resolve().parents[1]
# modules that must read the runtimes from the list, never name one
READERS = [
    "workspace.py",
    "api.py",
    "magics.py",
    "cli.py",
    *(str(p.relative_to(PACKAGE)) for p in sorted((PACKAGE / "widgets").glob("*.py"))),
    *(str(p.relative_to(PACKAGE)) for p in sorted((PACKAGE / "jupyter").glob("*.py"))),
]


@pytest.fixture
def jp_server_config(home):
    return {"ServerApp": {"jpserver_extensions": {"nbserve": True}}}


def test_the_list_declares_each_runtime_once_with_a_loadable_class():
    names = [s.name for s in runtimes.RUNTIMES]
    assert len(names) == len(set(names)) and runtimes.CHOICES == ("auto", *names)
    assert {"process", "docker"} <= set(names)
    for spec in runtimes.RUNTIMES:
        cls = runtimes._load(spec.cls)
        assert cls.name == spec.name, f"{spec.cls} says its name is {cls.name!r}, the list says {spec.name!r}"
        if spec.proves_registration:
            assert all(verb in vars(cls) for verb in ("start_early", "prove", "hand_over", "abort_proof"))
        if spec.builds_images:
            assert callable(getattr(cls, "build", None))
    assert runtimes.fallback().check is None  # runtime="auto" never strands a user
    with pytest.raises(runtimes.NbserveError, match="unknown runtime 'kubernetes'; expected 'auto'"):
        runtimes.spec("kubernetes")


def test_no_face_or_core_module_names_a_runtime():
    names = {s.name for s in runtimes.RUNTIMES}
    found = []
    for rel in READERS:
        tree = ast.parse((PACKAGE / rel).read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings:
                found.append(f"nbserve/{rel}:{node.lineno}: {node.value!r}")
    assert not found, (
        "read runtimes from nbserve.runtimes (spec(), CHOICES, ...) instead of naming them:\n" + "\n".join(found)
    )


def test_magics_cli_and_widgets_offer_the_list(workspace):
    from nbserve.magics import NbserveMagics
    from nbserve.widgets import Panel
    from nbserve.widgets.models import ModelRow

    serve_parser = NbserveMagics.serve.parser
    [runtime_action] = [a for a in serve_parser._actions if a.dest == "runtime"]
    assert tuple(runtime_action.choices) == runtimes.CHOICES

    panel = Panel(workspace, refresh_seconds=60)
    try:
        row = ModelRow(panel.models, "m")  # the row of a model: its runtime dropdown
        assert tuple(row.runtime.options) == runtimes.CHOICES
        row.close()
    finally:
        panel.close()

    out = subprocess.run(
        [sys.executable, "-m", "nbserve.cli", "--json", "runtimes"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"NBSERVE_HOME": str(workspace.home), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert [r["name"] for r in json.loads(out.stdout)] == list(runtimes.NAMES)
    help_text = subprocess.run(
        [sys.executable, "-m", "nbserve.cli", "serve", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "{" + ",".join(runtimes.CHOICES) + "}" in help_text


async def test_the_sidebar_reads_the_list_over_rest(jp_fetch):
    resp = await jp_fetch(*API_PREFIX.split("/"), "runtimes", method="GET")
    body = json.loads(resp.body)
    assert body["choices"] == list(runtimes.CHOICES)
    by_name = {r["name"]: r for r in body["runtimes"]}
    assert by_name["process"]["proves_registration"] is True and by_name["docker"]["builds_images"] is True
    assert all("cls" not in r for r in body["runtimes"])  # the server's internals stay there
