"""examples/serve_diabetes.py run as a new user runs it, several times in one home: what it prints, and what
it leaves running. By default it removes the server it started; with --keep it leaves one server (used again
by the next --keep run, never a second one) and prints a stop command that works without an activated venv.
No Docker engine at the address it is given, so "auto" serves it as a local process."""

import os
import re
import subprocess
import sys
from pathlib import Path

import requests
from nbserve_testing import run_cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "serve_diabetes.py"
PREDICTS = re.compile(r"diabetes:1 at (http://127\.0\.0\.1:\d+) \(process\) predicts \[[-0-9., ]+\]")


def run_example(home, tmp_path, *args):
    env = {**os.environ, "NBSERVE_HOME": str(home), "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines(), proc.stderr


def instances(home) -> list[str]:
    code, out, err = run_cli(home, "instances")
    assert code == 0, err
    return out.splitlines()[1:]  # under the header; "no instances" is a line of its own


def test_the_example_twice_then_kept_leaves_one_server_and_a_stop_command_that_works(home, tmp_path):
    # 1. a plain run: the answer, then it removes the server it started and says so
    lines, err = run_example(home, tmp_path)
    assert len(lines) == 2 and PREDICTS.fullmatch(lines[0]), lines
    [removed] = re.findall(r"^stopped and removed (diabetes-\w+) \(--keep leaves it running\)$", lines[1])
    assert instances(home) == [] and run_cli(home, "instances")[1].strip() == "no instances"
    assert err.count("no Docker engine answered") == 1  # the fallback explained once, in full
    assert "new version)" not in err  # no "(a new version)" before "unchanged since diabetes:1"

    # 2. again, keeping it: the same version (no diabetes:2), one server left running, and how to stop it
    lines, err = run_example(home, tmp_path, "--keep")
    assert len(lines) == 2 and PREDICTS.fullmatch(lines[0]), lines
    url = PREDICTS.fullmatch(lines[0]).group(1)
    kept, command = re.fullmatch(r"left running: (diabetes-\w+); stop it with: (.+) stop \1", lines[1]).groups()
    assert kept != removed
    assert requests.get(url + "/health", timeout=10).json() == {"status": "ok", "model": "diabetes:1"}
    [row] = instances(home)
    assert row.split()[:4] == [kept, "diabetes:1", "process", "running"]
    assert [line.split()[0] for line in run_cli(home, "versions", "diabetes")[1].splitlines()[1:]] == ["diabetes:1"]

    # 3. kept again: the running server is used again, not a second one started
    lines, err = run_example(home, tmp_path, "--keep")
    assert PREDICTS.fullmatch(lines[0]).group(1) == url
    assert lines[1] == f"left running: {kept} (already running: used again); stop it with: {command} stop {kept}"
    assert [r.split()[0] for r in instances(home)] == [kept]

    # the printed command works as typed, from a shell whose PATH has no venv in it
    stop = subprocess.run(
        f"{command} stop {kept}",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"NBSERVE_HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    assert stop.returncode == 0 and stop.stdout.strip() == f"{kept} stopped", stop.stderr
    assert instances(home)[0].split()[3] == "stopped"
