"""Kubernetes: the model's image as manifests in a directory, applied with the official client on request.

No cluster runs on nbserve's CI machines, so the manifests are the product here: they are validated
against the Kubernetes API schemas (kubernetes-validate, strict) and KServe's CRD schema in the tests,
and the apply path is small: the official ``kubernetes`` client, one create (or replace) per object.

What gets written (one file per object, applied in file order):
  Secret                  the sha256 of the bearer token, when auth is on (the server only needs the digest)
  Deployment              replicas, the image by digest, startup/readiness/liveness probes on /health,
                          requests and limits, non-root, read-only root filesystem with emptyDirs for the
                          temp files gunicorn and Python write, rolling update with maxUnavailable 0
  Service                 ClusterIP, port 80 -> the server's 8080
  HorizontalPodAutoscaler autoscaling/v2 on CPU utilisation, from ``replicas`` up to ``max_replicas``
  PodDisruptionBudget     at most one replica down at a time for voluntary disruptions
  InferenceService        (``kserve=True``) serving.kserve.io/v1beta1 with a custom predictor container, as a
                          plain Deployment (RawDeployment); ``kserve="serverless"``: on Knative, where KServe
                          splits traffic between revisions

A split (``dep.split({"diabetes:1": 90, "diabetes:2": 10})``): the Deployment runs one image that holds both
versions and serves them by weight in every pod (as Swarm does, and as ``inst.split`` does locally), named in the
``nbserve.io/split`` annotation; a serverless InferenceService runs the other version's own image with
``canaryTrafficPercent`` (KServe keeps the revision it rolled out last for the rest; canaries need Knative, and
KServe does not let an InferenceService change its deployment mode once made).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..errors import NbserveError
from ..runtimes.dockerfile import PORT, UID
from ..runtimes.limits import server_settings
from ..server.shared import ENV_SHA256, token_sha256

DEFAULTS = {"cpus": "1", "memory": "1Gi", "cpu_request": "250m", "memory_request": "256Mi", "target_cpu": 70}
WRITABLE = {"tmp": "/tmp", "home": "/home/nbserve", "shm": "/dev/shm"}  # emptyDirs on a read-only root
FILES = {
    "Secret": "00-secret.yaml",
    "Deployment": "10-deployment.yaml",
    "Service": "20-service.yaml",
    "HorizontalPodAutoscaler": "30-hpa.yaml",
    "PodDisruptionBudget": "40-pdb.yaml",
    "InferenceService": "50-inferenceservice.yaml",
}


class KubernetesError(NbserveError):
    pass


def _labels(name: str, mv) -> dict:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/managed-by": "nbserve",
        "nbserve.io/model": mv.name[:63].strip("-_."),
        "nbserve.io/version": str(mv.version),
    }


def _probe(path: str, period: int, failures: int, delay: int = 0) -> dict:
    probe = {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }
    if delay:
        probe["initialDelaySeconds"] = delay
    return probe


def _container(name: str, image: str, options: dict, secret: str | None) -> dict:
    # the settings every runtime gives a server (runtimes/limits.py); the token's digest comes from a Secret
    settings = server_settings({k: v for k, v in options.items() if k != "auth_token"})
    env: list[dict] = [{"name": k, "value": v} for k, v in settings.to_env().items()]
    if secret:
        env.append({"name": ENV_SHA256, "valueFrom": {"secretKeyRef": {"name": secret, "key": "token-sha256"}}})
    return {
        "name": "server",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": env,
        # the model loads before the port opens: the startup probe gives it up to 2 minutes, then readiness
        # takes a replica out of the Service within seconds and liveness restarts one that stopped answering
        "startupProbe": _probe("/health", 2, 60),
        "readinessProbe": _probe("/health", 5, 2),
        "livenessProbe": _probe("/health", 10, 3),
        "resources": {
            "requests": {
                "cpu": str(options.get("cpu_request", DEFAULTS["cpu_request"])),
                "memory": str(options.get("memory_request", DEFAULTS["memory_request"])),
            },
            "limits": {
                "cpu": str(options.get("cpus") or DEFAULTS["cpus"]),
                "memory": str(options.get("memory") or DEFAULTS["memory"]),
            },
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": vol, "mountPath": path} for vol, path in WRITABLE.items()],
    }


def _volumes() -> list[dict]:
    # gunicorn's worker heartbeat files (/dev/shm), its control socket (home), Python's temp files (/tmp)
    return [{"name": vol, "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}} for vol in WRITABLE]


def manifests(
    name: str, mv, image: str, replicas: int, options: dict, split: dict | None = None, canary: dict | None = None
) -> list[dict]:
    """The objects for deployment ``name`` of model version ``mv`` running ``image`` (by digest). ``split``: the
    image serves these versions by weight ({"diabetes:1": 90, ...}); ``canary``: {"model", "image", "percent"}
    of a serverless InferenceService's new revision."""
    if "@sha256:" not in image or (canary and "@sha256:" not in canary["image"]):
        raise KubernetesError(f"Kubernetes manifests name the image by digest (REPO@sha256:...), got {image!r}")
    labels = _labels(name, mv)
    selector = {"app.kubernetes.io/name": name}
    annotations = {"nbserve.io/sha256": mv.sha256, "nbserve.io/model-id": mv.id}
    if getattr(mv, "stages", None):  # a graph: one Deployment whose image holds every stage, named here
        annotations["nbserve.io/stages"] = " ".join(f"{stage}={ref}" for stage, ref in mv.stages.items())
    if split:  # the image holds every version and serves them by weight (its NBSERVE_VERSIONS)
        annotations["nbserve.io/split"] = " ".join(f"{ref}={w:g}" for ref, w in split.items())
    namespace = options.get("namespace") or "default"
    meta = {"name": name, "namespace": namespace, "labels": labels}
    docs = []
    secret = None
    if options.get("auth_token"):
        secret = f"{name}-auth"
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": dict(meta, name=secret),
                "type": "Opaque",
                "stringData": {"token-sha256": token_sha256(options["auth_token"])},
            }
        )
    container = _container(name, image, options, secret)
    pod_spec = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {"runAsNonRoot": True, "fsGroup": UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": _volumes(),
    }
    docs.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": dict(meta, annotations=annotations),
            "spec": {
                "replicas": int(replicas),
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
            },
        }
    )
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        }
    )
    max_replicas = int(options.get("max_replicas") or max(int(replicas) * 4, 4))
    docs.append(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta,
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": int(options.get("min_replicas") or replicas),
                "maxReplicas": max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": int(options.get("target_cpu", DEFAULTS["target_cpu"])),
                            },
                        },
                    }
                ],
            },
        }
    )
    docs.append(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta,
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
        }
    )
    if options.get("kserve"):
        serverless = options["kserve"] == "serverless"
        if serverless:
            # Knative: the serving port is named http1 (or h2c); the canary runs its own version's image
            container = dict(container, ports=[{"name": "http1", "containerPort": PORT, "protocol": "TCP"}])
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                container[probe] = dict(container[probe], httpGet={"path": "/health", "port": PORT})
            if canary:
                container["image"] = canary["image"]
        predictor = {
            "minReplicas": int(options.get("min_replicas") or replicas),
            "maxReplicas": max_replicas,
            "scaleMetric": "cpu",
            "scaleTarget": int(options.get("target_cpu", DEFAULTS["target_cpu"])),
            "securityContext": pod_spec["securityContext"],
            "automountServiceAccountToken": False,
            "containers": [dict(container, name="kserve-container")],
            "volumes": _volumes(),
        }
        isvc_annotations = {
            **annotations,
            "serving.kserve.io/deploymentMode": "Serverless" if serverless else "RawDeployment",
        }
        if serverless and canary:
            predictor["canaryTrafficPercent"] = int(canary["percent"])
            isvc_annotations["nbserve.io/canary"] = f"{canary['model']}={int(canary['percent'])}%"
        docs.append(
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                # RawDeployment: a plain Deployment + Service under KServe (no Knative needed); the server
                # speaks nbserve's own REST protocol (POST /<method>), so no protocolVersion is claimed
                "metadata": dict(meta, name=f"{name}-isvc", annotations=isvc_annotations),
                "spec": {"predictor": predictor},
            }
        )
    return docs


def write(directory: Path, docs: list[dict]) -> list[Path]:
    """One YAML file per object (``kubectl apply -f DIR`` applies them in order); stale files go."""
    import yaml

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.yaml"):
        if old.name in FILES.values():
            old.unlink()
    paths = []
    for doc in docs:
        path = directory / FILES[doc["kind"]]
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(path)
    return paths


def read(directory: Path) -> list[dict]:
    import yaml

    return [yaml.safe_load(p.read_text()) for p in sorted(Path(directory).glob("*.yaml")) if p.name in FILES.values()]


def apply(docs: list[dict], api_client, dry_run: bool = False) -> list[str]:
    """Create each object with the official client (replace it when it exists); ``dry_run``: the API
    server checks and answers without storing anything. Returns "Kind/name" per object."""
    from kubernetes import client as k8s
    from kubernetes.client.rest import ApiException

    extra: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
    core, apps = k8s.CoreV1Api(api_client), k8s.AppsV1Api(api_client)
    scaling, policy = k8s.AutoscalingV2Api(api_client), k8s.PolicyV1Api(api_client)
    custom = k8s.CustomObjectsApi(api_client)
    verbs: dict[str, tuple[Any, Any]] = {
        "Secret": (core.create_namespaced_secret, core.replace_namespaced_secret),
        "Deployment": (apps.create_namespaced_deployment, apps.replace_namespaced_deployment),
        "Service": (core.create_namespaced_service, core.patch_namespaced_service),
        "HorizontalPodAutoscaler": (
            scaling.create_namespaced_horizontal_pod_autoscaler,
            scaling.replace_namespaced_horizontal_pod_autoscaler,
        ),
        "PodDisruptionBudget": (
            policy.create_namespaced_pod_disruption_budget,
            policy.replace_namespaced_pod_disruption_budget,
        ),
    }
    done = []
    for doc in docs:
        name, namespace = doc["metadata"]["name"], doc["metadata"]["namespace"]
        try:
            if doc["kind"] == "InferenceService":
                custom.create_namespaced_custom_object(
                    "serving.kserve.io", "v1beta1", namespace, "inferenceservices", doc, **extra
                )
            else:
                verbs[doc["kind"]][0](namespace, doc, **extra)
        except ApiException as exc:
            if exc.status != 409 or doc["kind"] == "InferenceService":
                raise KubernetesError(f"the cluster refused {doc['kind']} {name}: {exc.status} {exc.reason}") from None
            verbs[doc["kind"]][1](name, namespace, doc, **extra)
        done.append(f"{doc['kind']}/{name}")
    return done


class KubernetesTarget:
    name = "kubernetes"

    def __init__(self, workspace):
        self.workspace = workspace

    def _directory(self, rec) -> Path:
        return Path(rec["options"].get("output") or self.workspace.home / "deployments" / f"{rec['name']}-k8s")

    def _write(self, rec, mv, image, progress) -> None:
        docs = manifests(rec["name"], mv, image, rec["replicas"], rec["options"], rec.get("split"), rec.get("canary"))
        directory = self._directory(rec)
        write(directory, docs)
        rec["directory"] = str(directory)
        progress(f"wrote {len(docs)} manifests to {directory} ({', '.join(d['kind'] for d in docs)})")
        context = rec["options"].get("context")
        if context:
            from kubernetes import config

            api = config.new_client_from_config(context=context)
            applied = apply(docs, api, dry_run=bool(rec["options"].get("dry_run")))
            progress(f"applied to the cluster of context {context}: {', '.join(applied)}")
        else:
            progress(f"apply them with `kubectl apply -f {directory}` (or pass context=... to apply from here)")

    def deploy(self, rec, mv, image, progress) -> dict:
        self._write(rec, mv, image, progress)
        return rec

    def state(self, rec) -> dict:
        return {
            "status": "applied" if rec["options"].get("context") else "written",
            "replicas": rec["replicas"],
            "ready": 0,
            "endpoints": [],
            "replica_list": [],
            "model": rec["model"],
            "split": rec.get("split"),
            "image": rec["image"],
            "directory": rec.get("directory"),
        }

    def scale(self, rec, replicas, progress) -> None:
        rec["replicas"] = replicas
        self._write(rec, self.workspace.get_model(rec["model"]), rec["image"], progress)

    def update(self, rec, mv, image, progress) -> float:
        self._write(rec, mv, image, progress)
        rec.update(model=mv.id, image=image)
        return 0.0

    def remove(self, rec, progress) -> None:
        directory = Path(rec.get("directory") or self._directory(rec))
        if directory.is_dir():
            for path in directory.glob("*.yaml"):
                if path.name in FILES.values():
                    path.unlink()
            if not any(directory.iterdir()):
                shutil.rmtree(directory, ignore_errors=True)
        progress(f"removed the manifests of {rec['name']} from {directory}")

    def logs(self, rec, tail=200) -> str:
        return f"(deployment {rec['name']} is manifests in {rec.get('directory')}: logs come from the cluster)\n"
