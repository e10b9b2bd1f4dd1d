"""A served model behind a path prefix (jupyter-server-proxy's ``{base_url}proxy/{port}/``), and the
browser links the core gives when Jupyter runs on another machine. The real proxy, the real `jupyter lab`
with a non-root base URL and a real browser are in tests/ui/test_remote_jupyter.py."""

import numpy as np
import pytest

from nbserve.browser_links import ENV_BASE_URL, ENV_BROWSER_FILE, ENV_PROXY, browser_url, note_browser, proxy_hint
from nbserve.capture import capture
from nbserve.errors import NbserveError
from nbserve.runtimes.limits import check_options, server_settings
from nbserve.server import jsonio
from nbserve.server.app import make_app

PREFIX = "/user/alice/proxy/41234"


def app_for(obj, sample, **kw):
    import cloudpickle

    cap = capture(obj, label="m", sample=sample, proof=False)
    return make_app(cloudpickle.loads(cap.pickle), cap.manifest, model_id="m:1", **kw)


@pytest.fixture(scope="module")
def lr_client(diabetes):
    X, _, lr = diabetes
    return app_for(lr, X).test_client()


@pytest.fixture(scope="module")
def frame_client(iris):
    X, _, clf = iris
    return app_for(clf, X).test_client()


@pytest.mark.parametrize("header", ["X-Forwarded-Context", "X-ProxyContextPath", "X-Forwarded-Prefix"])
def test_openapi_servers_and_links_carry_the_proxy_prefix(lr_client, header):
    spec = lr_client.get("/openapi.json", headers={header: PREFIX}).get_json()
    # Swagger UI's "Try it out" posts to servers[0].url + the path: through the proxy again
    assert spec["servers"] == [{"url": PREFIX + "/"}]
    index = lr_client.get("/", headers={header: PREFIX + "/"}).get_json()
    assert index["links"] == [PREFIX + p for p in ("/health", "/interface.json", "/openapi.json", "/docs")]


def test_direct_calls_are_unchanged(lr_client):
    spec = lr_client.get("/openapi.json").get_json()
    assert "servers" not in spec  # OpenAPI's default "/": the server's own root
    assert lr_client.get("/").get_json()["links"][0] == "/health"


def test_docs_page_loads_its_assets_relative_to_the_prefix(lr_client):
    # /user/alice/proxy/PORT/docs -> static/... and openapi.json resolve under the same prefix
    page = lr_client.get("/docs", headers={"X-Forwarded-Context": PREFIX}).get_data(as_text=True)
    for absolute in ('href="/', 'src="/', 'url: "/', 'fetch("/'):
        assert absolute not in page  # an absolute path would leave the proxy's prefix


@pytest.mark.parametrize(
    "bad", ["http://evil.example/x", "/a/../b", "/a b", "/a?b=1", "//evil.example", "javascript:alert(1)"]
)
def test_a_prefix_that_is_not_a_plain_path_is_ignored(lr_client, bad):
    spec = lr_client.get("/openapi.json", headers={"X-Forwarded-Prefix": bad}).get_json()
    assert "servers" not in spec


def test_predictions_through_a_prefix_equal_the_model(lr_client, frame_client, diabetes, iris):
    X, _, lr = diabetes
    resp = lr_client.post(
        "/predict",
        data=jsonio.dumps({"data": X[:4].tolist()}),
        content_type="application/json",
        headers={"X-Forwarded-Context": PREFIX},
    )
    assert resp.status_code == 200
    np.testing.assert_allclose(resp.get_json()["data"], lr.predict(X[:4]))
    F, _, clf = iris
    resp = frame_client.post(
        "/predict",
        data=jsonio.dumps({"data": F[:3].to_dict(orient="records")}),
        content_type="application/json",
        headers={"X-Forwarded-Context": PREFIX},
    )
    assert resp.status_code == 200 and resp.get_json()["data"] == clf.predict(F[:3]).tolist()


def test_a_prefix_given_at_serve_time(diabetes):
    X, _, lr = diabetes
    app = app_for(lr, X)
    from nbserve.server import prefix

    prefix.install(app, "/models/diabetes/")
    client = app.test_client()
    # a proxy that forwards the whole path, and one that strips it: both reach the routes
    assert client.get("/models/diabetes/health").status_code == 200
    assert client.get("/health").status_code == 200
    assert client.get("/openapi.json").get_json()["servers"] == [{"url": "/models/diabetes/"}]


def test_url_prefix_option_is_checked_and_reaches_the_server():
    assert check_options({"url_prefix": "models/x/"})["url_prefix"] == "/models/x"
    assert server_settings(check_options({"url_prefix": "/models/x"})).to_env()["NBSERVE_URL_PREFIX"] == "/models/x"
    for bad in ("/", "http://h/x", "/a/../b", 3):
        with pytest.raises(NbserveError, match="url_prefix must be a plain path"):
            check_options({"url_prefix": bad})


def test_browser_links_follow_the_jupyter_server(monkeypatch, tmp_path):
    url = "http://127.0.0.1:41234"
    for var in (ENV_BASE_URL, ENV_PROXY, ENV_BROWSER_FILE, "JUPYTERHUB_SERVICE_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    # a script, outside Jupyter: no browser link, and no hint either
    assert browser_url(url) is None and proxy_hint(url) is None
    # under a Jupyter server without the proxy: the direct link, and, for a browser on another machine, one
    # line on how to get the other; a browser on this machine reaches the direct link, so no hint
    monkeypatch.setenv(ENV_BASE_URL, "/user/alice/")
    monkeypatch.setenv(ENV_PROXY, "0")
    assert browser_url(url) is None and "jupyter-server-proxy" in proxy_hint(url, remote=True)
    assert proxy_hint(url, remote=False) is None
    # the kernel learns where the browser is from the Jupyter server (the Host its requests named)
    monkeypatch.setenv(ENV_BROWSER_FILE, str(tmp_path / "browser.json"))
    assert note_browser("127.0.0.1:8888") is False and proxy_hint(url) is None
    assert note_browser("[::1]:8888") is False and note_browser("localhost") is False
    assert note_browser("hub.example.org") is True and "jupyter-server-proxy" in proxy_hint(url)
    # with it: through the server's own base URL
    monkeypatch.setenv(ENV_PROXY, "1")
    assert browser_url(url) == "/user/alice/proxy/41234/"
    assert proxy_hint(url) is None
    # a model served on another address is not proxied (jupyter-server-proxy reaches localhost only)
    assert browser_url("http://10.1.2.3:41234") is None
    # JupyterHub names its prefix even where nbserve's server extension did not load
    monkeypatch.delenv(ENV_BASE_URL)
    monkeypatch.delenv(ENV_PROXY)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/bob")
    assert browser_url(url) == "/user/bob/proxy/41234/"


def test_an_instance_shows_both_links(workspace, diabetes, monkeypatch):
    X, _, lr = diabetes
    monkeypatch.setenv(ENV_BASE_URL, "/user/alice/")
    monkeypatch.setenv(ENV_PROXY, "1")
    inst = workspace.serve(lr, name="diabetes", sample=X[:5], runtime="process", progress=False)
    assert inst.browser_url == f"/user/alice/proxy/{inst.port}/"
    assert inst.to_dict()["browser_url"] == inst.browser_url and inst.to_dict()["browser_hint"] is None
    assert inst.browser_url in repr(inst) and inst.url in repr(inst)
    # the kernel's client keeps calling the direct address
    np.testing.assert_allclose(inst.client(timeout=10).predict(X[:3]), lr.predict(X[:3]))
    inst.stop()
    assert inst.browser_url is None
