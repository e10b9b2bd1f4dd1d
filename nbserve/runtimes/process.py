"""The process runtime: the model server (``python -m nbserve.server``) as a local subprocess on 127.0.0.1.

The subprocess runs under the interpreter that registered the model (the kernel's), in a session of its own,
so it outlives the kernel and is found again from its pid (checked against the pid's start time, so a reused
pid is not mistaken for ours). The kernel binds the port itself, once, and hands the bound socket to the
server: a port in use is refused at once, and two servers can never share one. The kernel then talks to the
server over its control socket (server/control.py): prove a draft, serve a registered version, update in
place.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from ..errors import InstanceStartError, PortInUseError
from ..resources import InstanceStatus
from ..server.shared import ControlError, Controller, control_address, read_report
from . import warm
from .base import Runtime, free_port, kernel_python, log_tail, wait_healthy
from .limits import server_command, server_settings

PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
BACKLOG = 2048


def _proc_stat(pid: int):
    """(state letter, start time in clock ticks) from /proc, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = data[data.rindex(")") + 2 :].split()
    return rest[0], int(rest[19])


def _alive(pid: int | None, start_ticks: int | None) -> bool:
    if not pid:
        return False
    if not os.path.exists("/proc"):  # not Linux: trust the pid
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
    stat = _proc_stat(pid)
    if stat is None:
        return False
    state, ticks = stat
    if state in ("Z", "X"):
        _reap(pid)
        return False
    return start_ticks is None or ticks == start_ticks


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def bind(host: str, port: int | None) -> socket.socket:
    """A listening socket on host:port (any free port when None): bound here, once, and handed to the server."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT after a stop is free
    try:
        sock.bind((host, int(port or 0)))
    except OSError as exc:
        sock.close()
        raise PortInUseError(
            f"port {port} on {host} is in use ({exc.strerror}); pass another port, or none to get a free one"
        ) from None
    sock.listen(BACKLOG)
    return sock


class ProcessRuntime(Runtime):
    name = "process"

    def __init__(self, workspace):
        super().__init__(workspace)
        self._procs: dict[str, subprocess.Popen] = {}  # row id -> a server this runtime object started

    # -- starting -------------------------------------------------------------------------------------

    def start(self, row, version, progress):
        """Start the server for a registered ``version`` and wait until it answers /health as that version."""
        proc = self._launch(row, version, progress, artifact=version)
        self._wait_healthy(row, version, proc)
        return row.handle

    def start_early(self, row, progress, python: str | None = None) -> None:
        """Start a server that has nothing to serve yet (a live ``serve(obj)``): it imports its own modules
        while the kernel pickles and drafts, then is told what to prove (``prove``) and serve (``hand_over``)."""
        self._launch(row, None, progress, python=python)

    def prove(self, row, staged, progress) -> dict:
        """The server imports the draft's modules, replays the staged sample in a forked child and reports."""
        timeout = float(row.options.get("start_timeout", 120))
        try:
            reply = self._controller(row).call(
                "prove", timeout=timeout, stage=str(staged.stage_dir), modules=sorted(staged.draft.modules)
            )
        except ControlError as exc:
            raise self._failure(row, staged, str(exc)) from None
        return read_report(reply["report"])

    def hand_over(self, row, staged, version) -> dict:
        """Tell the server which registered version it serves (it checks it is the artifact it proved); then have
        a warm server ready for the next serve, with this model's libraries imported."""
        self._serve(row, version, staged=str(staged.artifact_dir))
        with open(self.instance_dir(row) / "server.log", "ab") as log:
            log.write(f"--- the server's replay proved the artifact: registered as {version.id}\n".encode())
        self._wait_healthy(row, version, self._procs.get(row.id))
        warm.prepare(row.handle["python"], staged.draft.modules)
        return row.handle

    def abort_proof(self, row, staged, reason: str) -> None:
        self._kill(row.handle.get("pid"), row.handle.get("start_ticks"))

    def update(self, row, version, progress, staged=None):
        """Serve ``version`` at the instance's URL without dropping a request.

        Same interpreter: the running server verifies and loads the new artifact and forks a new generation of
        workers on the same listening socket; the old generation finishes its requests and exits. Another
        interpreter (the version was registered elsewhere): a new server takes the listening socket over from
        the old one (passed along the control socket), then the old one stops accepting and finishes."""
        handle = dict(row.handle)
        python = kernel_python(version)
        if not handle.get("control"):
            raise InstanceStartError(
                f"{row.id} was started by an nbserve without in-place updates: restart it once "
                f"(inst.stop(); inst.start()), then update it"
            )
        if python == handle.get("python") or staged is not None:
            progress(f"{row.id}: the server loads {version.id} and replaces its workers")
            self._serve(row, version, staged=None if staged is None else str(staged.artifact_dir))
            self._wait_model(row, version.id)
            return row.handle
        progress(f"{row.id}: starting {version.id} under {python}, taking over port {row.port}")
        try:
            _, fds = self._controller(row).call_with_fds("listener", want_fds=1)
        except ControlError as exc:
            raise self._failure(row, version, f"the running server did not hand its socket over: {exc}") from None
        listener = socket.socket(fileno=fds[0])
        old = handle
        proc = self._launch(row, version, progress, artifact=version, listener=listener)
        self._wait_healthy(row, version, proc)
        self._kill(old.get("pid"), old.get("start_ticks"), timeout=float(row.options.get("drain_timeout", 30)))
        return row.handle

    def route(self, row, versions, shadow, progress) -> dict:
        """Serve several versions at the instance's URL (``versions``: [(ModelVersion, weight)], a split), and
        copy a share of the requests to a shadow candidate (``shadow``: {"url", "share", "token", "candidate"}
        or None): a new generation of workers in the running server, as ``update`` makes one."""
        python = row.handle.get("python")
        foreign = [v.id for v, _ in versions if kernel_python(v) != python]
        if foreign:
            raise InstanceStartError(
                f"{', '.join(foreign)} registered under another interpreter than {row.id}'s server ({python}): "
                f"one server cannot load them side by side; update to one version instead"
            )
        primary = max(versions, key=lambda vw: vw[1])[0]
        try:
            self._controller(row).call(
                "serve",
                timeout=float(row.options.get("start_timeout", 120)),
                versions=[{"artifact": str(v.artifact_dir), "model_id": v.id, "weight": w} for v, w in versions],
                shadow=shadow,
            )
        except ControlError as exc:
            raise self._failure(row, primary, str(exc)) from None
        self._wait_model(row, primary.id)
        return row.handle

    def peer_url(self, row) -> str | None:
        """The address another instance's server reaches this one at (a shadow's copies go there)."""
        return self.url(row)

    def _serve(self, row, version, staged=None):
        try:
            self._controller(row).call(
                "serve",
                timeout=float(row.options.get("start_timeout", 120)),
                artifact=str(version.artifact_dir),
                model_id=version.id,
                staged=staged,
            )
        except ControlError as exc:
            raise self._failure(row, version, str(exc)) from None

    def _controller(self, row) -> Controller:
        h = row.handle
        return Controller(control_address(h["control"]), alive=lambda: _alive(h.get("pid"), h.get("start_ticks")))

    def _launch(self, row, version, progress, artifact=None, python=None, listener=None) -> subprocess.Popen:
        """Start ``python -m nbserve.server`` for the row (serving ``artifact`` when given, else waiting to be
        told) on the row's port, bound here; sets ``row.port`` and ``row.handle`` and returns the process."""
        if python is None:
            python = kernel_python(version) if version is not None else kernel_python(None)
            if version is not None and python != version.python_executable:
                progress(
                    f"the interpreter that registered {version.id} ({version.python_executable}) is gone; "
                    f"using {python}"
                )
        if listener is None:
            requested = row.options.get("port")
            try:
                listener = bind(row.host, requested or row.port)
            except PortInUseError:
                if requested:
                    raise
                listener = bind(row.host, None)  # the previous port was taken meanwhile: any free one
        row.port = listener.getsockname()[1]
        where = dict(
            metrics_dir=str(self.instance_dir(row) / "metrics"),
            jobs_dir=str(self.instance_dir(row) / "jobs"),  # kept across stop and start: queued jobs wait there
        )
        if artifact is not None:
            where.update(artifact=str(artifact.artifact_dir), model_id=artifact.id)
        log_path = self.instance_dir(row) / "server.log"
        label = artifact.id if artifact is not None else row.name  # its version is known once registered
        proc = self._adopt_warm(row, python, artifact, where, listener, log_path, label)
        if proc is not None:
            return proc
        control_name = f"{row.id}-{secrets.token_hex(4)}"
        settings = server_settings(row.options, listen_fd=listener.fileno(), control=control_name, **where)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GUNICORN", "NBSERVE_"))}
        env.update(_server_env(artifact, settings), PYTHONPATH=PACKAGE_PARENT, PYTHONUNBUFFERED="1")
        try:
            with open(log_path, "ab") as log:
                log.write(f"--- starting {label} on {row.host}:{row.port} at {time.ctime()}\n".encode())
                log.flush()
                proc = subprocess.Popen(
                    server_command(python),
                    cwd=self.instance_dir(row),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(listener.fileno(),),
                )
        finally:
            listener.close()  # the server holds it now
        self._record(row, proc, python, log_path, control_name)
        return proc

    def _adopt_warm(self, row, python, artifact, where, listener, log_path, label) -> subprocess.Popen | None:
        """Hand the instance to this kernel's idle warm server of ``python`` (runtimes/warm.py), if there is one:
        its interpreter has started and imported flask and the model libraries already. None when there is none
        (or it could not be adopted): the caller starts a server."""
        server = warm.take(python)
        if server is None:
            return None
        # the environment a started server would get (the kernel's as of now, not as of the warm server's start)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GUNICORN", "NBSERVE_"))}
        env.update(_server_env(artifact, server_settings(row.options, control=server.name, **where)))
        env.update(PYTHONPATH=PACKAGE_PARENT, PYTHONUNBUFFERED="1")
        try:
            with open(log_path, "ab") as log:
                log.write(f"--- starting {label} on {row.host}:{row.port} at {time.ctime()} (warm)\n".encode())
                log.flush()
                server.adopt(env, str(self.instance_dir(row)), listener.fileno(), log.fileno())
        except ControlError:
            server.stop()
            return None
        listener.close()  # the server holds it now
        self._record(row, server.proc, python, log_path, server.name)
        return server.proc

    def _record(self, row, proc, python, log_path, control_name) -> None:
        stat = _proc_stat(proc.pid)
        row.handle = {
            "pid": proc.pid,
            "start_ticks": stat[1] if stat else None,
            "python": python,
            "log": str(log_path),
            "control": control_name,
        }
        self._procs[row.id] = proc

    def _failure(self, row, version, why: str) -> InstanceStartError:
        log_path = self.instance_dir(row) / "server.log"
        return InstanceStartError(
            f"{version.id} did not start on the process runtime: {why}\n"
            f"--- log tail ({log_path}) ---\n{log_tail(log_path, 30)}"
        )

    def _wait_healthy(self, row, version, proc) -> None:
        # polls every 20 ms at most: a refused connection on 127.0.0.1 costs microseconds
        handle = row.handle
        alive = (lambda: proc.poll() is None) if proc is not None else (lambda: _alive(handle["pid"], None))
        wait_healthy(
            f"http://{row.host}:{row.port}",
            alive=alive,
            timeout=row.options.get("start_timeout", 120),
            failure=lambda why: self._failure(row, version, why),
            on_failure=lambda: self._kill(handle["pid"], handle["start_ticks"]),
            max_delay=0.02,
            model=version.id,
        )

    def _wait_model(self, row, model_id: str, timeout: float = 60.0) -> None:
        """After an in-place update: wait until the new version answers and the old workers have finished
        (they answer what arrives on their open connections for a second, then exit), so that every request
        sent after the update returns gets the new version."""
        deadline = time.monotonic() + timeout
        controller = self._controller(row)
        while True:
            if _served_model(f"http://{row.host}:{row.port}") == model_id:
                try:
                    if not controller.call("status", timeout=5)["retiring"]:
                        return
                except ControlError:
                    pass
            if time.monotonic() > deadline:
                raise InstanceStartError(
                    f"{row.id} did not answer as {model_id} within {timeout:g} s\n"
                    f"--- log tail ({self.instance_dir(row) / 'server.log'}) ---\n"
                    f"{log_tail(self.instance_dir(row) / 'server.log', 30)}"
                )
            time.sleep(0.01)

    # -- observing and stopping -------------------------------------------------------------------------

    def status(self, row) -> InstanceStatus:
        h = row.handle
        if _alive(h.get("pid"), h.get("start_ticks")):
            return InstanceStatus.RUNNING
        return InstanceStatus.STOPPED if row.desired == "stopped" else InstanceStatus.EXITED

    def stop(self, row) -> None:
        self._kill(row.handle.get("pid"), row.handle.get("start_ticks"))

    def _kill(self, pid, start_ticks, timeout=10.0) -> None:
        if not _alive(pid, start_ticks):
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                _reap(pid)
                if not _alive(pid, start_ticks):
                    return
                time.sleep(0.02)

    def logs(self, row, tail=200) -> str:
        return log_tail(self.instance_dir(row) / "server.log", tail)

    def remove(self, row) -> None:
        self._procs.pop(row.id, None)
        self.stop(row)
        shutil.rmtree(self.instance_dir(row), ignore_errors=True)


def _server_env(artifact, settings) -> dict:
    """What a server is told in its environment: the version's captured variables (KERAS_BACKEND...), its
    settings, and the registry it belongs to."""
    env = {**(getattr(artifact, "environment", None) or {}), **settings.to_env()}
    if "NBSERVE_HOME" in os.environ:
        env["NBSERVE_HOME"] = os.environ["NBSERVE_HOME"]
    return env


def _served_model(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as resp:
            return json.loads(resp.read()).get("model")
    except (OSError, ValueError):
        return None


__all__ = ["ProcessRuntime", "bind", "free_port"]
