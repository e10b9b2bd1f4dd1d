"""Work that must not run on the Jupyter server's event loop, and the in-memory record of starts.

Every workspace call of a handler runs in a thread pool (``Jobs.call``): reconciling instances with
Docker, stopping a container or waiting for /health all block. Starting a new instance may also build
an image and download wheels (a minute or more), so ``Jobs.serve`` does not make the request wait: it
returns a ``Job`` at once, which the sidebar polls until its state is "running" or "failed".

Jobs live in memory only: they describe starts in flight in this server process. Once a start
succeeds the instance itself (in the registry, observed by its runtime) is the truth; a failed job is
kept, with its error, until it is dismissed or pushed out by newer ones.
"""

from __future__ import annotations

import functools
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tornado.ioloop import IOLoop

from .errors import error_body

PENDING = ("building", "starting")
KEEP_FINISHED = 50  # finished jobs remembered (for polling and for showing failures)


@dataclass
class Job:
    id: str
    model: str
    runtime: str
    port: int | None
    state: str = "starting"  # building | starting | running | failed
    message: str = "queued"
    fraction: float | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    instance: dict | None = None  # Instance.to_dict() once running
    error: dict | None = None  # {"type", "message", "status"} once failed
    messages: list = field(default_factory=list)
    options: dict = field(default_factory=dict)  # serve()'s batching options

    @property
    def pending(self) -> bool:
        return self.state in PENDING

    def __call__(self, message: str, fraction: float | None = None) -> None:
        """The workspace's progress callback, called from the worker thread."""
        self.message, self.fraction = message, fraction
        self.messages.append(message)

    def phase(self, name: str) -> None:
        """Runtimes announce their phases (runtimes.base.report_phase): "building" while an image is made
        (wheels, build steps, its readiness check), then "starting" (container or process, /health)."""
        if self.state in PENDING:
            self.state = name

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "job": True,
            "model": self.model,
            "runtime": self.runtime,
            "port": self.port,
            "state": self.state,
            "status": self.state,
            "message": self.message,
            "fraction": self.fraction,
            "created": self.created,
            "finished": self.finished,
            "instance": self.instance,
            "error": self.error,
        }


class Jobs:
    def __init__(self, call_workers: int = 4, serve_workers: int = 2):
        # Two pools, so that a few long image builds never hold up listing and stopping.
        self._calls = ThreadPoolExecutor(call_workers, thread_name_prefix="nbserve-call")
        self._serves = ThreadPoolExecutor(serve_workers, thread_name_prefix="nbserve-serve")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.finished = 0  # starts that ended, either way (the overview's cache is dropped when it moves)

    async def call(self, fn, *args, **kwargs):
        """Run a (blocking) workspace call in the thread pool and wait for it without blocking the loop."""
        return await IOLoop.current().run_in_executor(self._calls, functools.partial(fn, *args, **kwargs))

    def serve(self, workspace, model: str, runtime: str, port: int | None, options: dict | None = None) -> Job:
        """Start ``workspace.serve(model, ...)`` in the background; the returned job tracks it."""
        job = Job(
            id=f"job-{secrets.token_hex(4)}", model=model, runtime=runtime, port=port, options=dict(options or {})
        )
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        IOLoop.current().run_in_executor(self._serves, self._run_serve, job, workspace)
        return job

    def _run_serve(self, job: Job, workspace) -> None:
        try:
            inst = workspace.serve(job.model, runtime=job.runtime, port=job.port, progress=job, **job.options)
            job.instance = inst.to_dict()
            job.message = f"{inst.id} is serving {job.model} at {inst.url}"
            job.state = "running"
        except BaseException as exc:
            job.error = error_body(exc)
            job.message = job.error["message"]
            job.state = "failed"
        finally:
            job.fraction = None
            job.finished = time.time()
            self.finished += 1

    def get(self, id: str) -> Job | None:
        return self._jobs.get(id)

    def visible(self) -> list[Job]:
        """Jobs to list beside the instances: starts in flight and failures not yet dismissed."""
        with self._lock:
            return [j for j in self._jobs.values() if j.state != "running"]

    def dismiss(self, id: str) -> bool:
        with self._lock:
            job = self._jobs.get(id)
            if job is None or job.pending:
                return False
            del self._jobs[id]
            return True

    def _forget_old(self) -> None:
        finished = sorted((j for j in self._jobs.values() if not j.pending), key=lambda j: j.finished or 0)
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]
