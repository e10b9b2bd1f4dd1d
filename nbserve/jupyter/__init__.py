"""The jupyter_server extension behind the JupyterLab sidebar: the workspace over REST.

Enabled on install by ``etc/jupyter/jupyter_server_config.d/nbserve.json`` (shipped in the wheel);
``nbserve._jupyter_server_extension_points`` points jupyter_server here. The handlers are thin: each
parses its request and calls the workspace of ``$NBSERVE_HOME``, the same registry a kernel writes,
so models registered in a notebook show up without restarting the server.
"""

from __future__ import annotations


def _jupyter_server_extension_points():
    return [{"module": "nbserve.jupyter"}]


def _load_jupyter_server_extension(server_app):
    # the handlers load tornado, jupyter_server and the core: only once a server loads the extension
    import os

    from ..browser_links import announce
    from ..config import home
    from .handlers import API_PREFIX, setup_handlers

    setup_handlers(server_app.web_app)
    base_url = server_app.web_app.settings.get("base_url", "/")
    # kernels this server starts inherit these: their instances' links then go through the proxy too
    proxy = bool(server_app.jpserver_extensions.get("jupyter_server_proxy"))
    # whether the browser is on this machine, as the REST handlers see it, for the kernels' panels
    browser_file = os.path.join(server_app.runtime_dir, f"nbserve-browser-{os.getpid()}.json")
    announce(base_url, proxy, browser_file)
    if not proxy:
        server_app.log.info("nbserve: jupyter-server-proxy is not enabled: instance links are direct (127.0.0.1)")
    server_app.log.info("nbserve: REST API at %s%s/ (registry in %s)", base_url, API_PREFIX, home())
