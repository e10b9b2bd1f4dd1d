"""%serve, %%serve and %nbserve through a real IPython InteractiveShell, against real process-runtime
instances: what the user reads, and what really answers over HTTP."""

import re
import socket

import numpy as np
import pytest
import requests
from IPython.core.completer import provisionalcompleter
from IPython.core.error import UsageError

from nbserve.magics import CellFailed, user_names
from nbserve.resources import Instance, ModelVersion
from nbserve.workspace import default_workspace


@pytest.fixture
def shell(ipython, home):
    ip = ipython
    yield ip
    for name in user_names(ip):
        del ip.user_ns[name]


@pytest.fixture
def run(shell, capsys):
    """run(code) -> (ExecutionResult, stdout, stderr) of one cell."""

    def run(code):
        capsys.readouterr()
        result = shell.run_cell(code)
        out, err = capsys.readouterr()
        return result, out, err

    return run


@pytest.fixture
def iris_ns(shell, iris):
    X, y, lr = iris
    shell.user_ns.update(X=X, y=y, lr=lr)
    return X, lr


def usage_error(result, err) -> str:
    """The single line a mistake must produce: a UsageError, no traceback."""
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    assert "Traceback" not in err
    # progress lines ("nbserve: ...") go to standard error too in a terminal shell
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("nbserve: ")]
    assert len(lines) == 1 and lines[0].startswith("UsageError: "), err
    return lines[0]


def health(url) -> int:
    try:
        return requests.get(url + "/health", timeout=5).status_code
    except requests.ConnectionError:
        return 0


def test_serve_a_classifier_prints_what_was_registered_and_returns_the_instance(run, shell, iris_ns):
    X, lr = iris_ns
    result, out, err = run("inst = %serve lr --sample X --runtime process")
    assert result.success, err
    inst = shell.user_ns["inst"]
    assert isinstance(inst, Instance) and inst.status == "running" and inst.model == "lr:1"
    lines = out.strip().splitlines()
    assert re.fullmatch(r"registered lr:1 \(methods: predict, predict_proba; \d+ pinned requirements\)", lines[-3]), out
    assert lines[-2] == "runtime: process"
    assert lines[-1] == f"instance {inst.id} is serving lr:1 at {inst.url}"
    assert lines[-1].endswith(inst.url)
    # the served model answers like the one in the kernel
    assert health(inst.url) == 200
    np.testing.assert_array_equal(inst.client().predict(X[:10]), lr.predict(X[:10]))
    np.testing.assert_allclose(inst.client().predict_proba(X[:3]), lr.predict_proba(X[:3]))


def test_auto_runtime_says_which_it_chose_in_full_once_per_kernel(run, shell, monkeypatch):
    import nbserve.workspace

    monkeypatch.setattr(nbserve.workspace, "_explained", set())  # a fresh kernel
    # No Docker engine at this address: 'auto' must fall back to a local process and say so.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    shell.user_ns["triple"] = lambda xs: [3 * x for x in xs]
    result, out, err = run("%serve triple --name triple")
    assert result.success, err
    assert "runtime: process (auto: no Docker engine answered; for the Docker runtime, start an engine" in out
    assert isinstance(result.result, Instance)
    assert result.result.client().predict([1, 2]) == [3, 6]
    # the next %serve of the kernel: one short line, and no contradiction about what was registered
    shell.user_ns["quadruple"] = lambda xs: [4 * x for x in xs]
    result, out, err = run("%serve quadruple --name quadruple")
    assert result.success, err
    assert "runtime: process (auto: no Docker engine answered)\n" in out and "for the Docker runtime" not in out
    result, out, err = run("%serve quadruple --name quadruple --runtime process")  # the same object again
    assert result.success, err
    # it updates the running instance in place (issue 22): nothing changed, so quadruple:1 keeps serving
    assert "new version)" not in out + err and "quadruple is unchanged: quadruple:1 keeps serving at" in out


def test_cell_magic_runs_the_cell_then_serves_what_it_defines(run, shell):
    result, out, err = run(
        "%%serve is_bad --sample texts --runtime process\n"
        "BAD = {'spam', 'scam'}\n"
        "texts = ['hello spam', 'hi there']\n"
        "def is_bad(texts):\n"
        "    return [any(word in BAD for word in t.split()) for t in texts]\n"
    )
    assert result.success, err
    inst = result.result
    assert isinstance(inst, Instance) and inst.model == "is_bad:1"
    # the cell ran in the user namespace, like a normal cell
    assert shell.user_ns["is_bad"](["a scam"]) == [True]
    assert "registered is_bad:1 (methods: is_bad; 1 pinned requirement)" in out
    assert f"instance {inst.id} is serving is_bad:1 at {inst.url}" in out
    assert inst.client().is_bad(["free spam now", "lunch?"]) == [True, False]


def test_cell_magic_error_in_the_body_is_a_normal_traceback_and_serves_nothing(run):
    result, out, err = run("%%serve f --runtime process\ndef f(x):\n    return x\n1 / 0\n")
    shown = re.sub(r"\x1b\[[0-9;]*m", "", out + err)  # without colours
    # the body's own traceback, pointing at the user's line; then one line saying nothing was served
    assert "ZeroDivisionError" in shown and re.search(r"----> 3\s+1 / 0", shown)
    assert "magics.py" not in shown
    assert isinstance(result.error_in_exec, CellFailed)  # the cell failed, so "Run All" stops here
    assert shown.rstrip().endswith("%%serve f: the cell raised an error, so nothing was served")
    assert default_workspace().models() == [] and default_workspace().instances() == []


def test_cell_magic_that_defines_nothing_of_that_name(run):
    result, out, err = run("%%serve scorer --runtime process\ndef score(x):\n    return x\n")
    line = usage_error(result, err)
    assert "the cell ran but did not define 'scorer'" in line


def test_unknown_variable_suggests_the_closest_names(run, iris_ns):
    line = usage_error(*run("%serve lrr --sample X")[::2])
    assert line == "UsageError: no variable named 'lrr' in the notebook; did you mean 'lr'?"
    line = usage_error(*run("%serve lr --sample x")[::2])  # case differs: still found
    assert "no sample named 'x'" in line and "did you mean 'X'" in line
    assert default_workspace().models() == []


def test_a_sample_that_does_not_fit_is_one_line(run, shell, iris_ns):
    shell.user_ns["wrong"] = np.zeros((4, 2))
    line = usage_error(*run("%serve lr --sample wrong --runtime process")[::2])
    assert "calling lr.predict on the first 5 rows of the sample failed" in line
    assert default_workspace().models() == []


def test_an_unpicklable_object_names_the_culprit(run, shell):
    run(
        "class Scorer:\n"
        "    def __init__(self):\n"
        "        self.weights = [1, 2]\n"
        "        self.lock = __import__('threading').Lock()\n"
        "    def predict(self, xs):\n"
        "        return [x * 2 for x in xs]\n"
        "scorer = Scorer()\n"
    )
    line = usage_error(*run("%serve scorer --runtime process")[::2])
    assert "cannot capture scorer: scorer.lock" in line and "cannot be pickled" in line


def test_docker_not_available_says_what_process_would_do(run, shell, monkeypatch):
    from importlib.util import find_spec

    from nbserve_testing import need

    need(
        find_spec("nbserve.runtimes.docker") is not None,
        "the docker runtime (nbserve/runtimes/docker.py)",
        "the Docker runtime issue provides it",
    )
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    shell.user_ns["double"] = lambda xs: [2 * x for x in xs]
    line = usage_error(*run("%serve double --name double --runtime docker")[::2])
    assert "double:1 is registered but not served" in line
    assert "`%serve double --runtime process` would serve it locally" in line


def test_a_port_in_use_is_one_line(run, shell):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        shell.user_ns["double"] = lambda xs: [2 * x for x in xs]
        line = usage_error(*run(f"%serve double --name double --runtime process --port {port}")[::2])
    assert f"port {port} on 127.0.0.1 is in use" in line
    # refused before the capture: nothing registered, nothing started
    assert default_workspace().instances() == [] and default_workspace().models() == []


def test_bad_options_are_usage_errors(run, shell):
    shell.user_ns["double"] = lambda xs: xs
    assert "invalid int value" in usage_error(*run("%serve double --port nine")[::2])
    assert "invalid choice: 'dokcer'" in usage_error(*run("%serve double --runtime dokcer")[::2])
    line = usage_error(*run("%nbserve frobnicate")[::2])
    assert "invalid choice: 'frobnicate'" in line and "`%nbserve --help` lists the commands" in line
    assert "no instance or model named 'ghost'" in usage_error(*run("%nbserve stop ghost")[::2])
    line = usage_error(*run("%serve double --runtime process --default-method triple")[::2])
    assert "default_method='triple' is not a method of double" in line


def test_no_start_registers_only_and_returns_the_model_version(run, shell, iris_ns):
    result, out, err = run("%serve lr --sample X --runtime process --no-start --methods predict_proba")
    assert result.success, err
    mv = result.result
    assert isinstance(mv, ModelVersion) and mv.id == "lr:1" and mv.methods == ["predict_proba"]
    assert "not started (--no-start)" in out
    assert default_workspace().instances() == []


def test_nbserve_list_instances_logs_stop_start_remove(run, shell):
    shell.user_ns["double"] = lambda xs: [2 * x for x in xs]
    inst = run("%serve double --name double --runtime process")[0].result
    url = inst.url

    out = run("%nbserve list")[1].splitlines()
    assert out[0].split() == ["MODEL", "LATEST", "VERSIONS", "METHODS", "REQUIREMENTS", "CREATED"]
    assert out[1].split()[:4] == ["double", "1", "1", "predict"]

    out = run("%nbserve instances")[1].splitlines()
    assert out[0].split() == ["ID", "MODEL", "RUNTIME", "STATUS", "URL", "UPTIME"]
    assert out[1].split()[:5] == [inst.id, "double:1", "process", "running", url]

    out = run("%nbserve logs double --tail 5")[1]
    assert out.startswith(f"--- {inst.id} (double:1, process, running) ---")
    assert "starting double" in out and "registered as double:1" in out

    out = run("%nbserve stop double")[1]
    assert out.strip() == f"stopped {inst.id} (double:1): stopped"
    assert health(url) == 0
    assert run("%nbserve instances")[1].splitlines()[1].split()[3:5] == ["stopped", "-"]

    out = run(f"%nbserve start {inst.id}")[1]
    inst.reload()
    assert out.strip().endswith(f"started {inst.id} (double:1) at {inst.url}")
    assert health(inst.url) == 200

    assert run("%nbserve remove double")[1].strip() == f"removed {inst.id} (double:1)"
    assert health(inst.url) == 0
    assert run("%nbserve instances")[1].startswith("no instances")


def test_nbserve_panel_displays_the_panel(run, shell, monkeypatch):
    from nbserve.widgets import Panel

    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    result, out, err = run("%nbserve panel")
    assert result.success, err
    try:
        assert len(shown) == 1 and isinstance(shown[0], Panel)
        assert shown[0].workspace.home == default_workspace().home
    finally:
        for panel in shown:
            panel.close()


def test_tab_completion_offers_notebook_variables(shell):
    shell.user_ns.update(lr_model=1, lr_other=2, X_train=3)

    def complete(line):
        with provisionalcompleter():
            return [c.text for c in shell.Completer.completions(line, len(line))]

    assert {"lr_model", "lr_other"} <= set(complete("%serve lr"))
    assert {"lr_model", "lr_other"} <= set(complete("inst = %serve lr"))
    assert "X_train" in complete("%serve lr_model --sample X")
    assert complete("%serve lr_model --runtime p") == ["process"]
    assert {"stop", "start"} <= set(complete("%nbserve st"))


@pytest.fixture
def docker_engine(home):
    """A Docker engine and its base image (CI makes both with .ci/setup-docker); what the test builds
    (containers and images labelled with its registry home) is removed afterwards."""
    import os

    from nbserve_testing import base_image, need_docker

    client = need_docker()
    os.environ.setdefault("NBSERVE_BASE_IMAGE", base_image())
    yield client
    mine = {"label": f"nbserve.home={home.resolve()}"}
    for container in client.containers.list(all=True, filters=mine):
        container.remove(force=True)
    for image in client.images.list(filters=mine):
        if "nbserve.deps" not in image.labels:  # dependency layers are shared by lock hash: keep them
            client.images.remove(image.id, force=True)
    client.close()


@pytest.mark.docker
def test_docker_no_start_builds_the_image_and_serve_runs_it(run, shell, docker_engine):
    run("def double(xs):\n    return [2 * x for x in xs]\nxs = [1, 2, 3]\n")
    result, out, err = run("mv = %serve double --sample xs --runtime docker --no-start")
    assert result.success, err
    mv = shell.user_ns["mv"]
    assert isinstance(mv, ModelVersion) and mv.id == "double:1"
    assert re.search(r"^built image nbserve/double:1 \(\d+ MB\)", out, re.M), out
    assert "runtime: docker\n" in out and default_workspace().instances() == []

    result, out, err = run("inst = %serve double --runtime docker")
    assert result.success, err
    inst = shell.user_ns["inst"]
    assert inst.runtime == "docker" and "runtime: docker" in out and out.rstrip().endswith(inst.url)
    assert health(inst.url) == 200 and inst.client().double([5]) == [10]


def test_expressions_as_sample_need_quotes_when_they_have_spaces(run, shell):
    shell.user_ns["double"] = lambda xs: [2 * x for x in xs]
    line = usage_error(*run("%serve double --name double --sample [1, 2] --no-start")[::2])
    assert "unrecognized arguments: 2]" in line and "quote an expression that has spaces" in line
    result, out, err = run('%serve double --name double --sample "[1, 2]" --no-start --runtime process')
    assert result.success, err
    assert result.result.signature["predict"]["input"]["type"] == "list"  # a lambda serves as predict


def test_serve_batch_options_reach_the_server(run, shell, iris_ns):
    X, lr = iris_ns
    result, out, err = run("inst = %serve lr --sample X --runtime process --batch --max-batch 8 --max-latency-ms 5")
    assert result.success, err
    inst = shell.user_ns["inst"]
    report = requests.get(inst.url + "/batching", timeout=10).json()
    assert (report["max_batch"], report["max_latency_ms"]) == (8, 5.0)
    np.testing.assert_array_equal(inst.client().predict(X[:10]), lr.predict(X[:10]))
    result, out, err = run("%serve lr --sample X --runtime process --max-batch 8")
    assert "max_batch and max_latency_ms apply with batch=True" in out + err

    # a stopped instance starts again with other limits (batching stays on), or without batching
    assert run(f"%nbserve stop {inst.id}")[0].success
    result, out, err = run(f"%nbserve start {inst.id} --max-batch 4")
    assert result.success and f"started {inst.id}" in out, err
    report = requests.get(inst.reload().url + "/batching", timeout=10).json()
    assert (report["max_batch"], report["max_latency_ms"]) == (4, 5.0)
    line = usage_error(*run(f"%nbserve start {inst.id} --max-batch x")[::2])
    assert "argument --max-batch: invalid int value: 'x'" in line
    assert run(f"%nbserve stop {inst.id}")[0].success
    assert run(f"%nbserve start {inst.id} --no-batch")[0].success
    assert requests.get(inst.reload().url + "/batching", timeout=10).status_code == 404
    np.testing.assert_array_equal(inst.client(timeout=30).predict(X[:10]), lr.predict(X[:10]))
