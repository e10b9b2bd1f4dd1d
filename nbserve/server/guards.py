"""What keeps one request from hurting the server: a deadline per request (deadline.py), optional
bearer-token auth, and a model that calls ``sys.exit()`` treated as a model error instead of killing its worker.

All of it is set up once in ``install`` (at load time); a request pays a few attribute writes for the
deadline, and a digest compare when auth is on. Imports nothing else from nbserve.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from . import auth, errors
from .deadline import Deadline, DeadlineMiddleware, RequestTimeout  # noqa: F401 - RequestTimeout: guards' name for it

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask, Request, Response


class ModelExit(RuntimeError):
    """The model called sys.exit(); reported as the model's error, and the worker lives on."""


def contain_exits(methods: dict) -> dict:
    """Wrap each method so SystemExit becomes a ModelExit (a 500 ModelError, not a dead worker:
    gunicorn would also halt the whole server on exit codes 3 and 4)."""

    def guard(name: str, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def call(data: Any) -> Any:
            try:
                return fn(data)
            except SystemExit as exc:
                raise ModelExit(f"the model called sys.exit({exc.code!r})") from None

        call.__name__ = getattr(fn, "__name__", name)
        return call

    return {name: guard(name, fn) for name, fn in methods.items()}


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[/\\][\w.+@~-]+){2,}[/\\]?")


def public_message(exc: BaseException) -> str:
    """What a client may read of an exception: its first line, without file system paths (native
    libraries append their C++ stack trace after it, and either may name the server's files)."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    first = _PATH.sub(lambda m: "<path>/" + re.split(r"[/\\]", m.group(0).rstrip("/\\"))[-1], first)
    return first[:500] + (" ..." if len(first) > 500 or len(lines) > 1 else "")


def install(app: Flask, request: Request, timeout: float, auth_sha256: str | None) -> Deadline | None:
    """Add the auth hook and the deadline to ``app``."""
    app.config["NBSERVE_TIMEOUT"] = timeout
    app.config["NBSERVE_AUTH"] = bool(auth_sha256)
    if auth_sha256:
        check = auth.bearer_checker(auth_sha256)

        @app.before_request
        def require_token() -> Response | None:
            if auth.is_open(request.method, request.path) or check(request.headers.get("Authorization")):
                return None
            if request.environ.get("nbserve.job") is not None:  # a queued job's call: checked when it was submitted
                return None
            return errors.response(errors.unauthorized())

    app.wsgi_app = _ChunkedLimit(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])  # type: ignore[method-assign]
    if not timeout:
        return None
    deadline = Deadline(timeout)
    app.wsgi_app = DeadlineMiddleware(app.wsgi_app, deadline)  # type: ignore[method-assign]
    return deadline


class _ChunkedLimit:
    """A chunked body (no Content-Length) over the size limit is a JSON 413, like one with a length.

    Werkzeug stops reading such a stream at the limit without saying so, and the truncated body then
    fails as invalid JSON (a misleading 400). Bodies with a Content-Length pass straight through (Flask
    checks them before reading); chunked ones, rare, are read here, at most limit + 1 bytes.
    """

    def __init__(self, wsgi_app: WSGIApplication, limit: int) -> None:
        self.wsgi_app = wsgi_app
        self.limit = int(limit)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("CONTENT_LENGTH") or not environ.get("wsgi.input_terminated"):
            return self.wsgi_app(environ, start_response)
        import io

        stream, parts, size = environ["wsgi.input"], [], 0
        while size <= self.limit:
            chunk = stream.read(min(65536, self.limit + 1 - size))
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        if size > self.limit:
            return errors.wsgi_answer(start_response, errors.too_large(self.limit), [("Connection", "close")])
        data = b"".join(parts)
        environ["wsgi.input"] = io.BytesIO(data)
        environ["CONTENT_LENGTH"] = str(len(data))
        return self.wsgi_app(environ, start_response)
