"""Deployments: one model version as N replicas on an orchestrator, through the orchestrator's own
mechanisms (replicas, health checks, rolling updates, autoscaling), never a scheduler of nbserve's.

``Workspace.deploy`` and friends call a ``Deployer``; it resolves the model and its image (pushed to a
registry and named by digest when one is configured, required for Kubernetes), keeps the record of what
was asked (records.py) and hands the work to a target: ``swarm`` (live, on the local engine) or
``kubernetes`` (manifests written to a directory, applied when a kubeconfig context is given).
"""

from __future__ import annotations

import time

from ..errors import NbserveError
from ..runtimes.limits import check_options
from .records import DeploymentRecords, dns_name

TARGETS = ("swarm", "kubernetes")
# options a target reads; everything else is a server option (timeout, max_body, auth_token, workers)
TARGET_OPTIONS = {
    "swarm": {
        "init_swarm",
        "mesh",
        "port",
        "health_interval",
        "monitor",
        "stop_grace",
        "ready_timeout",
        "cpus",
        "memory",
    },
    "kubernetes": {
        "output",
        "context",
        "namespace",
        "kserve",
        "cpus",
        "memory",
        "min_replicas",
        "max_replicas",
        "target_cpu",
        "dry_run",
    },
}
SERVER_OPTIONS = {"timeout", "max_body", "auth_token", "workers"}


class Deployer:
    def __init__(self, workspace):
        self.workspace = workspace
        self.records = DeploymentRecords(workspace.home)
        self._targets = {}

    def target(self, name: str):
        if name not in TARGETS:
            raise NbserveError(f"unknown deployment target {name!r}; expected one of {', '.join(map(repr, TARGETS))}")
        if name not in self._targets:
            if name == "swarm":
                from .swarm import SwarmTarget

                self._targets[name] = SwarmTarget(self.workspace)
            else:
                from .kubernetes import KubernetesTarget

                self._targets[name] = KubernetesTarget(self.workspace)
        return self._targets[name]

    # -- images --------------------------------------------------------------------------------

    def image_for(self, mv, target: str, registry, say) -> tuple[str, dict | None]:
        """(image reference, push facts): by digest after a push when a registry is configured."""
        from .push import PushError, push, registry_for

        try:
            registry = registry_for(registry, self.workspace.home)
        except PushError:
            if target == "kubernetes":
                raise PushError(
                    "Kubernetes nodes pull images from a registry: pass registry='HOST:PORT/PREFIX' "
                    "(or set NBSERVE_REGISTRY) so the manifests can name the image by digest"
                ) from None
            image = self.workspace.build(mv, progress=say)
            say(
                f"no registry configured: the service runs this engine's local image {image.tag}, so only this "
                f"node can run replicas (pass registry=... or set NBSERVE_REGISTRY for a multi-node swarm)"
            )
            return image.tag, None
        pushed = push(self.workspace, mv, registry, progress=say)
        return pushed.reference, {
            "digest": pushed.digest,
            "layers_pushed": pushed.layers_pushed,
            "layers_reused": pushed.layers_reused,
            "size": pushed.size,
        }

    # -- verbs -----------------------------------------------------------------------------------

    def deploy(self, ref, target="swarm", replicas=1, name=None, registry=None, say=None, **options):
        target_options = {k: options.pop(k) for k in list(options) if k in TARGET_OPTIONS.get(target, ())}
        unknown = set(options) - SERVER_OPTIONS
        tgt = self.target(target)
        if unknown:
            raise NbserveError(
                f"unknown option(s) for a {target} deployment: {', '.join(sorted(unknown))}; "
                f"expected some of {', '.join(sorted(TARGET_OPTIONS[target] | SERVER_OPTIONS))}"
            )
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise NbserveError(f"replicas must be a whole number >= 1, got {replicas!r}")
        mv = self.workspace.get_model(ref)
        name = dns_name(name or mv.name)
        if self.records.exists(name):
            raise NbserveError(
                f"a deployment named {name!r} exists already: update it (`nbserve deploy update {name} MODEL`), "
                f"or remove it, or pass another name"
            )
        options = {**check_options(options), **target_options}
        image, pushed = self.image_for(mv, target, registry, say)
        now = time.time()
        rec = {
            "name": name,
            "target": target,
            "model": mv.id,
            "replicas": replicas,
            "image": image,
            "registry": registry,
            "push": pushed,
            "options": options,
            "created": now,
            "updated": now,
            "history": [],
            "notes": "",
        }
        rec = tgt.deploy(rec, mv, image, say)  # a target cleans up after itself when this fails
        self.records.save(rec)
        return self._deployment(rec)

    def _deployment(self, rec, state=None):
        from ..resources import Deployment

        if state is None:
            state = self.target(rec["target"]).state(rec)
        return Deployment(self.workspace, rec, state)

    def list(self):
        return [self._deployment(rec) for rec in self.records.list()]

    def get(self, name: str):
        return self._deployment(self.records.get(name))

    def scale(self, name: str, replicas: int, say):
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise NbserveError(f"replicas must be a whole number >= 0, got {replicas!r}")
        rec = self.records.get(name)
        self.target(rec["target"]).scale(rec, replicas, say)
        rec.update(replicas=replicas, updated=time.time())
        self.records.save(rec)
        return self._deployment(rec)

    def update(self, name: str, ref=None, image=None, registry=None, say=None, split=None, canary=None):
        """Roll to another model version (``ref``), or to an image reference built elsewhere (``image``,
        labelled as the model ``ref`` or the current one). An update serves one version: a split ends (``split``
        and ``canary``: what ``split()`` and a rollback to a split give). Returns (deployment, seconds the
        rollout took)."""
        rec = self.records.get(name)
        current = self.workspace.get_model(rec["model"])
        mv = self.workspace.get_model(ref) if ref is not None else current
        if mv.name != current.name:
            raise NbserveError(
                f"deployment {name!r} serves {current.name}; it can roll to another version of it, not to {mv.name}"
            )
        if image is None:
            if ref is None:
                raise NbserveError("update needs a model version (e.g. 'diabetes:2') or image=...")
            image, pushed = self.image_for(mv, rec["target"], registry or rec.get("registry"), say)
            rec["push"] = pushed
        previous = {k: rec[k] for k in ("model", "image", "split", "canary") if rec.get(k)}
        for key, value in (("split", split), ("canary", canary)):
            if value:
                rec[key] = value
            else:
                rec.pop(key, None)
        tgt = self.target(rec["target"])
        try:
            seconds = tgt.update(rec, mv, image, say)
        except BaseException:
            for key in ("split", "canary"):
                rec.pop(key, None)
                if previous.get(key):
                    rec[key] = previous[key]
            raise
        finally:
            # the engine may have rolled back: the record follows what it says, never what we hoped
            state = tgt.state(rec)
            if state.get("image"):
                if state["image"] != previous["image"]:
                    rec["history"] = (rec.get("history") or [])[-9:] + [previous]
                rec.update(model=state.get("model") or rec["model"], image=state["image"], updated=time.time())
                if state.get("split"):
                    rec["split"] = state["split"]
                else:
                    rec.pop("split", None)
            self.records.save(rec)
        said = ", ".join(f"{ref} {w:g}%" for ref, w in _percent(rec["split"]).items()) if rec.get("split") else None
        say(f"deployment {name} serves {said or rec['model']} on every replica ({seconds:.1f} s rollout)")
        return self._deployment(rec), seconds

    def split(self, name: str, weights: dict | None, registry=None, say=None):
        """Share the deployment between versions of its model by weight (``{"diabetes:1": 90, "diabetes:2":
        10}``), rolled out as an update. Swarm and a Kubernetes Deployment run one image that holds every
        version and serves them by weight, as ``inst.split`` does (each answer names its version in
        X-Model-Version); a KServe InferenceService in serverless mode (``kserve="serverless"``) runs the other
        version's own image with ``canaryTrafficPercent`` beside the revision rolled out last. ``None`` ends the
        split: the version of the largest weight alone. Returns (deployment, seconds the rollout took)."""
        from .engine import build_split

        rec = self.records.get(name)
        registry = registry or rec.get("registry")
        if weights is None:
            if not rec.get("split"):
                raise NbserveError(f"deployment {name!r} is not split")
            return self.update(name, rec["model"], registry=registry, say=say)
        current = self.workspace.get_model(rec["model"])
        versions = self.workspace.split_versions(current.name, weights, f"deployment {name!r}")
        if len(versions) == 1:
            return self.update(name, versions[0][0].id, registry=registry, say=say)
        primary = max(versions, key=lambda vw: vw[1])[0]
        canary = None
        if rec["target"] == "kubernetes" and rec["options"].get("kserve") == "serverless":
            canary = self._canary(rec, current, versions, registry, say)
        image = build_split(self.workspace, versions, say)
        split = {mv.id: w for mv, w in versions}
        if registry or rec["target"] == "kubernetes":
            from .push import push_image, registry_for, repository_for

            target = registry_for(registry, self.workspace.home)
            pushed = push_image(image, repository_for(target, primary.name), image.tag.split(":")[-1], primary.id, say)
            reference = pushed.reference
        else:
            reference = image.tag
        say(f"deployment {name}: rolling to {', '.join(f'{r} {w:g}%' for r, w in _percent(split).items())}")
        return self.update(name, primary.id, image=reference, say=say, split=split, canary=canary)

    def _canary(self, rec, current, versions, registry, say) -> dict:
        """KServe's canary: the revision rolled out last keeps 100 - P percent, the new one gets P."""
        others = [(mv, w) for mv, w in versions if mv.id != current.id]
        if len(versions) != 2 or len(others) != 1:
            raise NbserveError(
                f"KServe splits between the revision rolled out last ({current.id}) and one new version "
                f"(canaryTrafficPercent): name {current.id} and one other version"
            )
        mv, weight = others[0]
        image, _pushed = self.image_for(mv, "kubernetes", registry, say)
        return {"model": mv.id, "image": image, "percent": round(100 * weight / sum(w for _, w in versions))}

    def rollback(self, name: str, say):
        """Roll back to what was served before the last update (a version, or a split), as an update (so on
        Swarm: replica by replica, start-first, itself rolled back by the engine if that fails now)."""
        rec = self.records.get(name)
        if not rec.get("history"):
            raise NbserveError(f"deployment {name!r} has not been updated yet: there is no previous version")
        previous = rec["history"][-1]
        say(f"deployment {name}: rolling back from {rec['model']} to {previous['model']}")
        return self.update(
            name,
            previous["model"],
            image=previous["image"],
            say=say,
            split=previous.get("split"),
            canary=previous.get("canary"),
        )

    def remove(self, name: str, say) -> None:
        rec = self.records.get(name)
        self.target(rec["target"]).remove(rec, say)
        self.records.delete(name)

    def logs(self, name: str, tail: int = 200) -> str:
        rec = self.records.get(name)
        return self.target(rec["target"]).logs(rec, tail)


def _percent(split: dict) -> dict:
    total = sum(split.values())
    return {ref: 100.0 * w / total for ref, w in split.items()}
