"""The served process: ``python -m nbserve.server``, gunicorn's arbiter with nbserve's worker and a control socket.

One master per instance, the same in a local process and in an image. It reads its ``Settings`` from the
environment and serves ``NBSERVE_ARTIFACT`` when one is named (an image, a restart). A server started for a
live ``serve(obj)`` starts without one, while the kernel is still pickling, and is told over its control
socket (control.py) what to do:

1. ``prove``: import the modules the pickle names, once, here; then replay the staged sample in a forked
   child (replay.py), which inherits those imports and only unpickles and calls. The model never runs in this
   process: an OpenMP pool started by a call (or by unpickling xgboost and lightgbm) must not live in a
   process that forks workers afterwards (forksafe.py).
2. ``serve``: the kernel registered the proven artifact; verify it, load it here when loading starts no
   thread (else each worker loads it after its fork), and fork the workers, which inherit the imports.
   ``serve`` on a running server is an in-place update: a new generation of workers gets the new app and the
   same listening socket, and the old generation finishes the requests it holds, then exits. No port changes
   hands, so no connection is refused or reset.
3. ``adopt`` (a warm master): a master started ahead of time with the kernel's usual libraries imported
   becomes this instance's server when handed its settings and listening socket.

The listening socket is bound once, by whoever starts the server (the process runtime binds it in the kernel
and passes it as ``NBSERVE_LISTEN_FD``): two servers can never share a port.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from typing import TYPE_CHECKING, Any, NoReturn

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from . import control as ctl
from .settings import Settings

if TYPE_CHECKING:
    import socket
    from collections.abc import Iterable, Sequence

    from _typeshed.wsgi import WSGIApplication
    from gunicorn.workers.base import Worker

    from .jobs import JobStore
    from .routing import Generation

_RESERVED_EXIT_CODES = (3, 4)  # gunicorn's WORKER_BOOT_ERROR and APP_LOAD_ERROR halt the whole server


class Master(BaseApplication):
    """gunicorn's application object: the settings, the current app, and the hooks nbserve needs."""

    def __init__(self, settings: Settings, control_sock: socket.socket | None = None) -> None:
        self.settings = settings
        self.control_sock = control_sock
        self.served: Generation | None = None  # the WSGI app the next workers are forked with
        self.model_id = settings.model_id
        self.artifact: str | None = None
        self.metrics_dir, self._own_metrics_dir = _metrics_dir(settings)
        self.job_store = _job_store(settings)  # the queue the job runner works through (jobs.py)
        self.record_dir, self._own_record_dir = _record_dir(settings)
        if self.record_dir != settings.record_dir:
            self.settings = settings = settings.replace(record_dir=self.record_dir)
        super().__init__()

    # -- gunicorn's application interface --------------------------------------------------------------

    def load_config(self) -> None:
        config = self.settings.gunicorn_config()
        if self.settings.listen_fd is not None:
            config["bind"] = [f"fd://{self.settings.listen_fd}"]
        for key, value in config.items():
            self.cfg.set(key, value)
        self.cfg.set("control_socket_disable", True)  # gunicorn 27's own; ours is control.py's
        self.cfg.set("chdir", os.getcwd())  # gunicorn's default is the directory it was imported in (a warm
        # server's: not the instance's, and maybe gone by now)
        if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
            self.cfg.set("worker_tmp_dir", "/dev/shm")  # the workers' heartbeat files: memory, not disk
        self.cfg.set("post_worker_init", _post_worker_init)
        self.cfg.set("child_exit", self._child_exit)
        self.cfg.set("on_exit", self._on_exit)

    def load(self) -> Generation | None:
        return self.served

    def wsgi(self) -> Generation | None:
        return self.served  # never cached: each generation of workers gets the app current at its fork

    def run(self) -> None:
        try:
            ServedArbiter(self).run()
        except RuntimeError as exc:
            sys.stderr.write(f"\nError: {exc}\n")
            sys.stderr.flush()
            sys.exit(1)

    # -- what is served ---------------------------------------------------------------------------------

    def build(self, artifact_dir: str, model_id: str | None, staged: str | None = None) -> WSGIApplication:
        """The WSGI app for an artifact, verified; loaded here only where that is safe before a fork."""
        from . import artifact, forksafe

        manifest = artifact.read_manifest(artifact_dir)
        if staged is not None:
            proven = artifact.read_manifest(staged)
            if proven.get("pickle_sha256") != manifest.get("pickle_sha256"):
                raise ValueError("the registered artifact is not the one this server proved")
        artifact.verify(artifact_dir, manifest)
        artifact.apply_environment(manifest)  # before its libraries are imported (KERAS_BACKEND...)
        import_recorded(manifest.get("modules") or [], {})  # once, here, before the workers fork
        app: WSGIApplication
        if forksafe.preload_is_safe(manifest):
            from .app import create_app

            app = create_app(artifact_dir, model_id=model_id)
        else:
            sys.stderr.write(
                "nbserve: loading this model may start native threads (OpenMP), which do not survive a fork: "
                "each worker loads it after the fork\n"
            )
            app = forksafe.DeferredApp(artifact_dir, model_id)
        return app

    def generation(self, versions: list[dict], shadow_to: dict | None = None, staged: str | None = None) -> Generation:
        """The WSGI app of a new generation of workers: ``versions`` ([{"artifact", "model_id", "weight"}], one
        for a plain serve, several for a split), each verified and loaded as ``build`` does, and a shadow
        candidate to copy requests to (routing.py). Every version's app is made anew: the periodic work an app
        registers (housekeeping.py) belongs to the generation of workers it is made for."""
        from . import artifact, housekeeping
        from .routing import Generation, Served

        if not versions:
            raise ValueError("nothing to serve: no version given")
        ids = [spec.get("model_id") or os.path.basename(str(spec["artifact"]))[:12] for spec in versions]
        if len(set(ids)) != len(ids):
            raise ValueError("a split names each version once")
        weights = [float(spec.get("weight", 100)) for spec in versions]
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"weights must be >= 0 and one of them above 0, got {weights}")
        housekeeping.reset()  # the periodic work of the previous generation's apps is not the new workers'
        served = []
        for i, (spec, vid, weight) in enumerate(zip(versions, ids, weights)):
            path = str(spec["artifact"])
            app = self.build(path, spec.get("model_id"), staged if i == 0 else None)
            methods = frozenset(artifact.read_manifest(path).get("methods") or ())
            served.append(Served(vid, app, methods, weight))
        generation = Generation(served, self.settings, shadow_to)
        generation.artifacts = {vid: str(spec["artifact"]) for vid, spec in zip(ids, versions)}
        return generation

    # -- gunicorn hooks ------------------------------------------------------------------------------

    def _child_exit(self, server: Arbiter, worker: Worker) -> None:
        if not self.metrics_dir:
            return
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.pid, self.metrics_dir)
        except ImportError:
            pass
        from .drift import forget_worker

        forget_worker(self.metrics_dir, worker.pid)

    def _on_exit(self, server: Arbiter) -> None:
        if self._own_metrics_dir and self.metrics_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        if self._own_record_dir and self.record_dir:  # what the ring kept (user data) goes with the server
            shutil.rmtree(self.record_dir, ignore_errors=True)


class ServedArbiter(Arbiter):
    """gunicorn's arbiter, with no workers until there is an app, and nbserve's control socket."""

    retired_age = 0  # workers of this age or older are finishing their last requests (an update)
    worker_class: Any  # gunicorn's Arbiter.setup sets it from the configuration

    def setup(self, app: Master) -> None:
        super().setup(app)
        if app.served is None:
            self.num_workers = 0

    def start(self) -> None:
        super().start()
        if self.app.served is not None:
            self._announce()

    def _announce(self) -> None:
        """One line in the log that says what answers where (what a user looks for in ``inst.logs()``)."""
        where = ", ".join(str(lnr) for lnr in self.LISTENERS)
        n = self.app.settings.workers
        sys.stderr.write(f"nbserve: Listening at {where} as {self.app.model_id} ({n} worker{'s' * (n != 1)})\n")
        sys.stderr.flush()

    def spawn_workers(self) -> None:
        # gunicorn sleeps up to 0.1 s between forks (a thundering-herd guard for many workers): not needed here
        for _ in range(self.num_workers - len(self._http_workers())):
            self.spawn_worker()

    def _http_workers(self) -> list:
        return [(pid, w) for pid, w in self.WORKERS.items() if not getattr(w, "runs_jobs", False)]

    def manage_workers(self) -> None:
        """gunicorn's, counting the HTTP workers only; and a job runner while jobs wait and none runs."""
        if len(self._http_workers()) < self.num_workers:
            self.spawn_workers()
        workers = sorted(self._http_workers(), key=lambda w: w[1].age)
        while len(workers) > self.num_workers:
            pid, _ = workers.pop(0)
            self.kill_worker(pid, signal.SIGTERM)
        store = self.app.job_store
        if store is None or self.app.served is None or not self.num_workers:
            return
        current = [w for w in self.WORKERS.values() if getattr(w, "runs_jobs", False) and w.age > self.retired_age]
        if not current and store.has_queued():
            self.spawn_job_runner()

    def spawn_job_runner(self) -> None:
        from .jobworker import JobWorker

        http_class, self.worker_class = self.worker_class, JobWorker
        try:
            self.spawn_worker()
        finally:
            self.worker_class = http_class

    def stop(self, graceful: bool = True) -> None:
        # the instance stops: a job runner interrupts its job now and records it (an update's SIGTERM lets it finish)
        for pid, worker in list(self.WORKERS.items()):
            if getattr(worker, "runs_jobs", False):
                self.kill_worker(pid, signal.SIGQUIT)
        super().stop(graceful)

    def wait_for_signals(self, timeout: float = 1.0) -> list[int]:
        """Signals as gunicorn waits for them, and, meanwhile, the control socket's requests."""
        sock = self.app.control_sock
        if sock is None:
            return super().wait_for_signals(timeout)
        import select

        deadline = time.monotonic() + timeout
        while True:
            signals = super().wait_for_signals(0) if not self.SIG_QUEUE.empty() else []
            if signals:
                return signals
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            ready, _, _ = select.select([sock], [], [], min(left, 0.02))
            if ready:
                self._control()

    def _control(self) -> None:
        accepted = ctl.accept(self.app.control_sock, want_fds=1)
        if accepted is None:
            return
        conn, request, fds = accepted
        with conn:
            op = request.get("op")
            try:
                reply, send_fds = self._operate(op, request, fds)
                reply["ok"] = True
            except Exception as exc:
                self.log.warning("nbserve: control %s failed: %s", op, exc)
                reply, send_fds = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}, ()
            try:
                conn.settimeout(600)
                ctl.send(conn, reply, send_fds)
            except OSError:
                pass
            finally:
                for fd in fds:
                    if op != "adopt":
                        os.close(fd)

    def _operate(self, op: str | None, request: dict, fds: list[int]) -> tuple[dict, Sequence[int]]:
        app = self.app
        if op == "status":
            served = app.served.describe() if hasattr(app.served, "describe") else {}
            return {
                "model_id": app.model_id,
                "artifact": app.artifact,
                "pid": self.pid,
                "workers": sorted(pid for pid, _ in self._http_workers()),
                "retiring": sorted(pid for pid, w in self._http_workers() if w.age <= self.retired_age),
                "job_runners": sorted(pid for pid, w in self.WORKERS.items() if getattr(w, "runs_jobs", False)),
                **served,
            }, ()
        if op == "prove":
            from . import artifact, replay

            staged = artifact.read_manifest(os.path.join(request["stage"], replay.STAGED_ARTIFACT))
            artifact.apply_environment(staged)  # before the model's libraries are imported (KERAS_BACKEND...)
            # what importing the draft's modules imported, for its report: not what this master imported before
            # for another model (a warm server imported the libraries of the kernel's earlier models)
            imported: dict = {}
            import_recorded(request.get("modules") or [], imported)
            report_path = replay.replay_in_child(request["stage"], imported)
            return {"report": report_path}, ()
        if op == "serve":
            versions = request.get("versions") or [
                {"artifact": request["artifact"], "model_id": request.get("model_id"), "weight": 100}
            ]
            served = app.generation(versions, request.get("shadow"), request.get("staged"))
            self._swap(served, served.primary.id, served.artifacts[served.primary.id])
            _note_state(app.settings.state_file, versions, request.get("shadow"))
            return {"model_id": app.model_id, "workers": sorted(self.WORKERS), **served.describe()}, ()
        if op == "listener":
            return {}, [lnr.fileno() for lnr in self.LISTENERS][:1]
        if op == "stop":
            os.kill(self.pid, signal.SIGTERM)
            return {}, ()
        raise ValueError(f"unknown control operation {op!r}")

    def _swap(self, served: Generation, model_id: str, artifact_dir: str) -> None:
        """Serve ``served`` from now on: a new generation of workers, and the old one retired gracefully."""
        app = self.app
        first = app.served is None
        app.served, app.model_id, app.artifact = served, model_id, artifact_dir
        self.num_workers = app.settings.workers
        old = list(self.WORKERS)
        self.retired_age = self.worker_age
        for _ in range(self.num_workers):
            self.spawn_worker()
        for pid in old:
            self.kill_worker(pid, signal.SIGTERM)
        if first:
            self._announce()
        else:
            self.log.warning("nbserve: now serving %s (the previous workers finish their requests and exit)", model_id)


def import_recorded(modules: Iterable[str], imports: dict) -> None:
    """Import ``modules`` as unpickling would (by name), recording in ``imports`` who imported each module
    (replay.py merges it into the proof's report: the child it forks sees these imports already done)."""
    from .replay import ImportRecorder

    wanted = [m for m in modules if m and m not in sys.modules and m not in ("__main__", "nbserve")]
    if not wanted:
        return
    with ImportRecorder() as recorder:
        for module in wanted:
            try:
                importlib.import_module(module)
            except BaseException:
                pass
    for name, importers in recorder.importers.items():
        imports.setdefault(name, set()).update(importers)


# -- a warm master: started ahead of time, adopted by the next serve ------------------------------------------


def wait_for_adoption(
    control_sock: socket.socket, parent_fd: int | None, imports: dict
) -> tuple[dict, str | None, int, int]:
    """A warm master's life before it serves: answer ``status`` and ``import`` (more modules), and exit when the
    kernel that started it is gone (its pipe closes); on ``adopt`` (the instance's settings, working directory,
    listening socket and log), become that instance's server. Returns (env, cwd, listen_fd, log_fd)."""
    import select

    watched = [control_sock] + ([parent_fd] if parent_fd is not None else [])
    while True:
        ready, _, _ = select.select(watched, [], [])
        if parent_fd is not None and parent_fd in ready:
            if not os.read(parent_fd, 1):  # the kernel is gone and nobody adopted us
                log = os.environ.get("NBSERVE_WARM_LOG")
                if log:
                    try:
                        os.unlink(log)
                    except OSError:
                        pass
                os._exit(0)
            continue
        accepted = ctl.accept(control_sock, want_fds=2)
        if accepted is None:
            continue
        conn, request, fds = accepted
        with conn:
            op = request.get("op")
            if op == "adopt" and len(fds) == 2:
                ctl.send(conn, {"ok": True, "pid": os.getpid()})
                if parent_fd is not None:
                    os.close(parent_fd)
                return request.get("env") or {}, request.get("cwd"), fds[0], fds[1]
            for fd in fds:
                os.close(fd)
            if op == "import":
                import_recorded(request.get("modules") or [], imports)
            if op in ("import", "status"):
                ctl.send(conn, {"ok": True, "pid": os.getpid(), "modules": sorted(imports)})
            else:
                ctl.send(conn, {"ok": False, "error": f"a warm server answers status, import and adopt, not {op!r}"})


def adopt(env: dict, cwd: str | None, log_fd: int) -> None:
    """Become an instance's server: its environment (the kernel's as of now, the version's, the settings),
    working directory and log."""
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    os.environ.update(env)
    if cwd:
        os.chdir(cwd)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)


# -- worker side -------------------------------------------------------------------------------------------


def _post_worker_init(worker: Worker) -> None:
    """In each worker, after its fork: load a model the master could not, size the native thread pools, and
    keep a model's ``os._exit(3)`` from halting the server (gunicorn halts on a worker's exit code 3 or 4)."""
    from . import forksafe, housekeeping
    from .settings import thread_budget

    if isinstance(worker.wsgi, forksafe.DeferredApp):
        worker.wsgi.load()
    elif hasattr(worker.wsgi, "load_deferred"):  # a generation (routing.py): each of its versions
        worker.wsgi.load_deferred()
    housekeeping.limit_threads(thread_budget(worker.app.settings))
    housekeeping.start()  # the thread of the periodic work the app registered (metrics, drift, deadline)
    real_exit = os._exit

    def _exit(code: int = 0) -> NoReturn:
        if code in _RESERVED_EXIT_CODES:
            sys.stderr.write(
                f"nbserve: worker {os.getpid()} called os._exit({code}); exiting with 1 so that gunicorn "
                f"replaces the worker instead of halting the server\n"
            )
            sys.stderr.flush()
            code = 1
        real_exit(code)

    os._exit = _exit  # type: ignore[assignment]  # os._exit's parameter is named status


def _metrics_dir(settings: Settings) -> tuple[str | None, bool]:
    """(directory, made here) for prometheus_client's multiprocess files and the workers' drift windows: set in
    the environment before prometheus_client is first imported (it picks its value class then), empty at start."""
    if not settings.metrics and not settings.drift:
        return None, False
    if settings.metrics_dir:
        shutil.rmtree(settings.metrics_dir, ignore_errors=True)  # counts of an earlier run are not this run's
        os.makedirs(settings.metrics_dir, exist_ok=True)
        path, own = settings.metrics_dir, False
    else:
        shm = "/dev/shm"
        parent = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
        path, own = tempfile.mkdtemp(prefix="nbserve-metrics-", dir=parent), True
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path, own


def _job_store(settings: Settings) -> JobStore | None:
    """The jobs directory's store (None with jobs off), its path in the environment for the workers' settings."""
    if not settings.jobs:
        return None
    from .jobs import JobStore, default_dir

    path = settings.jobs_dir or default_dir(settings)
    try:
        store = JobStore(path, settings.job_queue, settings.job_retention)
    except OSError as exc:
        sys.stderr.write(f"nbserve: jobs are off: the jobs directory {path} cannot be used ({exc})\n")
        return None
    os.environ["NBSERVE_JOBS_DIR"] = path  # read by Settings.from_env in the app and the workers
    return store


def _note_state(path: str | None, versions: list, shadow_to: dict | None) -> None:
    """What this server serves now, for a restart in the same place (Settings.state_file)."""
    if not path:
        return
    import json

    try:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump({"versions": versions, "shadow": shadow_to}, f)
        os.chmod(tmp, 0o600)  # a shadow's copies carry the candidate's token
        os.replace(tmp, path)
    except OSError as exc:
        sys.stderr.write(f"nbserve: could not note what is served in {path}: {exc}\n")


def _noted_state(path: str | None) -> tuple[list, dict | None] | None:
    """(versions, shadow) noted by an earlier run of this server, when every artifact is still there."""
    if not path or not os.path.exists(path):
        return None
    import json

    try:
        with open(path) as f:
            state = json.load(f)
        versions = state["versions"]
        if all(os.path.isdir(v["artifact"]) for v in versions):
            sys.stderr.write("nbserve: serving what this server served before its restart\n")
            return versions, state.get("shadow")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _started_versions(settings: Settings) -> list:
    """What a server serves at its start: the versions of a split (Settings.versions), else its artifact."""
    if not settings.versions:
        return [{"artifact": settings.artifact, "model_id": settings.model_id}]
    import json

    versions = json.loads(settings.versions)
    if not isinstance(versions, list) or not all(isinstance(v, dict) and v.get("artifact") for v in versions):
        raise ValueError('NBSERVE_VERSIONS is a JSON list of {"artifact", "model_id", "weight"}')
    return versions


def _record_dir(settings: Settings) -> tuple[str | None, bool]:
    """(directory, made here) of the traffic ring (traffic.py): the setting, else a new directory in memory
    (/dev/shm) where there is one, removed when the server exits; None when recording is off."""
    if not settings.record:
        return None, False
    if settings.record_dir:
        os.makedirs(settings.record_dir, exist_ok=True)
        return settings.record_dir, False
    shm = "/dev/shm"
    parent = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    path = tempfile.mkdtemp(prefix="nbserve-traffic-", dir=parent)
    os.environ["NBSERVE_RECORD_DIR"] = path  # the workers read their settings from the environment
    return path, True


def main(argv: list[str] | None = None) -> None:
    """``python -m nbserve.server [--warm MODULE ...]``: serve what the environment's settings say; with
    ``--warm``, import the modules named and wait to be adopted by a serve (see wait_for_adoption)."""
    argv = sys.argv[1:] if argv is None else argv
    from . import housekeeping

    housekeeping.hold()  # no thread in the master: each worker starts its own after the fork
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        sys.exit(f"nbserve: {exc}")
    # the control socket first: the kernel connects early and waits in its backlog while we import
    control_sock = ctl.listen(ctl.address(settings.control)) if settings.control else None
    from . import app  # noqa: F401 - flask and the served modules, while the kernel still captures the model

    imports: dict = {}  # a warm server's: the libraries of the kernel's earlier models, no proof's business
    if argv[:1] == ["--warm"]:
        if control_sock is None:
            sys.exit("nbserve: a warm server needs NBSERVE_CONTROL")
        import_recorded(argv[1:], imports)
        parent = os.environ.get("NBSERVE_WARM_PARENT_FD")
        env, cwd, listen_fd, log_fd = wait_for_adoption(control_sock, int(parent) if parent else None, imports)
        adopt({**env, "NBSERVE_LISTEN_FD": str(listen_fd), "NBSERVE_CONTROL": settings.control}, cwd, log_fd)
        try:
            settings = Settings.from_env()
        except ValueError as exc:
            sys.exit(f"nbserve: {exc}")
    master = Master(settings, control_sock)
    if settings.artifact:
        try:
            versions, shadow_to = _noted_state(settings.state_file) or (_started_versions(settings), None)
            generation = master.generation(versions, shadow_to)
            master.served = generation
            master.artifact = generation.artifacts[generation.primary.id]
            master.model_id = generation.primary.id
        except Exception as exc:
            from .artifact import ArtifactError

            sys.stderr.write(f"nbserve: cannot serve {settings.artifact}: {type(exc).__name__}: {exc}\n")
            if not isinstance(exc, ArtifactError):
                traceback.print_exc()
            sys.exit(1)
    elif control_sock is None:
        sys.exit("nbserve: nothing to serve: set NBSERVE_ARTIFACT, or NBSERVE_CONTROL for a server told what to serve")
    master.run()
