"""What a person sees, at 1280x800 and 1600x1000, with JupyterLab's file browser open and closed: the notebook
panel (``nbserve.panel()``) and the Model serving sidebar fit (every button inside the visible area, no text of
a button or input cut), the browser console stays clean through a start, traffic, a stop and a remove, and
every plot says what its axes show. Swagger UI's "Try it out" answers at once with the registered sample's
first row. One `jupyter lab`, one registry and one Chromium for the whole module (browser tests are slow).

Screenshots go to .ci/out/screenshots/ (CI keeps .ci/out/): the window at each size as checked
(panel-<size>-browser.png with the file browser open, panel-<size>-wide.png without, sidebar-<size>.png), and
for the README panel.png (the whole panel), sidebar.png (an instance with traffic), docs.png (Swagger's answer);
`NBSERVE_UPDATE_SCREENSHOT=1` copies those three into docs/ (panel.png, sidebar.png, swagger.png)."""

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from nbserve_testing import frames
from observability_models import shifted_array
from test_panel_ui import notebook
from test_sidebar import DOCS, chromium, running_lab

pytestmark = pytest.mark.browser

OUT = Path(__file__).resolve().parents[2] / ".ci" / "out" / "screenshots"
SIZES = [(1280, 800), (1600, 1000)]

# Every button, input and select of `root` inside the area the user sees (the output area or the sidebar,
# clipped to the window), and none whose text is cut (scrollWidth over clientWidth).
MEASURE = """
(root) => {
  const area = (root.closest('.jp-OutputArea-output') || root).getBoundingClientRect();
  const right = Math.min(area.right, window.innerWidth);
  const name = el => (el.innerText || el.value || el.getAttribute('aria-label') || el.title || el.tagName).trim();
  const out = {outside: [], cut: [], checked: 0, width: Math.round(area.width)};
  for (const el of root.querySelectorAll('button, input, select')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;  // not shown (a hidden part)
    out.checked += 1;
    if (r.left < area.left - 1 || r.right > right + 1) {
      const px = v => Math.round(v);
      out.outside.push(`${name(el)} [${px(r.left)}..${px(r.right)}] outside [${px(area.left)}..${px(right)}]`);
    }
    if (el.type !== 'checkbox' && el.scrollWidth > el.clientWidth + 1) {
      out.cut.push(`${name(el)}: ${el.scrollWidth} > ${el.clientWidth}`);
    }
  }
  if (root.scrollWidth > root.clientWidth + 1) out.cut.push(`the whole: ${root.scrollWidth} > ${root.clientWidth}`);
  return out;
}
"""

CELLS = ["import nbserve\np = nbserve.panel(refresh_seconds=2)\np"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One registry for the module (its lab, its kernel and the test process share it)."""
    path = tmp_path_factory.mktemp("faces") / "nbserve-home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBSERVE_HOME", str(path))
        yield path
    from nbserve_testing import remove_instances

    from nbserve.workspace import Workspace

    remove_instances(Workspace(path))


@pytest.fixture(scope="module")
def workspace(home):
    from nbserve.workspace import Workspace

    return Workspace(home)


@pytest.fixture(scope="module")
def lab(home, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab")
    with running_lab(home, tmp) as server:
        (tmp / "root" / "panel.ipynb").write_text(notebook(CELLS))
        yield server


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(autouse=True)
def jp_asyncio_loop():
    """pytest-jupyter's fixture of this name (autouse) closes the current event loop after each test: here that is
    Playwright's, running for the whole module's browser, which then fails the teardown."""
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup():
    """pytest-jupyter's (autouse) cleans up its own ServerApp on the loop above; this module starts a real
    `jupyter lab` (the lab fixture) and no ServerApp of pytest-jupyter's."""
    yield


@pytest.fixture(scope="module")
def served(workspace, diabetes):
    """Two model families served as a notebook would: a linear model on an array, gradient boosting on a
    mixed-type DataFrame (its predict_proba never called: its drift plot says so), with traffic."""
    X, _, lr = diabetes
    frame, target = frames().rentals()
    gbm = frames().mixed_pipeline(frame, target)
    lin = workspace.serve(lr, name="diabetes", sample=X, runtime="process", progress=False)
    mixed = workspace.serve(gbm, name="rentals", sample=frame, runtime="process", progress=False)
    rows = shifted_array(X).tolist()  # two inputs shifted: the drift view has something to show in red
    with requests.Session() as s:
        for i in range(0, 300, 3):
            assert s.post(f"{lin.url}/predict", json={"data": rows[i : i + 3]}, timeout=10).status_code == 200
        assert s.post(f"{lin.url}/predict", json={"data": [[1.0]]}, timeout=10).status_code == 400
        records = json.loads(frame.iloc[:120].to_json(orient="records", date_format="iso"))
        for i in range(0, 120, 4):
            assert s.post(f"{mixed.url}/predict", json={"data": records[i : i + 4]}, timeout=10).status_code == 200
    return {"diabetes": (lin, lr, X), "rentals": (mixed, gbm, frame)}


class Console:
    """Errors the page reports: console errors, uncaught exceptions, and answers with an error status."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("response", lambda r: r.status >= 400 and self.errors.append(f"{r.status} {r.request.method} {r.url}"))


def toggle_file_browser(page, want_open: bool):
    from playwright.sync_api import expect

    browser_panel = page.locator("#filebrowser")
    if browser_panel.is_visible() != want_open:
        page.locator(".lm-TabBar-tab[data-id='filebrowser']").click()
    expect(browser_panel).to_be_visible() if want_open else expect(browser_panel).to_be_hidden()


def fits(locator, what: str) -> dict:
    found = locator.evaluate(MEASURE)
    assert found["checked"] >= 3, (what, found)
    assert not found["outside"], f"{what}: buttons or inputs outside the visible area: {found['outside']}"
    assert not found["cut"], f"{what}: text cut: {found['cut']}"
    return found


def test_panel_and_sidebar_fit_plots_say_their_axes_and_the_console_stays_clean(
    lab, browser, workspace, served, tmp_path
):
    from playwright.sync_api import expect

    OUT.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    console = Console(page)
    page.goto(lab.url("lab/tree/panel.ipynb?reset"))
    expect(page.get_by_text("| Idle")).to_be_visible(timeout=90_000)
    page.locator(".jp-Notebook").click()
    page.keyboard.press("Control+Enter")
    panel = page.locator(".nbserve-notebook-panel")
    lin, mixed = served["diabetes"][0], served["rentals"][0]
    expect(panel.get_by_text(mixed.id).first).to_be_visible(timeout=60_000)
    expect(panel.locator("img[alt*='drift of each feature']")).to_have_count(2, timeout=30_000)
    # a refresh or two later the traffic plots have points (two snapshots make one)
    expect(panel.locator("img[alt*='legend p50 / p99']")).to_have_count(2, timeout=30_000)

    # every plot of the panel says what it draws and what each axis shows (alt text from the figure)
    alts = [img.get_attribute("alt") for img in panel.locator("img").all()]
    assert len(alts) == 4, alts  # traffic and drift of each running instance
    for alt in alts:
        assert ": x " in alt and ", y " in alt, alt
    traffic = next(a for a in alts if a.startswith("traffic"))
    assert "y requests / s" in traffic and "legend p50 / p99" in traffic and "y % of requests" in traffic
    assert any("predict_proba not called yet" in a for a in alts)  # a method nobody called says so
    assert any("x bins of day (date)" in a for a in alts)  # date bins are labelled as dates

    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        for browser_open in (True, False):
            toggle_file_browser(page, browser_open)
            page.wait_for_timeout(300)  # the notebook relays out
            where = f"panel at {width}x{height}, file browser {'open' if browser_open else 'closed'}"
            fits(panel, where)
            panel.scroll_into_view_if_needed()
            page.screenshot(path=str(OUT / f"panel-{width}x{height}-{'browser' if browser_open else 'wide'}.png"))
    # the whole panel in one picture: a window tall enough for the notebook to render all of it
    page.set_viewport_size({"width": 1600, "height": 3000})
    toggle_file_browser(page, True)
    page.wait_for_timeout(500)
    box = panel.bounding_box()
    page.screenshot(path=str(OUT / "panel.png"), clip={**box, "height": min(box["height"], 2900)})

    # the sidebar at both sizes (it takes the file browser's place)
    page.locator(".lm-TabBar-tab[data-id='nbserve-sidebar']").click()
    sidebar = page.locator("#nbserve-sidebar")
    expect(sidebar.get_by_role("listitem", name="Model rentals")).to_be_visible()
    monitor = sidebar.get_by_label(f"Monitoring of {lin.id}")
    expect(monitor.locator("svg[role='img']").first).to_be_visible(timeout=30_000)
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        fits(sidebar, f"sidebar at {width}x{height}")
        page.screenshot(path=str(OUT / f"sidebar-{width}x{height}.png"))
    # collapsed, the sidebar asks the server nothing (its poll stands by); shown again, it reads at once
    asked: list[str] = []
    page.on("request", lambda r: "/nbserve/api/overview" in r.url and asked.append(r.url))
    page.locator(".lm-TabBar-tab[data-id='nbserve-sidebar']").click()
    expect(sidebar).to_be_hidden()
    asked.clear()
    page.wait_for_timeout(7_000)  # more than one interval of the poll
    assert asked == []
    page.locator(".lm-TabBar-tab[data-id='nbserve-sidebar']").click()
    expect(sidebar).to_be_visible()
    page.wait_for_timeout(1_500)
    assert len(asked) >= 1
    labels = [el.get_attribute("aria-label") for el in sidebar.locator("svg[role='img']").all()]
    assert len(labels) >= 3 + 10, labels  # three traffic charts, a drift chart per feature
    for label in labels:
        assert " x " in label and ", y " in label, label
    assert sidebar.locator(".nbserve-hint").is_hidden()  # a browser on this machine: no remote-access hint

    # start, traffic, stop and remove from the sidebar: the console stays clean all along
    X = served["diabetes"][2]
    model = sidebar.get_by_role("listitem", name="Model diabetes")
    model.get_by_role("combobox", name="Runtime for diabetes").select_option("process")
    before = {i.id for i in workspace.instances()}
    model.get_by_role("button", name="Start").click()
    instances = sidebar.get_by_role("list", name="Model instances")
    deadline = time.monotonic() + 60
    while not ({i.id for i in workspace.instances()} - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    [new] = {i.id for i in workspace.instances()} - before
    item = instances.get_by_role("listitem", name=re.compile(f"{new}$"))
    expect(item.get_by_text("running", exact=True)).to_be_visible(timeout=60_000)
    inst = workspace.get_instance(new)
    for i in range(40):
        assert requests.post(f"{inst.url}/predict", json={"data": X[i : i + 1].tolist()}, timeout=10).ok
    expect(item.get_by_label(f"Monitoring of {new}").locator("svg").first).to_be_visible(timeout=30_000)
    # two polls later its charts have the traffic: the sidebar's picture
    expect(item.locator(".nbserve-spark-title").first).not_to_contain_text(": -", timeout=20_000)
    page.wait_for_timeout(5_500)
    page.set_viewport_size({"width": 1280, "height": 2200})  # the whole instance, charts and all
    page.wait_for_timeout(300)
    item.screenshot(path=str(OUT / "sidebar.png"))
    page.set_viewport_size({"width": 1280, "height": 800})
    # its request log as a table: a row per request (status, latency, rows, request id), the raw line on demand
    item.get_by_role("button", name="Logs").click()
    log = page.get_by_role("log", name=f"Logs of {new}")
    expect(log.locator("tr.nbserve-log-request")).to_have_count(40, timeout=20_000)
    first = log.locator("tr.nbserve-log-request").first
    expect(first.locator("td").nth(1)).to_contain_text("200 /predict")
    expect(first.locator("td").nth(3)).to_have_text("1")
    first.locator("summary").click()
    expect(first.locator("details code")).to_contain_text('"status":200')
    expect(log.locator("tr.nbserve-log-server", has_text="starting diabetes:1")).to_have_count(1)
    page.screenshot(path=str(OUT / "sidebar-logs.png"))
    item.get_by_role("button", name="Stop").click()
    expect(item.get_by_text("stopped", exact=True)).to_be_visible(timeout=30_000)
    page.wait_for_timeout(6_000)  # a poll or two after the stop: nothing asks the stopped instance for metrics
    item.get_by_role("button", name="Remove").click()
    expect(item).to_have_count(0, timeout=30_000)
    expect(log).to_have_count(0)  # its log view went with it (it would ask for a log that is gone)
    assert new not in {i.id for i in workspace.instances()}
    page.wait_for_timeout(2_500)
    assert console.errors == [], console.errors
    context.close()


def test_swagger_try_it_out_answers_with_the_registered_sample(browser, served):
    """/docs of each model: "Try it out" and "Execute" with nothing typed post the sample's first row, and the
    answer is the kernel's; no request of the page fails (no favicon 404)."""
    from playwright.sync_api import expect

    OUT.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    console = Console(page)
    for name, method in (("diabetes", "predict"), ("rentals", "predict_proba")):
        inst, model, sample = served[name]
        page.goto(f"{inst.url}/docs")
        operation = page.locator(".opblock-post", has_text=f"/{method}").first
        operation.locator(".opblock-summary").click()
        operation.get_by_role("button", name="Try it out").click()
        operation.get_by_role("button", name="Execute").click()
        live = operation.locator(".live-responses-table tr.response")
        expect(live.locator(".response-col_status")).to_have_text("200")
        answer = json.loads(live.locator(".response-col_description pre").first.inner_text())
        first = sample.iloc[:1] if hasattr(sample, "iloc") else sample[:1]
        np.testing.assert_allclose(answer["data"], getattr(model, method)(first), rtol=1e-9)
        if name == "diabetes":
            operation.screenshot(path=str(OUT / "docs.png"))
    assert console.errors == [], console.errors
    context.close()


def test_the_readme_pictures_come_from_these_screenshots():
    """NBSERVE_UPDATE_SCREENSHOT=1 copies the screenshots of this run into docs/ (the README shows those)."""
    pictures = {
        "panel.png": "panel.png",
        "sidebar.png": "sidebar.png",
        "swagger.png": "docs.png",
    }
    for picture, shot in pictures.items():
        assert (OUT / shot).stat().st_size > 10_000, shot
        if os.environ.get("NBSERVE_UPDATE_SCREENSHOT"):
            shutil.copy(OUT / shot, DOCS / picture)
        assert (DOCS / picture).exists(), f"docs/{picture}: run with NBSERVE_UPDATE_SCREENSHOT=1 once"
