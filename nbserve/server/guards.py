"""What keeps one request from hurting the server: a deadline per request, optional bearer-token
auth, and a model that calls ``sys.exit()`` treated as a model error instead of killing its worker.

All of it is set up once in ``install`` (at load time); a request pays a few attribute writes for the
deadline, and a digest compare when auth is on. Imports nothing else from nbserve.
"""

import os
import re
import signal
import sys
import threading
import time

from . import auth, errors

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


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[/\\][\w.+@~-]+){2,}[/\\]?")


def public_message(exc) -> str:
    """What a client may read of an exception: its first line, without file system paths (native
    libraries append their C++ stack trace after it, and either may name the server's files)."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    first = _PATH.sub(lambda m: "<path>/" + re.split(r"[/\\]", m.group(0).rstrip("/\\"))[-1], first)
    return first[:500] + (" ..." if len(first) > 500 or len(lines) > 1 else "")


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


def install(app, request, timeout: float, auth_sha256):
    """Add the auth hook and the deadline to ``app``."""
    app.config["NBSERVE_TIMEOUT"] = timeout
    app.config["NBSERVE_AUTH"] = bool(auth_sha256)
    if auth_sha256:
        check = auth.bearer_checker(auth_sha256)

        @app.before_request
        def require_token():
            if auth.is_open(request.method, request.path) or check(request.headers.get("Authorization")):
                return None
            return errors.response(errors.unauthorized())

    app.wsgi_app = _ChunkedLimit(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])
    if timeout:
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
            return errors.wsgi_answer(start_response, errors.too_large(self.limit), [("Connection", "close")])
        data = b"".join(parts)
        environ["wsgi.input"] = io.BytesIO(data)
        environ["CONTENT_LENGTH"] = str(len(data))
        return self.wsgi_app(environ, start_response)


class _Deadline:
    """WSGI middleware: a request still running after ``seconds`` is interrupted (RequestTimeout raised in
    it) and answered with a JSON 504.

    Per request this only notes the start time, a sequence number and the client socket (no system call:
    on small VMs a setitimer pair costs more than the rest of the request's overhead). A watchdog thread,
    started in each worker process on its first request, looks a few times per deadline and, when one is
    past, sends SIGUSR2 (unused by gunicorn's workers) to the main thread, whose handler raises
    RequestTimeout if that same request is still running. Signals reach only the main thread, which is
    where gunicorn's sync worker (the one nbserve runs) handles requests.

    A request stuck in native code (a C loop, a lock or an OpenMP barrier that never returns to the
    interpreter) never runs that handler. Such code has released the GIL (else no thread of this process
    could run), so the watchdog itself answers: after a short grace it claims the request, writes the JSON
    504 straight to the client socket gunicorn gave the request, and ends the worker, which the arbiter
    replaces; the client never sees a dropped connection. gunicorn's own --timeout (a little longer, set by
    the runtimes) stays the backstop for code that holds the GIL forever.

    After a timeout the request was interrupted at an arbitrary point (perhaps holding a lock inside a
    library), so under gunicorn the worker asks to be replaced once the answer is sent: SIGTERM to
    itself is gunicorn's graceful exit, and the arbiter forks a fresh worker.
    """

    SIGNAL = getattr(signal, "SIGUSR2", None)

    def __init__(self, wsgi_app, seconds: float):
        self.wsgi_app = wsgi_app
        self.seconds = float(seconds)
        self.grace = min(2.0, max(0.5, self.seconds / 4))  # for the interpreter to act before the watchdog
        self.started = None  # monotonic start of the request in flight, None between requests
        self.seq = 0  # which request that is
        self.fired = 0  # the last request the watchdog interrupted
        self.claimed = 0  # the request the watchdog answered itself (then the worker ends)
        self.sock = None  # the request's client socket (gunicorn's sync worker), None elsewhere
        self.path = ""
        self.lock = threading.Lock()
        self.pid = None  # the process whose watchdog runs (threads do not survive gunicorn's fork)

    def _watch(self):
        self.pid = os.getpid()
        self.main = threading.get_ident()
        signal.signal(self.SIGNAL, self._interrupt)
        threading.Thread(target=self._watchdog, name="nbserve-deadline", daemon=True).start()

    def _watchdog(self):
        tick = min(0.25, self.seconds / 4)
        while True:
            time.sleep(tick)
            started, seq = self.started, self.seq
            if started is None:
                continue
            late = time.monotonic() - started - self.seconds
            if late > 0 and seq != self.fired:
                self.fired = seq
                signal.pthread_kill(self.main, self.SIGNAL)
            elif late > self.grace and seq == self.fired and self.sock is not None:
                self._answer_for_stuck_request(seq)

    def _answer_for_stuck_request(self, seq):
        with self.lock:
            if self.started is None or self.seq != seq:
                return  # it finished meanwhile
            self.claimed = seq
        body = self._body(self.path)
        head = (
            "HTTP/1.1 504 Gateway Timeout\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sys.stderr.write(
            f"nbserve: {self.path} is stuck in native code past its deadline of {self.seconds:g} s: answered "
            f"504 and ending worker {os.getpid()}, which gunicorn replaces\n"
        )
        sys.stderr.flush()
        try:
            self.sock.settimeout(2.0)
            self.sock.sendall(head.encode() + body)
        except OSError:
            pass
        os._exit(1)

    def _interrupt(self, signum, frame):
        if self.started is not None and self.seq == self.fired:  # not a request that finished meanwhile
            raise RequestTimeout

    def _done(self):
        with self.lock:
            claimed = self.claimed == self.seq
            self.started = None
        if claimed:  # the watchdog is answering and ending this worker: write nothing more
            while True:
                time.sleep(60)

    def __call__(self, environ, start_response):
        if self.SIGNAL is None or threading.current_thread() is not threading.main_thread():
            try:  # a threaded worker (batching.py): the request's own wait for its answer raises at the deadline
                return self.wsgi_app(environ, start_response)
            except RequestTimeout:
                return self._timed_out(environ, start_response)
        if self.pid != os.getpid():
            self._watch()
        self.seq += 1
        self.sock = environ.get("gunicorn.socket")
        self.path = environ.get("PATH_INFO", "")
        self.started = time.monotonic()
        try:
            return self.wsgi_app(environ, start_response)
        except RequestTimeout:
            self._done()
            return self._timed_out(environ, start_response)
        finally:
            self._done()

    def _body(self, path):
        return errors.body(errors.timed_out(path, self.seconds))

    def _timed_out(self, environ, start_response):
        gunicorn = str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn")
        # exc_info lets gunicorn replace headers Flask may already have started; werkzeug's own servers
        # re-raise whenever it is given, so it goes to gunicorn only
        exc = errors.timed_out(environ.get("PATH_INFO", ""), self.seconds)
        answer = errors.wsgi_answer(start_response, exc, exc_info=sys.exc_info() if gunicorn else None)
        if gunicorn:
            os.kill(os.getpid(), signal.SIGTERM)
        return answer
