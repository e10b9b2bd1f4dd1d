"""Docker Swarm: a model as a replicated service, rolled forward and back by the engine itself.

nbserve writes the service spec and reads the engine's state; Swarm does the rest: N replicas of the
image, each watched by the image's own health check (at a tighter interval, so a rollout takes seconds
per replica, not minutes), restarted when it dies, updated one at a time with the new replica started and
healthy before an old one stops (``start-first``), and rolled back by itself when a new replica fails
within the monitor period. Labels ``nbserve.*`` on the service and on every replica's container say
which deployment, registry home and model version they belong to.

Publishing: a normal engine uses the routing mesh (one published port, balanced over the replicas by
IPVS). A kernel without IPVS (these CI machines) cannot: then each replica publishes its own host port
(``PublishMode: host``, port chosen by the engine) with DNS round-robin inside the swarm, and the
deployment's ``endpoints`` lists one URL per ready replica; clients balance over them. Host-mode ports
bind every interface of the node, so a deployment reachable beyond the machine should use auth_token.

The swarm itself is initialised only when the user asks (``init_swarm=True``); a swarm that is already
there (someone else's) is used as it is and never left.
"""

from __future__ import annotations

import hashlib
import os
import time

from ..errors import NbserveError
from ..runtimes.limits import server_settings
from .engine import docker_client, short_error

TARGET_PORT = 8080
SECOND = 1_000_000_000
DEFAULTS = {
    "health_interval": 2.0,  # seconds between health checks of a replica (the image's own test command)
    "monitor": 5.0,  # seconds a new replica is watched before the rollout moves on
    "stop_grace": 15.0,  # seconds a replica has to finish its requests after SIGTERM
    "ready_timeout": 180.0,
}
DONE_STATES = {"completed", "rollback_completed", "paused", "rollback_paused"}


class SwarmError(NbserveError):
    pass


class RolledBack(SwarmError):
    """An update failed (a new replica died or stayed unhealthy) and Swarm rolled the service back."""


def mesh_available(client=None) -> bool:
    """True when the engine's kernel can run the routing mesh (IPVS). Only a local engine can be asked:
    for a remote one (DOCKER_HOST over tcp/ssh) assume a normal engine, which has it."""
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return True
    if os.path.exists("/proc/net/ip_vs"):
        return True
    release = os.uname().release
    for listing in ("modules.builtin", "modules.dep"):
        try:
            with open(f"/lib/modules/{release}/{listing}") as f:
                if any("/ip_vs.ko" in line for line in f):
                    return True
        except OSError:
            pass
    return False


def service_name(deployment: str, home) -> str:
    """Service names are global to the swarm, which several registries (homes, users) may share: the
    name carries a short hash of the registry home, so two homes' "diabetes" do not collide."""
    return f"nbserve-{deployment}-{hashlib.sha256(str(home).encode()).hexdigest()[:6]}"


class SwarmTarget:
    name = "swarm"

    def __init__(self, workspace):
        self.workspace = workspace
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = docker_client()
        return self._client

    # -- the swarm ------------------------------------------------------------------------------

    def ensure_swarm(self, init: bool, progress) -> None:
        swarm = self.client.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") == "active":
            if not swarm.get("ControlAvailable"):
                raise SwarmError("this Docker engine is a swarm worker: deploy from a manager node")
            return
        if not init:
            raise SwarmError(
                "the Docker engine is not part of a swarm. nbserve initialises one only when asked: "
                "nbserve.deploy(..., init_swarm=True) or `nbserve deploy ... --init-swarm` (a one-node swarm "
                "advertised on 127.0.0.1), or run `docker swarm init` yourself"
            )
        progress("initialising a one-node swarm on this engine (advertised on 127.0.0.1)")
        try:
            self.client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
        except Exception as exc:
            # another process may have initialised it meanwhile: that swarm is as good
            if (self.client.info().get("Swarm") or {}).get("LocalNodeState") != "active":
                raise SwarmError(f"could not initialise a swarm: {short_error(exc)}") from None

    def _name(self, name: str) -> str:
        return service_name(name, self.workspace.home)

    def _service(self, name: str):
        """Our service of that name: same name and made for this registry home (never someone else's)."""
        found = self.client.api.services(filters={"name": self._name(name)})
        home = str(self.workspace.home)
        found = [
            s
            for s in found
            if s["Spec"]["Name"] == self._name(name) and s["Spec"]["Labels"].get("nbserve.home") == home
        ]
        return found[0] if found else None

    def _require(self, name: str):
        svc = self._service(name)
        if svc is None:
            raise SwarmError(f"the swarm service {self._name(name)} is gone (removed outside nbserve?)")
        return svc

    # -- the spec -------------------------------------------------------------------------------

    def _labels(self, name: str, mv, split: dict | None = None) -> dict:
        labels = {
            "nbserve.home": str(self.workspace.home),
            "nbserve.deployment": name,
            "nbserve.model": mv.name,
            "nbserve.version": str(mv.version),
            "nbserve.sha256": mv.sha256,
        }
        if split:  # the image serves these versions by weight (its NBSERVE_VERSIONS); mv is the largest
            labels["nbserve.split"] = ",".join(f"{ref}={w:g}" for ref, w in split.items())
        return labels

    def _healthcheck(self, image: str, options: dict) -> dict | None:
        """The image's own HEALTHCHECK command, checked every ``health_interval`` seconds."""
        try:
            config = self.client.api.inspect_image(image)["Config"] or {}
        except Exception:
            return None  # not on this engine (only in a registry): the image's own settings apply
        test = (config.get("Healthcheck") or {}).get("Test")
        if not test:
            return None
        interval = int(float(options.get("health_interval", DEFAULTS["health_interval"])) * SECOND)
        return {"Test": test, "Interval": interval, "Timeout": 3 * SECOND, "Retries": 3, "StartPeriod": 60 * SECOND}

    def _task_template(self, name, mv, image, options, split=None) -> dict:
        env = server_settings(options).to_env()  # the settings every runtime gives a server (runtimes/limits.py)
        container = {
            "Image": image,
            "Labels": self._labels(name, mv, split),
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Init": True,
            "StopGracePeriod": int(float(options.get("stop_grace", DEFAULTS["stop_grace"])) * SECOND),
        }
        health = self._healthcheck(image, options)
        if health:
            container["Healthcheck"] = health
        template = {
            "ContainerSpec": container,
            "RestartPolicy": {"Condition": "any", "Delay": SECOND, "MaxAttempts": 0},
            "ForceUpdate": 0,
        }
        limits = {}
        if options.get("cpus"):
            limits["NanoCPUs"] = int(float(options["cpus"]) * SECOND)
        if options.get("memory"):
            limits["MemoryBytes"] = int(options["memory"])
        if limits:
            template["Resources"] = {"Limits": limits}
        return template

    def _rollout(self, options) -> dict:
        monitor = int(float(options.get("monitor", DEFAULTS["monitor"])) * SECOND)
        return {
            "Parallelism": 1,
            "Delay": 0,
            "FailureAction": "rollback",
            "Monitor": monitor,
            "MaxFailureRatio": 0,
            "Order": "start-first",
        }

    def _rollback(self, options) -> dict:
        return dict(self._rollout(options), FailureAction="pause")

    def _endpoint_spec(self, mesh: bool, port) -> dict:
        if mesh:
            ports = [{"Protocol": "tcp", "TargetPort": TARGET_PORT, "PublishMode": "ingress"}]
            if port:
                ports[0]["PublishedPort"] = int(port)
            return {"Mode": "vip", "Ports": ports}
        # one host port per replica, chosen by the engine (a fixed one would let only one replica per node)
        return {"Mode": "dnsrr", "Ports": [{"Protocol": "tcp", "TargetPort": TARGET_PORT, "PublishMode": "host"}]}

    # -- verbs ------------------------------------------------------------------------------------

    def deploy(self, rec: dict, mv, image: str, progress) -> dict:
        options = rec["options"]
        self.ensure_swarm(bool(options.get("init_swarm")), progress)
        name = rec["name"]
        if self._service(name) is not None:
            raise SwarmError(
                f"a swarm service {self._name(name)} already exists: update it (dep.update(...)) or remove it first"
            )
        mesh = options.get("mesh")
        if mesh is None:
            mesh = mesh_available()
        if not mesh:
            rec["notes"] = (
                "no routing mesh on this engine (its kernel lacks IPVS): each replica publishes its own host "
                "port (DNS round-robin inside the swarm); endpoints lists them and clients balance over them"
            )
            progress(rec["notes"])
        rec["mesh"] = bool(mesh)
        spec_labels = self._labels(name, mv)
        try:
            self.client.api.create_service(
                self._task_template(name, mv, image, options),
                name=self._name(name),
                labels=spec_labels,
                mode={"Replicated": {"Replicas": int(rec["replicas"])}},
                update_config=self._rollout(options),
                rollback_config=self._rollback(options),
                endpoint_spec=self._endpoint_spec(mesh, options.get("port")),
            )
        except Exception as exc:
            raise SwarmError(f"Swarm refused the service {self._name(name)}: {short_error(exc)}") from None
        progress(f"service {self._name(name)} created: waiting for {rec['replicas']} healthy replicas")
        try:
            self.wait_ready(rec, int(rec["replicas"]), mv.id)
        except BaseException:
            # a deployment that never became ready is not left running (its error has the tasks' errors)
            try:
                self.remove(rec, progress)
            except Exception:
                pass
            raise
        return rec

    def _post(self, svc, spec) -> None:
        api = self.client.api
        params = {"version": svc["Version"]["Index"]}
        try:
            resp = api._post_json(api._url("/services/{0}/update", svc["ID"]), data=spec, params=params)
            api._raise_for_status(resp)
        except Exception as exc:
            raise SwarmError(f"Swarm refused the change to {svc['Spec']['Name']}: {short_error(exc)}") from None

    def scale(self, rec: dict, replicas: int, progress) -> None:
        svc = self._require(rec["name"])
        spec = svc["Spec"]
        spec["Mode"] = {"Replicated": {"Replicas": int(replicas)}}
        self._post(svc, spec)
        progress(f"{self._name(rec['name'])}: scaling to {replicas} replicas")
        self.wait_ready(rec, int(replicas), _model_of(spec))

    def update(self, rec: dict, mv, image: str, progress) -> float:
        """Roll the service to ``image``; returns the seconds the rollout took, or raises RolledBack."""
        svc = self._require(rec["name"])
        before = svc.get("UpdateStatus")
        spec = svc["Spec"]
        spec["TaskTemplate"] = self._task_template(rec["name"], mv, image, rec["options"], rec.get("split"))
        spec["Labels"] = self._labels(rec["name"], mv, rec.get("split"))
        started = time.monotonic()
        self._post(svc, spec)
        what = ", ".join(f"{r}={w:g}" for r, w in rec["split"].items()) if rec.get("split") else mv.id
        progress(f"{self._name(rec['name'])}: rolling to {what}, one replica at a time (start-first)")
        self._wait_update(rec, before, progress)
        self.wait_ready(rec, _replicas(spec), mv.id)
        return time.monotonic() - started

    def _wait_update(self, rec, before, progress, expect="completed") -> None:
        deadline = time.monotonic() + float(rec["options"].get("ready_timeout", DEFAULTS["ready_timeout"])) * 2
        last = None
        while True:
            svc = self._require(rec["name"])
            status = svc.get("UpdateStatus")
            state = (status or {}).get("State")
            if status and status != before:
                if state != last:
                    progress(f"{self._name(rec['name'])}: {state} ({status.get('Message', '')})")
                    last = state
                if state in DONE_STATES:
                    break
            if time.monotonic() > deadline:
                raise SwarmError(f"the rollout of {self._name(rec['name'])} did not finish in time (state {state})")
            time.sleep(0.5)
        if state == expect:
            return
        message = status.get("Message", "")
        if state == "rollback_completed":
            raise RolledBack(
                f"the new version failed on {self._name(rec['name'])} and Swarm rolled back to "
                f"{_model_of(svc['Spec'])}: {message}. `dep.logs()` shows the failed replicas' output"
            )
        raise SwarmError(f"the rollout of {self._name(rec['name'])} stopped ({state}): {message}")

    def wait_ready(self, rec: dict, replicas: int, model: str | None) -> None:
        deadline = time.monotonic() + float(rec["options"].get("ready_timeout", DEFAULTS["ready_timeout"]))
        while True:
            state = self.state(rec)
            ready = [r for r in state["replica_list"] if r["ready"] and (model is None or r["model"] == model)]
            if len(ready) == replicas and len(state["replica_list"]) == replicas:
                return
            if time.monotonic() > deadline:
                raise SwarmError(
                    f"{self._name(rec['name'])}: {len(ready)} of {replicas} replicas ready on {model} after "
                    f"{rec['options'].get('ready_timeout', DEFAULTS['ready_timeout'])} s; tasks: "
                    + "; ".join(f"{r['task'][:12]} {r['state']} {r['error']}" for r in state["replica_list"])
                )
            time.sleep(0.5)

    def remove(self, rec: dict, progress) -> None:
        svc = self._service(rec["name"])
        if svc is not None:
            self.client.api.remove_service(svc["ID"])
            progress(f"service {self._name(rec['name'])} removed; waiting for its replicas to stop")
        deadline = time.monotonic() + 60
        label = f"nbserve.deployment={rec['name']}"
        home = str(self.workspace.home)
        while time.monotonic() < deadline:
            # the plain listing: inspecting each container races with the engine removing it
            left = [
                c
                for c in self.client.api.containers(all=True, filters={"label": label})
                if (c.get("Labels") or {}).get("nbserve.home") == home
            ]
            if not left:
                return
            time.sleep(0.5)

    def logs(self, rec: dict, tail: int = 200) -> str:
        """The log tail of each replica's container on this node. (The engine's service-logs call can block
        for minutes on a busy engine; the containers of a one-node swarm are all here.)"""
        svc = self._service(rec["name"])
        if svc is None:
            return f"(no service {self._name(rec['name'])}: it was removed)\n"
        parts = []
        for replica in self.state(rec)["replica_list"]:
            if not replica["container"]:
                continue
            try:
                text = self.client.api.logs(replica["container"], tail=tail).decode(errors="replace")
            except Exception as exc:
                text = f"(logs unavailable: {short_error(exc)})\n"
            parts.append(f"--- replica {replica['slot']} ({replica['model']}, {replica['state']}) ---\n{text}")
        return "".join(parts) or "(no replica has a container on this node yet)\n"

    # -- state --------------------------------------------------------------------------------------

    def state(self, rec: dict) -> dict:
        """What the engine says now: replicas wanted and ready, one entry per live task, endpoints."""
        svc = self._service(rec["name"])
        if svc is None:
            return {"status": "missing", "replicas": 0, "ready": 0, "endpoints": [], "replica_list": [], "model": None}
        spec = svc["Spec"]
        wanted = _replicas(spec)
        tasks = self.client.api.tasks(filters={"service": svc["ID"], "desired-state": "running"})
        replicas = []
        for t in sorted(tasks, key=lambda t: (t.get("Slot", 0), t["CreatedAt"])):
            labels = t["Spec"]["ContainerSpec"].get("Labels") or {}
            st = t["Status"]
            ports = [
                p["PublishedPort"] for p in (st.get("PortStatus") or {}).get("Ports") or [] if p.get("PublishedPort")
            ]
            ready = st["State"] == "running"
            replicas.append(
                {
                    "task": t["ID"],
                    "slot": t.get("Slot"),
                    "model": f"{labels.get('nbserve.model')}:{labels.get('nbserve.version')}",
                    "state": st["State"],
                    "ready": ready,
                    "error": st.get("Err", ""),
                    "container": (st.get("ContainerStatus") or {}).get("ContainerID"),
                    "url": f"http://127.0.0.1:{ports[0]}" if ports and ready else None,
                }
            )
        ready = sum(r["ready"] for r in replicas)
        if rec.get("mesh"):
            published = [p["PublishedPort"] for p in (svc.get("Endpoint") or {}).get("Ports") or []]
            endpoints = [f"http://127.0.0.1:{published[0]}"] if published and ready else []
        else:
            endpoints = [r["url"] for r in replicas if r["url"]]
        update = (svc.get("UpdateStatus") or {}).get("State")
        if update in ("updating", "rollback_started"):
            status = "updating" if update == "updating" else "rolling back"
        elif ready == wanted and len(replicas) == wanted:
            status = "running"
        elif ready:
            status = "degraded"
        else:
            status = "starting"
        return {
            "status": status,
            "replicas": wanted,
            "ready": ready,
            "endpoints": endpoints,
            "replica_list": replicas,
            "model": _model_of(spec),
            "split": _split_of(spec),
            "image": spec["TaskTemplate"]["ContainerSpec"]["Image"],
            "update": update,
            "update_message": (svc.get("UpdateStatus") or {}).get("Message"),
        }


def _replicas(spec) -> int:
    return int(((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 0))


def _model_of(spec) -> str:
    labels = spec.get("Labels") or {}
    return f"{labels.get('nbserve.model')}:{labels.get('nbserve.version')}"


def _split_of(spec) -> dict | None:
    """{"diabetes:1": 90.0, "diabetes:2": 10.0} when the service's image serves a split, else None."""
    text = (spec.get("Labels") or {}).get("nbserve.split")
    if not text:
        return None
    return {ref: float(w) for ref, w in (part.rsplit("=", 1) for part in text.split(","))}
