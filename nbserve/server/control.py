"""The master's control socket: how the kernel (or the CLI, or another master) talks to a running server.

One JSON object per line each way over a Unix stream socket. On Linux the socket lives in the abstract
namespace (``@nbserve-...``: no file to clean up, no path-length limit); elsewhere it is a file. Only a peer
of the same user (or root) is answered (SO_PEERCRED), because what the socket can ask for, serving another
artifact, runs code as the server's user.

Operations (master.py answers them):

* ``prove``  ``{"stage": DIR, "modules": [...]}``: import the modules, replay the staged draft in a forked
  child, reply ``{"report": PATH}`` (replay.py writes the report there);
* ``serve``  ``{"artifact": DIR, "model_id": ID, "staged": DIR?}``: verify and load that artifact and hand
  the listening socket to a new generation of workers; the old generation finishes what it has and exits;
* ``adopt``  ``{"env": {...}}`` with the listening socket passed along (SCM_RIGHTS): a warm master that was
  started ahead of time becomes this instance's server;
* ``status``: the model id, the workers, the artifact;
* ``listener``: reply with the listening socket itself, for a new master that takes over the port;
* ``stop``: finish the requests in hand and exit.

Imports nothing else from nbserve (the kernel's side, ``Controller``, is here too: it is the same protocol).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

LINE_LIMIT = 1 << 20


def address(name: str) -> str:
    """A socket address for ``name``: abstract on Linux, else a short file path in the temp dir."""
    if sys.platform.startswith("linux"):
        return "\0nbserve-" + name
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"nbserve-{name}.sock")


def listen(addr: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if not addr.startswith("\0"):
        try:
            os.unlink(addr)
        except FileNotFoundError:
            pass
    sock.bind(addr)
    if not addr.startswith("\0"):
        os.chmod(addr, 0o600)
    sock.listen(8)
    sock.setblocking(False)
    return sock


def peer_allowed(conn: socket.socket) -> bool:
    """Only the server's own user (or root) may control it."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:  # pragma: no cover - not Linux: the socket file's mode (0600) guards it
        return True
    try:
        _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i")))
    except OSError:
        return False
    return uid in (os.getuid(), 0)


def send(conn: socket.socket, message: dict, fds: Iterable[int] = ()) -> None:
    data = json.dumps(message).encode() + b"\n"
    if fds:
        socket.send_fds(conn, [data], list(fds))
    else:
        conn.sendall(data)


def receive(conn: socket.socket, want_fds: int = 0) -> tuple[dict, list[int]]:
    """One message (and the file descriptors sent with it)."""
    buf = b""
    fds: list[int] = []
    while not buf.endswith(b"\n"):
        if want_fds and not fds:
            data, got, _flags, _addr = socket.recv_fds(conn, 65536, want_fds)
            fds.extend(got)
        else:
            data = conn.recv(65536)
        if not data:
            raise ConnectionError("the control connection closed before a whole message")
        buf += data
        if len(buf) > LINE_LIMIT:
            raise ConnectionError("control message too long")
    return json.loads(buf), fds


def accept(sock: socket.socket, want_fds: int = 0) -> tuple[socket.socket, dict, list[int]] | None:
    """The server's end: (connection, message, file descriptors) of the next peer on ``sock`` that may control
    the server and sends a whole message; None when there is none (or it may not, or it sent nonsense).
    The caller answers with ``send`` and closes the connection."""
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return None
    conn.setblocking(True)
    conn.settimeout(30)
    if not peer_allowed(conn):
        conn.close()
        return None
    try:
        request, fds = receive(conn, want_fds)
    except (OSError, ValueError, ConnectionError):
        conn.close()
        return None
    return conn, request, fds


class ControlError(Exception):
    """The server refused or failed an operation; the message says why."""


class Controller:
    """The kernel's end: ``Controller(addr).call("prove", stage=..., modules=[...])`` -> the reply dict."""

    def __init__(self, addr: str, alive: Callable[[], bool] = lambda: True, connect_timeout: float = 60.0) -> None:
        self.addr = addr
        self.alive = alive
        self.connect_timeout = connect_timeout

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.002
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.addr)
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if not self.alive():
                    raise ControlError("the server exited before it could be reached") from None
                if time.monotonic() > deadline:
                    raise ControlError(
                        f"the server's control socket did not open within {self.connect_timeout:g} s"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def call(self, op: str, timeout: float = 600.0, fds: Iterable[int] = (), want_fds: int = 0, **args: Any) -> dict:
        reply, _ = self.call_with_fds(op, timeout=timeout, fds=fds, want_fds=want_fds, **args)
        return reply

    def call_with_fds(
        self, op: str, timeout: float = 600.0, fds: Iterable[int] = (), want_fds: int = 0, **args: Any
    ) -> tuple[dict, list[int]]:
        with self._connect() as sock:
            sock.settimeout(timeout)
            send(sock, {"op": op, **args}, fds)
            try:
                reply, got = receive(sock, want_fds)
            except (ConnectionError, OSError) as exc:
                if not self.alive():
                    raise ControlError("the server exited while answering") from None
                raise ControlError(f"no answer to {op!r} from the server: {exc}") from None
        if not reply.get("ok"):
            for fd in got:
                os.close(fd)
            raise ControlError(reply.get("error") or f"the server refused {op!r}")
        return reply, got
