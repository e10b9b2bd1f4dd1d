"""The job runner: a worker process of the server that runs queued jobs (jobs.py), one at a time.

The master (master.py) forks one when a job waits and none runs, like an HTTP worker, from the same loaded
app: a job is the very ``POST /<method>`` its submitter sent, answered by the same app (decoding, the call,
metrics and the request log), only not on a worker of the event loop, so that a call of minutes holds no
worker that answers requests. The answer's body becomes the job's result; an error answer its error.

A job runs under a deadline of its own (``job_timeout``), with the same machinery as a request's
(deadline.py): a signal interrupts the call when it is due, or when the job is cancelled (``DELETE
/jobs/<id>``: the housekeeping thread notices the request within a fifth of a second), or when the server
stops. After an interrupted call the runner exits (the code may have held a lock inside a library) and the
master forks a fresh one for the next job. Code stuck in native code past the interruption is answered by the
watch itself, which marks the job and ends the process.

What happens to a job when

* the server is updated in place, or an HTTP worker is replaced: queued jobs wait in the directory; the running
  one finishes on the runner of the old generation (SIGTERM: finish the job in hand, take no new one);
* the instance stops (SIGTERM to the master, which sends SIGQUIT here): the running job is interrupted and
  marked failed (``Interrupted``); queued jobs stay queued and run when the instance starts again;
* the runner dies (a crash, SIGKILL): the job it held is marked failed by whoever reads it next (its lock is
  free), and the next job runs on a new runner.

Imports nothing else of nbserve.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from gunicorn.workers import base

from . import housekeeping, jobs, jsonio, keywords
from .deadline import Deadline, RequestTimeout

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from _typeshed import OptExcInfo

IDLE_WAIT = 0.2  # seconds between two looks at the queue
NO_LIMIT = 10.0**9


class RunningJob:
    """The job in hand, as a served method's ``progress`` reaches it (throttled writes of its status)."""

    def __init__(self, store: jobs.JobStore, job_id: str) -> None:
        self.store, self.id = store, job_id
        self.last: dict = {}
        self.written = 0.0

    def progress(self, fraction: float | None = None, message: str | None = None, **info: Any) -> None:
        entry = {k: v for k, v in (("fraction", fraction), ("message", message)) if v is not None}
        entry.update(info)
        self.last = entry
        now = time.monotonic()
        if now - self.written >= jobs.PROGRESS_EVERY:
            self.written = now
            try:
                self.store.progress(self.id, jsonio.loads(jsonio.dumps(entry)))
            except (OSError, TypeError, ValueError):
                pass  # progress is a courtesy: never fail the job over it


class JobWorker(base.Worker):
    """gunicorn worker class; the master forks it (ServedArbiter.spawn_job_runner)."""

    runs_jobs = True

    def init_process(self) -> None:
        from .settings import Settings

        self.settings = Settings.from_env()
        s = self.settings
        self.store = jobs.JobStore(s.jobs_dir or jobs.default_dir(s), s.job_queue, s.job_retention)
        self.deadline = Deadline(s.job_timeout or NO_LIMIT)
        self.job: RunningJob | None = None
        self.why: str | None = None  # why the call in hand was interrupted: "cancelled", "stopped" (else: its timeout)
        super().init_process()

    def init_signals(self) -> None:
        super().init_signals()
        # SIGTERM (gunicorn's graceful stop, as for an update): the job in hand finishes, no new one starts.
        # SIGQUIT and SIGINT (the instance stops): the job in hand is interrupted, and recorded as such.
        signal.signal(signal.SIGQUIT, self._stop_now)
        signal.signal(signal.SIGINT, self._stop_now)

    def _stop_now(self, signum: int, frame: FrameType | None) -> None:
        self.alive = False
        if self.job is not None and self.why is None:
            self.why = "stopped"
            self.deadline.interrupt()

    def run(self) -> None:
        housekeeping.every(1.0, self.notify, "job runner heartbeat")  # a long call must not look like a hang
        housekeeping.every(0.2, self._watch_cancel, "job cancel")
        housekeeping.every(min(30.0, max(1.0, self.settings.job_retention / 4)), self.store.sweep, "job retention")
        self.store.sweep()
        while self.alive:
            if self.ppid != os.getppid():  # the master is gone
                break
            claimed = self.store.claim()
            if claimed is None:
                time.sleep(IDLE_WAIT)
                continue
            self._run(*claimed)

    def _watch_cancel(self) -> None:
        job = self.job
        if job is not None and self.why is None and self.store.cancel_requested(job.id):
            self.why = "cancelled"
            self.deadline.interrupt()

    def _run(self, job_id: str, lock_fd: int) -> None:
        try:
            doc = self.store.start(job_id, getattr(self.app, "model_id", None))
            if doc is None:
                return
            self.job = RunningJob(self.store, job_id)
            self.why = None
            keywords.set_job(self.job)
            status, body = None, b""
            try:
                self.deadline.begin(f"job {job_id}", answer=lambda exc: self._stuck(job_id, exc))
                try:
                    status, body = self._call(doc["method"], self.store.request(job_id), job_id)
                finally:
                    self.deadline.end()
            except RequestTimeout:
                self._interrupted(job_id)
                self.alive = False  # the interrupted code may hold a library's lock: a fresh runner takes over
                return
            finally:
                keywords.set_job(None)
            self._finished(job_id, status, body)
        finally:
            self.job = None
            os.close(lock_fd)  # after the final status is written: the job is never seen running without a runner

    def _call(self, method: str, body: bytes, job_id: str) -> tuple[int, bytes]:
        """The app's answer to the job's ``POST /<method>``: (status, body)."""
        seen: list = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
        ) -> Callable[[bytes], None]:
            seen[:] = [status]
            return lambda data: None

        environ = {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": f"/{method}",
            "QUERY_STRING": "",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "SERVER_NAME": "nbserve-jobs",
            "SERVER_PORT": "0",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_X_REQUEST_ID": f"job-{job_id}",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "nbserve.job": self.job,
        }
        result = self.wsgi(environ, start_response)
        try:
            data = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return int(seen[0][:3]) if seen else 500, data

    def _finished(self, job_id: str, status: int | None, body: bytes) -> None:
        progress = self.job.last if self.job is not None else None
        if status is not None and 200 <= status < 300:
            self.store.finish(job_id, jobs.SUCCEEDED, result=body, progress=progress)
            return
        try:
            found = jsonio.loads(body).get("error")
        except (ValueError, AttributeError):
            found = None
        error = found if isinstance(found, dict) else {"type": "ServerError", "message": str(found or body[:500])}
        self.store.finish(job_id, jobs.FAILED, error={**error, "status": status}, progress=progress)

    def _interrupted(self, job_id: str) -> None:
        progress = self.job.last if self.job is not None else None
        if self.why == "cancelled":
            self.store.finish(job_id, jobs.CANCELLED, error=jobs._cancelled(), progress=progress)
        elif self.why == "stopped":
            self.store.finish(
                job_id,
                jobs.FAILED,
                error={"type": "Interrupted", "message": "the instance stopped while the job ran; submit it again"},
                progress=progress,
            )
        else:
            limit = self.settings.job_timeout
            self.store.finish(
                job_id,
                jobs.FAILED,
                error={
                    "type": "Timeout",
                    "message": f"the job did not finish within the limit of {limit:g} s; it was stopped (raise "
                    f"the limit with serve(..., job_timeout=SECONDS) or NBSERVE_JOB_TIMEOUT)",
                },
                progress=progress,
            )

    def _stuck(self, job_id: str, exc: BaseException) -> bytes:
        """On the housekeeping thread: the call is stuck in native code past its interruption. Record why the
        job ended (the deadline's watch then ends this process)."""
        try:
            self._interrupted(job_id)
        except Exception:
            pass
        return b""
