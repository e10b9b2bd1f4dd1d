"""nbserve's gunicorn worker: one event loop reads and writes every connection without blocking, and the
model's app runs on the same (main) thread, one whole request at a time.

Why not gunicorn's own workers (docs/ARCHITECTURE.md, "The served process", has the measurements):

* the sync worker reads a request with a blocking read and no timeout, so one client that connects and sends
  nothing holds the only worker for a minute; gthread parks idle connections but still reads a request's
  head and body in a pool thread, so a few clients that trickle bytes take every thread;
* a model must see one call at a time (most are not thread-safe, and their native pools already use the
  cores), so threads would only add GIL contention, and signals (the request deadline in guards.py) reach
  only the main thread.

So the loop accepts, reads into per-connection buffers and parses (http11.py) until a request is whole, head
and body (a client gets ``read_timeout`` seconds to send it, else 408); then the app is called on this thread
with the body already in memory, and the answer is written without blocking (a slow reader costs a buffer).
Idle kept-alive connections wait in the selector (``keepalive`` seconds), up to ``max_connections``. Answers
whose length the app did not give are streamed: chunked, one item per turn of the loop, so other requests and
``/health`` are answered between items, and a client that goes away stops the generator.

Requests that arrive while the model computes queue in the kernel and in the buffers; the next turns of the
loop answer them in arrival order. With adaptive batching on (batching.py) the loop hands the whole requests
that are ready for a batchable method to ``Batching.run_together``, which makes one model call of them.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from gunicorn.workers import base

from . import errors, http11
from .deadline import RequestTimeout, retire_worker
from .http11 import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse

READ_SIZE = 262144
MAX_BUFFERED = 4 * 1024 * 1024  # unanswered bytes held per connection before we stop reading it
STREAM_HIGH_WATER = 1024 * 1024  # a stream waits for its reader past this many unsent bytes
LINGER = 1.0  # a retiring worker answers requests on its kept-alive connections this long, with Connection: close
TICK = 0.25  # how often timeouts are checked

_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class Conn:
    __slots__ = (
        "sock",
        "fd",
        "addr",
        "server",
        "inbuf",
        "head",
        "chunks",
        "scan",
        "out",
        "deadline",
        "busy",
        "close_after",
        "stream",
        "gone",
        "events",
    )

    def __init__(self, sock: socket.socket, addr: Any, server: Any) -> None:  # socket addresses
        self.sock, self.addr, self.server = sock, addr, server
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.head: http11.Head | None = None  # the request being read
        self.chunks: http11.ChunkedReader | None = None
        self.scan = 0  # where to look for the end of the head next
        self.out = bytearray()  # answer bytes not yet sent
        self.deadline = 0.0  # when this connection times out (reading a request, or idle)
        self.busy = False  # a request of this connection is waiting or being answered
        self.close_after = False
        self.stream: list | None = None  # an answer being streamed: [iterator, chunked, close_callable, environ]
        self.gone = False  # the client closed its side
        self.events = 0


if TYPE_CHECKING:
    Ready = tuple[Conn, http11.Head, bytes]  # a whole request, waiting for its answer


class LoopWorker(base.Worker):
    """gunicorn worker class ``nbserve.server.worker.LoopWorker`` (settings.py names it)."""

    def init_process(self) -> None:
        from .settings import Settings

        self.settings = Settings.from_env()
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, Conn] = {}
        self.ready: deque = deque()  # connections with a whole request, in arrival order
        self.streams: list = []
        self.accepting = False
        self.last_notify = 0.0
        self.next_tick = 0.0
        self.keepalive = self.settings.keepalive
        self.read_timeout = self.settings.read_timeout
        self.max_body = self.settings.max_body
        self.multiprocess = self.cfg.workers > 1
        super().init_process()

    # -- the loop -------------------------------------------------------------------------------------

    def run(self) -> None:
        # after post_worker_init, which loads a model the master left to the workers (forksafe.DeferredApp)
        self.batching = getattr(getattr(self.wsgi, "_app", None) or self.wsgi, "nbserve_batching", None)
        for listener in self.sockets:
            listener.setblocking(False)
        self.sel.register(self.PIPE[0], _READ, None)
        self._accepting(True)
        try:
            while self.alive:
                self._turn()
            self._drain()
        finally:
            for conn in list(self.conns.values()):
                self._close(conn)
            self.sel.close()

    def _turn(self, accept: bool = True) -> None:
        work = bool(self.ready) or any(c.stream and len(c.out) < STREAM_HIGH_WATER for c in self.streams)
        now = time.monotonic()
        timeout = 0.0 if work else max(0.0, min(self.next_tick - now, TICK))
        try:
            events = self.sel.select(timeout)
        except InterruptedError:  # pragma: no cover - select retries on EINTR since 3.5
            events = []
        for key, mask in events:
            conn = key.data
            if conn is None:
                self._drain_pipe()
            elif isinstance(conn, Conn):
                if mask & _WRITE:
                    self._flush(conn)
                if mask & _READ and conn.fd in self.conns:
                    self._read(conn)
            elif accept:
                self._accept(conn)
        if self.ready:
            item = self.ready.popleft()
            if self.batching is not None and self.batching.wants(item[1]):
                self._answer_together(item)
            else:
                self._answer(item)
        else:
            for conn in list(self.streams):
                if len(conn.out) < STREAM_HIGH_WATER:
                    self._advance(conn)
        now = time.monotonic()
        if now >= self.next_tick:
            self.next_tick = now + TICK
            self._expire(now)
            self.notify()
            if self.ppid != os.getppid():  # the master is gone: nobody will replace or stop us
                self.alive = False
            if accept:
                self._accepting(len(self.conns) < self.cfg.worker_connections)

    def _drain(self) -> None:
        """gunicorn asked this worker to stop: no new connections; finish what was asked, answer what arrives on
        open connections for LINGER seconds (with Connection: close), then close."""
        self._accepting(False)
        stop_by = time.monotonic() + float(self.cfg.graceful_timeout)
        linger = time.monotonic() + LINGER
        while self.conns and time.monotonic() < stop_by:
            now = time.monotonic()
            if now >= linger:
                for conn in list(self.conns.values()):
                    if not conn.busy and not conn.out and not conn.inbuf:
                        self._close(conn)
            if not self.conns:
                break
            self.next_tick = min(self.next_tick, now + 0.05)
            self._turn(accept=False)
            self.notify()

    def _drain_pipe(self) -> None:
        try:
            while os.read(self.PIPE[0], 4096):
                pass
        except OSError:
            pass

    def _accepting(self, on: bool) -> None:
        if on == self.accepting:
            return
        for listener in self.sockets:
            if on:
                self.sel.register(listener, _READ, listener)
            else:
                self.sel.unregister(listener)
        self.accepting = on

    def notify(self) -> None:
        now = time.monotonic()
        if now - self.last_notify >= 1.0:
            self.last_notify = now
            super().notify()

    # -- connections ----------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        server = listener.getsockname()
        for _ in range(64):
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return
                raise
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(sock, addr, server)
            conn.deadline = time.monotonic() + self.read_timeout  # a new connection must start a request
            self.conns[conn.fd] = conn
            conn.events = _READ
            self.sel.register(sock, _READ, conn)
            if len(self.conns) >= self.cfg.worker_connections:
                self._accepting(False)
                return

    def _watch(self, conn: Conn, events: int) -> None:
        if events != conn.events and conn.fd in self.conns:
            conn.events = events
            if events:
                self.sel.modify(conn.sock, events, conn)
            else:
                self.sel.modify(conn.sock, _READ, conn)  # always watch for the peer going away
                conn.events = _READ

    def _close(self, conn: Conn) -> None:
        if self.conns.pop(conn.fd, None) is None:
            return
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        if conn.stream is not None:
            self._end_stream(conn)
        try:
            conn.sock.close()
        except OSError:
            pass

    def _expire(self, now: float) -> None:
        for conn in list(self.conns.values()):
            if conn.busy or conn.out or now < conn.deadline:
                continue
            if conn.inbuf or conn.head is not None:
                self._refuse(conn, 408, f"the request was not received whole within {self.read_timeout:g} s")
            else:
                self._close(conn)  # idle past the keep-alive time (or never sent a byte)

    def _read(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            conn.gone = True
            if conn.busy and not conn.stream:
                return  # answered anyway (the client may only have closed its sending side); closed after
            self._close(conn)
            return
        if not conn.inbuf and conn.head is None and not conn.busy:
            conn.deadline = time.monotonic() + self.read_timeout  # the clock starts at a request's first byte
        conn.inbuf += data
        if conn.busy:
            if len(conn.inbuf) > MAX_BUFFERED:  # pipelined far ahead: read no more until answered
                self._pause(conn)
            return
        self._parse(conn)

    def _pause(self, conn: Conn) -> None:
        conn.events = 0
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass

    def _resume(self, conn: Conn) -> None:
        if conn.events == 0 and conn.fd in self.conns:
            conn.events = _READ | (_WRITE if conn.out else 0)
            self.sel.register(conn.sock, conn.events, conn)

    def _parse(self, conn: Conn) -> None:
        """Move a whole request from ``conn.inbuf`` into ``self.ready`` when there is one."""
        try:
            if conn.head is None:
                buf = conn.inbuf
                while buf[:2] == b"\r\n":  # empty lines before a request line are allowed (RFC 9112, 2.2)
                    del buf[:2]
                end = buf.find(b"\r\n\r\n", max(0, conn.scan - 3))
                if end < 0 or end > http11.MAX_HEAD:
                    conn.scan = len(buf)
                    if len(buf) > http11.MAX_HEAD:
                        raise ProtocolError(431, f"the request head is larger than {http11.MAX_HEAD} bytes")
                    return
                conn.scan = 0
                head = http11.parse_head(bytes(buf[:end]))
                del buf[: end + 4]
                conn.head = head
                if head.chunked:
                    conn.chunks = http11.ChunkedReader(self.max_body)
                elif head.length is not None and head.length > self.max_body:
                    raise ProtocolError(413, errors.too_large(self.max_body).message)
                if head.expect_continue and (head.chunked or head.length):
                    self._send(conn, http11.CONTINUE)
            head = conn.head
            if conn.chunks is not None:
                used = conn.chunks.feed(conn.inbuf)
                del conn.inbuf[:used]
                if not conn.chunks.done:
                    return
                body = conn.chunks.body()
                conn.chunks = None
            elif head.length:
                if len(conn.inbuf) < head.length:
                    return
                body = bytes(conn.inbuf[: head.length])
                del conn.inbuf[: head.length]
            else:
                body = b""
        except ProtocolError as exc:
            self._refuse(conn, exc.status, exc.message)
            return
        conn.busy = True
        conn.head = None
        self.ready.append((conn, head, body))

    def _refuse(self, conn: Conn, status: int, message: str) -> None:
        """Answer a request that cannot be read (4xx/5xx from the worker itself) and close the connection."""
        conn.head = conn.chunks = None
        conn.inbuf.clear()
        conn.busy = True
        conn.close_after = True
        self._send(conn, http11.simple_response(status, message))
        self._finish(conn)

    # -- answers --------------------------------------------------------------------------------------

    def _environ(self, conn: Conn, head: http11.Head, body: bytes) -> dict:
        environ = http11.environ_for(head, body, conn.server, conn.addr, self.batching is not None, self.multiprocess)
        environ["nbserve.socket"] = conn.sock
        environ["nbserve.worker"] = True
        return environ

    def _answer(self, item: Ready) -> None:
        conn, head, body = item
        if conn.fd not in self.conns:
            return  # the client left before its turn
        environ = self._environ(conn, head, body)
        self._respond(conn, head, environ, lambda start: self.wsgi(environ, start))

    def _answer_together(self, first: Ready) -> None:
        """Batching: the first ready request and every other one ready (or arriving within max_latency_ms of
        it) for a batchable method, answered so that their model calls are made together (batching.py)."""
        batching = self.batching
        assert batching is not None  # only called when the app batches
        wait_until = time.monotonic() + batching.max_wait
        while len(self.ready) + 1 < batching.max_batch and self._receiving() and time.monotonic() < wait_until:
            self._poll(wait_until - time.monotonic())
        items, rest = [first], deque[tuple]()
        for item in self.ready:
            (items if batching.wants(item[1]) and len(items) < batching.max_batch else rest).append(item)
        self.ready = rest
        tasks = []
        for conn, head, body in items:
            if conn.fd not in self.conns:
                continue
            environ = self._environ(conn, head, body)
            tasks.append(lambda c=conn, h=head, e=environ: self._respond(c, h, e, lambda start: self.wsgi(e, start)))
        batching.run_together(tasks)

    def _receiving(self) -> bool:
        """Whether some connection is in the middle of sending a request."""
        return any((c.inbuf or c.head is not None) and not c.busy for c in self.conns.values())

    def _poll(self, timeout: float) -> None:
        """Read what arrives within ``timeout`` (no answering): requests on their way join the batch."""
        try:
            events = self.sel.select(max(0.0, timeout))
        except InterruptedError:  # pragma: no cover
            return
        for key, mask in events:
            conn = key.data
            if isinstance(conn, Conn):
                if mask & _WRITE:
                    self._flush(conn)
                if mask & _READ and conn.fd in self.conns:
                    self._read(conn)
            elif conn is None:
                self._drain_pipe()

    def _respond(
        self, conn: Conn, head: http11.Head, environ: dict, call: Callable[[StartResponse], Iterable[bytes]]
    ) -> None:
        """Run ``call(start_response)`` (the app) and write its answer, or start streaming it."""
        started: list = []  # [status, headers, head sent]
        written: list[bytes] = []  # what the app wrote with the legacy write() callable

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
        ) -> Callable[[bytes], None]:
            if exc_info is not None and started and started[2]:
                raise exc_info[1].with_traceback(exc_info[2])  # type: ignore[union-attr]  # PEP 3333: sys.exc_info()
            started[:] = [status, headers, False]
            return written.append

        close = not head.keep_alive or not self.alive
        try:
            result = call(start_response)
            length = None
            for name, value in started[1] if started else ():
                low = name.lower()
                if low == "content-length":
                    length = int(value)
                elif low == "connection" and "close" in value.lower():
                    close = True
            if isinstance(result, (list, tuple)) or length is not None or head.method == "HEAD":
                try:
                    data = b"".join([*written, *result]) if written else b"".join(result)
                finally:
                    if hasattr(result, "close"):
                        result.close()
                if not started:
                    raise RuntimeError("the app returned without calling start_response")
                if head.method == "HEAD":
                    data = b""
                elif length is None:
                    length = len(data)
                if length is not None and head.method != "HEAD" and len(data) != length:
                    self.log.error("the app's Content-Length %s differs from its body (%s bytes)", length, len(data))
                    close = True
                    length = len(data)
                status_code = started[0][:3]
                if status_code[0] == "1" or status_code in ("204", "304"):
                    length, data = None, b""
                conn.close_after = close
                self._send(
                    conn, http11.response_head(started[0], started[1], head.version, close, length, False) + data
                )
                self._finish(conn)
                return
            # the app did not say how long its answer is: stream it (chunked, or until close for HTTP/1.0)
            chunked = head.version == "HTTP/1.1"
            iterator = iter(result)
            conn.stream = [iterator, chunked, getattr(result, "close", None), environ]
            first = self._next_item(conn)  # the first item decides the status line for most apps
            if not started:
                raise RuntimeError("the app returned without calling start_response")
            conn.close_after = close or not chunked
            self._send(
                conn, http11.response_head(started[0], started[1], head.version, conn.close_after, None, chunked)
            )
            started[2] = True
            self.streams.append(conn)
            for piece in written:
                self._send_item(conn, piece)
            if first is not None:
                self._send_item(conn, first)
            else:
                self._end_stream(conn, complete=True)
        except BaseException as exc:
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                raise
            self.log.exception("nbserve: error while answering %s %s", head.method, head.target[:200])
            if started and started[2]:  # the head is out: the stream ends short
                self._end_stream(conn)
                conn.close_after = True
                self._finish(conn)
            else:
                if conn.stream is not None:
                    self._end_stream(conn)
                conn.close_after = True
                self._send(conn, http11.simple_response(500, "the server failed to answer this request"))
                self._finish(conn)

    def _next_item(self, conn: Conn) -> bytes | None:
        """The next piece of a streamed answer (None at its end), with the request's deadline armed around it: the
        deadline applies to each item, not to the whole stream. Stuck in native code past it, the watch writes
        what was not sent yet, then the stream's own ending (the app's ``nbserve.stream_failure``), and ends
        this worker."""
        assert conn.stream is not None
        iterator, chunked, _close, environ = conn.stream
        deadline = environ.get("nbserve.deadline")
        if deadline is None or not deadline.usable():
            try:
                return next(iterator)
            except StopIteration:
                return None
        fail = environ.get("nbserve.stream_failure")

        def stuck(exc: BaseException) -> bytes:
            tail = fail(exc) if fail is not None else b""
            if chunked:
                tail = (b"%x\r\n" % len(tail) + tail + b"\r\n" if tail else b"") + b"0\r\n\r\n"
            return bytes(conn.out) + tail

        deadline.begin(environ.get("PATH_INFO", ""), (conn.sock,), answer=stuck)
        try:
            return next(iterator)
        except StopIteration:
            return None
        finally:
            deadline.end()

    def _advance(self, conn: Conn) -> None:
        """One more piece of a streamed answer (a turn of the loop per piece, so others are answered between)."""
        if conn.gone:
            self._end_stream(conn)
            self._close(conn)
            return
        try:
            piece = self._next_item(conn)
        except BaseException as exc:
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                raise
            if isinstance(exc, RequestTimeout) and conn.stream is not None:  # past the deadline, unhandled
                retire_worker(conn.stream[3])
            else:
                self.log.exception("nbserve: a streamed answer failed")
            self._end_stream(conn)
            conn.close_after = True
            self._finish(conn)
            return
        if piece is None:
            self._end_stream(conn, complete=True)
            return
        self._send_item(conn, piece)

    def _send_item(self, conn: Conn, piece: bytes) -> None:
        if not piece:
            return
        if conn.stream is not None and conn.stream[1]:
            self._send(conn, b"%x\r\n" % len(piece) + piece + b"\r\n")
        else:
            self._send(conn, piece)

    def _end_stream(self, conn: Conn, complete: bool = False) -> None:
        stream, conn.stream = conn.stream, None
        if conn in self.streams:
            self.streams.remove(conn)
        if stream is None:
            return
        close = stream[2]
        if close is not None:
            try:
                close()  # a generator's close(): GeneratorExit inside it, so it stops for a client that left
            except Exception:
                self.log.exception("nbserve: closing a streamed answer failed")
        if complete:
            if stream[1]:
                self._send(conn, b"0\r\n\r\n")
            self._finish(conn)

    def _send(self, conn: Conn, data: bytes) -> None:
        if conn.fd not in self.conns:
            return
        if conn.out:
            conn.out += data
            return
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            conn.gone = True
            self._close(conn)
            return
        if sent < len(data):
            conn.out += data[sent:]
            self._watch(conn, _READ | _WRITE)

    def _flush(self, conn: Conn) -> None:
        if not conn.out:
            self._watch(conn, _READ)
            return
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            conn.gone = True
            self._close(conn)
            return
        del conn.out[:sent]
        if not conn.out:
            self._watch(conn, _READ)
            if not conn.busy:
                self._done(conn)

    def _finish(self, conn: Conn) -> None:
        """The answer to the current request has been handed to _send (and maybe sent)."""
        conn.busy = False
        if not conn.out:
            self._done(conn)

    def _done(self, conn: Conn) -> None:
        """Everything of the last answer was sent: close, or wait for the connection's next request."""
        if conn.close_after or conn.gone:
            self._close(conn)
            return
        conn.deadline = time.monotonic() + (self.keepalive if not conn.inbuf else self.read_timeout)
        if conn.events == 0:
            self._resume(conn)
        if conn.inbuf:
            self._parse(conn)  # a pipelined request already here
