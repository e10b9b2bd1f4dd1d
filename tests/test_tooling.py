"""The house's tooling, run by the README's test command (so in CI): ruff (lint and format) on the whole
tree, mypy on nbserve/, the import contracts of pyproject.toml (the layering, docs/ARCHITECTURE.md), and
eslint and prettier on js/. A failure names the files and says what to run to fix them."""

import subprocess
import sys
from pathlib import Path

import pytest
from nbserve_testing import need

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
JS = ROOT / "js"
DEV = "pip install -e '.[dev]' (the dev extra brings ruff, mypy and import-linter)"


def run(cmd, cwd=ROOT, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def tool(name: str) -> str:
    path = BIN / name
    need(path.exists(), name, DEV)
    return str(path)


def test_ruff_finds_nothing():
    out = run([tool("ruff"), "check", "--output-format", "concise", "."])
    files = sorted({line.split(":")[0] for line in out.stdout.splitlines() if line.count(":") >= 3})
    assert out.returncode == 0, (
        f"ruff check (rules in [tool.ruff.lint] of pyproject.toml) found problems:\n{out.stdout}{out.stderr}\n"
        f"Run `.venv/bin/ruff check --fix {' '.join(files)}` and fix by hand what it cannot."
    )


def test_the_tree_is_formatted_as_ruff_formats_it():
    out = run([tool("ruff"), "format", "--check", "."])
    files = [line.removeprefix("Would reformat: ") for line in out.stdout.splitlines() if line.startswith("Would")]
    assert out.returncode == 0, (
        f"{len(files)} file(s) are not formatted as `ruff format` would: run `.venv/bin/ruff format "
        f"{' '.join(files)}`\n{out.stderr}"
    )


def test_mypy_passes_on_nbserve():
    tool("mypy")
    out = run([sys.executable, "-m", "mypy"])  # files and options: [tool.mypy] in pyproject.toml
    assert out.returncode == 0, (
        f"mypy found type errors in nbserve/:\n{out.stdout}{out.stderr}\n"
        f"Run `.venv/bin/mypy` (configured in [tool.mypy] of pyproject.toml) and fix what it reports."
    )


def test_the_import_contracts_hold():
    out = run([tool("lint-imports"), "--no-cache"])
    assert out.returncode == 0, (
        f"an import crosses the layering (contracts in [tool.importlinter] of pyproject.toml, the picture in "
        f"docs/ARCHITECTURE.md):\n{out.stdout[out.stdout.find('Contracts') :]}{out.stderr}\n"
        f"Run `.venv/bin/lint-imports` to see it; call the core (workspace.py) instead of importing past it, "
        f"and keep nbserve/server/ free of the rest of nbserve."
    )


@pytest.fixture(scope="module")
def node_bin():
    path = JS / "node_modules" / ".bin"
    need(
        (path / "eslint").exists() and (path / "prettier").exists(),
        "js/node_modules with eslint and prettier",
        "run .ci/setup-browser (it runs `jlpm install` in js/)",
    )
    return path


def test_js_is_formatted_by_prettier(node_bin):
    out = run([str(node_bin / "prettier"), "--list-different", "src/**/*.ts", "test/**/*.ts", "style/**/*.css"], cwd=JS)
    files = out.stdout.split()
    assert out.returncode == 0, (
        f"not formatted as prettier formats them (js/.prettierrc): {files}{out.stderr}\n"
        f"Run `cd js && jlpm prettier` (or `node_modules/.bin/prettier --write {' '.join(files)}`)."
    )


def test_eslint_finds_nothing_in_js(node_bin):
    out = run([str(node_bin / "eslint"), "."], cwd=JS)
    assert out.returncode == 0, (
        f"eslint (js/eslint.config.mjs) found problems:\n{out.stdout}{out.stderr}\n"
        f"Run `cd js && jlpm eslint` (it fixes what it can) and fix the rest by hand."
    )
