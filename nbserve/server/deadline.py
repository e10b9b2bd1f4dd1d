"""The request deadline: a request (or a batched model call, or one item of a streamed answer) still running
after ``timeout`` seconds is interrupted and answered with a JSON 504.

Per request this notes the start time and a sequence number (no system call, no lock). The housekeeping
thread of the worker (housekeeping.py) looks a few times per deadline and, when one is past, sends SIGUSR2
(unused by gunicorn's workers) to the main thread, whose handler raises ``RequestTimeout`` there if that same
work is still running. The worker (worker.py) runs the app on its main thread, so the signal lands in it.

Work stuck in native code (a C loop, a lock or an OpenMP barrier that never returns to the interpreter) never
runs that handler. Such code has released the GIL (else the housekeeping thread could not run either), so the
watch answers itself: after a short grace it writes the JSON 504 straight to the clients' sockets and ends
the worker, which gunicorn replaces; no client sees a dropped connection. gunicorn's own timeout (a little
longer) stays the backstop for code that holds the GIL forever.

After a timeout the interrupted code may have been holding a lock inside a library, so the worker asks to be
replaced once the answer is sent (SIGTERM to itself: gunicorn's graceful exit). Imports nothing else from
nbserve.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from . import errors, housekeeping

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Iterable
    from types import FrameType

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class RequestTimeout(BaseException):
    """Raised inside work that ran past its deadline. A BaseException, so that neither the views'
    ``except Exception`` nor the user's own handlers swallow it."""


SIGNAL = getattr(signal, "SIGUSR2", None)


class Deadline:
    """The deadline of whatever runs on this process's main thread; one per worker process."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.grace = min(2.0, max(0.5, self.seconds / 4))  # for the interpreter to act before the watch does
        self.started: float | None = None  # monotonic start of the work in progress, None between
        self.seq = 0
        self.fired = 0  # the last work the watch interrupted
        self.fired_at = 0.0
        self.claimed = 0  # the work the watch answered itself (then the worker ends)
        self.socks: list[socket.socket] = []
        self.answer: Callable[[BaseException], bytes] | None = (
            None  # what the watch writes for work stuck in native code (default: a 504 answer)
        )
        self.limit = self.seconds  # this work's limit (a job's is longer than a request's)
        self.what = ""
        self.lock = threading.Lock()
        self.main: int | None = None
        if SIGNAL is not None and self.seconds > 0:
            # the handler in each worker, on its main thread (gunicorn resets signals after the fork); the watch
            # on the worker's housekeeping thread
            housekeeping.on_start(self._install)
            housekeeping.every(min(0.25, self.seconds / 4), self._watch, "deadline")

    def _install(self) -> None:
        if SIGNAL is not None and threading.current_thread() is threading.main_thread():
            self.main = threading.get_ident()
            signal.signal(SIGNAL, self._interrupt)

    def usable(self) -> bool:
        return self.main is not None and threading.get_ident() == self.main

    def begin(
        self,
        what: str,
        socks: Iterable[socket.socket] = (),
        answer: Callable[[BaseException], bytes] | None = None,
        seconds: float | None = None,
    ) -> int:
        """Work starts. ``answer(exc)``: the bytes the watch writes to ``socks`` should the work be stuck in native
        code past its deadline (default: an HTTP 504 answer; a stream in progress writes its own ending);
        ``seconds``: this work's limit (default the deadline's)."""
        self.seq += 1
        self.socks = list(socks)
        self.answer = answer
        self.limit = self.seconds if seconds is None else float(seconds)
        self.what = what
        self.started = time.monotonic()
        return self.seq

    def end(self) -> None:
        with self.lock:
            claimed = self.claimed == self.seq
            self.started = None
        if claimed:  # the watch is answering and ending this worker: write nothing more
            while True:
                time.sleep(60)

    def _interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self.started is not None and self.seq == self.fired:  # not work that finished meanwhile
            raise RequestTimeout

    def interrupt(self) -> bool:
        """Stop the work in progress now, as if its deadline had passed (a cancelled job); False when none runs."""
        started, seq = self.started, self.seq  # no lock: this may run in a signal handler of the main thread
        if started is None or self.main is None:
            return False
        if seq != self.fired:
            self._fire(seq)
        return True

    def _fire(self, seq: int) -> None:
        self.fired, self.fired_at = seq, time.monotonic()
        if self.main is not None and SIGNAL is not None:
            signal.pthread_kill(self.main, SIGNAL)

    def _watch(self) -> None:
        started, seq = self.started, self.seq
        if started is None:
            return
        now = time.monotonic()
        if seq != self.fired:
            if now - started > self.limit:
                self._fire(seq)
        elif now - self.fired_at > self.grace and (self.socks or self.answer is not None):
            self._answer_stuck(seq)

    def _answer_stuck(self, seq: int) -> None:
        with self.lock:
            if self.started is None or self.seq != seq:
                return  # it finished meanwhile
            self.claimed = seq
        exc = errors.timed_out(self.what, self.limit)
        if self.answer is not None:
            data = self.answer(exc)
        else:
            body = errors.body(exc)
            head = (
                "HTTP/1.1 504 Gateway Timeout\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            data = head.encode() + body
        sys.stderr.write(
            f"nbserve: {self.what} is stuck in native code past its deadline of {self.limit:g} s: answered and "
            f"ending worker {os.getpid()}, which gunicorn replaces\n"
        )
        sys.stderr.flush()
        for sock in self.socks:
            try:
                sock.settimeout(2.0)
                sock.sendall(data)
            except OSError:
                pass
        os._exit(1)

    def body(self, what: str) -> bytes:
        return errors.body(errors.timed_out(what, self.seconds))


def retire_worker(environ: WSGIEnvironment) -> None:
    """After a timeout: ask to be replaced once the answer is out (only under nbserve's worker: a test client
    or another server keeps its process)."""
    if environ.get("nbserve.worker"):
        os.kill(os.getpid(), signal.SIGTERM)


class DeadlineMiddleware:
    """WSGI middleware: the request's deadline on the main thread; a 504 when it fires. On another thread (a
    request waiting for a batched model call, batching.py) the wait itself raises RequestTimeout."""

    def __init__(self, wsgi_app: WSGIApplication, deadline: Deadline) -> None:
        self.wsgi_app = wsgi_app
        self.deadline = deadline

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("nbserve.job") is not None:  # a job's call: the job runner (jobs.py) holds its own deadline
            return self.wsgi_app(environ, start_response)
        deadline = self.deadline
        environ["nbserve.deadline"] = deadline
        if not deadline.usable():
            try:
                return self.wsgi_app(environ, start_response)
            except RequestTimeout:
                return self._timed_out(environ, start_response)
        sock = environ.get("nbserve.socket")
        deadline.begin(environ.get("PATH_INFO", ""), (sock,) if sock is not None else ())
        try:
            return self.wsgi_app(environ, start_response)
        except RequestTimeout:
            deadline.end()
            return self._timed_out(environ, start_response)
        finally:
            deadline.end()

    def _timed_out(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        # exc_info lets nbserve's worker replace a status the app may have started; werkzeug's own servers
        # re-raise whenever it is given, so it goes to nbserve's worker only
        exc = errors.timed_out(environ.get("PATH_INFO", ""), self.deadline.seconds)
        answer = errors.wsgi_answer(
            start_response, exc, exc_info=sys.exc_info() if environ.get("nbserve.worker") else None
        )
        retire_worker(environ)
        return answer
