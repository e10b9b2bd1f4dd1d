"""A remote user's JupyterLab: the Jupyter server runs under JupyterHub's kind of base URL (/user/alice/)
with jupyter-server-proxy, and the browser cannot reach 127.0.0.1 of that server. The sidebar's link goes
through `{base_url}proxy/{port}/`, behind the Jupyter login: Chromium opens Swagger UI there, uses
"Try it out" on predict and reads the model's answer; without Jupyter's token the same URL gets no answer
from the model. Also makes docs/remote-swagger.png for the README (when missing, or with
NBSERVE_UPDATE_SCREENSHOT=1)."""

import json
import os
import urllib.error
import urllib.request

import numpy as np
import pytest
from nbserve_testing import need
from test_sidebar import DOCS, chromium, open_sidebar_from_the_palette, running_lab

pytestmark = pytest.mark.browser

BASE_URL = "/user/alice/"


def proxy_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("jupyter_server_proxy") is not None


def fetch(url, data=None, headers=None):
    """(status, body) without following redirects: a login redirect is a refusal, not an answer."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=15) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def remote_lab(home, tmp_path):
    need(proxy_installed(), "jupyter-server-proxy", "pip install -e '.[dev]' (it is in the jupyter extra)")
    with running_lab(home, tmp_path, base_url=BASE_URL) as server:
        yield server


def test_swagger_ui_through_the_jupyter_proxy_from_the_sidebar(remote_lab, workspace, diabetes, tmp_path):
    from playwright.sync_api import expect

    lab = remote_lab
    X, _, lr = diabetes
    workspace.register(lr, name="diabetes", sample=X[:5], progress=False)
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(lab.url("lab?reset"))
        expect(page.get_by_role("tab", name="Model serving")).to_be_visible(timeout=60_000)
        sidebar = open_sidebar_from_the_palette(page)
        model = sidebar.get_by_role("listitem", name="Model diabetes")
        expect(model).to_be_visible(timeout=15_000)
        model.get_by_role("combobox", name="Runtime for diabetes").select_option("process")
        model.get_by_role("button", name="Start").click()
        item = sidebar.get_by_role("list", name="Model instances").get_by_role("listitem").filter(has_text="diabetes:1")
        expect(item.get_by_text("running", exact=True)).to_be_visible(timeout=60_000)

        [inst] = workspace.instances()
        proxied = f"{BASE_URL}proxy/{inst.port}/"
        link = item.get_by_role("link", name=proxied)
        expect(link).to_have_attribute("href", f"{proxied}docs")  # not 127.0.0.1: the browser may be elsewhere

        with context.expect_page() as opened:
            link.click()
        docs = opened.value
        docs.set_default_timeout(30_000)
        expect(docs).to_have_url(f"{lab.origin}{proxied}docs")
        operation = docs.locator(".opblock-post", has_text="/predict")
        expect(operation).to_be_visible()
        operation.locator(".opblock-summary").click()
        operation.get_by_role("button", name="Try it out").click()
        rows = X[:2]
        operation.locator("textarea.body-param__text").fill(json.dumps({"data": rows.tolist()}))
        operation.get_by_role("button", name="Execute").click()
        # Swagger posted through the proxy (servers[0] carries the prefix) and shows the model's answer
        request_url = operation.locator(".request-url pre")
        expect(request_url).to_have_text(f"{lab.origin}{proxied}predict")
        live = operation.locator(".live-responses-table tr.response")
        expect(live.locator(".response-col_status")).to_have_text("200")
        answer = json.loads(live.locator(".response-col_description pre").first.inner_text())
        np.testing.assert_allclose(answer["data"], lr.predict(rows))

        shot = DOCS / "remote-swagger.png"
        if shot.exists() and not os.environ.get("NBSERVE_UPDATE_SCREENSHOT"):
            shot = tmp_path / "remote-swagger.png"
        docs.set_viewport_size({"width": 1280, "height": 1100})
        operation.scroll_into_view_if_needed()
        docs.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000

        # Nobody else gets in: the same proxied URLs without Jupyter's login get no model answer.
        stranger = browser.new_context()
        resp = stranger.request.get(f"{lab.origin}{proxied}openapi.json", max_redirects=0)
        assert resp.status in (302, 403) and b"/predict" not in resp.body()
        stranger.close()

    body = json.dumps({"data": X[:2].tolist()}).encode()
    status, text = fetch(f"{lab.origin}{proxied}predict", body, {"Content-Type": "application/json"})
    assert status in (302, 403) and b'"data"' not in text
    status, text = fetch(f"{lab.origin}{proxied}openapi.json")
    assert status in (302, 403) and b"/predict" not in text
    # ...and a program holding the Jupyter token does (for example a colleague's notebook on the hub)
    status, text = fetch(lab.url(f"proxy/{inst.port}/predict"), body, {"Content-Type": "application/json"})
    assert status == 200
    np.testing.assert_allclose(json.loads(text)["data"], lr.predict(X[:2]))


def test_the_models_own_token_still_applies_behind_the_proxy(remote_lab, workspace, diabetes):
    lab = remote_lab
    X, _, lr = diabetes
    inst = workspace.serve(lr, name="diabetes", sample=X[:5], runtime="process", auth_token=True, progress=False)
    body = json.dumps({"data": X[:2].tolist()}).encode()
    url = lab.url(f"proxy/{inst.port}/predict")  # Jupyter's token in the query: the login is passed
    status, text = fetch(url, body, {"Content-Type": "application/json"})
    assert status == 401 and b'"data"' not in text  # but the model wants its own bearer token
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {inst.auth_token}"}
    status, text = fetch(url, body, headers)
    assert status == 200
    np.testing.assert_allclose(json.loads(text)["data"], lr.predict(X[:2]))
    # the model's token alone is not a Jupyter login
    status, text = fetch(f"{lab.origin}{BASE_URL}proxy/{inst.port}/predict", body, headers)
    assert status in (302, 403) and b'"data"' not in text
