"""A graph of stages through every face but the sidebar (tests/ui/test_sidebar_graph.py): %serve in a real
IPython shell (a re-run after one stage changed registers only that stage and swaps it in place), %nbserve and
the console script (stages, a graph of registered versions, update-stage), the panel's Graphs section (the
drawing says each stage's version, p50 and errors; its Update stage button) and the Jupyter REST routes.

The stages are small numpy functions (each proof takes a second); the model families run through graphs in
tests/models/test_graph.py and test_graph_docker.py."""

import json

import numpy as np
import pytest
import requests
from nbserve_testing import run_cli

import nbserve
from nbserve.magics import user_names
from nbserve.widgets import Panel

TIMEOUT = 30
X = np.arange(12, dtype="float64").reshape(4, 3)


def scale(x):
    return x * 2.0


def shift(x):
    return x + 1.0


def total(x):
    return x.sum(axis=1)


def shift_more(x):
    return x + 100.0


@pytest.fixture
def served(workspace):
    g = nbserve.chain(scale, shift, total)
    inst = workspace.serve(g, name="arith", sample=X, runtime="process", progress=False)
    return workspace, inst


def test_re_serving_a_graph_in_the_notebook_registers_only_the_changed_stage(ipython, home, capsys):
    shell = ipython
    try:
        shell.user_ns.update(nbserve=nbserve, X=X, scale=scale, shift=shift, total=total)
        result = shell.run_cell(
            "g = nbserve.chain(scale, shift, total)\ninst = %serve g --name arith --sample X --runtime process"
        )
        assert result.success, result.error_in_exec
        out = capsys.readouterr().out
        assert "stages: scale=arith.scale:1, shift=arith.shift:1, total=arith.total:1" in out
        inst = shell.user_ns["inst"]
        url = inst.url
        np.testing.assert_array_equal(inst.client().predict(X), total(shift(scale(X))))
        # a later cell changes one stage; the same %serve line registers it alone and swaps it in place
        result = shell.run_cell(
            "def shift(x):\n    return x + 100.0\n\n"
            "g = nbserve.chain(scale, shift, total)\ninst2 = %serve g --name arith --runtime process"
        )
        assert result.success, result.error_in_exec
        out = capsys.readouterr().out
        assert "stages: scale=arith.scale:1, shift=arith.shift:2, total=arith.total:1" in out
        inst2 = shell.user_ns["inst2"]
        assert inst2.id == inst.id and inst2.url == url and inst2.model == "arith:2"
        np.testing.assert_array_equal(inst2.client().predict(X), total(shift_more(scale(X))))
        ws = nbserve.Workspace(home)
        assert [v.id for v in ws.versions("arith.scale")] == ["arith.scale:1"]
        assert [v.id for v in ws.versions("arith.total")] == ["arith.total:1"]
        # %nbserve stages: the version each stage runs, with its calls
        result = shell.run_cell(f"%nbserve stages {inst.id}")
        out = capsys.readouterr().out
        assert result.success and "arith.shift:2" in out and "P50 MS" in out
        result = shell.run_cell(f"%nbserve update-stage {inst.id} shift arith.shift:1")
        out = capsys.readouterr().out
        assert result.success and "its stage shift is arith.shift:1" in out and "arith:3" in out
        np.testing.assert_array_equal(inst.client().predict(X), total(shift(scale(X))))
    finally:
        for name in user_names(shell):
            del shell.user_ns[name]
        from nbserve_testing import remove_instances

        remove_instances(nbserve.Workspace(home))


def test_the_console_script_lists_stages_composes_graphs_and_updates_a_stage(served, home):
    ws, inst = served
    code, out, err = run_cli(home, "stages", "arith")
    assert code == 0, err
    assert out.splitlines()[0] == "arith:1" and "(input)" in out and "arith.total:1" in out
    code, out, err = run_cli(home, "--json", "stages", inst.id)
    assert code == 0, err
    rows = json.loads(out)["stages"]
    assert [(r["stage"], r["model"], r["inputs"]) for r in rows] == [
        ("scale", "arith.scale:1", []),
        ("shift", "arith.shift:1", ["scale"]),
        ("total", "arith.total:1", ["shift"]),
    ]
    # a graph of registered versions: the first stage's example row flows through it
    code, out, err = run_cli(home, "graph", "short", "a=arith.scale:1", "b=arith.total:1")
    assert code == 0, err
    assert out.strip() == "short:1" and ws.get_model("short:1").stages == {"a": "arith.scale:1", "b": "arith.total:1"}
    ws.register(shift_more, name="other_shift", sample=X, progress=False)
    code, out, err = run_cli(home, "update-stage", inst.id, "shift", "other_shift:1")
    assert code == 0, err
    assert out.strip().endswith("its stage shift is other_shift:1")
    np.testing.assert_array_equal(inst.client().predict(X), total(shift_more(scale(X))))
    code, out, err = run_cli(home, "stages", "other_shift")
    assert code == 1 and "single model, not a graph" in err


def test_the_panel_draws_each_stage_with_its_version_latency_and_errors(served):
    ws, inst = served
    for _ in range(5):
        assert requests.post(inst.url + "/predict", json={"data": X.tolist()}, timeout=TIMEOUT).status_code == 200
    bad = requests.post(inst.url + "/stages/total/total", json={"data": "nope"}, timeout=TIMEOUT)
    assert bad.status_code == 400  # a stage called alone refuses bad input as the caller's
    panel = Panel(ws, refresh_seconds=0)
    try:
        section = panel.graphs
        assert list(section.views) == [inst.id] and section.box.layout.display == ""
        drawing = section.views[inst.id].drawing.value
        for stage, version in (("scale", "arith.scale:1"), ("shift", "arith.shift:1"), ("total", "arith.total:1")):
            assert f"{stage} ({version}, p50 " in drawing and ">" + version + "<" in drawing
        assert "0 errors" in drawing and "p50 -" not in drawing  # every stage was called, none failed
        assert section.views[inst.id].stage.options == ("scale", "shift", "total")
        # the Update stage button: a registered version of one stage, swapped in place
        ws.register(shift_more, name="other_shift", sample=X, progress=False)
        view = section.views[inst.id]
        view.stage.value, view.model.value = "shift", "other_shift:1"
        view.update.click()
        assert panel.last_error is None, panel.last_error
        assert ws.get_instance(inst.id).model == "arith:2"
        np.testing.assert_array_equal(inst.client().predict(X), total(shift_more(scale(X))))
        panel.refresh()
        assert ">other_shift:1<" in section.views[inst.id].drawing.value
    finally:
        panel.close()


@pytest.mark.usefixtures("home")
def test_a_panel_of_single_models_shows_no_graph_section(workspace):
    inst = workspace.serve(total, name="total", sample=X, runtime="process", progress=False)
    panel = Panel(workspace, refresh_seconds=0)
    try:
        assert panel.graphs.views == {} and panel.graphs.box.layout.display == "none"
        assert inst.stages().empty and list(inst.stages().columns)[:2] == ["stage", "model"]
    finally:
        panel.close()
