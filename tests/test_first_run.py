"""The README's first command on the three machines a new user may have: no Docker engine; an engine but
no registry to pull the base image from (behind a proxy, and on CI machines); an engine with a usable base
image. ``examples/serve_diabetes.py`` must serve and answer on each, choosing the runtime that can work and
saying why; its standard output carries only what the script prints (progress goes to standard error)."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "serve_diabetes.py"
NOT_PULLABLE = "nbserve-test/no-such-python:3.11"  # no registry has it: "an engine, but no registry"


def run_script(args, home, timeout=600, **env):
    environ = {**os.environ, "NBSERVE_HOME": str(home), **env}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=environ, cwd=ROOT
    )


def served(proc, runtime):
    """The example's two lines on stdout, nothing else; the prediction matches (the script asserts it)."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout
    assert re.fullmatch(rf"diabetes:1 at http://127\.0\.0\.1:\d+ \({runtime}\) predicts \[.*\]", lines[0]), lines
    assert re.fullmatch(r"stopped and removed diabetes-\w+ \(--keep leaves it running\)", lines[1]), lines
    return proc.stderr


def test_no_engine(home, tmp_path):
    err = served(run_script([EXAMPLE], home, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock"), "process")
    assert "nbserve: runtime 'auto' chose process: no Docker engine answered; for the Docker runtime" in err


def test_engine_but_no_registry(home):
    from nbserve_testing import base_image, need

    from nbserve.runtimes.docker import engine_available

    need(engine_available(), "a Docker engine", "run .ci/setup-docker as root")
    err = served(run_script([EXAMPLE], home, NBSERVE_BASE_IMAGE=NOT_PULLABLE), "process")
    assert (
        f"nbserve: runtime 'auto' chose process: the base image {NOT_PULLABLE} is not on this machine and "
        f"cannot be pulled" in err
    )
    assert err.count("runtime 'auto' chose") == 1
    # the engine runs: the line names the local images with the kernel's Python and how to pick one, and
    # never asks to start an engine
    [line] = [line for line in err.splitlines() if "runtime 'auto' chose" in line]
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"local images with Python {minor} that could serve: " in line and base_image() in line, line
    assert f"NBSERVE_BASE_IMAGE={base_image()}" in line or "NBSERVE_BASE_IMAGE=" in line, line
    assert "start an engine" not in err and "systemctl" not in err, err
    # the "no" is remembered in the home: the next run does not ask the registry again
    assert NOT_PULLABLE in (home / "docker" / "pullable.json").read_text()


@pytest.mark.docker
@pytest.mark.timeout(900)  # a first image build in a fresh home
def test_engine_and_base_image(home):
    from nbserve_testing import base_image, need_docker

    need_docker().close()
    err = served(run_script([EXAMPLE], home, NBSERVE_BASE_IMAGE=base_image()), "docker")
    assert "nbserve: runtime 'auto' chose docker" in err


def test_explicit_docker_still_fails_loudly_with_the_whole_explanation(workspace, diabetes):
    from nbserve.errors import BuildError, DockerUnavailableError
    from nbserve.runtimes.docker import engine_available

    X, y, lr = diabetes
    expected = BuildError if engine_available() else DockerUnavailableError
    with pytest.raises(expected) as err:
        workspace.serve(lr, name="diabetes", sample=X, runtime="docker", base_image=NOT_PULLABLE, progress=False)
    message = str(err.value)
    assert "runtime='process'" in message or "NBSERVE_BASE_IMAGE" in message
    assert workspace.instances() == []


def test_progress_goes_to_standard_error_and_progress_false_silences_it(home):
    script = textwrap.dedent(
        """
        import sys
        import nbserve
        quiet = len(sys.argv) > 1
        def triple(xs):
            return [3 * x for x in xs]
        mv = nbserve.register(triple, sample=[1, 2], **({"progress": False} if quiet else {}))
        print(mv.version)
        """
    )
    path = home.parent / "register.py"
    path.write_text(script)
    loud = run_script([path], home)
    assert loud.returncode == 0, loud.stderr
    assert loud.stdout == "1\n"  # a caller can parse what the script prints
    assert "nbserve: registered triple:1" in loud.stderr
    quiet = run_script([path, "quiet"], home)
    assert quiet.returncode == 0 and quiet.stdout == "1\n" and quiet.stderr == "", quiet.stderr
