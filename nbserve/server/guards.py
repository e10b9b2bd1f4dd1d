"""What keeps one request from hurting the server: a deadline per request, optional bearer-token
auth, and a model that calls ``sys.exit()`` treated as a model error instead of killing its worker.

All of it is set up once in ``install`` (at load time); a request pays two ``setitimer`` calls for
the deadline, and a digest compare when auth is on. Imports nothing else from nbserve.
"""

import os
import signal
import sys
import threading
import time

from . import auth, jsonio

DEFAULT_TIMEOUT = 60.0


class RequestTimeout(BaseException):
    """Raised by the alarm inside a request that ran past its deadline. A BaseException, so that
    neither the view's ``except Exception`` nor the user's own handlers swallow it."""


class ModelExit(RuntimeError):
    """The model called sys.exit(); reported as the model's error, and the worker lives on."""


def contain_exits(methods: dict) -> dict:
    """Wrap each method so SystemExit becomes a ModelExit (a 500 ModelError, not a dead worker:
    gunicorn would also halt the whole server on exit codes 3 and 4)."""

    def guard(name, fn):
        def call(data):
            try:
                return fn(data)
            except SystemExit as exc:
                raise ModelExit(f"the model called sys.exit({exc.code!r})") from None

        call.__name__ = getattr(fn, "__name__", name)
        return call

    return {name: guard(name, fn) for name, fn in methods.items()}


def settings(timeout=None, auth_sha256=None):
    """(timeout seconds or 0 for none, token digest or None), from arguments, else the environment."""
    if timeout is None:
        timeout = os.environ.get("NBSERVE_TIMEOUT") or DEFAULT_TIMEOUT
    timeout = float(timeout)
    if timeout < 0:
        raise ValueError(f"the request timeout must be >= 0 seconds (0: none), got {timeout}")
    if auth_sha256 is None:
        auth_sha256 = os.environ.get(auth.ENV_SHA256) or None
    return timeout, auth_sha256


def install(app, request, error, timeout: float, auth_sha256):
    """Add the auth hook and the deadline to ``app``; ``error(status, type, message)`` makes a response."""
    app.config["NBSERVE_TIMEOUT"] = timeout
    app.config["NBSERVE_AUTH"] = bool(auth_sha256)
    if auth_sha256:
        check = auth.bearer_checker(auth_sha256)

        @app.before_request
        def require_token():
            if request.path in auth.OPEN_PATHS or check(request.headers.get("Authorization")):
                return None
            resp = error(401, "Unauthorized",
                         "this model needs a bearer token: send the header 'Authorization: Bearer <token>' "
                         "(Instance.client() does; the token is Instance.auth_token in the notebook that "
                         "served it)")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="nbserve"'
            return resp

    app.wsgi_app = _ChunkedLimit(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])
    if timeout and hasattr(signal, "setitimer"):
        app.wsgi_app = _Deadline(app.wsgi_app, timeout)


class _ChunkedLimit:
    """A chunked body (no Content-Length) over the size limit is a JSON 413, like one with a length.

    Werkzeug stops reading such a stream at the limit without saying so, and the truncated body then
    fails as invalid JSON (a misleading 400). Bodies with a Content-Length pass straight through (Flask
    checks them before reading); chunked ones, rare, are read here, at most limit + 1 bytes.
    """

    def __init__(self, wsgi_app, limit: int):
        self.wsgi_app = wsgi_app
        self.limit = int(limit)

    def __call__(self, environ, start_response):
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
            body = jsonio.dumps({"error": {"type": "PayloadTooLarge", "message":
                                           f"the body is larger than the limit of {self.limit} bytes "
                                           f"(serve(..., max_body=BYTES) or NBSERVE_MAX_BODY)"}})
            start_response("413 Request Entity Too Large", [("Content-Type", "application/json"),
                                                            ("Content-Length", str(len(body))),
                                                            ("Connection", "close")])
            return [body]
        data = b"".join(parts)
        environ["wsgi.input"] = io.BytesIO(data)
        environ["CONTENT_LENGTH"] = str(len(data))
        return self.wsgi_app(environ, start_response)


class _Deadline:
    """WSGI middleware: SIGALRM after ``seconds`` raises RequestTimeout in the request, answered with a
    JSON 504. Signals reach only the main thread, which is where gunicorn's sync worker (the one
    nbserve runs) handles requests; in other threads the middleware stands aside, and gunicorn's own
    --timeout (set a little longer by the runtimes) remains the backstop, also for C code that
    never returns to the interpreter.

    After a timeout the request was interrupted at an arbitrary point (perhaps holding a lock inside a
    library), so under gunicorn the worker asks to be replaced once the answer is sent: SIGTERM to
    itself is gunicorn's graceful exit, and the arbiter forks a fresh worker from the preloaded model.
    """

    def __init__(self, wsgi_app, seconds: float):
        self.wsgi_app = wsgi_app
        self.seconds = float(seconds)
        self.body = None

    @staticmethod
    def _alarm(signum, frame):
        raise RequestTimeout

    def __call__(self, environ, start_response):
        if threading.current_thread() is not threading.main_thread():
            return self.wsgi_app(environ, start_response)
        old_handler = signal.signal(signal.SIGALRM, self._alarm)
        old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, self.seconds)
        started = time.monotonic()
        try:
            return self.wsgi_app(environ, start_response)
        except RequestTimeout:
            return self._timed_out(environ, start_response)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
            if old_delay:  # someone else's alarm (a test runner's) was pending: put it back
                left = old_delay - (time.monotonic() - started)
                signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), old_interval)

    def _timed_out(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        body = jsonio.dumps({"error": {
            "type": "Timeout",
            "message": f"{path} did not finish within the limit of {self.seconds:g} s; the request was "
                       f"stopped (raise the limit with serve(..., timeout=SECONDS) or NBSERVE_TIMEOUT)"}})
        start_response("504 Gateway Timeout", [("Content-Type", "application/json"),
                                               ("Content-Length", str(len(body)))], sys.exc_info())
        if str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn"):
            os.kill(os.getpid(), signal.SIGTERM)
        return [body]
