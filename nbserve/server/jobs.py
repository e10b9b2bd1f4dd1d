"""Jobs: a call that takes longer than a request may, answered later.

``POST /<method>?async=1`` (or with ``Prefer: respond-async``, RFC 7240) checks the input as a call would, then
queues it and answers ``202`` at once with the job's id and its URL; ``GET /jobs/<id>`` tells its status
(queued, running, succeeded, failed, cancelled), its progress when the method reports any, and its result or
error; ``DELETE /jobs/<id>`` cancels a queued or running job (and forgets a finished one); ``GET /jobs`` lists
them.

The queue lives in a directory (``Settings.jobs_dir``), not in a worker: any worker of the instance answers for
any job, and jobs wait there while workers are replaced (an update in place, a crashed worker) and while the
instance is stopped. One job runner process of the server (jobworker.py, forked by the master when a job waits)
runs them one at a time, in the order they came, under a deadline of their own (``job_timeout``).

Layout of the directory::

    queue/<ns>-<id>         a ticket per waiting job, named so that listing sorts them by arrival
    jobs/<id>/job.json      the job's status document (replaced atomically)
    jobs/<id>/request.json  the body it was submitted with
    jobs/<id>/result.json   its answer's body, once it succeeded
    jobs/<id>/cancel        asked to stop while it runs
    jobs/<id>/lock          held (flock) by the runner while it runs the job

A runner claims a job by locking it and removing its ticket (only one remover succeeds); a cancel of a queued
job removes the ticket first. A running job whose lock is free has lost its runner (killed, crashed, the
instance stopped hard): whoever reads it first marks it failed. Finished jobs are removed ``job_retention``
seconds after they finished (by the runner, and by whoever lists or reads them past it); at most ``job_queue``
jobs wait (a 503 beyond).

A method reports progress by taking a ``progress`` keyword argument (keywords.py): the server passes a callable,
``progress(fraction=None, message=None, **info)``, which a job records (and a plain call ignores); called in
the notebook the function gets its own default. A streaming method's items count as its progress.

Imports nothing else of nbserve.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import jsonio
from .dispatch import data_of
from .errors import CallError
from .schema import InputError

if TYPE_CHECKING:
    from flask import Flask, Request, Response

    from .dispatch import Dispatch
    from .settings import Settings

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
FINISHED = (SUCCEEDED, FAILED, CANCELLED)
ASYNC_VALUES = ("1", "true", "0", "false")  # ?async= (the OpenAPI document's enum)
PROGRESS_EVERY = 0.25  # seconds between two writes of a job's progress
_ID = re.compile(r"^[0-9a-f]{16}$")
_LOST_AFTER = 10.0  # a job queued without a ticket for this long was claimed by a runner that died at once


def default_dir(settings: Settings) -> str:
    """Where a server keeps its jobs unless told (a runtime names a directory of the instance): the temp dir,
    by the server's control name or model id, so that the same server started again finds its queue."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", settings.control or settings.model_id or "server")
    return os.path.join(tempfile.gettempdir(), f"nbserve-jobs-{os.getuid()}", name)


class JobStore:
    """The jobs of one instance, in a directory that every worker of its server (and the runner) shares."""

    def __init__(self, directory: str | os.PathLike[str], queue_limit: int = 100, retention: float = 3600.0) -> None:
        self.root = Path(directory)
        self.queue = self.root / "queue"
        self.jobs = self.root / "jobs"
        self.queue_limit, self.retention = int(queue_limit), float(retention)
        self.queue.mkdir(parents=True, exist_ok=True)
        self.jobs.mkdir(parents=True, exist_ok=True)

    # -- reading ------------------------------------------------------------------------------------------

    def path(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not _ID.match(job_id):
            raise CallError(404, "NotFound", f"no job {str(job_id)[:40]!r}")
        return self.jobs / job_id

    def _read(self, job_id: str) -> dict | None:
        try:
            return jsonio.loads((self.path(job_id) / "job.json").read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (ValueError, UnicodeDecodeError):  # pragma: no cover - written atomically
            return None

    def tickets(self) -> list[str]:
        """The waiting jobs' ticket names, oldest first."""
        try:
            return sorted(os.listdir(self.queue))
        except FileNotFoundError:
            return []

    def has_queued(self) -> bool:
        try:
            with os.scandir(self.queue) as entries:
                return any(True for _ in entries)
        except FileNotFoundError:
            return False

    def get(self, job_id: str) -> dict:
        """The job's status document (a running job that lost its runner is marked failed here)."""
        doc = self._read(job_id)
        if doc is not None and self._expired(doc):
            self._remove(job_id)
            doc = None
        if doc is None:
            raise CallError(
                404,
                "NotFound",
                f"no job {job_id!r} (finished jobs are kept {self.retention:g} s after they end; "
                f"GET /jobs lists the others)",
            )
        doc = self._check_alive(doc)
        if doc["status"] == QUEUED:
            tickets = self.tickets()
            doc["position"] = next((i for i, t in enumerate(tickets) if t == doc.get("ticket")), None)
        return doc

    def result(self, job_id: str) -> bytes | None:
        try:
            return (self.path(job_id) / "result.json").read_bytes()
        except FileNotFoundError:
            return None

    def list(self) -> list[dict]:
        """Every job kept, newest first."""
        found = []
        try:
            names = os.listdir(self.jobs)
        except FileNotFoundError:
            names = []
        tickets = {t.partition("-")[2]: i for i, t in enumerate(self.tickets())}
        for name in names:
            doc = self._read(name) if _ID.match(name) else None
            if doc is None:
                continue
            if self._expired(doc):
                self._remove(name)
                continue
            doc = self._check_alive(doc)
            if doc["status"] == QUEUED:
                doc["position"] = tickets.get(name)
            found.append(doc)
        found.sort(key=lambda d: d.get("created", 0), reverse=True)
        return found

    def _expired(self, doc: dict, now: float | None = None) -> bool:
        finished = doc.get("finished")
        return (
            doc.get("status") in FINISHED and finished is not None and (now or time.time()) - finished > self.retention
        )

    def _check_alive(self, doc: dict) -> dict:
        """A running job whose runner is gone is failed; nobody else will say so."""
        if doc.get("status") != RUNNING or self._locked(doc["id"]):
            return doc
        again = self._read(doc["id"])  # it may have finished between the two reads
        if again is None or again.get("status") != RUNNING:
            return again or doc
        # finish is None only if the job's directory went meanwhile (a running job is never swept)
        return self.finish(  # type: ignore[return-value]
            doc["id"],
            FAILED,
            error={
                "type": "Interrupted",
                "message": "the process running this job ended before it finished (the instance stopped, or the "
                "job runner was killed); submit it again",
            },
        )

    def _locked(self, job_id: str) -> bool:
        try:
            fd = os.open(self.path(job_id) / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # releases the lock if we took it
        return False

    # -- writing ------------------------------------------------------------------------------------------

    def _write(self, job_id: str, doc: dict) -> dict:
        _replace(self.path(job_id) / "job.json", jsonio.dumps(doc))
        return doc

    def submit(self, method: str, body: bytes, model_id: str) -> dict:
        waiting = len(self.tickets())
        if waiting >= self.queue_limit:
            raise CallError(
                503,
                "QueueFull",
                f"the job queue is full ({waiting} jobs wait, the limit is {self.queue_limit}); try again later, or "
                f"serve with a larger job_queue",
                {"Retry-After": "5"},
            )
        job_id = secrets.token_hex(8)
        path = self.jobs / job_id
        path.mkdir()
        (path / "request.json").write_bytes(body)
        ticket = f"{time.time_ns():020d}-{job_id}"
        doc = {"id": job_id, "method": method, "status": QUEUED, "model": model_id, "created": time.time()}
        self._write(job_id, {**doc, "ticket": ticket})
        (self.queue / ticket).touch()  # last: a runner never sees half a job
        return {**doc, "ticket": ticket, "position": waiting}

    def claim(self) -> tuple[str, int] | None:
        """The oldest waiting job, locked for this process: (id, lock fd), or None."""
        for ticket in self.tickets():
            job_id = ticket.partition("-")[2]
            if not _ID.match(job_id):
                continue
            try:
                fd = os.open(self.path(job_id) / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(self.queue / ticket)  # only one remover succeeds: a cancel, or another runner
            except OSError:
                os.close(fd)
                continue
            return job_id, fd
        return None

    def start(self, job_id: str, model_id: str | None) -> dict | None:
        doc = self._read(job_id)
        if doc is None or doc["status"] != QUEUED:
            return None
        doc.update(status=RUNNING, started=time.time(), runner=os.getpid())
        if model_id:
            doc["model"] = model_id
        doc.pop("ticket", None)
        return self._write(job_id, doc)

    def request(self, job_id: str) -> bytes:
        return (self.path(job_id) / "request.json").read_bytes()

    def progress(self, job_id: str, progress: dict) -> None:
        doc = self._read(job_id)
        if doc is not None and doc["status"] == RUNNING:
            doc["progress"] = progress
            self._write(job_id, doc)

    def finish(
        self,
        job_id: str,
        status: str,
        result: bytes | None = None,
        error: dict | None = None,
        progress: dict | None = None,
    ) -> dict | None:
        doc = self._read(job_id)
        if doc is None:
            return None
        if result is not None:
            _replace(self.path(job_id) / "result.json", result)
        doc.update(status=status, finished=time.time())
        if error is not None:
            doc["error"] = error
        if progress:
            doc["progress"] = progress
        doc.pop("ticket", None)
        return self._write(job_id, doc)

    def cancel_requested(self, job_id: str) -> bool:
        return (self.path(job_id) / "cancel").exists()

    def cancel(self, job_id: str) -> tuple[dict, int]:
        """Cancel a queued job (at once) or a running one (its runner stops it within a second); forget a
        finished one. (document, HTTP status)."""
        doc = self.get(job_id)
        if doc["status"] == QUEUED:
            try:
                os.unlink(self.queue / doc["ticket"])
            except (FileNotFoundError, KeyError):
                return self.cancel(job_id)  # a runner took it meanwhile: it runs now
            return self.finish(job_id, CANCELLED, error=_cancelled()), 200  # type: ignore[return-value]  # read above
        if doc["status"] == RUNNING:
            (self.path(job_id) / "cancel").touch()
            return {**doc, "cancelling": True}, 202
        self._remove(job_id)
        return {**doc, "removed": True}, 200

    def _remove(self, job_id: str) -> None:
        import shutil

        shutil.rmtree(self.path(job_id), ignore_errors=True)

    def sweep(self, now: float | None = None) -> None:
        """Forget jobs finished over ``retention`` seconds ago; fail running ones whose runner is gone, and
        queued ones whose ticket a dying runner took."""
        now = time.time() if now is None else now
        tickets = {t.partition("-")[2] for t in self.tickets()}
        try:
            names = os.listdir(self.jobs)
        except FileNotFoundError:
            return
        for name in names:
            doc = self._read(name) if _ID.match(name) else None
            if doc is None:
                continue
            if self._expired(doc, now):
                self._remove(name)
            elif doc["status"] == RUNNING:
                self._check_alive(doc)
            elif doc["status"] == QUEUED and name not in tickets and now - doc.get("created", now) > _LOST_AFTER:
                if not self._locked(name):
                    self.finish(
                        name,
                        FAILED,
                        error={
                            "type": "Interrupted",
                            "message": "the job runner ended as it took this job; submit it again",
                        },
                    )


def _replace(path: Path, data: bytes) -> None:
    """Write a file whole or not at all (its readers are other processes)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _cancelled() -> dict:
    return {"type": "Cancelled", "message": "the job was cancelled (DELETE /jobs/<id>)"}


# -- the routes --------------------------------------------------------------------------------------------


class Jobs:
    """The routes of the jobs of one app, and how a method's view hands a call over (``asked``, ``submit``)."""

    def __init__(self, store: JobStore | None, dispatch: Dispatch, model_id: str, why_off: str = "") -> None:
        self.store, self.dispatch, self.model_id, self.why_off = store, dispatch, model_id, why_off

    @staticmethod
    def asked(request: Request) -> bool:
        """The client asked for a job: ``?async=1`` (or true), or ``Prefer: respond-async``.

        Any other value of ``async`` is a 400: a typo must not silently run the call in the request."""
        flag = request.args.get("async")
        if flag is not None:
            if flag not in ASYNC_VALUES:
                raise CallError(400, "InvalidQuery", f"async must be one of {', '.join(ASYNC_VALUES)}, got {flag!r}")
            if flag in ("1", "true"):
                return True
        prefer = request.headers.get("Prefer", "")
        return "respond-async" in (p.strip().split("=")[0].lower() for p in prefer.replace(";", ",").split(","))

    def submit(self, method: str, body: bytes) -> Response:
        from flask import Response, request

        if self.store is None:
            raise CallError(400, "JobsOff", self.why_off)
        data = data_of(body)
        try:  # a bad input is the client's 400 now, not a failed job later
            self.dispatch.decoders[method](data)
        except InputError as exc:
            raise CallError(400, "InvalidInput", f"{method}: {exc}") from None
        doc = public(self.store.submit(method, body, self.model_id), request.script_root)
        headers = {"Location": doc["url"]}
        if "respond-async" in request.headers.get("Prefer", ""):
            headers["Preference-Applied"] = "respond-async"
        return Response(jsonio.dumps(doc), status=202, mimetype="application/json", headers=headers)


def public(doc: dict, root: str = "") -> dict:
    """A status document as the routes answer it: without the runner's bookkeeping, with its URL."""
    out = {k: v for k, v in doc.items() if k not in ("ticket", "runner")}
    out["url"] = f"{root}/jobs/{doc['id']}"
    return out


def install(app: Flask, settings: Settings, dispatch: Dispatch, model_id: str) -> Jobs:
    """Add /jobs and /jobs/<id> to ``app``; returns what the method views call."""
    from flask import Response, request

    store, why_off = None, ""
    if not settings.jobs:
        why_off = "jobs are off for this instance (it was served with jobs=False)"
    elif not settings.jobs_dir:
        why_off = "this server has no jobs directory (NBSERVE_JOBS_DIR); jobs need one"
    else:
        try:
            store = JobStore(settings.jobs_dir, settings.job_queue, settings.job_retention)
        except OSError as exc:
            why_off = f"the jobs directory cannot be used: {exc}"
    jobs = Jobs(store, dispatch, model_id, why_off)

    def need_store() -> JobStore:
        if store is None:
            raise CallError(404, "JobsOff", why_off)
        return store

    def answer(doc: dict, status: int = 200) -> Response:
        return Response(jsonio.dumps(doc), status=status, mimetype="application/json")

    @app.get("/jobs")
    def list_jobs() -> Response:
        s = need_store()
        found = s.list()
        return answer(
            {
                "jobs": [public(d, request.script_root) for d in found],
                "queued": sum(d["status"] == QUEUED for d in found),
                "limits": {"queue": s.queue_limit, "retention": s.retention, "timeout": settings.job_timeout},
            }
        )

    @app.get("/jobs/<job_id>")
    def get_job(job_id: str) -> Response:
        s = need_store()
        doc = public(s.get(job_id), request.script_root)
        if doc["status"] != SUCCEEDED:
            return answer(doc)
        result = s.result(job_id) or b"null"
        head = jsonio.dumps(doc)
        return Response(head[:-1] + b',"result":' + result + b"}", mimetype="application/json")

    @app.delete("/jobs/<job_id>")
    def cancel_job(job_id: str) -> Response:
        doc, status = need_store().cancel(job_id)
        return answer(public(doc, request.script_root), status)

    return jobs
