"""The one facade every face calls: register, list, serve, stop, build.

Faces (the Python API, magics, widgets, Jupyter REST handlers, CLI) parse their input and call a
``Workspace``; they never touch the registry, the pickle layer or a runtime directly. The registry
remembers what was asked for; the runtimes say what is really running (reconciled on every listing).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from . import config, graphs, runtimes
from .errors import ArtifactIntegrityError, InstanceNotFoundError, NbserveError, RuntimeUnavailableError
from .registry import InstanceRow, Registry, parse_ref, require_name, whoami
from .resources import Image, Instance, InstanceStatus, ModelVersion, Overview
from .runtimes.base import choose_port
from .runtimes.limits import check_options, with_batching
from .server.shared import DEFAULT_MAX_BATCH as DEFAULT_MAX_BATCH  # the batching defaults the faces offer
from .server.shared import DEFAULT_MAX_LATENCY_MS as DEFAULT_MAX_LATENCY_MS
from .server.shared import mask
from .store import scratch

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
REGISTER_RULES = ("env", "compare", "tolerance", "system_packages", "kind")  # serve(obj, ...) hands them to register


def console_progress(message: str, fraction: float | None = None) -> None:
    """Progress on standard error: a script's standard output stays its own (``print(mv.version)``)."""
    pct = f" [{fraction:4.0%}]" if fraction is not None else ""
    print(f"nbserve:{pct} {message}", file=sys.stderr, flush=True)


_explained: set[str] = set()


def explain_once(why: str) -> str:
    """Why "auto" fell back, in full the first time this process (a kernel, a script) says it, then its
    first clause only: a notebook that serves ten models reads the how-to-get-Docker advice once."""
    if why in _explained:
        return why.split("; ", 1)[0]
    _explained.add(why)
    return why


def quiet(message: str, fraction: float | None = None) -> None:
    pass


def _progress(progress):
    if progress is None:
        return console_progress
    if progress is False:
        return quiet
    return progress


class Workspace:
    def __init__(self, home=None):
        self.home = config.home() if home is None else Path(home).expanduser().resolve()
        self.registry = Registry(self.home)
        self._runtimes = {}
        self._deployer = None
        self._samples: dict = {}  # model name -> the sample it was last served with from this process

    def __repr__(self):
        return f"<Workspace {self.home}>"

    # -- runtimes ------------------------------------------------------------------------------

    def runtime(self, name: str):
        if name not in self._runtimes:
            self._runtimes[name] = runtimes.get_runtime(name, self)
        return self._runtimes[name]

    def choose_runtime(self, runtime: str = "auto", progress=None, base_image: str | None = None) -> str:
        """The runtime to use; for "auto" says which it chose and, for the fallback, why."""
        chosen, why = self.runtime_choice(runtime, base_image)
        if runtime in (None, runtimes.AUTO):
            # the fallback says why the others could not serve; a runtime whose check passed needs no excuse
            excuse = runtimes.spec(chosen).check is None and why
            _progress(progress)(f"runtime 'auto' chose {chosen}" + (f": {explain_once(why)}" if excuse else ""))
        return chosen

    def runtime_choice(self, runtime: str = "auto", base_image: str | None = None) -> tuple[str, str]:
        """(runtime, why). "auto" is the first runtime of the list (``runtimes.RUNTIMES``) whose check says
        it can serve here (Docker: an engine answers and the base image is usable, see runtimes/auto.py),
        else the process runtime. An explicit runtime is taken as asked, and fails loudly later if it
        cannot run."""
        if runtime in (None, runtimes.AUTO):
            return runtimes.choose_auto(self, base_image)
        return runtimes.spec(runtime).name, "asked for"

    # -- models --------------------------------------------------------------------------------

    def _version(self, row, placements=None) -> ModelVersion:
        return ModelVersion(
            name=row.name,
            version=row.version,
            sha256=row.sha256,
            created=row.created,
            python_executable=row.python,
            manifest=self.registry.read_manifest(row.sha256),
            _workspace=self,
            registered_by=row.registered_by,
            registered_host=row.registered_host,
            _running=None
            if placements is None
            else [p for p in placements if p["model"] == f"{row.name}:{row.version}"],
        )

    def placements(self, model: str | None = None) -> list[dict]:
        """Which versions run where, as the registry's users' workspaces report them (the team's view)."""
        found = [dict(p, model=f"{p['name']}:{p['version']}") for p in self.registry.placements()]
        return [p for p in found if model is None or p["model"] == model]

    def _report(self, instances=(), gone=()) -> None:
        """Tell the registry (shared by a team, or this machine's) what this machine's instances are doing."""
        self.registry.report(
            [
                {
                    "instance": i.id,
                    "name": i.name,
                    "version": i.version,
                    "runtime": i.runtime,
                    "url": i.url,
                    "status": i.status,
                }
                for i in instances
            ],
            gone,
        )

    def _name_for(self, obj, name):
        if isinstance(obj, (str, ModelVersion)):
            raise NbserveError(
                "register() takes the live object (a model or a function), not a name; "
                "to serve a registered model use serve(name)"
            )
        if name is None:
            name = getattr(obj, "__name__", None)
            if not isinstance(name, str) or not name.isidentifier() or name == "<lambda>":
                raise NbserveError(f"pass name=... to register a {type(obj).__name__}")
        return require_name(name)

    def register(
        self,
        obj,
        name: str | None = None,
        sample=None,
        methods=None,
        progress=None,
        env: dict | None = None,
        compare: str = "values",
        tolerance: float | None = None,
        system_packages: list[str] | None = None,
        kind: str | None = None,
    ) -> ModelVersion:
        """Capture, prove and store a live object. ``env``: environment variables the model needs, beside
        those captured by themselves (capture.CAPTURED_ENV: KERAS_BACKEND, thread settings...). ``compare``
        and ``tolerance``: how the proof compares answers, for a model that is not deterministic (it says so).
        ``system_packages``: Debian packages its image installs besides those nbserve finds the wheels need.
        ``kind``: "chat" or "embeddings" for a text function, served on OpenAI's routes too."""
        from .capture import capture  # cloudpickle and the proof machinery: loaded on a first register

        name = self._name_for(obj, name)
        rules = {
            "env": env,
            "compare": compare,
            "tolerance": tolerance,
            "system_packages": system_packages,
            "text_kind": kind,
        }
        if isinstance(obj, graphs.Graph):  # each live stage registered on its own, then the graph naming them
            if methods is not None or kind is not None:
                raise NbserveError("a graph's method is set when it is made: nbserve.graph(..., method=...)")
            rules.pop("text_kind")
            return graphs.register(self, obj, name, sample, _progress(progress), **rules)
        captured = capture(obj, label=name, sample=sample, methods=methods, **rules)
        return self._store(captured, name, _progress(progress))

    def _store(self, captured, name, say) -> ModelVersion:
        sha = self.registry.store_artifact(captured.pickle, captured.manifest)
        row, created = self.registry.add_version(name, sha, sys.executable)
        mv = self._version(row)
        say(
            f"registered {mv.id}: methods {mv.methods}, {len(mv.requirements)} pinned requirements"
            if created
            else f"unchanged since {mv.id} (the same artifact): serving {mv.id}, no new version"
        )
        return mv

    def models(self) -> list[ModelVersion]:
        rows = self.registry.latest_versions()
        placements = self.placements() if rows else []
        return [self._version(r, placements) for r in rows]

    def overview(self) -> Overview:
        """What the panel and the sidebar show, in one reading: the latest version of every model with its
        version numbers, and every instance with the status its runtime reports. Three queries whatever the
        number of models (versions, placements, instances), and no write unless an instance changed."""
        rows = self.registry.list_versions()
        placements = self.placements()
        numbers: dict[str, list[int]] = {}
        latest: dict = {}
        for r in rows:
            numbers.setdefault(r.name, []).append(r.version)
            if r.name not in latest or r.version > latest[r.name].version:
                latest[r.name] = r
        models = [self._version(latest[name], placements) for name in sorted(latest)]
        instances = self._listed(self.registry.list_instances(), placements)
        return Overview(models=models, versions=numbers, instances=instances, time=time.time())

    def versions(self, name: str) -> list[ModelVersion]:
        rows = self.registry.list_versions(name)
        placements = self.placements() if rows else []
        return [self._version(r, placements) for r in rows]

    def get_model(self, ref, version: int | None = None) -> ModelVersion:
        if isinstance(ref, ModelVersion):
            return ref
        name, version = parse_ref(ref, version)
        return self._version(self.registry.get_version(name, version))

    def load(self, ref):
        import cloudpickle  # only where an object is unpickled: listing and serving never do

        mv = self.get_model(ref)
        if graphs.is_graph(mv):  # a Graph whose stages are their registered versions (loaded when it runs)
            return graphs.from_version(mv)
        try:
            data = self.registry.verified_pickle(mv.sha256)
        except ArtifactIntegrityError as exc:
            raise ArtifactIntegrityError(f"{mv.id}: {exc}") from None
        return cloudpickle.loads(data)

    # -- instances -----------------------------------------------------------------------------

    def _instance(self, row: InstanceRow, status: str | None = None) -> Instance:
        if status is None:
            status = self._status(row)
        return Instance(self, row, status)

    def _status(self, row: InstanceRow) -> InstanceStatus:
        """The status the runtime reports; a port it says moved (Docker's can, after a restart) is stored."""
        port = row.port
        try:
            status = self.runtime(row.runtime).status(row)
        except RuntimeUnavailableError:
            return InstanceStatus.UNKNOWN
        if row.port != port:
            self.registry.update_instance(row.id, port=row.port)
        return status

    def serve(
        self,
        target,
        name: str | None = None,
        sample=None,
        runtime: str = "auto",
        port: int | None = None,
        workers: int = 1,
        host: str = "127.0.0.1",
        version: int | None = None,
        methods=None,
        progress=None,
        update: bool | None = None,
        **options,
    ) -> Instance:
        """The one serve path of every face (API, magics, panel, sidebar, CLI): a started, healthy Instance.

        ``target`` is a registered model (name, NAME:VERSION or ModelVersion) or a live object, registered
        first; on the process runtime the server process doubles as the proof of the registration (one
        interpreter start, not two). ``prepare()`` does everything but the start.

        A live object served under the name of a running instance (on the same runtime and port, when given)
        updates that instance in place: the next version is registered and swapped in at the same URL without
        dropping a request (``update=False``: a second instance instead, as before).
        """
        if "start" in options:
            raise NbserveError(
                "serve() always starts an instance; prepare() registers (and, on a runtime of images, builds the "
                "image) without starting one"
            )
        inst = self._serve(
            target, name, sample, runtime, port, workers, host, version, methods, progress, True, options, update
        )
        assert isinstance(inst, Instance)
        return inst

    def prepare(
        self,
        target,
        name: str | None = None,
        sample=None,
        runtime: str = "auto",
        version: int | None = None,
        methods=None,
        progress=None,
        **options,
    ) -> ModelVersion:
        """Everything serve() does before a start: register a live object (or find a registered one), check
        the options, and on a runtime that runs images build the image, so that a later serve() only starts.
        ``%serve --no-start`` is this."""
        mv = self._serve(
            target, name, sample, runtime, None, 1, "127.0.0.1", version, methods, progress, False, options
        )
        assert isinstance(mv, ModelVersion)
        return mv

    def _serve(
        self,
        target,
        name,
        sample,
        runtime,
        port,
        workers,
        host,
        version,
        methods,
        progress,
        start: bool,
        options: dict,
        update: bool | None = None,
    ) -> Instance | ModelVersion:
        say = _progress(progress)
        rules = {k: options.pop(k) for k in REGISTER_RULES if k in options}  # register's, for a live object
        if isinstance(target, graphs.Graph):  # register the changed stages and the graph, serve or update it
            if methods is not None or rules.pop("kind", None) is not None:
                raise NbserveError("a graph's method is set when it is made: nbserve.graph(..., method=...)")
            return graphs.serve(
                self,
                target,
                self._name_for(target, name),
                sample,
                say,
                rules,
                runtime=runtime,
                port=port,
                host=host,
                start=start,
                update=update,
                workers=workers,
                **options,
            )
        if int(workers) < 1:
            raise NbserveError(f"workers must be at least 1, got {workers}")
        _check_host(host)
        if port is not None and start:
            choose_port(host, port)  # a port in use is refused before any capture or build, not after
        options = check_options(options)  # timeout, max_body, auth_token (True -> a generated token)
        if isinstance(target, (str, ModelVersion)):
            if sample is not None or methods is not None or rules:
                raise NbserveError(
                    f"sample=, methods=, {'=, '.join(REGISTER_RULES)}= apply when registering a live object; "
                    f"{target!r} is already registered"
                )
            mv = self.get_model(target, version)
            runtime = self.choose_runtime(runtime, say, options.get("base_image"))
        else:
            name = self._name_for(target, name)
            if sample is not None:
                self._samples[name] = sample  # a later re-serve (or follow) without a sample uses it again
            running = self._updatable(name, runtime, port, host) if start and update is not False else None
            if running is not None:
                return self.reserve(running, target, sample=sample, methods=methods, progress=say, **rules)
            runtime = self.choose_runtime(runtime, say, options.get("base_image"))
            if runtimes.spec(runtime).proves_registration and start:
                row = self._new_row(name, runtime, host, port, workers, options)
                return self._started(row, self._serve_live(row, target, sample, methods, rules, say), say)
            mv = self.register(target, name=name, sample=sample, methods=methods, progress=say, **rules)
        if options.get("default_method") and options["default_method"] not in mv.methods:
            raise NbserveError(
                f"default_method={options['default_method']!r} is not a method of {mv.name}; it has {mv.methods}"
            )
        if not start:
            if runtimes.spec(runtime).builds_images:
                self.runtime(runtime).build(mv, base_image=options.get("base_image"), progress=say)
            return mv
        row = self._new_row(mv.name, runtime, host, port, workers, options)
        rt = self.runtime(runtime)
        say(f"starting {mv.id} on the {runtime} runtime")
        try:
            row.handle = rt.start(row, mv, say)
        except BaseException:
            _quietly(rt.remove, row)
            raise
        return self._started(row, mv, say)

    def _new_row(self, name, runtime, host, port, workers, options) -> InstanceRow:
        return InstanceRow(
            id=f"{name}-{secrets.token_hex(3)}",
            name=name,
            version=0,
            runtime=runtime,
            host=host,
            port=port,
            desired="running",
            created=time.time(),
            started=None,
            options={"workers": int(workers), "port": port, **options},
        )

    def _serve_live(self, row: InstanceRow, obj, sample, methods, rules, say) -> ModelVersion:
        """Serve a live object on a runtime whose server is the proof of its registration, in a straight line:
        the server starts (and imports its own modules) while the kernel captures; it imports the model's
        libraries once and replays the sample in a forked child; the kernel checks the report, locks the
        requirements and registers; the server serves the registered version. One interpreter, one import."""
        from .capture import draft, requirements  # capture imports cloudpickle: not for listing

        rt = self.runtime(row.runtime)
        # no version number yet: the proof may find it is the same artifact as a registered version
        say(f"starting {row.name} on the {row.runtime} runtime")
        rt.start_early(row, say)
        pending = None
        try:
            requirements.warm_up()
            rules = dict(rules)
            text_kind = rules.pop("kind", None)
            pending = PendingVersion(
                self.home, draft(obj, row.name, sample, methods, text_kind=text_kind, **rules), row.name
            )
            method = row.options.get("default_method")
            if method and method not in pending.draft.names:
                raise NbserveError(
                    f"default_method={method!r} is not a method of {row.name}; it has {pending.draft.names}"
                )
            report = rt.prove(row, pending, say)
            mv = self._store(pending.draft.finish(report), row.name, say)
            row.handle = rt.hand_over(row, pending, mv)
            return mv
        except BaseException:
            _quietly(rt.remove, row)
            raise
        finally:
            if pending is not None:
                pending.cleanup()

    def _started(self, row: InstanceRow, mv: ModelVersion, say) -> Instance:
        row.version = mv.version
        row.started = time.time()
        self.registry.add_instance(row)
        inst = self._instance(row, "running")
        self._report([inst])
        say(f"{inst.id} is serving {inst.model} at {inst.url}")
        if inst.auth_token:  # never the whole token in a message: the first characters only
            say(
                f"{inst.id} requires the bearer token {mask(inst.auth_token)} (inst.auth_token); inst.client() sends it"
            )
        return inst

    def check_options(self, options: dict) -> dict:
        """serve()'s server options (timeout, batching, auth...) checked as serve checks them, for a face that
        answers before the start itself (the Jupyter start route); NbserveError saying what is wrong."""
        return check_options(options)

    def check_port(self, port: int, host: str = "127.0.0.1") -> int:
        """``port`` if it is a TCP port (1-65535, else NbserveError) that is free on ``host``, else PortInUseError."""
        return choose_port(host, port)

    def instances(self, model: str | None = None) -> list[Instance]:
        rows = self.registry.list_instances()
        if model is not None:
            name, version = parse_ref(model)
            rows = [r for r in rows if r.name == name and (version is None or r.version == version)]
        return self._listed(rows, self.placements())

    def _listed(self, rows, placements) -> list[Instance]:
        """Instances with their runtime's status; the registry is told only about those whose state differs
        from what it holds for this machine, so a listing (every few seconds from each open panel) takes no
        write lock when nothing changed."""
        found = [self._instance(r) for r in rows]
        machine = whoami()[1]
        known = {
            p["instance"]: (p["version"], p["runtime"], p["url"], p["status"])
            for p in placements
            if p["machine"] == machine
        }
        changed = [i for i in found if known.get(i.id) != (i.version, i.runtime, i.url, i.status)]
        if changed:
            self._report(changed)
        return found

    def get_instance(self, id: str) -> Instance:
        return self._instance(self.registry.get_instance(id))

    def resolve_instances(self, ref: str) -> list[Instance]:
        """An instance id, or a model name / NAME:VERSION meaning its instances (for CLI and magics)."""
        try:
            return [self.get_instance(ref)]
        except InstanceNotFoundError:
            pass
        try:
            found = self.instances(model=ref)
        except NbserveError:
            found = []
        if not found:
            try:
                mv = self.get_model(ref)
            except NbserveError:
                raise InstanceNotFoundError(
                    f"no instance or model named {ref!r}; `nbserve instances` lists them"
                ) from None
            raise InstanceNotFoundError(
                f"{mv.id} is registered but has no instance: serve it to start one (`nbserve serve {ref}`, "
                f"with --batch for adaptive batching; serve() or %serve in a notebook)"
            )
        return found

    def stop(self, id: str) -> Instance:
        row = self.registry.get_instance(id)
        self._end_loop(row)
        self.runtime(row.runtime).stop(row)
        row.desired = "stopped"
        self.registry.update_instance(id, desired="stopped", options=row.options)
        inst = self._instance(row)
        self._report([inst])
        return inst

    def start(self, id: str, progress=None, **batching) -> Instance:
        """Start a stopped instance again; ``batch``, ``max_batch``, ``max_latency_ms`` (as serve takes
        them) change its batching from this start on (a running instance must be stopped first)."""
        say = _progress(progress)
        row = self.registry.get_instance(id)
        options = with_batching(row.options, batching) if batching else row.options
        rt = self.runtime(row.runtime)
        if rt.status(row) == "running":
            if options != row.options:
                raise NbserveError(f"{id} is running: stop it first to change its batching, then start it with them")
            return self._instance(row, "running")
        mv = self.get_model(row.model)
        row.options = options
        say(f"starting {row.id} ({row.model}) on the {row.runtime} runtime")
        row.handle = rt.start(row, mv, say)
        row.desired, row.started = "running", time.time()
        self.registry.update_instance(
            id, desired="running", port=row.port, handle=row.handle, started=row.started, options=row.options
        )
        inst = self._instance(row, "running")
        self._report([inst])
        return inst

    def _end_loop(self, row: InstanceRow) -> None:
        """Before an instance stops: its shadow candidate goes, and a split ends (a start serves its version
        alone); a candidate that stops is no longer copied to."""
        shadow = row.options.get("shadow")
        row.options = {k: v for k, v in row.options.items() if k not in ("shadow", "split")}
        if shadow:
            _quietly(self.remove, shadow["instance"])
        live_id = row.options.get("candidate_of")
        if live_id:
            try:
                live = self.registry.get_instance(live_id)
            except InstanceNotFoundError:
                return
            if (live.options.get("shadow") or {}).get("instance") == row.id:
                _quietly(self._unshadow, live, quiet)

    def remove(self, id: str) -> None:
        row = self.registry.get_instance(id)
        self._end_loop(row)
        self.runtime(row.runtime).remove(row)
        self.registry.delete_instance(id)
        self._report(gone=[id])

    def logs(self, id: str, tail: int = 200) -> str:
        row = self.registry.get_instance(id)
        return self.runtime(row.runtime).logs(row, tail=tail)

    # -- metrics and drift (nbserve/monitoring.py) ---------------------------------------------

    def _running(self, id: str):
        inst = self.get_instance(id)
        if inst.status != "running" or not inst.url:
            raise NbserveError(f"{id} is {inst.status}: metrics, drift and jobs come from a running instance")
        return inst

    def metrics_snapshot(self, id: str, settled: bool = False) -> dict:
        """One reading of the instance's /metrics (cumulative counts; see monitoring.snapshot); ``settled``:
        one that holds every request answered before the call (up to a second later; monitoring.settled_snapshot)."""
        from . import monitoring

        inst = self._running(id)
        read = monitoring.settled_snapshot if settled else monitoring.snapshot
        return read(inst.url, inst.auth_token)

    def batching(self, id: str) -> dict:
        """The instance's GET /batching: model calls, requests per call, queue waits (server/batching.py)."""
        from . import monitoring

        inst = self._running(id)
        if inst.batching is None:
            raise NbserveError(f"{id} does not batch requests: serve it with batch=True (or start it with batch=True)")
        return monitoring.batching(inst.url, inst.auth_token)

    def serving(self, id: str) -> dict:
        """How a running instance is served, as its server says: its settings (timeout, body limit, batching,
        metrics, log and drift switches...), workers and native threads per worker."""
        from . import monitoring

        inst = self._running(id)
        return monitoring.serving(inst.url, inst.auth_token)

    def jobs(self, id: str) -> list[dict]:
        """The jobs the instance keeps (queued, running, finished within their retention), newest first: id,
        method, status, progress, created/started/finished, error (server/jobs.py)."""
        inst = self._running(id)
        with inst.client(timeout=10) as client:
            return client.jobs()

    def cancel_job(self, id: str, job_id: str) -> dict:
        """Cancel a queued or running job of the instance (a finished one is forgotten); its status document."""
        inst = self._running(id)
        with inst.client(timeout=10) as client:
            job = client.job(job_id)
            job.cancel()
            return job.doc

    def drift(self, id: str) -> dict:
        """The instance's /drift report: each feature against the registration sample."""
        from . import monitoring

        inst = self._running(id)
        return monitoring.drift(inst.url, inst.auth_token)

    def prometheus_config(self, refs=None, interval: str = "15s") -> str:
        """A Prometheus scrape config for the running instances (all, or those of ``refs``)."""
        from . import monitoring

        insts = [i for ref in refs for i in self.resolve_instances(ref)] if refs else self.instances()
        return monitoring.prometheus_config(insts, self.home / "prometheus", interval=interval)

    def update(self, id: str, ref, progress=None) -> Instance:
        """Serve another version of the instance's model at the same URL, without dropping a request
        (the runtime starts the new server beside the old and drains the old once the new is healthy)."""
        say = _progress(progress)
        row = self.registry.get_instance(id)
        mv = self.get_model(ref)
        if mv.name != row.name:
            raise NbserveError(f"instance {id} serves {row.name}; update it to a version of {row.name}, not {mv.id}")
        rt = self.runtime(row.runtime)
        if not hasattr(rt, "update"):
            raise NbserveError(
                f"{row.runtime} instances are not updated in place; start a new instance, or use a deployment "
                f"(nbserve.deploy), whose rolling update keeps serving"
            )
        if rt.status(row) != "running":
            raise NbserveError(f"instance {id} is {rt.status(row)}: start it first, or serve {mv.id} anew")
        say(f"updating {id} from {row.model} to {mv.id} at {rt.url(row)}")
        old = row.model
        inst = self._swapped(row, mv, say)
        say(f"{mv.id} now answers at {inst.url}, was {old}")
        return inst

    # -- the notebook loop: re-serve in place, split, shadow and promote, roll back, traffic -----------------

    def running_instance(self, name: str, runtime: str = "auto", port=None, host: str = "127.0.0.1"):
        """The running instance of ``name`` that serving a live object of that name updates in place, or None."""
        row = self._updatable(name, runtime, port, host)
        return None if row is None else self._instance(row, "running")

    def _updatable(self, name, runtime, port, host) -> InstanceRow | None:
        """The running instance that a re-serve of ``name`` updates: on the runtime asked for (any, for
        "auto") and the port asked for (any, when none); the latest started. Shadow candidates never count."""
        wanted = None if runtime in (None, runtimes.AUTO) else runtimes.spec(runtime).name
        found = []
        for row in self.registry.list_instances():
            if row.name != name or row.desired != "running" or row.options.get("candidate_of"):
                continue
            if (wanted and row.runtime != wanted) or (port is not None and row.port != int(port)) or row.host != host:
                continue
            if self._status(row) == "running":
                found.append(row)
        return max(found, key=lambda r: r.started or 0.0) if found else None

    def reserve(self, id, obj, sample=None, methods=None, progress=None, **rules) -> Instance:
        """Register ``obj`` as the next version of the instance's model and swap it in at the same URL, without
        dropping a request. On the process runtime the running server proves the new version (it has the
        model's libraries imported already): no new interpreter. A version whose callers would have to change
        (another input or output) is refused with IncompatibleVersionError and the served one stays. Without
        ``sample``, the one this process served the model with last is used, else the served version's
        example row (its input schema kept)."""
        from .capture import draft, prove, requirements

        say = _progress(progress)
        row = id if isinstance(id, InstanceRow) else self.registry.get_instance(id)
        served = self.get_model(row.model)
        rt = self.runtime(row.runtime)
        schema_from = None
        if sample is None:
            sample = self._samples.get(row.name)
        if sample is None:
            sample, schema_from = _example_sample(served), served
        here = (
            runtimes.spec(row.runtime).proves_registration
            and row.handle.get("control")
            and row.handle.get("python") == sys.executable
        )
        say(f"{row.id}: registering the new {row.name} to replace {served.id}")
        if here:
            requirements.warm_up()
        rules = dict(rules)
        text_kind = rules.pop("kind", None) or served.text_kind  # a text function stays one
        d = draft(obj, row.name, sample, methods, text_kind=text_kind, **rules)
        if schema_from is not None:  # an example row says less than the sample did (nulls, categories)
            for method, part in d.signature.items():
                if method in schema_from.signature:
                    part["input"] = schema_from.signature[method]["input"]
            d.reference = d.reference and schema_from.manifest.get("reference")
        self._check_compatible(row, served, d.signature)
        if here:
            pending = PendingVersion(self.home, d, row.name)
            try:
                mv = self._store(d.finish(rt.prove(row, pending, say)), row.name, say)
                if mv.id != served.id:
                    self._swapped(row, mv, say, staged=pending)
            finally:
                pending.cleanup()
        else:
            mv = self._store(d.finish(prove(d)), row.name, say)
            if mv.id != served.id:
                self._swapped(row, mv, say)
        inst = self._instance(row, "running")
        if mv.id != served.id:
            say(f"{mv.id} now answers at {inst.url}, was {served.id}")
        return inst

    def _check_compatible(self, row, served: ModelVersion, signature: dict) -> None:
        from .capture.signature import incompatibility
        from .errors import IncompatibleVersionError

        why = incompatibility(served.signature, signature, served.id, f"the new {row.name}")
        if why:
            raise IncompatibleVersionError(
                f"{served.id} keeps serving at {self.runtime(row.runtime).url(row)}: {why}, so its callers would "
                f"break. Serve it with update=False for an instance of its own beside, or under another name"
            )

    def _swapped(self, row: InstanceRow, mv: ModelVersion, say, staged=None, history=None) -> Instance:
        """Serve ``mv`` alone at the instance's URL (a split and a shadow end with it), and record it: the
        version it replaced goes on the instance's history (``history``: the new history, for a rollback)."""
        rt = self.runtime(row.runtime)
        old = row.model
        row.handle = rt.update(row, mv, say, **({"staged": staged} if staged is not None else {}))
        options = {k: v for k, v in row.options.items() if k not in ("split", "shadow")}
        if history is None:
            history = list(options.get("history") or [])
            if old != mv.id and (not history or history[-1] != old):
                history = [*history, old][-HISTORY:]
        options["history"] = history
        candidate = (row.options.get("shadow") or {}).get("instance")
        row.options, row.version, row.started = options, mv.version, time.time()
        self.registry.update_instance(
            row.id, version=mv.version, handle=row.handle, started=row.started, options=options
        )
        if candidate:
            _quietly(self.remove, candidate)
        inst = self._instance(row, "running")
        self._report([inst])
        return inst

    def _live(self, id: str) -> tuple[InstanceRow, Any]:
        row = self.registry.get_instance(id)
        rt = self.runtime(row.runtime)
        if row.options.get("candidate_of"):
            raise NbserveError(f"{id} is the shadow candidate of {row.options['candidate_of']}: act on that instance")
        status = rt.status(row)
        if status != "running":
            raise NbserveError(f"instance {id} is {status}: start it first")
        return row, rt

    def rollback(self, id: str, to=None, progress=None) -> Instance:
        """Serve the version the instance served before the last update (or ``to``) again, in place."""
        say = _progress(progress)
        row, _ = self._live(id)
        history = list(row.options.get("history") or [])
        if to is not None:
            mv = self.get_model(to)
            if mv.name != row.name:
                raise NbserveError(f"instance {id} serves {row.name}; roll it back to a version of {row.name}")
            history = [h for h in history if h != mv.id]
        elif not history:
            raise NbserveError(f"{id} has served only {row.model} since it started: there is nothing to roll back to")
        else:
            mv = self.get_model(history.pop())
        old = row.model
        say(f"rolling {id} back from {old} to {mv.id}")
        inst = self._swapped(row, mv, say, history=history)
        say(f"{mv.id} now answers at {inst.url} again, was {old}")
        return inst

    def split(self, id: str, weights: dict | None, progress=None) -> Instance:
        """Share the instance's URL between versions of its model by weight (``{"diabetes:1": 90,
        "diabetes:2": 10}``); every answer names its version in X-Model-Version, and the metrics are labelled
        by version. ``None`` ends the split: the version of the largest weight stays."""
        say = _progress(progress)
        row, rt = self._live(id)
        if not hasattr(rt, "route"):
            raise NbserveError(f"{row.runtime} instances cannot split their traffic; use a deployment")
        if weights is None:
            versions = [(self.get_model(row.model), 100.0)]
        else:
            versions = self.split_versions(row.name, weights, f"instance {id}")
        primary = max(versions, key=lambda vw: vw[1])[0]
        row.handle = rt.route(row, versions, self._shadow_route(row), say)
        options = {k: v for k, v in row.options.items() if k != "split"}
        if len(versions) > 1:
            options["split"] = {mv.id: w for mv, w in versions}
        row.options, row.version = options, primary.version
        self.registry.update_instance(row.id, version=row.version, handle=row.handle, options=options)
        inst = self._instance(row, "running")
        self._report([inst])
        if len(versions) > 1:
            total = sum(w for _, w in versions)
            say(f"{inst.url} answers as " + ", ".join(f"{mv.id} {w / total:.0%}" for mv, w in versions))
        else:
            say(f"{inst.url} answers as {primary.id} alone")
        return inst

    def split_versions(self, name: str, weights, owner: str) -> list:
        """[(ModelVersion, weight)] of a split ``{"NAME:VERSION": weight, ...}`` of model ``name``, checked
        (``owner`` says whose split in the errors: an instance's, a deployment's)."""
        if not isinstance(weights, dict) or not weights:
            raise NbserveError('split takes {"NAME:VERSION": weight, ...}, e.g. {"diabetes:1": 90, "diabetes:2": 10}')
        versions = []
        for ref, weight in weights.items():
            mv = self.get_model(ref)
            if mv.name != name:
                raise NbserveError(f"{owner} serves {name}; split it between versions of {name}")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                raise NbserveError(f"the weight of {mv.id} must be a number >= 0, got {weight!r}")
            versions.append((mv, float(weight)))
        if len({mv.id for mv, _ in versions}) != len(versions):
            raise NbserveError("name each version once in a split")
        if sum(w for _, w in versions) <= 0:
            raise NbserveError("a split needs at least one weight above 0")
        return versions

    def _versions(self, row) -> list:
        split = row.options.get("split")
        if split:
            return [(self.get_model(ref), float(w)) for ref, w in split.items()]
        return [(self.get_model(row.model), 100.0)]

    def _shadow_route(self, row) -> dict | None:
        """What the instance's server needs to copy requests to its candidate (its address, the token)."""
        shadow = row.options.get("shadow")
        if not shadow:
            return None
        candidate = self.registry.get_instance(shadow["instance"])
        return {
            "url": self.runtime(candidate.runtime).peer_url(candidate),
            "share": shadow["share"],
            "token": candidate.options.get("auth_token"),
            "candidate": shadow["model"],
        }

    def shadow(self, id: str, candidate, share: float = 1.0, sample=None, progress=None) -> Instance:
        """Serve ``candidate`` (a live object, registered as the next version, or a registered version) beside
        the instance, on the same runtime, and copy ``share`` of the instance's requests to it, off the
        response path: callers only ever get the live answer. Returns the candidate's Instance."""
        say = _progress(progress)
        row, rt = self._live(id)
        if not hasattr(rt, "route"):
            raise NbserveError(f"{row.runtime} instances cannot shadow; use the process or docker runtime")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise NbserveError(f"share is the fraction of requests copied, above 0 and at most 1; got {share!r}")
        served = self.get_model(row.model)
        if isinstance(candidate, (str, ModelVersion)):
            mv = self.get_model(candidate)
            if mv.name != row.name:
                raise NbserveError(f"instance {id} serves {row.name}; its candidate must be a version of {row.name}")
        else:
            from .capture import capture

            sample = sample if sample is not None else self._samples.get(row.name)
            captured = capture(candidate, label=row.name, sample=sample)
            self._check_compatible(row, served, captured.manifest["signature"])
            mv = self._store(captured, row.name, say)
        if row.options.get("shadow"):
            self.discard(id, progress=say)
            row = self.registry.get_instance(id)
        keep = (
            "auth_token",
            "timeout",
            "max_body",
            "default_method",
            "extra_columns",
            "url_prefix",
            "threads",
            "base_image",
            "restart_policy",
            "metrics",
            "drift",
            "start_timeout",
        )
        options = {k: row.options[k] for k in keep if k in row.options}
        if options.get("auth_token"):  # a token of its own: the live server holds the candidate's, never its own
            options["auth_token"] = secrets.token_urlsafe(32)
        cand = self._new_row(row.name, row.runtime, row.host, None, 1, {**options, "candidate_of": row.id})
        say(f"starting {mv.id} beside {row.id} as its shadow candidate")
        try:
            cand.handle = rt.start(cand, mv, say)
        except BaseException:
            _quietly(rt.remove, cand)
            raise
        self._started(cand, mv, quiet)
        options = dict(row.options, shadow={"instance": cand.id, "model": mv.id, "share": float(share)})
        row.options = options
        try:
            row.handle = rt.route(row, self._versions(row), self._shadow_route(row), say)
        except BaseException:
            _quietly(self.remove, cand.id)
            raise
        self.registry.update_instance(row.id, handle=row.handle, options=options)
        self._report([self._instance(row, "running")])
        say(f"{cand.id} ({mv.id}) shadows {row.id}: {share:.0%} of its requests are copied to it")
        return self._instance(cand, "running")

    def _shadowing(self, id: str) -> tuple[InstanceRow, dict]:
        row = self.registry.get_instance(id)
        shadow = row.options.get("shadow")
        if not shadow:
            raise NbserveError(f"no candidate shadows {id}: inst.shadow(candidate) starts one")
        return row, shadow

    def discard(self, id: str, progress=None) -> Instance:
        """Stop copying requests to the candidate and remove it; the instance serves as before."""
        say = _progress(progress)
        row, shadow = self._shadowing(id)
        self._unshadow(row, say)
        _quietly(self.remove, shadow["instance"])
        say(f"discarded {shadow['model']} ({shadow['instance']}): {row.id} serves {row.model}")
        return self._instance(row)

    def _unshadow(self, row: InstanceRow, say) -> None:
        """The instance's server stops copying requests (its versions as they are)."""
        rt = self.runtime(row.runtime)
        row.options = {k: v for k, v in row.options.items() if k != "shadow"}
        if rt.status(row) == "running":
            row.handle = rt.route(row, self._versions(row), None, say)
        self.registry.update_instance(row.id, handle=row.handle, options=row.options)

    def promote(self, id: str, progress=None) -> Instance:
        """Serve the shadow candidate's version at the instance's URL (in place) and remove the candidate."""
        say = _progress(progress)
        row, shadow = self._shadowing(id)
        self._live(id)
        mv = self.get_model(shadow["model"])
        old = row.model
        if mv.id == old:
            self.discard(id, progress=say)
            say(f"{mv.id} was already served at {self.runtime(row.runtime).url(row)}: the candidate is removed")
            return self.get_instance(id)
        say(f"promoting {mv.id} at {self.runtime(row.runtime).url(row)}")
        inst = self._swapped(row, mv, say)
        say(f"{mv.id} now answers at {inst.url}, was {old}")
        return inst

    def comparison(self, id: str, summary: bool = False, n: int | None = None, tolerance: float | None = None):
        """The shadow's comparison: per request row, the input (as the training schema's dtypes), both answers,
        whether they agree (within ``tolerance``, relative; default the candidate's proof rule) and both
        latencies (a DataFrame); ``summary=True``: agreement rate, error statistics, latency percentiles."""
        from . import comparison, monitoring

        row, shadow = self._shadowing(id)
        candidate = self.get_instance(shadow["instance"])
        if candidate.status != "running" or not candidate.url:
            raise NbserveError(f"the candidate {candidate.id} is {candidate.status}: discard it and shadow again")
        query = f"?n={int(n)}" if n else ""
        body = monitoring._get(candidate.url + "/shadow" + query, candidate.auth_token, timeout=60).json()
        copying = None
        url = self.runtime(row.runtime).url(row)
        if url:
            try:
                copying = monitoring._get(url + "/shadow", row.options.get("auth_token")).json().get("copying")
            except NbserveError:
                pass
        live = self.get_model(row.model)
        frame = comparison.comparison_frame(body.get("records") or [], live, self.get_model(shadow["model"]), tolerance)
        if summary:
            return comparison.summary(frame, copying)
        frame.attrs["copying"] = copying
        return frame

    def traffic(self, id: str, n: int = 1000):
        """The instance's last ``n`` requests and answers (its traffic ring) as a DataFrame in the training
        schema's dtypes, with each feature's drift status in ``.attrs["drift"]``."""
        from . import comparison, monitoring

        row = self.registry.get_instance(id)
        inst = self._instance(row)
        if inst.status != "running" or not inst.url:
            raise NbserveError(f"{id} is {inst.status}: its traffic is kept by the running server only")
        token = row.options.get("auth_token")
        body = monitoring._get(f"{inst.url}/traffic?n={int(n)}", token, timeout=60).json()
        try:
            drift = monitoring.drift(inst.url, token)
        except NbserveError:
            drift = None
        versions = {ref: self.get_model(ref) for ref in {r.get("v") for r in body.get("records") or []} if ref}
        return comparison.traffic_frame(
            body.get("records") or [], versions or {row.model: self.get_model(row.model)}, drift
        )

    def set_follow(self, id: str, variable: str | None) -> None:
        """Record that this kernel follows ``variable`` into the instance (None: it stopped), for the panel and
        the sidebar ("following lr"); the kernel's hook does the following (follow.py)."""
        row = self.registry.get_instance(id)
        options = {k: v for k, v in row.options.items() if k != "follow"}
        if variable:
            options["follow"] = {"variable": variable, "pid": os.getpid(), "host": whoami()[1]}
        self.registry.update_instance(id, options=options)

    def register_graph(self, name: str, stages: dict, edges, method: str = "predict", sample=None, progress=None):
        """Register a graph of registered versions (``stages``: name -> "NAME:VERSION"), for faces without live
        objects (the CLI); without a sample its first stage's recorded example row flows through it."""
        g = graphs.graph(edges=edges, method=method, **stages)
        if sample is None:
            sample = graphs.example_input(self.get_model(g.stages[g.first[0]].target))
        return graphs.register(self, g, name, sample, _progress(progress))

    def update_stage(self, id: str, stage: str, target, sample=None, progress=None, **rules) -> Instance:
        """Serve the instance's graph with ``stage`` replaced by ``target`` (a live object or a registered
        version): only that stage is registered, the graph's next version names it, and the running instance
        swaps in place without dropping a request (see nbserve/graphs.py)."""
        return graphs.update_stage(self, id, stage, target, sample, _progress(progress), rules)

    # -- the registry itself ---------------------------------------------------------------------

    def registry_info(self) -> dict:
        """Where this workspace's registry keeps metadata and artifacts, and its schema version."""
        return self.registry.describe()

    def copy_registry(self, to: str, artifacts: str, progress=None) -> dict:
        """Copy every version of this registry into another one (a team's: ``postgresql://...`` and
        ``s3://bucket/prefix``) with the same numbers and provenance. Idempotent; every artifact is verified
        before it is written and read back after."""
        from .registry import Registry

        target = Registry(self.home, url=to, artifacts=artifacts)
        say = _progress(progress)
        done = self.registry.copy_to(target, say)
        say(
            f"{done['copied']} versions copied, {done['present']} already there, "
            f"{done['artifacts_verified']} artifacts verified in {target.artifacts}"
        )
        return done

    # -- images --------------------------------------------------------------------------------

    def build(self, ref, base_image: str | None = None, progress=None) -> Image:
        mv = self.get_model(ref)
        return self.runtime(runtimes.image_builder()).build(mv, base_image=base_image, progress=_progress(progress))

    def push(self, ref, registry: str | None = None, progress=None):
        """Build if needed and push the model's image to ``registry`` (HOST:PORT/PREFIX, default
        $NBSERVE_REGISTRY) -> PushedImage with the digest deployments use."""
        from .deploy.push import push

        return push(self, ref, registry, progress=_progress(progress))

    # -- deployments (nbserve/deploy/) --------------------------------------------------------------

    @property
    def deployer(self):
        if self._deployer is None:
            from .deploy.deployer import Deployer

            self._deployer = Deployer(self)
        return self._deployer

    def deploy(self, ref, target: str = "swarm", replicas: int = 1, name=None, registry=None, progress=None, **options):
        return self.deployer.deploy(
            ref, target=target, replicas=replicas, name=name, registry=registry, say=_progress(progress), **options
        )

    def deployments(self):
        return self.deployer.list()

    def get_deployment(self, name: str):
        return self.deployer.get(name)

    def scale_deployment(self, name: str, replicas: int, progress=None):
        return self.deployer.scale(name, replicas, _progress(progress))

    def update_deployment(self, name: str, ref=None, image=None, progress=None):
        return self.deployer.update(name, ref, image=image, say=_progress(progress))[0]

    def split_deployment(self, name: str, weights, registry=None, progress=None):
        """Share a deployment between versions by weight (None ends the split): see ``Deployer.split``."""
        return self.deployer.split(name, weights, registry=registry, say=_progress(progress))[0]

    def rollback_deployment(self, name: str, progress=None):
        return self.deployer.rollback(name, _progress(progress))[0]

    def remove_deployment(self, name: str, progress=None) -> None:
        self.deployer.remove(name, _progress(progress))

    def deployment_logs(self, name: str, tail: int = 200) -> str:
        return self.deployer.logs(name, tail)


class PendingVersion:
    """A live object on its way into the registry, staged for the server process that proves and then
    serves it (runtimes whose spec declares ``proves_registration``; see ``Workspace._serve_live``).
    Looks enough like a ModelVersion for a runtime to start a server on it."""

    version = 0

    def __init__(self, home: Path, draft, name: str):
        self.draft, self.name = draft, name
        self.python_executable = sys.executable
        self.stage_dir = scratch.make(home / scratch.STAGING)  # owned: a later start sweeps it if we die
        try:
            with scratch.writing(self.stage_dir, f"the draft of {name}", len(draft.pickle)):
                self.artifact_dir = draft.stage(self.stage_dir)
        except BaseException:
            self.cleanup()  # a failed register leaves nothing behind
            raise

    @property
    def id(self) -> str:
        # its number is known once the proof registered it (and it may turn out to be an existing version)
        return self.name

    @property
    def environment(self) -> dict:
        return dict(self.draft.environment or {})

    def cleanup(self) -> None:
        shutil.rmtree(self.stage_dir, ignore_errors=True)


HISTORY = 20  # versions an instance remembers having served, for rollback


def _example_sample(served: ModelVersion):
    """A one-row sample rebuilt from the served version's example (its /docs "Try it out" row), for a re-serve
    given no sample; None when the version has none."""
    from .server.shared import compile_decoder

    for method, example in (served.manifest.get("examples") or {}).items():
        schema = (served.signature.get(method) or {}).get("input")
        if example.get("input") is not None and schema:
            try:
                return compile_decoder(schema)(example["input"])
            except Exception:
                return None
    return None


def _quietly(fn, *args) -> None:
    """Clean-up after a failure: its own errors must not hide the failure's."""
    try:
        fn(*args)
    except Exception:
        pass


def _check_host(host: str) -> None:
    if host in LOCAL_HOSTS:
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise NbserveError(f"host must be an IP address to bind, got {host!r}") from None
    warnings.warn(
        f"serving on {host}: the model will answer anyone who can reach this address; "
        f"the default 127.0.0.1 keeps it local",
        stacklevel=3,
    )


def warm_up() -> None:
    """Start a warm server for this kernel's next serve ahead of time (runtimes/warm.py), when warm servers
    are on: at ``%load_ext nbserve``."""
    from .runtimes import warm

    warm.prepare_for_kernel()


_default: dict = {}


def default_workspace() -> Workspace:
    """The workspace of $NBSERVE_HOME (read on every call, so tests and users can switch it)."""
    home = config.home()
    key = (home, *(os.environ.get(k) for k in ("NBSERVE_REGISTRY_URL", "NBSERVE_ARTIFACTS")))
    ws = _default.get(key)
    if ws is None:
        ws = _default[key] = Workspace(home)
    return ws
