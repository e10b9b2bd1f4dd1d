"""The path prefix a served model is reached under, when a proxy puts one in front of it.

Behind ``jupyter-server-proxy`` the browser asks for ``{base_url}proxy/{port}/docs`` and the server sees
``/docs``: the proxy strips the prefix and names it in a header (``X-Forwarded-Context`` and
``X-ProxyContextPath``; other proxies send ``X-Forwarded-Prefix``). A prefix may also be given at serve
time (``serve(..., url_prefix="/models/diabetes")``, ``NBSERVE_URL_PREFIX``) for a proxy that sends none.
The prefix becomes the WSGI ``SCRIPT_NAME``, so every URL the app writes (the OpenAPI ``servers`` entry
that Swagger UI's "Try it out" posts to, the links of ``/``) points back through the proxy, while the
same server still answers direct calls without one.

A prefix header only changes the URLs written in the answer to the request that carries it, never what
the server does or whom it lets in, so it needs no trust in the sender.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

ENV = "NBSERVE_URL_PREFIX"
HEADERS = ("HTTP_X_FORWARDED_PREFIX", "HTTP_X_FORWARDED_CONTEXT", "HTTP_X_PROXYCONTEXTPATH")
_SAFE = re.compile(r"^(/[A-Za-z0-9._~@%-]+)*$")  # path segments, no scheme or query


def clean(prefix: str | None) -> str | None:
    """``/a/b`` from ``a/b/``, ``/a/b/`` or ``/a/b``; "" for none; None when it is not a plain path
    (a scheme, a query, ``..``, spaces): such a header is ignored rather than echoed into links."""
    if not prefix:
        return ""
    prefix = prefix.strip()
    if prefix.startswith("//"):  # a network-path reference: another host, not a path
        return None
    prefix = "/" + prefix.strip("/")
    if prefix == "/":
        return ""
    if not _SAFE.match(prefix) or "/../" in prefix + "/" or "/./" in prefix + "/":
        return None
    return prefix


class PrefixMiddleware:
    """Sets ``SCRIPT_NAME`` from the configured prefix, else from the first proxy header present."""

    def __init__(self, app: WSGIApplication, fixed: str | None = None) -> None:
        self.app = app
        self.fixed = clean(fixed if fixed is not None else os.environ.get(ENV, ""))
        if self.fixed is None:
            raise ValueError(f"the URL prefix {fixed!r} is not a plain path such as /models/diabetes")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        prefix = self.fixed
        if not prefix:
            for header in HEADERS:
                value = environ.get(header)
                if value:
                    prefix = clean(value) or ""
                    break
        if prefix:
            environ["SCRIPT_NAME"] = prefix + environ.get("SCRIPT_NAME", "")
            path = environ.get("PATH_INFO", "")
            if path.startswith(prefix + "/"):  # a proxy that forwards the whole path (fixed prefix)
                environ["PATH_INFO"] = path[len(prefix) :]
        return self.app(environ, start_response)


def install(app: Flask, fixed: str | None = None) -> Flask:
    """Wrap ``app.wsgi_app``; the app reads the prefix of a request as ``request.script_root``."""
    app.wsgi_app = PrefixMiddleware(app.wsgi_app, fixed)  # type: ignore[method-assign]  # Flask's way to wrap
    return app


def documents_by_prefix(document: dict, dumps: Callable[[Any], bytes], limit: int = 16) -> Callable[[str], bytes]:
    """A function of the request's prefix giving the OpenAPI document as bytes, its ``servers`` entry
    naming the prefix (Swagger UI posts "Try it out" there). Direct calls get the document without
    ``servers`` (OpenAPI's default, "/"); a few prefixes are kept, so a proxied /openapi.json costs no
    more than a direct one."""
    cache = {"": dumps(document)}

    def for_prefix(prefix: str) -> bytes:
        body = cache.get(prefix)
        if body is None:
            body = dumps({**document, "servers": [{"url": prefix + "/"}]})
            if len(cache) < limit:
                cache[prefix] = body
        return body

    return for_prefix
