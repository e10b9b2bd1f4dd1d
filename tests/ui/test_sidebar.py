"""The "Model serving" sidebar in a real `jupyter lab`, driven by Python Playwright in Debian's Chromium:
open it, see a model registered from Python, start an instance (process runtime) from the sidebar, call it
over HTTP, stop it from the sidebar. Saves .ci/out/screenshots/sidebar-start.png.

The fixtures start `jupyter lab` per test on a free 127.0.0.1 port, with a token, a temp root dir, the
test's registry ($NBSERVE_HOME) and no news popup. Never `playwright install`: it downloads a browser,
which cannot work on these machines; .ci/setup-browser installs Chromium with apt-get and builds the
extension."""

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from nbserve_testing import need

import nbserve

pytestmark = pytest.mark.browser


DOCS = Path(__file__).resolve().parents[2] / "docs"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# No news or update checks: they would pop a notification over the page (and try the network).
SETTINGS_OVERRIDES = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}
SETUP = "run .ci/setup-browser (as root: installs Chromium, builds and links the JupyterLab extension)"


def labextension_installed() -> bool:
    from jupyter_core.paths import jupyter_path

    return any((Path(p) / "nbserve" / "package.json").exists() for p in jupyter_path("labextensions"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, port: int, token: str, log: Path, base_url: str = "/"):
        self.origin = f"http://127.0.0.1:{port}"
        self.base = f"{self.origin}{base_url}"
        self.token = token
        self.log = log

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running_lab(home, tmp_path, base_url="/", extra_args=()):
    """A `jupyter lab` on a free 127.0.0.1 port with a token, its own config/data/runtime dirs, the test's
    registry and no news popup; ``base_url`` as JupyterHub gives its single-user servers."""
    need(Path(CHROMIUM).exists(), "Chromium", SETUP)
    need(labextension_installed(), "the built nbserve JupyterLab extension", SETUP)
    port, token = free_port(), secrets.token_hex(16)
    root, settings, log = tmp_path / "root", tmp_path / "app-settings", tmp_path / "jupyter-lab.log"
    root.mkdir()
    settings.mkdir()
    (settings / "overrides.json").write_text(json.dumps(SETTINGS_OVERRIDES))
    env = dict(
        os.environ,
        NBSERVE_HOME=str(home),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
    )
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--allow-root",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.base_url={base_url}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.app_settings_dir={settings}",
        f"--LabApp.user_settings_dir={tmp_path / 'user-settings'}",
        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
        *extra_args,
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Lab(port, token, log, base_url)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"jupyter lab exited ({proc.returncode}):\n{server.log_tail()}"
            try:
                with urllib.request.urlopen(server.url("api/status"), timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, f"jupyter lab did not answer in 90 s:\n{server.log_tail()}"
            time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture
def lab(home, tmp_path):
    with running_lab(home, tmp_path) as server:
        yield server


@contextlib.contextmanager
def chromium():
    """Debian's Chromium driven by Python Playwright (never `playwright install`)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(lab):
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=2)
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page


def open_sidebar_from_the_palette(page):
    page.get_by_role("tab", name="Launcher").click()  # keyboard focus in the app, for the shortcut
    page.keyboard.press("Control+Shift+C")
    page.locator(".lm-CommandPalette-input").fill("Model serving")
    page.get_by_role("menuitem", name="Model serving: open panel").click()
    sidebar = page.locator("#nbserve-sidebar")
    from playwright.sync_api import expect

    expect(sidebar.get_by_role("heading", name="Model serving")).to_be_visible()
    return sidebar


def save_screenshot(page, sidebar, path):
    """The sidebar with the app's left tab bar, cut below the instances (the rest is empty space)."""
    top = sidebar.bounding_box()
    bottom = sidebar.get_by_role("list", name="Model instances").bounding_box()
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(
        path=str(path),
        clip={
            "x": 0,
            "y": top["y"],
            "width": top["x"] + top["width"],
            "height": bottom["y"] + bottom["height"] + 10 - top["y"],
        },
    )


def test_start_and_stop_an_instance_from_the_sidebar(lab, page, workspace, diabetes, iris, tmp_path):
    from playwright.sync_api import expect

    X, _, lr = diabetes
    page.goto(lab.url("lab?reset"))
    expect(page.get_by_role("tab", name="Model serving")).to_be_visible(timeout=60_000)
    sidebar = open_sidebar_from_the_palette(page)
    expect(sidebar.get_by_text("No models registered yet")).to_be_visible()
    expect(sidebar.get_by_text("Nothing is being served")).to_be_visible()

    # A model registered from Python (as a kernel would) appears on the sidebar's own refresh.
    workspace.register(lr, name="diabetes", sample=X[:5], progress=False)
    workspace.register(iris[2], name="iris", sample=iris[0][:5], progress=False)
    model = sidebar.get_by_role("listitem", name="Model diabetes")
    expect(model).to_be_visible(timeout=15_000)
    expect(model).to_contain_text("LinearRegression · methods: predict")
    # iris may have been registered after the refresh that showed diabetes: the next one shows it
    expect(sidebar.get_by_role("listitem", name="Model iris")).to_contain_text(
        "methods: predict, predict_proba", timeout=15_000
    )
    expect(model.get_by_role("combobox", name="Version of diabetes")).to_have_value("1")

    model.get_by_role("combobox", name="Runtime for diabetes").select_option("process")
    model.get_by_role("button", name="Start").click()
    instances = sidebar.get_by_role("list", name="Model instances")
    item = instances.get_by_role("listitem").filter(has_text="diabetes:1")
    expect(item.get_by_text("running", exact=True)).to_be_visible(timeout=60_000)
    expect(item).to_contain_text("process")

    [inst] = workspace.instances()
    assert (inst.status, inst.runtime, inst.model) == ("running", "process", "diabetes:1")
    link = item.get_by_role("link", name=inst.url)
    expect(link).to_have_attribute("href", f"{inst.url}/docs")
    assert nbserve.Client(inst.url).predict(X[:5]).tolist() == pytest.approx(lr.predict(X[:5]).tolist())
    # the link's page: Swagger UI from the local assets the js build copied (no CDN)
    with urllib.request.urlopen(f"{inst.url}/docs", timeout=10) as resp:
        assert resp.status == 200 and b"swagger-ui-bundle.js" in resp.read()
    with urllib.request.urlopen(f"{inst.url}/static/vendor/swagger-ui/swagger-ui-bundle.js", timeout=10) as resp:
        assert resp.status == 200 and b"SwaggerUIBundle" in resp.read()

    expect(model.get_by_role("status")).to_be_hidden(timeout=10_000)  # the "Starting..." note fades
    # the sidebar right after a start, for people reading CI's artifacts (the README's picture of the sidebar
    # comes from test_faces_fit.py)
    shot = Path(__file__).resolve().parents[2] / ".ci" / "out" / "screenshots" / "sidebar-start.png"
    save_screenshot(page, sidebar, shot)
    assert shot.stat().st_size > 10_000

    # Logs open in the main area.
    item.get_by_role("button", name="Logs").click()
    expect(page.get_by_role("log", name=f"Logs of {inst.id}")).to_contain_text("starting diabetes:1")

    # A refusal from the server shows in place: the port of the running instance is taken.
    model.get_by_role("spinbutton", name="Port for diabetes").fill(str(inst.port))
    model.get_by_role("button", name="Start").click()
    expect(model.get_by_role("alert")).to_contain_text(f"port {inst.port} on 127.0.0.1 is in use")
    assert len(workspace.instances()) == 1

    item.get_by_role("button", name="Stop").click()
    expect(item.get_by_text("stopped", exact=True)).to_be_visible(timeout=30_000)
    expect(item.get_by_role("button", name="Start")).to_be_visible()
    assert inst.reload().status == "stopped"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{inst.url}/health", timeout=5)

    item.get_by_role("button", name="Remove").click()
    expect(sidebar.get_by_text("Nothing is being served")).to_be_visible()
    assert workspace.instances() == []


def test_start_a_batching_instance_of_a_gradient_boosted_frame_model_from_the_sidebar(lab, page, workspace):
    """Batching turned on in the sidebar's start form reaches the server (GET /batching), the instance row
    says it batches, and the gradient-boosted pipeline over a mixed-type frame answers like the kernel."""
    import numpy as np
    from nbserve_testing import frames, one_row_calls
    from playwright.sync_api import expect

    frame, target = frames().rentals()
    model = frames().mixed_pipeline(frame, target)
    mv = workspace.register(model, name="rentals", sample=frame, progress=False)
    page.goto(lab.url("lab?reset"))
    expect(page.get_by_role("tab", name="Model serving")).to_be_visible(timeout=60_000)
    sidebar = open_sidebar_from_the_palette(page)
    row = sidebar.get_by_role("listitem", name="Model rentals")
    expect(row).to_contain_text(f"Pipeline · methods: {', '.join(mv.methods)}", timeout=15_000)
    row.get_by_role("combobox", name="Runtime for rentals").select_option("process")
    rows, ms = (
        row.get_by_role("spinbutton", name="Max batch rows for rentals"),
        row.get_by_role("spinbutton", name="Max latency ms for rentals"),
    )
    expect(rows).to_be_hidden()  # the limits show once batching is ticked
    row.get_by_role("checkbox", name="Batch requests for rentals").check()
    rows.fill("0")
    row.get_by_role("button", name="Start").click()
    expect(row.get_by_role("alert")).to_contain_text("Max batch must be a whole number of rows, at least 1")
    rows.fill("32")
    ms.fill("5")
    row.get_by_role("button", name="Start").click()

    item = sidebar.get_by_role("list", name="Model instances").get_by_role("listitem").filter(has_text="rentals:1")
    expect(item.get_by_text("running", exact=True)).to_be_visible(timeout=60_000)
    expect(item).to_contain_text("batching: ≤ 32 rows, 5 ms")
    [inst] = workspace.instances()
    assert inst.batching == {"max_batch": 32, "max_latency_ms": 5.0}

    np.testing.assert_allclose(
        inst.client(timeout=30).predict_proba(frame.iloc[:20]), model.predict_proba(frame.iloc[:20]), rtol=1e-9
    )
    answers = one_row_calls(inst.url, "predict_proba", frame.iloc[:96], threads=16)
    np.testing.assert_allclose(np.concatenate(answers), model.predict_proba(frame.iloc[:96]), rtol=1e-9)
    with urllib.request.urlopen(f"{inst.url}/batching", timeout=10) as resp:
        report = json.loads(resp.read())
    assert (report["max_batch"], report["max_latency_ms"]) == (32, 5.0)
    assert report["requests"] >= 96 and report["requests_per_call"] > 1, report
