"""Links to a served model that work from the user's browser when Jupyter runs on another machine.

An instance listens on 127.0.0.1 of the machine that runs it. When that machine is a remote Jupyter
server (JupyterHub, a cloud workspace, a tunnelled VM), ``http://127.0.0.1:PORT`` in the browser points
at the user's own laptop. With ``jupyter-server-proxy`` in the Jupyter server, ``{base_url}proxy/{port}/``
reaches the instance through the Jupyter server, behind its login. The kernel's own client keeps calling
the direct address.

Where the facts come from: nbserve's Jupyter server extension writes the server's ``base_url`` and
whether the proxy is enabled into its own environment when it loads (``announce``); kernels started by
that server inherit them, so the sidebar, the panel and ``inst`` in a notebook all compute the same link.
On JupyterHub, ``JUPYTERHUB_SERVICE_PREFIX`` names the base URL even without the extension.
"""

from __future__ import annotations

import importlib.util
import json
import os
from urllib.parse import urlsplit

ENV_BASE_URL = "NBSERVE_JUPYTER_BASE_URL"
ENV_PROXY = "NBSERVE_JUPYTER_PROXY"
ENV_BROWSER_FILE = "NBSERVE_JUPYTER_BROWSER_FILE"
PROXY_HINT = (
    "from a remote browser this address may not be reachable: install 'jupyter-server-proxy>=4.2' in the "
    "Jupyter server's environment (nbserve's jupyter extra brings it) and restart it for a link through "
    "the Jupyter server"
)
LOCAL = {"127.0.0.1", "localhost", "::1"}


def announce(base_url: str, proxy: bool, browser_file: str | None = None) -> None:
    """Called by the Jupyter server extension at load: its kernels inherit these (``browser_file``: where the
    server writes whether the browser it last heard from is on this machine, see ``note_browser``)."""
    os.environ[ENV_BASE_URL] = base_url if base_url.endswith("/") else base_url + "/"
    os.environ[ENV_PROXY] = "1" if proxy else "0"
    if browser_file:
        os.environ[ENV_BROWSER_FILE] = browser_file


def local_host(host: str | None) -> bool:
    """Whether a request's Host header (``127.0.0.1:8888``, ``[::1]:8888``, ``localhost``) names this machine."""
    if not host:
        return False
    return urlsplit(f"//{host}").hostname in LOCAL


_noted: dict = {}


def note_browser(host: str | None) -> bool:
    """Called by the Jupyter server for each request of the sidebar: whether its browser is elsewhere (the
    Host it asked for is not a loopback name), written for the server's kernels (their panels) when it
    changes. Returns whether it is remote."""
    remote = not local_host(host)
    path = os.environ.get(ENV_BROWSER_FILE)
    if path and _noted.get(path) != remote:
        try:
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump({"remote": remote}, f)
            os.replace(tmp, path)
            _noted[path] = remote
        except OSError:
            pass  # the panel then keeps quiet about remote access: a hint, not a function
    return remote


def browser_is_remote() -> bool:
    """Whether the user's browser is on another machine: as the Jupyter server last saw it, else (a
    JupyterHub server without nbserve's extension) yes, since a hub is reached over the network."""
    path = os.environ.get(ENV_BROWSER_FILE)
    if path:
        try:
            with open(path) as f:
                return bool(json.load(f)["remote"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return bool(os.environ.get("JUPYTERHUB_SERVICE_PREFIX"))


def jupyter_base_url() -> str | None:
    """The Jupyter server's base URL, when this process runs under one (its kernel or itself)."""
    base = os.environ.get(ENV_BASE_URL) or os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if not base:
        return None
    return base if base.endswith("/") else base + "/"


def proxy_available() -> bool:
    flag = os.environ.get(ENV_PROXY)
    if flag is not None:
        return flag == "1"
    # a JupyterHub single-user server without nbserve's extension: the proxy is there if importable
    return (
        bool(os.environ.get("JUPYTERHUB_SERVICE_PREFIX"))
        and importlib.util.find_spec("jupyter_server_proxy") is not None
    )


def browser_url(url: str | None) -> str | None:
    """``{base_url}proxy/{port}/`` for a local instance URL under a Jupyter server with the proxy; else None."""
    if not url:
        return None
    base = jupyter_base_url()
    if base is None or not proxy_available():
        return None
    parts = urlsplit(url)
    if parts.hostname not in LOCAL or not parts.port:
        return None
    return f"{base}proxy/{parts.port}/"


def proxy_hint(url: str | None, remote: bool | None = None) -> str | None:
    """One line on how to get a browser link, where one is missing under a Jupyter server and the browser
    is not on this machine (``remote``: known from the request; else as the Jupyter server last saw it)."""
    if url and jupyter_base_url() is not None and browser_url(url) is None:
        if remote is None:
            remote = browser_is_remote()
        return PROXY_HINT if remote else None
    return None
