"""The ipywidgets panel, driven through its buttons (``button.click()`` runs the same handlers a click
in the browser does) against real process-runtime instances, checked over HTTP."""

import os
import signal
import socket
import threading
import time

import numpy as np
import pytest
import requests
from nbserve_testing import frames, one_row_calls

import nbserve
from nbserve.widgets import Panel


def double(xs):
    return [2 * x for x in xs]


def health(url) -> int:
    try:
        return requests.get(url + "/health", timeout=5).status_code
    except requests.ConnectionError:
        return 0


def refresh_threads():
    return [t for t in threading.enumerate() if t.name == "nbserve-panel-refresh" and t.is_alive()]


def wait_for(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def make_panel(workspace):
    """Panels over the test's workspace; every one is closed afterwards and no refresh thread may leak."""
    made = []

    def make(**kwargs):
        panel = Panel(workspace, **kwargs)
        made.append(panel)
        return panel

    yield make
    for panel in made:
        panel.close()
    assert refresh_threads() == []


@pytest.fixture
def registered(workspace):
    return workspace.register(double, sample=[1, 2, 3], progress=False)


def cells(row):
    return [c.value for c in row.cells]


def test_rows_show_models_and_instances(workspace, make_panel, iris):
    from sklearn.base import clone

    X, y, lr = iris
    workspace.register(lr, name="iris", sample=X, progress=False)
    workspace.register(clone(lr).set_params(C=0.5).fit(X, y), name="iris", sample=X, progress=False)
    inst = workspace.serve("iris", runtime="process", progress=False)

    panel = make_panel()
    assert panel.model_names == ["iris"] and panel.instance_ids == [inst.id]
    name, methods, registered = cells(panel.model_row("iris"))
    assert "<b>iris</b> v2" in name and "2 versions" in name and methods == "predict, predict_proba"
    assert f"{len(workspace.get_model('iris').requirements)} requirements" in name
    assert registered.startswith(time.strftime("%Y-"))
    mv = workspace.get_model("iris")  # who registered it, and (a tooltip) where it runs
    assert f" · {mv.registered_by}@{mv.registered_host}" in registered and "1 running" in registered
    assert inst.url in registered
    id_, status, url, uptime = cells(panel.instance_row(inst.id))
    assert inst.id in id_ and "iris:2" in id_ and "running" in status and "process" in status
    assert f"href='{inst.url}'" in url and uptime.endswith(" s")
    assert "1 model · 1 of 1 instance running" in panel.status.value


def test_start_button_of_a_model_starts_an_instance_on_the_chosen_port(make_panel, registered, workspace):
    panel = make_panel()
    assert panel.instance_ids == [] and panel.instances.empty.layout.display != "none"
    row = panel.model_row("double")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    row.runtime.value, row.port.value = "process", str(port)
    row.start.click()

    assert panel.last_error is None and panel.progress.state == "done"
    [inst] = workspace.instances()
    assert inst.url == f"http://127.0.0.1:{port}" and panel.instance_ids == [inst.id]
    assert health(inst.url) == 200
    assert requests.post(inst.url + "/double", json={"data": [4]}, timeout=5).json() == {"data": [8]}
    assert panel.instances.empty.layout.display == "none"


def test_instance_buttons_stop_start_show_logs_and_remove(make_panel, registered, workspace):
    inst = workspace.serve("double", runtime="process", progress=False)
    panel = make_panel()
    row = panel.instance_row(inst.id)
    assert row.stop.disabled is False and row.start.disabled is True

    row.stop.click()
    assert health(inst.url) == 0
    assert "stopped" in cells(row)[1] and row.start.disabled is False and row.stop.disabled is True
    assert workspace.get_instance(inst.id).status == "stopped"

    row.start.click()
    url = workspace.get_instance(inst.id).url
    assert health(url) == 200 and "running" in cells(row)[1] and panel.last_error is None

    row.logs.click()
    log = panel.request_log
    assert inst.id in log.title.value and "starting double:1" in log.body.value
    assert log.box.layout.display != "none"

    row.remove.click()
    assert health(url) == 0
    assert workspace.instances() == [] and panel.instance_ids == []
    assert log.box.layout.display == "none"  # the logs of a removed instance go with it


def test_a_failed_start_shows_the_error_and_the_panel_stays_usable(make_panel, registered, workspace):
    panel = make_panel()
    row = panel.model_row("double")
    row.runtime.value = "process"

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        row.port.value = str(busy.getsockname()[1])
        row.start.click()
    assert panel.progress.state == "failed" and "is in use" in panel.last_error
    assert "is in use" in panel.progress.error.value and panel.progress.bar.bar_style == "danger"
    assert workspace.instances() == []

    row.port.value = "eighty"
    row.start.click()
    assert "port must be a number" in panel.last_error

    row.port.value = ""
    row.start.click()  # still usable
    assert panel.last_error is None and panel.progress.state == "done"
    [inst] = workspace.instances()
    assert health(inst.url) == 200 and row.start.disabled is False


def test_a_server_that_fails_to_start_shows_its_log_tail(make_panel, registered, workspace):
    inst = workspace.serve("double", runtime="process", progress=False)
    inst.stop()
    (registered.artifact_dir / "model.pkl").write_bytes(b"not the pickle that was registered")
    panel = make_panel()
    panel.instance_row(inst.id).start.click()
    assert panel.progress.state == "failed"
    assert "log tail" in panel.last_error and "did not start" in panel.last_error
    assert "log tail" in panel.progress.error.value
    assert panel.instance_row(inst.id).logs.disabled is False  # buttons work again after the failure


def test_auto_refresh_shows_what_the_runtime_says_and_stops_on_close(make_panel, registered, workspace):
    inst = workspace.serve("double", runtime="process", progress=False)
    panel = make_panel()
    panel.start_auto_refresh(0.1)
    assert panel.auto_refreshing and len(refresh_threads()) == 1

    # killed behind nbserve's back, as from a terminal: the panel finds out by itself
    pid = workspace.registry.get_instance(inst.id).handle["pid"]
    os.killpg(pid, signal.SIGKILL)
    assert wait_for(lambda: "exited" in cells(panel.instance_row(inst.id))[1])

    # a second instance started elsewhere (another kernel, the CLI) appears too
    other = workspace.serve("double", runtime="process", progress=False)
    assert wait_for(lambda: other.id in panel.instance_ids)

    thread = panel._thread
    panel.close()
    assert not thread.is_alive() and not panel.auto_refreshing and refresh_threads() == []


def test_displaying_starts_refreshing_and_a_vanished_view_stops_it(make_panel, registered):
    panel = make_panel(refresh_seconds=0.05)
    assert not panel.auto_refreshing  # built, not displayed: no thread
    bundle = panel._repr_mimebundle_()
    assert bundle["text/plain"] == "<nbserve panel>"
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert panel.auto_refreshing

    # the frontend counts views: one shown, then the cell is cleared
    panel._view_count = 1
    time.sleep(0.2)
    assert panel.auto_refreshing
    panel._view_count = 0
    assert wait_for(lambda: not panel.auto_refreshing, timeout=5)


def test_at_most_a_few_panels_refresh_at_once(make_panel, registered):
    from nbserve.widgets import MAX_AUTO_REFRESHING

    panels = [make_panel(refresh_seconds=10) for _ in range(MAX_AUTO_REFRESHING + 2)]
    for p in panels:
        p.start_auto_refresh()
    assert [p.auto_refreshing for p in panels] == [False] * 2 + [True] * MAX_AUTO_REFRESHING
    assert len(refresh_threads()) == MAX_AUTO_REFRESHING
    panels[0].refresh_button.click()  # a panel that stopped refreshing still refreshes on demand
    assert panels[0].model_names == ["double"]


def test_nbserve_panel_is_a_displayable_widget_of_the_default_workspace(home, make_panel, registered):
    import ipywidgets

    panel = nbserve.panel(refresh_seconds=60)
    try:
        assert isinstance(panel, ipywidgets.DOMWidget) and panel.model_names == ["double"]
        assert panel.workspace.home == home.resolve()
    finally:
        panel.close()


def test_closing_the_panel_closes_every_widget_it_made(make_panel, registered, workspace):
    from ipywidgets.widgets.widget import _instances  # ipywidgets' registry of open widget models

    before = set(_instances)
    panel = make_panel()
    inst = workspace.serve("double", runtime="process", progress=False)
    panel.refresh()  # a row comes...
    panel.instance_row(inst.id).logs.click()
    inst.remove()
    panel.refresh()  # ...and goes
    # shared layouts and styles keep a panel small (one model row with its batching controls, one instance
    # with its plots, the request log): about a hundred widget models, not one per cell and button
    assert len(set(_instances) - before) < 110
    panel.close()
    assert set(_instances) - before == set()


def test_progress_view_shows_steps_fractions_and_failures():
    from nbserve.notebook_progress import ProgressView

    view = ProgressView("building nbserve/iris:1")
    try:
        view("step 3/12: COPY artifacts", 0.25)
        assert view.bar.value == 0.25 and "step 3/12: COPY artifacts" in view.step.value
        view("readiness check")  # no fraction: the bar still moves, short of the end
        assert 0.25 < view.bar.value < 0.95 and view.steps == ["step 3/12: COPY artifacts", "readiness check"]
        view.fail("iris:1 did not start: exited\n--- log tail ---\nModuleNotFoundError: No module named 'sklearn'")
        assert view.state == "failed" and view.bar.bar_style == "danger"
        assert "failed: iris:1 did not start: exited" in view.step.value
        assert "No module named &#x27;sklearn&#x27;" in view.error.value  # the log tail, escaped
        view.begin("again")
        view.done("served")
        assert view.state == "done" and view.bar.value == 1.0 and view.error.value == ""
        assert repr(view) == "<nbserve progress>"  # stable text/plain for executed notebooks
    finally:
        for w in view.all_widgets():
            w.close()


def start_batching_from_the_panel(panel, name, max_batch, max_latency_ms):
    row = panel.model_row(name)
    assert row.max_batch.disabled and row.max_latency_ms.disabled  # the limits apply with the box ticked
    row.runtime.value = "process"
    row.batch.value = True
    assert not row.max_batch.disabled and not row.max_latency_ms.disabled
    row.max_batch.value, row.max_latency_ms.value = max_batch, max_latency_ms
    row.start.click()
    assert panel.last_error is None and panel.progress.state == "done"
    [inst] = panel.workspace.instances()
    return inst


def check_batches(panel, inst, max_batch, max_latency_ms):
    """GET /batching of the instance says what the panel asked for and that requests shared model calls;
    the instance's row shows it."""
    report = requests.get(inst.url + "/batching", timeout=10).json()
    assert (report["max_batch"], report["max_latency_ms"]) == (max_batch, max_latency_ms)
    assert report["requests"] >= 64 and report["requests_per_call"] > 1, report
    assert inst.batching == {"max_batch": max_batch, "max_latency_ms": max_latency_ms}
    panel.refresh()
    shown = panel.instance_row(inst.id).batching.value
    assert f"on · ≤ {max_batch} rows · {max_latency_ms:g} ms" in shown and "requests per model call" in shown


def test_the_panel_starts_a_batching_instance_of_a_linear_model_on_an_array(make_panel, workspace, diabetes):
    X, _, lr = diabetes
    workspace.register(lr, name="diabetes", sample=X, progress=False)
    panel = make_panel()
    assert panel.model_row("diabetes").batching_options() == {}  # off until the box is ticked
    inst = start_batching_from_the_panel(panel, "diabetes", 16, 25.0)
    np.testing.assert_allclose(inst.client(timeout=30).predict(X[:5]), lr.predict(X[:5]), rtol=1e-12)
    answers = one_row_calls(inst.url, "predict", X[:96], threads=16)
    np.testing.assert_allclose(np.concatenate(answers), lr.predict(X[:96]), rtol=1e-12, atol=1e-9)
    check_batches(panel, inst, 16, 25.0)


def test_the_panel_starts_a_batching_instance_of_gradient_boosting_on_a_mixed_frame(make_panel, workspace):
    frame, target = frames().rentals()
    model = frames().mixed_pipeline(frame, target)
    workspace.register(model, name="rentals", sample=frame, progress=False)
    panel = make_panel()
    inst = start_batching_from_the_panel(panel, "rentals", 32, 5.0)
    np.testing.assert_allclose(
        inst.client(timeout=30).predict_proba(frame.iloc[:20]), model.predict_proba(frame.iloc[:20]), rtol=1e-9
    )
    answers = one_row_calls(inst.url, "predict_proba", frame.iloc[:96], threads=16)
    np.testing.assert_allclose(np.concatenate(answers), model.predict_proba(frame.iloc[:96]), rtol=1e-9)
    check_batches(panel, inst, 32, 5.0)


def test_a_panel_start_without_the_box_ticked_does_not_batch(make_panel, registered, workspace):
    panel = make_panel()
    row = panel.model_row("double")
    row.runtime.value = "process"
    row.max_batch.value = 8  # ignored while the box is not ticked
    row.start.click()
    [inst] = workspace.instances()
    assert panel.last_error is None and inst.batching is None
    assert requests.get(inst.url + "/batching", timeout=10).status_code == 404
    assert "off" in panel.instance_row(inst.id).batching.value


def picky(xs):
    if xs == [13]:
        raise ValueError("unlucky number")
    return xs


def test_the_request_log_is_a_table_with_server_errors_highlighted(make_panel, workspace):
    inst = workspace.serve(picky, sample=[1, 2], runtime="process", progress=False)
    assert requests.post(inst.url + "/picky", json={"data": [1]}, timeout=10).status_code == 200
    assert requests.post(inst.url + "/picky", json={"data": "x"}, timeout=10).status_code in (400, 500)
    assert requests.post(inst.url + "/picky", json={"data": [13]}, timeout=10).status_code == 500
    panel = make_panel()
    log = panel.request_log
    assert wait_for(lambda: len([e for e in (panel.show_logs(inst.id) and log.entries) if e["kind"] == "request"]) >= 3)
    requests_seen = [e for e in log.entries if e["kind"] == "request"]
    first, *_, last = requests_seen
    assert (first["status"], first["rows"], first["error"]) == (200, 1, False)
    assert (last["status"], last["error"]) == (500, True) and last["request_id"] and last["latency_ms"] > 0
    html = log.body.value
    # one row per request: time, status, latency, rows, request id, and the raw line behind "raw"
    assert html.count("class='nbserve-log-request'") == len(requests_seen)
    assert f"<code>{last['request_id']}</code>" in html and "<summary" in html and "&quot;status&quot;:500" in html
    assert "data-status='500'" in html and "rgba(198, 40, 40" in html.split("data-status='500'")[0].rsplit("<tr", 1)[1]
    assert "server error" in log.title.value
    assert "starting picky" in html  # the runtime's own lines stay, between the requests
    raised = next(e for e in log.entries if e["kind"] == "server" and "raised ValueError" in e["text"])
    assert raised["error"]  # the model's failure, as the server logged it, is highlighted too
    # the panel's own polls of /drift (every refresh) are not requests to the model: not in the log
    assert all(e["path"] == "/picky" for e in requests_seen)


def test_plots_label_their_axes_and_say_when_there_is_nothing_to_draw():
    import io

    from PIL import Image

    from nbserve import plots

    empty = plots.traffic([])
    assert [a["note"] for a in empty.axes] == ["no requests yet"] * 3
    assert [(a["xlabel"], a["ylabel"]) for a in empty.axes] == [
        ("time", "requests / s"),
        ("time", "ms"),
        ("time", "% of requests"),
    ]
    now = time.time()
    calm = [{"time": now + i, "rate": 2.0, "p50_ms": 3.0, "p99_ms": 9.0, "error_rate": 0.0} for i in range(3)]
    figure = plots.traffic(calm)
    assert figure.axes[1]["legend"] == ["p50", "p99"] and figure.axes[2]["title"] == "errors (none)"
    assert "requests / s" in Image.open(io.BytesIO(figure.png)).info["Description"]  # the PNG says it too
    failing = [dict(p, error_rate=0.5) for p in calm]
    assert plots.traffic(failing).axes[2]["title"] == "errors"  # red only when there are errors

    day = {
        "name": "day",
        "role": "input",
        "method": None,
        "kind": "numeric",
        "rows": 150,
        "unit": plots.DATE_UNIT,
        "psi": 0.3,
        "status": "alert",
        "reference": {"shares": [0.5, 0.5, 0.0], "edges": [19723.5]},
        "live": {"shares": [0.2, 0.8, 0.0]},
    }
    proba = dict(day, name="predict_proba", role="output", method="predict_proba", rows=0, unit=None, psi=None)
    proba["status"] = "collecting"
    assert plots.bin_labels(day) == ["< 2024-01-01", "≥ 2024-01-01", "null"]
    drawn = plots.drift({"features": [day, proba], "window": {"rows": 150}})
    assert [a["xlabel"] for a in drawn.axes] == ["bins of day (date)", "bins of predict_proba"]
    assert all(a["ylabel"] == "% of rows" for a in drawn.axes)
    assert drawn.axes[1]["note"] == "predict_proba not called yet"
    assert "registration sample / live requests" in drawn.description


def test_the_remote_access_hint_is_for_a_browser_elsewhere_and_dismissible(
    make_panel, registered, workspace, monkeypatch
):
    import importlib

    from nbserve import browser_links

    panel_module = importlib.import_module("nbserve.widgets.panel")  # the module, not nbserve.widgets.panel()

    monkeypatch.setattr(panel_module, "_dismissed_hints", set())
    monkeypatch.setenv(browser_links.ENV_BASE_URL, "/user/alice/")
    monkeypatch.setenv(browser_links.ENV_PROXY, "0")  # no jupyter-server-proxy: only the direct address
    monkeypatch.setenv(browser_links.ENV_BROWSER_FILE, str(workspace.home / "browser.json"))
    workspace.serve("double", runtime="process", progress=False)
    browser_links.note_browser("127.0.0.1:8888")  # the Jupyter server was asked from this machine
    panel = make_panel()
    assert panel.hint_box.layout.display == "none"
    browser_links.note_browser("hub.example.org")  # ... and now from another one
    panel.refresh()
    assert panel.hint_box.layout.display != "none" and "jupyter-server-proxy" in panel.hint.value
    assert panel.hint.value.count("jupyter-server-proxy") == 1  # once for the panel, not per instance
    panel.dismiss_hint.click()
    assert panel.hint_box.layout.display == "none"
    panel.refresh()
    assert make_panel().hint_box.layout.display == "none"  # dismissed for the kernel, not one panel


def test_a_refresh_writes_the_registry_only_when_an_instance_changed(make_panel, registered, workspace):
    inst = workspace.serve("double", runtime="process", progress=False)
    reported = lambda: [(p["instance"], p["status"], p["reported"]) for p in workspace.registry.placements()]  # noqa: E731
    panel = make_panel()
    before = reported()
    for _ in range(3):
        panel.refresh()  # one reading each, nothing changed: nothing written
    assert reported() == before
    os.killpg(workspace.registry.get_instance(inst.id).handle["pid"], signal.SIGKILL)
    assert wait_for(lambda: panel.refresh() and reported()[0][1] == "exited")
    assert reported()[0][2] > before[0][2]  # the change was told
