"""What every runtime shares: the interface the workspace calls, ports, health waits, log tails."""

from __future__ import annotations

import socket
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import NbserveError, PortInUseError

if TYPE_CHECKING:
    from ..resources import InstanceStatus


class Runtime:
    """A place where instances run. The core owns the records; a runtime starts and observes.

    ``start`` launches the server for ``version`` on ``row.host``/``row.port`` (the port may be None for
    runtimes that pick their own), waits until /health answers, and returns the handle (a JSON-able
    dict, stored with the instance) by which the runtime finds the instance again. ``status`` answers
    from the runtime itself: "running", "starting", "restarting", "stopped", "exited" or "missing".

    Runtimes report, the core decides: a runtime never writes the registry. What it learns about an
    instance (the port it really listens on, which can move) it sets on the row it was given, and the
    core stores it; a runtime whose spec declares ``proves_registration`` hands the server's replay
    report back from ``prove`` and the core registers the version.
    """

    name = "runtime"

    def __init__(self, workspace):
        self.home = Path(workspace.home)

    def instance_dir(self, row) -> Path:
        path = self.home / "instances" / row.id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self, row, version, progress) -> dict:
        raise NotImplementedError

    def status(self, row) -> InstanceStatus:
        raise NotImplementedError

    def url(self, row) -> str | None:
        return f"http://{row.host}:{row.port}" if row.port else None

    def stop(self, row) -> None:
        raise NotImplementedError

    def logs(self, row, tail=200) -> str:
        raise NotImplementedError

    def remove(self, row) -> None:
        raise NotImplementedError

    # -- for runtimes whose server doubles as the proof of a new registration (proves_registration) --

    def start_early(self, row, progress) -> None:
        """Start a server with nothing to serve yet (sets ``row.port`` and ``row.handle``): it gets ready while
        the kernel captures the object; then ``prove`` and ``hand_over`` (or ``abort_proof``)."""
        raise NotImplementedError

    def prove(self, row, staged, progress) -> dict:
        """The server started by ``start_early`` replays the staged draft (``staged.stage_dir``, see
        server/replay.py) and reports; the report is returned. The core then registers the version and calls
        ``hand_over``, or ``abort_proof`` when it refuses the report."""
        raise NotImplementedError

    def hand_over(self, row, staged, version) -> dict:
        """Tell the server which registered version it serves; wait until it answers as it; return the handle."""
        raise NotImplementedError

    def abort_proof(self, row, staged, reason: str) -> None:
        """The core refused the report: stop the server."""
        raise NotImplementedError


def kernel_python(version) -> str:
    """The interpreter that registered the model (the kernel's, with its packages), else this one."""
    python = getattr(version, "python_executable", None)
    return python if python and Path(python).exists() else sys.executable


def report_phase(progress, phase: str) -> None:
    """Tell a progress reporter that listens for phases (one with a ``phase`` method, such as the
    Jupyter extension's jobs) that one begins: "building" (image work) or "starting" (the server).
    Plain callables only ever get the messages."""
    hook = getattr(progress, "phase", None)
    if callable(hook):
        hook(phase)


def port_available(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as gunicorn and Docker bind: a port in TIME_WAIT after a stop is free to reuse
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def choose_port(host: str, port: int | None) -> int:
    if port is None:
        return free_port(host)
    if isinstance(port, str) and port.strip().lstrip("+-").isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int):
        raise NbserveError(f"port must be a TCP port number from 1 to 65535 (or none for a free one); got {port!r}")
    if not 0 < port < 65536:
        raise NbserveError(f"port {port} is out of range: a TCP port is from 1 to 65535 (or none for a free one)")
    if not port_available(host, port):
        raise PortInUseError(f"port {port} on {host} is in use; pass another port, or none to get a free one")
    return port


def pick_port(row) -> int:
    """The port to start on: the one the user asked for, else the previous one if still free, else any."""
    requested = row.options.get("port")
    if requested:
        return choose_port(row.host, requested)
    if row.port and port_available(row.host, row.port):
        return row.port
    return free_port(row.host)


def wait_healthy(
    url: str, alive, timeout: float, failure, on_failure=lambda: None, max_delay: float = 0.2, model=None
) -> None:
    """Poll url/health until it answers 200 (as ``model``, when given: another server answering on that port
    is not ours); raise failure(reason) if the server dies or time runs out. The pause between polls grows
    to ``max_delay``: whatever of it is left when the server comes up is added to the start as the caller
    sees it."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    other = None
    while True:
        if not alive():
            on_failure()
            raise failure("the server exited during start")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    answered = _model_of(resp.read())
                    if model is None or answered == model:
                        return
                    other = answered
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            on_failure()
            if other is not None:
                raise failure(f"{url} answers as {other!r}, not {model!r}: another server has this address")
            raise failure(f"/health did not answer within {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 1.5, max_delay)


def _model_of(body: bytes):
    import json

    try:
        return json.loads(body).get("model")
    except (ValueError, AttributeError):
        return None


def log_tail(path: Path, lines: int = 200) -> str:
    try:
        with open(path, "rb") as f:
            return b"".join(deque(f, maxlen=lines)).decode(errors="replace")
    except FileNotFoundError:
        return ""
