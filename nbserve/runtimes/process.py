"""The process runtime: the model server as a local gunicorn subprocess on 127.0.0.1.

The subprocess runs under the interpreter that registered the model (the kernel's), in a session of
its own, so it outlives the kernel and is found again from its pid (checked against the pid's start
time, so a reused pid is not mistaken for ours).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from ..errors import InstanceStartError
from ..server import replay
from .base import Runtime, free_port, kernel_python, log_tail, pick_port, wait_healthy
from .limits import gunicorn_command, server_limits_env, worker_options

PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
DRAIN_PAUSE = 0.5  # seconds between the new server taking the port's new connections and the old one's stop


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


class ProcessRuntime(Runtime):
    name = "process"

    def __init__(self, workspace):
        super().__init__(workspace)
        self._proving: dict[str, subprocess.Popen] = {}  # row id -> a server started by start_proof

    def start(self, row, version, progress):
        """Start gunicorn for a registered ``version`` and wait until it answers /health."""
        row.port = pick_port(row)
        proc, row.handle = self._launch(row, version, progress, {"NBSERVE_MODEL_ID": version.id})
        self._wait_healthy(row, version, proc, row.handle)
        return row.handle

    def update(self, row, version, progress):
        """Serve ``version`` on the instance's port without dropping a request, and return the new handle.

        Every server binds its port with SO_REUSEPORT (gunicorn --reuse-port), so a second server can bind
        the same port beside the running one: the kernel then spreads new connections over both. The new
        server also binds a private port, where it is checked (/health names the new version) before the old
        one is told to stop; gunicorn stops gracefully (closes its listener, finishes the requests it has).
        """
        old = dict(row.handle)
        if not old.get("reuse_port"):
            raise InstanceStartError(
                f"{row.id} was started by an nbserve without in-place updates (its port is not shared): "
                f"restart it once (inst.stop(); inst.start()), then update it"
            )
        private = free_port(row.host)
        progress(f"starting {version.id} beside {row.model} on port {row.port} (checked on port {private})")
        proc, handle = self._launch(
            row,
            version,
            progress,
            {"NBSERVE_MODEL_ID": version.id, "NBSERVE_TAKE_OVER_PORT": str(row.port)},
            binds=[f"{row.host}:{row.port}", f"{row.host}:{private}"],
        )
        check = f"http://{row.host}:{private}"
        self._wait_healthy(row, version, proc, handle, url=check)
        served = _served_model(check)
        if served != version.id:
            self._kill(proc.pid, handle["start_ticks"])
            raise self._failure(row, version, f"the new server on port {private} says it serves {served!r}")
        progress(f"{version.id} is healthy on port {row.port}: draining {row.model} (pid {old.get('pid')})")
        time.sleep(DRAIN_PAUSE)  # connections the old server was handed before the new one took over
        self._kill(old.get("pid"), old.get("start_ticks"), timeout=float(row.options.get("drain_timeout", 30)))
        return handle

    def start_proof(self, row, staged, progress) -> dict:
        """Start gunicorn on a staged draft: the server replays the staged sample and writes its report
        (read and returned here), then waits for the core's handoff (``hand_over``)."""
        row.port = pick_port(row)
        proc, row.handle = self._launch(row, staged, progress, {"NBSERVE_REPLAY": str(staged.stage_dir)})
        self._proving[row.id] = proc
        report_path = staged.stage_dir / replay.REPORT
        timeout = row.options.get("start_timeout", 120)
        deadline = time.monotonic() + timeout
        delay = 0.005
        while not report_path.exists():
            if proc.poll() is not None:
                raise self._failure(row, staged, "the server exited while loading the model")
            if time.monotonic() > deadline:
                self._kill(proc.pid, row.handle["start_ticks"])
                raise self._failure(row, staged, f"the model did not load within {timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)
        return replay.read_report(report_path)

    def hand_over(self, row, staged, version) -> dict:
        replay.write_handoff(staged.stage_dir, version.artifact_dir, version.id)
        with open(self.instance_dir(row) / "server.log", "ab") as log:
            log.write(f"--- the server's replay proved the artifact: registered as {version.id}\n".encode())
        self._wait_healthy(row, version, self._proving.pop(row.id), row.handle)
        return row.handle

    def abort_proof(self, row, staged, reason: str) -> None:
        replay.write_handoff(staged.stage_dir, abort=reason)
        self._proving.pop(row.id, None)
        self._kill(row.handle.get("pid"), row.handle.get("start_ticks"))

    def _launch(self, row, version, progress, env_extra: dict, binds=None) -> tuple[subprocess.Popen, dict]:
        """Start the server process for ``version`` (registered or staged) on ``binds`` (default: the row's
        host and port); (process, handle). ``NBSERVE_TAKE_OVER_PORT`` in ``env_extra``: a port shared with a
        running server, whose new connections this one takes (server/gunicorn_conf.py)."""
        binds = binds or [f"{row.host}:{row.port}"]
        python = kernel_python(version)
        if python != version.python_executable:
            progress(
                f"the interpreter that registered {version.id} ({version.python_executable}) is gone; using {python}"
            )
        log_path = self.instance_dir(row) / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GUNICORN"))}
        env.update(getattr(version, "environment", None) or {})  # captured with the version: KERAS_BACKEND...
        env.update(PYTHONPATH=PACKAGE_PARENT, PYTHONUNBUFFERED="1", NBSERVE_ARTIFACT=str(version.artifact_dir))
        env.update(env_extra)
        env.update(server_limits_env(row.options))  # NBSERVE_TIMEOUT, NBSERVE_MAX_BODY, auth digest
        env["NBSERVE_METRICS_DIR"] = str(self.instance_dir(row) / "metrics")  # wiped by gunicorn_conf at start
        # --reuse-port (SO_REUSEPORT): a later version can bind the same port beside this server (see update)
        options = ["--reuse-port", "--log-level", "warning", *worker_options(row.options)]
        cmd = gunicorn_command(python, binds, *options)
        with open(log_path, "ab") as log:
            log.write(f"--- starting {version.id} on {', '.join(binds)} at {time.ctime()}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=self.instance_dir(row),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stat = _proc_stat(proc.pid)
        handle = {
            "pid": proc.pid,
            "start_ticks": stat[1] if stat else None,
            "python": python,
            "log": str(log_path),
            "reuse_port": True,
        }
        return proc, handle

    def _failure(self, row, version, why: str) -> InstanceStartError:
        log_path = self.instance_dir(row) / "server.log"
        return InstanceStartError(
            f"{version.id} did not start on the process runtime: {why}\n"
            f"--- log tail ({log_path}) ---\n{log_tail(log_path, 30)}"
        )

    def _wait_healthy(self, row, version, proc, handle, url=None) -> None:
        # polls every 20 ms at most: a refused connection on 127.0.0.1 costs microseconds, and the 0.2 s
        # default pause added up to 0.2 s to every start (measured with benchmarks/first_prediction.py)
        wait_healthy(
            url or f"http://{row.host}:{row.port}",
            alive=lambda: proc.poll() is None,
            timeout=row.options.get("start_timeout", 120),
            failure=lambda why: self._failure(row, version, why),
            on_failure=lambda: self._kill(proc.pid, handle["start_ticks"]),
            max_delay=0.02,
        )

    def status(self, row) -> str:
        h = row.handle
        if _alive(h.get("pid"), h.get("start_ticks")):
            return "running"
        return "stopped" if row.desired == "stopped" else "exited"

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
        self._proving.pop(row.id, None)
        self.stop(row)
        shutil.rmtree(self.instance_dir(row), ignore_errors=True)


def _served_model(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as resp:
            return json.loads(resp.read()).get("model")
    except (OSError, ValueError):
        return None
