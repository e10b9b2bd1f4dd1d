"""The objects users hold: ModelVersion, Instance, Image. Each is a thin view over the workspace."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .browser_links import browser_url, proxy_hint
from .errors import NbserveError
from .runtimes.limits import batch_settings
from .server.shared import interface_document, mask

if TYPE_CHECKING:
    from .client import Client


@dataclass(eq=False)
class ModelVersion:
    name: str
    version: int
    sha256: str
    created: float
    python_executable: str
    manifest: dict = field(repr=False)
    _workspace: Any = field(repr=False, default=None)
    registered_by: str = ""  # who registered it: user and host (empty for versions older than schema 2)
    registered_host: str = ""
    _running: list | None = field(repr=False, default=None)

    @property
    def artifact_dir(self) -> Path:
        """A local directory with the verified artifact (fetched once from a shared store, then cached)."""
        return self._workspace.registry.artifact_dir(self.sha256)

    @property
    def running(self) -> list[dict]:
        """Where this version runs, as the workspaces of the registry's users report it: machine, instance,
        runtime, url, status, registered_by (who started it), reported (when they last told a change)."""
        if self._running is None:
            self._running = self._workspace.placements(self.id)
        return self._running

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def methods(self) -> list[str]:
        return list(self.manifest["methods"])

    @property
    def requirements(self) -> list[str]:
        return list(self.manifest["requirements"])

    @property
    def signature(self) -> dict:
        return self.manifest["signature"]

    @property
    def python(self) -> str:
        return self.manifest["python"]

    @property
    def environment(self) -> dict:
        """Environment variables captured with the version (KERAS_BACKEND, thread settings...), set wherever
        it is served."""
        return dict(self.manifest.get("environment") or {})

    @property
    def system_packages(self) -> list[str]:
        """Debian packages its image installs besides those the locked wheels are found to need."""
        return list(self.manifest.get("system_packages") or ())

    @property
    def text_kind(self) -> str | None:
        """ "chat" or "embeddings" when it was registered as a text function (served on OpenAI's routes too)."""
        return self.manifest.get("openai")

    @property
    def streams(self) -> list[str]:
        """The methods that stream their items (they return a generator)."""
        return [m for m in self.methods if (self.signature.get(m) or {}).get("stream")]

    @property
    def proof(self) -> dict:
        """How its answers were proven: {"compare": "values"}, with "rtol" for a tolerance, or "shapes"."""
        return dict(self.manifest.get("proof") or {"compare": "values"})

    @property
    def stages(self) -> dict[str, str]:
        """A graph's stages in running order: name -> the registered version it runs ({} for a single model)."""
        spec = self.manifest.get("graph")
        return {s["name"]: spec["stages"][s["name"]]["model"] for s in spec["order"]} if spec else {}

    def artifact_layers(self) -> list[tuple[str, Path]]:
        """(address, local directory) of every artifact serving this version takes, in the order an image
        copies them: a graph's stages, the longest registered first (a stage that changes tends to come last,
        so the layers of the others stay cached), then the version's own."""
        stages = (self.manifest.get("graph") or {}).get("stages", {}).values()
        found = sorted(
            ((self._workspace.get_model(s["model"]), s["sha256"]) for s in stages), key=lambda v: v[0].created
        )
        registry = self._workspace.registry
        return [(sha, registry.artifact_dir(sha)) for _mv, sha in found] + [(self.sha256, self.artifact_dir)]

    def load(self) -> Any:
        """The live object again, unpickled from the stored artifact after checking its hashes."""
        return self._workspace.load(self)

    def serve(self, **kwargs: Any) -> Instance:
        return self._workspace.serve(self.id, **kwargs)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "created": self.created,
            "methods": self.methods,
            "requirements": self.requirements,
            "signature": self.signature,
            "python": self.python,
            "environment": self.environment,
            "proof": self.proof,
            "system_packages": self.system_packages,
            "kind": self.manifest.get("kind"),
            "text_kind": self.text_kind,
            "streams": self.streams,
            "object_type": self.manifest.get("object_type"),
            "graph": _graph_dict(self.manifest.get("graph")),
            "registered_by": self.registered_by,
            "registered_host": self.registered_host,
            "running": self.running,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelVersion) and (self.name, self.version, self.sha256) == (
            other.name,
            other.version,
            other.sha256,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.version, self.sha256))

    def __repr__(self) -> str:
        env = f" environment={self.environment}" if self.environment else ""
        return f"<ModelVersion {self.id} methods={self.methods} requirements={len(self.requirements)}{env}>"


class InstanceStatus(str, Enum):
    """What an instance's runtime says of it now (``Instance.status``, ``Runtime.status``): the process
    runtime's running / stopped / exited, Docker's container states, and the workspace's own unknown (the
    runtime cannot be asked) and removed. A member equals its text (``inst.status == "running"``) and prints
    as it, in messages and JSON alike."""

    RUNNING = "running"
    STARTING = "starting"  # Docker: created, or running before its first health check answered
    UNHEALTHY = "unhealthy"  # Docker: the image's HEALTHCHECK fails
    RESTARTING = "restarting"
    PAUSED = "paused"
    STOPPED = "stopped"  # stopped as asked
    EXITED = "exited"  # gone without being asked to stop
    MISSING = "missing"  # Docker: the container is gone
    UNKNOWN = "unknown"  # the runtime cannot be asked (no engine answers)
    REMOVED = "removed"

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    def __repr__(self) -> str:  # a list of statuses in a notebook reads ['running', 'stopped'], as before the enum
        return repr(str(self.value))

    @classmethod
    def of(cls, text: str) -> InstanceStatus:
        """The member for a runtime's word; one this list does not know is UNKNOWN."""
        try:
            return cls(text)
        except ValueError:
            return cls.UNKNOWN


class Instance:
    """A running (or stopped) server for one model version. Like docker-py's Container: call reload()
    to refresh ``status`` from the runtime; stop(), start(), remove(), logs() act on it."""

    def __init__(self, workspace: Any, row: Any, status: str):
        self._workspace = workspace
        self._row = row
        self.status: InstanceStatus = InstanceStatus.of(status)

    id = property(lambda self: self._row.id)
    name = property(lambda self: self._row.name)
    version = property(lambda self: self._row.version)
    model = property(lambda self: self._row.model)
    runtime = property(lambda self: self._row.runtime)
    port = property(lambda self: self._row.port)
    host = property(lambda self: self._row.host)
    created = property(lambda self: self._row.created)
    started = property(lambda self: self._row.started)

    @property
    def url(self) -> str | None:
        return self._workspace.runtime(self.runtime).url(self._row)

    @property
    def browser_url(self) -> str | None:
        """The address a browser opens when Jupyter runs elsewhere: ``{base_url}proxy/{port}/`` through the
        Jupyter server (behind its login), where jupyter-server-proxy is there; else None. The kernel's
        client keeps using ``url``."""
        return browser_url(self.url) if self.status == "running" else None

    @property
    def uptime(self) -> float | None:
        return time.time() - self.started if self.status == "running" and self.started else None

    def reload(self) -> Instance:
        fresh = self._workspace.get_instance(self.id)
        self._row, self.status = fresh._row, fresh.status
        return self

    @property
    def auth_token(self) -> str | None:
        """The bearer token this instance requires (serve(..., auth_token=...)), or None. Shown in full
        only when asked for by name: repr, to_dict and progress messages mask it."""
        return self._row.options.get("auth_token")

    @property
    def batching(self) -> dict | None:
        """{"max_batch", "max_latency_ms"} when the instance batches concurrent requests (batch=True), else None."""
        return batch_settings(self._row.options)

    def serving(self) -> dict:
        """How the running server serves this instance, as it says itself: its settings (timeout, max_body,
        batching, metrics/request_log/drift switches, workers, threads) and ``threads_per_worker``, the native
        (OpenMP/BLAS) threads each worker's pools were sized to."""
        return self._workspace.serving(self.id)

    def batching_report(self) -> dict:
        """What batching did so far (the instance's GET /batching): model calls, requests per call, waits."""
        return self._workspace.batching(self.id)

    def client(self, timeout: float = 60.0) -> Client:
        from .client import Client  # requests is loaded when a client is made, not for listing

        # the registry already knows what /interface.json would say: save the client that round trip
        url = self.url
        if url is None:
            raise NbserveError(f"{self.id} has no address ({self.status}): start it first")
        manifest = self._workspace.get_model(self.model).manifest
        options = self._row.options
        interface = interface_document(
            manifest, self.model, options.get("default_method"), options.get("extra_columns") or "refuse"
        )
        return Client(url, timeout=timeout, token=self.auth_token, interface=interface)

    def logs(self, tail: int = 200) -> str:
        return self._workspace.logs(self.id, tail=tail)

    def metrics(self, raw: bool = False) -> Any:
        """Per model method since the start: requests, errors, error rate, p50/p99 and mean latency (ms),
        a DataFrame where pandas is installed (list of dicts otherwise); ``raw=True``: the cumulative
        snapshot of /metrics that rates are computed from (nbserve.monitoring)."""
        from . import monitoring

        snap = self._workspace.metrics_snapshot(self.id, settled=True)
        if raw:
            return snap
        return monitoring.as_frame(
            monitoring.summary(snap), attrs={"in_progress": snap["in_progress"], "time": snap["time"]}
        )

    def jobs(self) -> Any:
        """The jobs it keeps (queued, running, finished within their retention), newest first: a DataFrame
        where pandas is installed (list of dicts otherwise). ``client().submit(...)`` queues one."""
        from . import monitoring

        return monitoring.as_frame(
            self._workspace.jobs(self.id),
            columns=["id", "method", "status", "progress", "created", "started", "finished", "error"],
        )

    def cancel_job(self, job_id: str) -> dict:
        """Cancel one of its jobs (queued: at once; running: its call is interrupted within a second)."""
        return self._workspace.cancel_job(self.id, job_id)

    def drift(self, raw: bool = False) -> Any:
        """Each input feature and output against the registration sample: PSI, KS or chi-squared, status
        (a DataFrame where pandas is installed; the overall ``drift`` flag, window and thresholds in
        its ``.attrs``); ``raw=True``: the /drift report as it is."""
        from . import monitoring

        report = self._workspace.drift(self.id)
        return report if raw else monitoring.drift_frame(report)

    def stop(self) -> Instance:
        return self._take(self._workspace.stop(self.id))

    def update_stage(self, stage: str, target: Any, sample: Any = None, progress: Any = None, **rules: Any) -> Instance:
        """A graph's instance: serve ``target`` (a live object or "NAME:VERSION") as its ``stage`` from now on,
        in place; only that stage is registered anew (``sample``: the graph's input, default the one it was
        served with from this kernel)."""
        return self._take(
            self._workspace.update_stage(self.id, stage, target, sample=sample, progress=progress, **rules)
        )

    def stages(self) -> Any:
        """A graph's stages as served now: name, version, method, calls, errors, p50/p99 and mean latency (ms),
        from its /metrics (a DataFrame where pandas is installed, list of dicts otherwise)."""
        from . import monitoring

        snap = self._workspace.metrics_snapshot(self.id, settled=True)
        served = self._workspace.get_model(self.model)
        return monitoring.as_frame(
            monitoring.stage_summary(snap, served.manifest.get("graph")), columns=monitoring.STAGE_COLUMNS
        )

    def update(self, ref: Any, progress: Any = None) -> Instance:
        """Serve ``ref`` (e.g. "diabetes:2") at the same URL without dropping a request."""
        return self._take(self._workspace.update(self.id, ref, progress=progress))

    # -- the notebook loop ------------------------------------------------------------------------

    @property
    def history(self) -> list[str]:
        """The versions this instance served before, oldest first (``rollback()`` returns to the last)."""
        return list(self._row.options.get("history") or [])

    @property
    def split_weights(self) -> dict | None:
        """{"diabetes:1": 90, "diabetes:2": 10} while the instance splits its traffic, else None."""
        return dict(self._row.options["split"]) if self._row.options.get("split") else None

    @property
    def shadowed_by(self) -> dict | None:
        """{"instance", "model", "share"} of the candidate a share of the requests is copied to, else None."""
        return dict(self._row.options["shadow"]) if self._row.options.get("shadow") else None

    @property
    def candidate_of(self) -> str | None:
        """The instance this one shadows (it gets copies of its requests), else None."""
        return self._row.options.get("candidate_of")

    @property
    def following(self) -> str | None:
        """The notebook variable a kernel follows into this instance (``%serve lr --follow``), else None."""
        follow = self._row.options.get("follow") or {}
        return follow.get("variable") if _follower_alive(follow) else None

    def rollback(self, to: Any = None, progress: Any = None) -> Instance:
        """Serve the previous version again (or ``to``), in place: same URL, no request dropped."""
        return self._take(self._workspace.rollback(self.id, to=to, progress=progress))

    def split(self, weights: dict | None, progress: Any = None) -> Instance:
        """Share this URL between versions: ``inst.split({"diabetes:1": 90, "diabetes:2": 10})``; each answer's
        ``X-Model-Version`` says which answered. ``inst.split(None)`` ends it."""
        return self._take(self._workspace.split(self.id, weights, progress=progress))

    def shadow(self, candidate: Any, share: float = 1.0, sample: Any = None, progress: Any = None) -> Instance:
        """Serve ``candidate`` (a live object or a registered version) beside this instance and copy ``share``
        of its requests to it, off the response path; returns the candidate's Instance. Then
        ``comparison()``, and ``promote()`` or ``discard()``."""
        candidate_inst = self._workspace.shadow(self.id, candidate, share=share, sample=sample, progress=progress)
        self.reload()
        return candidate_inst

    def comparison(self, summary: bool = False, n: int | None = None, tolerance: float | None = None) -> Any:
        """Each copied request's row: inputs, both answers, ``agree``, ``abs_error``, both latencies (a
        DataFrame); ``summary=True``: agreement rate, error statistics and latency percentiles (a dict)."""
        return self._workspace.comparison(self.id, summary=summary, n=n, tolerance=tolerance)

    def promote(self, progress: Any = None) -> Instance:
        """Serve the shadow candidate's version here, in place, and remove the candidate."""
        return self._take(self._workspace.promote(self.id, progress=progress))

    def discard(self, progress: Any = None) -> Instance:
        """Remove the shadow candidate; this instance serves as before."""
        return self._take(self._workspace.discard(self.id, progress=progress))

    def traffic(self, n: int = 1000) -> Any:
        """The last ``n`` requests and answers as a DataFrame in the training schema's dtypes, ready to refit
        on; each feature's drift status in ``.attrs["drift"]``. Kept by the server (``record=False``: none)."""
        return self._workspace.traffic(self.id, n=n)

    def start(self, progress: Any = None, **batching: Any) -> Instance:
        """Start it again; ``batch=True, max_batch=..., max_latency_ms=...`` (or ``batch=False``) change how
        it batches requests from this start on."""
        return self._take(self._workspace.start(self.id, progress=progress, **batching))

    def remove(self) -> None:
        self._workspace.remove(self.id)
        self.status = InstanceStatus.REMOVED

    def _take(self, other: Instance) -> Instance:
        self._row, self.status = other._row, other.status
        return self

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "model": self.model,
            "name": self.name,
            "version": self.version,
            "runtime": self.runtime,
            "status": self.status,
            "url": self.url,
            "port": self.port,
            "host": self.host,
            "created": self.created,
            "started": self.started,
            "uptime": self.uptime,
            "auth": mask(self.auth_token),
            "batching": self.batching,
            "browser_url": self.browser_url,
            "browser_hint": proxy_hint(self.url) if self.status == "running" else None,
            "history": self.history,
            "split": self.split_weights,
            "shadow": self.shadowed_by,
            "candidate_of": self.candidate_of,
            "following": self.following,
        }

    def __repr__(self) -> str:
        browser = self.browser_url
        return f"<Instance {self.id} {self.model} {self.runtime} {self.status} {self.url}" + (
            f" (browser: {browser})>" if browser else ">"
        )


def _follower_alive(follow: dict) -> bool:
    """The kernel that follows a variable into an instance still runs (on this machine: else trusted)."""
    import os
    import socket

    pid = follow.get("pid")
    if not pid:
        return False
    if follow.get("host") not in (None, socket.gethostname()):
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def _graph_dict(spec: dict | None) -> dict | None:
    """A graph's stages (in running order, with their versions and inputs), edges and last stage, or None."""
    if not spec:
        return None
    return {
        "stages": [
            {"name": s["name"], **{k: spec["stages"][s["name"]][k] for k in ("model", "method")}, "inputs": s["inputs"]}
            for s in spec["order"]
        ],
        "edges": [list(e) for e in spec["edges"]],
        "output": spec["output"],
    }


@dataclass
class Overview:
    """One reading of a workspace for the panel and the sidebar (``Workspace.overview()``)."""

    models: list[ModelVersion]  # the latest version of every model, by name
    versions: dict[str, list[int]]  # name -> every version number
    instances: list[Instance]  # status from the runtimes
    time: float

    def to_dict(self) -> dict:
        return {
            "models": [dict(m.to_dict(), versions=self.versions.get(m.name, [m.version])) for m in self.models],
            "instances": [i.to_dict() for i in self.instances],
            "time": self.time,
        }


@dataclass
class Image:
    tag: str
    id: str
    size: int  # bytes
    model: str = ""
    build_seconds: float | None = None

    def __repr__(self) -> str:
        return f"<Image {self.tag} {self.id[:19]} {self.size / 1e6:.0f} MB>"


class Deployment:
    """One model version as N replicas on an orchestrator (``nbserve.deploy``). Like Instance: the
    attributes are what the target said at the last ``reload()``; verbs act and refresh."""

    def __init__(self, workspace: Any, record: dict, state: dict):
        self._workspace = workspace
        self._record = record
        self._state = state

    name = property(lambda self: self._record["name"])
    target = property(lambda self: self._record["target"])
    image = property(lambda self: self._state.get("image") or self._record["image"])
    notes = property(lambda self: self._record.get("notes") or "")
    created = property(lambda self: self._record.get("created"))
    status = property(lambda self: self._state.get("status"))
    replicas = property(lambda self: self._state.get("replicas", self._record["replicas"]))  # wanted
    ready = property(lambda self: self._state.get("ready", 0))
    endpoints = property(lambda self: list(self._state.get("endpoints") or []))
    replica_list = property(lambda self: list(self._state.get("replica_list") or []))  # one dict per replica
    directory = property(lambda self: self._state.get("directory"))  # kubernetes: where the manifests are

    @property
    def model(self) -> str:
        return self._state.get("model") or self._record["model"]

    @property
    def url(self) -> str | None:
        return self.endpoints[0] if self.endpoints else None

    @property
    def auth_token(self) -> str | None:
        return self._record["options"].get("auth_token")

    def reload(self) -> Deployment:
        return self._take(self._workspace.get_deployment(self.name))

    def scale(self, replicas: int, progress: Any = None) -> Deployment:
        return self._take(self._workspace.scale_deployment(self.name, replicas, progress=progress))

    def update(self, ref: Any = None, image: str | None = None, progress: Any = None) -> Deployment:
        """Roll every replica to ``ref`` (e.g. "diabetes:2"), one at a time; raises RolledBack (and the
        deployment stays on its version) when the new one fails its health check."""
        try:
            return self._take(self._workspace.update_deployment(self.name, ref, image=image, progress=progress))
        finally:
            self.reload()

    def rollback(self, progress: Any = None) -> Deployment:
        return self._take(self._workspace.rollback_deployment(self.name, progress=progress))

    @property
    def split_weights(self) -> dict | None:
        """{"diabetes:1": 90.0, "diabetes:2": 10.0} while the deployment is split, else None."""
        split = self._state.get("split", self._record.get("split"))
        return dict(split) if split else None

    def split(self, weights: dict | None, registry: str | None = None, progress: Any = None) -> Deployment:
        """Share the deployment between versions by weight, ``dep.split({"diabetes:1": 90, "diabetes:2": 10})``,
        rolled out like an update: every replica serves both (each answer's X-Model-Version names its version);
        a serverless KServe InferenceService gets canaryTrafficPercent. ``dep.split(None)`` ends it."""
        try:
            return self._take(
                self._workspace.split_deployment(self.name, weights, registry=registry, progress=progress)
            )
        finally:
            self.reload()

    def remove(self, progress: Any = None) -> None:
        self._workspace.remove_deployment(self.name, progress=progress)
        self._state = dict(self._state, status="removed", ready=0, endpoints=[], replica_list=[])

    def logs(self, tail: int = 200) -> str:
        return self._workspace.deployment_logs(self.name, tail=tail)

    def client(self, timeout: float = 60.0) -> Client:
        """A client of the first endpoint (the routing mesh's, or the first ready replica's)."""
        from .client import Client

        if not self.url:
            from .errors import NbserveError

            raise NbserveError(f"deployment {self.name} has no ready endpoint ({self.status})")
        return Client(self.url, timeout=timeout, token=self.auth_token)

    def _take(self, other: Deployment) -> Deployment:
        self._record, self._state = other._record, other._state
        return self

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "target": self.target,
            "model": self.model,
            "status": self.status,
            "replicas": self.replicas,
            "ready": self.ready,
            "endpoints": self.endpoints,
            "image": self.image,
            "split": self.split_weights,
            "directory": self.directory,
            "notes": self.notes,
            "created": self.created,
            "auth": mask(self.auth_token),
            "replica_list": [
                {k: r.get(k) for k in ("task", "model", "state", "ready", "url", "error")} for r in self.replica_list
            ],
        }

    def __repr__(self) -> str:
        return f"<Deployment {self.name} {self.model} {self.target} {self.ready}/{self.replicas} {self.status}>"
