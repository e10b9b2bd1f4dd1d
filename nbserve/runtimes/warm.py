"""A warm server: one idle ``python -m nbserve.server --warm`` per kernel, started ahead of time with flask, the
server and the libraries the kernel's models use already imported, so that the next serve skips the
interpreter start and the imports (server/master.py: ``wait_for_adoption``).

The next process-runtime serve *adopts* it: the kernel hands it the instance's settings, working directory,
bound listening socket and log (over its control socket, the descriptors with SCM_RIGHTS), and it becomes that
instance's server, in a session of its own, so that it outlives the kernel like any instance. Then a new warm
server is started in the background for the serve after. An idle warm server exits when its kernel does (it
watches a pipe whose other end only the kernel holds).

What an idle one costs: a process with the libraries imported and nothing loaded (about 70 MB resident with
numpy, 150 MB with scikit-learn and pandas; no CPU while idle). ``NBSERVE_WARM=0`` or ``"warm_server": false``
in ``$NBSERVE_HOME/config.json`` turns it off.
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .. import config
from ..server.shared import ControlError, Controller, control_address

PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
# libraries worth having imported in a warm server when the kernel has them loaded (at %load_ext nbserve)
MODEL_LIBRARIES = (
    "numpy",
    "pandas",
    "sklearn",
    "scipy",
    "xgboost",
    "lightgbm",
    "catboost",
    "statsmodels",
    "torch",
    "keras",
    "transformers",
    "onnxruntime",
    "prophet",
)


def enabled() -> bool:
    value = os.environ.get("NBSERVE_WARM")
    if value is not None:
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    try:
        return bool(config.settings().get("warm_server", True))
    except Exception:
        return True


class WarmServer:
    def __init__(self, python: str, modules: set):
        self.python = python
        self.modules = set(modules)
        self.name = f"warm-{os.getpid()}-{secrets.token_hex(4)}"
        read_end, self._parent = os.pipe()  # the kernel holds the write end: EOF when it is gone
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GUNICORN", "NBSERVE_"))}
        self.log = Path(tempfile.gettempdir()) / f"nbserve-{self.name}.log"
        env.update(
            PYTHONPATH=PACKAGE_PARENT,
            PYTHONUNBUFFERED="1",
            NBSERVE_CONTROL=self.name,
            NBSERVE_WARM_PARENT_FD=str(read_end),
            NBSERVE_WARM_LOG=str(self.log),  # removed by the server when it exits unadopted
        )
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [python, "-m", "nbserve.server", "--warm", *sorted(self.modules)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(read_end,),
                cwd="/",  # a directory that outlives any test's or kernel's (it chdirs to the instance's)
            )
        os.close(read_end)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def controller(self) -> Controller:
        return Controller(control_address(self.name), alive=self.alive, connect_timeout=120)

    def adopt(self, env: dict, cwd: str, listen_fd: int, log_fd: int) -> None:
        """Make it the server of an instance (raises ControlError if it cannot be)."""
        self.controller().call("adopt", timeout=30, env=env, cwd=cwd, fds=(listen_fd, log_fd))
        os.close(self._parent)  # adopted: it no longer watches the kernel
        try:
            self.log.unlink()
        except OSError:
            pass

    def stop(self) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            os.close(self._parent)
        except OSError:
            pass
        try:
            self.log.unlink()
        except OSError:
            pass


_idle: dict[str, WarmServer] = {}  # interpreter -> its idle warm server (one per kernel and interpreter)
_lock = threading.Lock()


def take(python: str) -> WarmServer | None:
    """The idle warm server of ``python``, handed over to the caller (None when there is none, or it died)."""
    with _lock:
        warm = _idle.pop(python, None)
    if warm is not None and not warm.alive():
        warm.stop()
        return None
    return warm


def prepare(python: str, modules=()) -> None:
    """Have an idle warm server of ``python`` with ``modules`` imported (started in the background; one that
    is idle already is asked to import what it lacks)."""
    if not enabled():
        return
    modules = {m for m in modules if m and not m.startswith("_") and m not in ("__main__", "nbserve")}
    with _lock:
        warm = _idle.get(python)
        if warm is not None and warm.alive():
            missing = modules - warm.modules
            if not missing:
                return
            warm.modules |= missing
        else:
            _idle[python] = WarmServer(python, modules)
            return
    threading.Thread(target=_import_more, args=(warm, missing), daemon=True).start()


def prepare_for_kernel() -> None:
    """At ``%load_ext nbserve``: a warm server of this interpreter with the model libraries the kernel has."""
    prepare(sys.executable, [m for m in MODEL_LIBRARIES if m in sys.modules])


def _import_more(warm: WarmServer, modules) -> None:
    try:
        warm.controller().call("import", timeout=300, modules=sorted(modules))
    except ControlError:
        pass


@atexit.register
def _stop_idle() -> None:
    with _lock:
        idle = list(_idle.values())
        _idle.clear()
    for warm in idle:
        warm.stop()
