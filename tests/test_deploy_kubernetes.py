"""Kubernetes manifests: written by ``nbserve.deploy(..., target="kubernetes")``, validated offline against
the Kubernetes API schemas of a pinned version (kubernetes-validate, strict: unknown fields fail) and the
InferenceService against KServe's CRD schema (tests/data, derived from KServe's CRD: see its description).
The read-only root filesystem the Deployment asks for is checked live with Docker (the same image, the
same writable mounts); the apply path goes through the official client's typed objects."""

import gzip
import json
import os
from pathlib import Path

import pytest
import yaml

from nbserve.deploy import kubernetes as k8s
from nbserve.deploy.push import PushError

K8S_VERSION = "1.35.0"  # pinned: the schemas kubernetes-validate bundles for this release
KSERVE_SCHEMA = Path(__file__).parent / "data" / "kserve-inferenceservice-v1beta1.schema.json.gz"
DIGEST = "sha256:" + "ab" * 32


def strict(schema):
    """A CRD's structural schema as JSON Schema that refuses unknown fields, as the API server prunes them."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def validate_kserve(doc):
    import jsonschema

    schema = strict(json.loads(gzip.decompress(KSERVE_SCHEMA.read_bytes())))
    jsonschema.validate(doc, schema)


def validate_all(docs):
    import kubernetes_validate

    for doc in docs:
        if doc["kind"] == "InferenceService":
            validate_kserve(doc)
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.fixture(scope="module")
def k8s_ws(module_workspace):
    return module_workspace


@pytest.fixture(scope="module")
def models(k8s_ws, diabetes):
    """Both families: a linear model on a float array, a boosted model on a DataFrame of mixed columns,
    registered once for the module (every test reads them; the deploy test writes its records beside)."""
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingRegressor

    X, y, lr = diabetes
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 200),
            "income": rng.normal(50, 10, 200),
            "city": pd.Categorical(rng.choice(["paris", "lyon"], 200)),
        }
    )
    gbm = HistGradientBoostingRegressor(max_iter=10, categorical_features="from_dtype").fit(frame, frame["income"])
    return [
        k8s_ws.register(lr, name="diabetes", sample=X, progress=False),
        k8s_ws.register(gbm, name="houses_v2", sample=frame, progress=False),
    ]


@pytest.mark.parametrize("kserve", [False, True])
@pytest.mark.parametrize("auth", [False, True])
def test_manifests_validate_strictly_for_both_model_families(models, tmp_path, kserve, auth):
    for mv in models:
        image = f"127.0.0.1:5000/team/{mv.name}@{DIGEST}"
        options = {"kserve": kserve, "auth_token": "s3cret-token-0123456789" if auth else None}
        docs = k8s.manifests(mv.name.replace("_", "-"), mv, image, 3, options)
        kinds = [d["kind"] for d in docs]
        expected = ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
        assert kinds == (["Secret"] if auth else []) + expected + (["InferenceService"] if kserve else [])
        validate_all(docs)
        paths = k8s.write(tmp_path / mv.name, docs)
        assert [yaml.safe_load(p.read_text()) for p in paths] == docs


def test_a_graph_is_one_deployment_whose_image_holds_every_stage(k8s_ws, models, tmp_path, diabetes):
    """A graph of stages deploys as any model: one Deployment (and one InferenceService) of the graph's image,
    its stages' versions named in an annotation; scaling it scales every stage together (docs/SCALING.md)."""
    import nbserve

    X = diabetes[0]

    def halve(answers):
        return answers * 0.5

    mv = k8s_ws.register(nbserve.chain(linear=models[0].id, halve=halve), name="halved", sample=X, progress=False)
    assert mv.stages == {"linear": "diabetes:1", "halve": "halved.halve:1"}
    for kserve in (False, True):
        docs = k8s.manifests("halved", mv, f"127.0.0.1:5000/team/halved@{DIGEST}", 2, {"kserve": kserve})
        validate_all(docs)
        deployments = [d for d in docs if d["kind"] == "Deployment"]
        assert len(deployments) == 1 and [d["kind"] for d in docs].count("InferenceService") == int(kserve)
        pod = deployments[0]["spec"]["template"]
        assert [c["image"] for c in pod["spec"]["containers"]] == [f"127.0.0.1:5000/team/halved@{DIGEST}"]
        assert pod["metadata"]["annotations"]["nbserve.io/stages"] == "linear=diabetes:1 halve=halved.halve:1"
        assert pod["metadata"]["annotations"]["nbserve.io/model-id"] == "halved:1"


@pytest.mark.parametrize("kserve", [True, "serverless"])
def test_a_split_is_one_image_serving_both_versions_and_on_knative_a_kserve_canary(models, kserve):
    """The same split as inst.split and Swarm's: the Deployment (and a RawDeployment InferenceService) run one image
    holding both versions, which serves them by weight (named in nbserve.io/split); a serverless InferenceService
    runs the new version's own image with canaryTrafficPercent beside the revision KServe rolled out last."""
    for mv in models:
        split_image, new_image = f"r/{mv.name}@{DIGEST}", "r/" + mv.name + "@sha256:" + "cd" * 32
        split = {mv.id: 90.0, f"{mv.name}:2": 10.0}
        canary = {"model": f"{mv.name}:2", "image": new_image, "percent": 10} if kserve == "serverless" else None
        docs = k8s.manifests(mv.name.replace("_", "-"), mv, split_image, 3, {"kserve": kserve}, split, canary)
        validate_all(docs)
        by_kind = {d["kind"]: d for d in docs}
        pod = by_kind["Deployment"]["spec"]["template"]
        assert pod["metadata"]["annotations"]["nbserve.io/split"] == f"{mv.id}=90 {mv.name}:2=10"
        assert [c["image"] for c in pod["spec"]["containers"]] == [split_image]
        isvc = by_kind["InferenceService"]
        predictor, mode = isvc["spec"]["predictor"], isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"]
        (container,) = predictor["containers"]
        if kserve == "serverless":
            assert mode == "Serverless" and predictor["canaryTrafficPercent"] == 10
            assert container["image"] == new_image and container["ports"][0]["name"] == "http1"
            assert isvc["metadata"]["annotations"]["nbserve.io/canary"] == f"{mv.name}:2=10%"
        else:
            assert mode == "RawDeployment" and "canaryTrafficPercent" not in predictor
            assert container["image"] == split_image
    with pytest.raises(k8s.KubernetesError, match="by digest"):
        k8s.manifests("d", models[0], f"r/d@{DIGEST}", 1, {"kserve": "serverless"}, canary={"image": "r/d:2"})


def test_the_deployment_is_pinned_probed_bounded_and_unprivileged(models):
    mv = models[0]
    docs = {d["kind"]: d for d in k8s.manifests("diabetes", mv, f"r/diabetes@{DIGEST}", 3, {"auth_token": "x" * 20})}
    dep = docs["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"].endswith(DIGEST) and dep["spec"]["replicas"] == 3
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/health"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/tmp", "/dev/shm"}
    assert all("emptyDir" in v for v in pod["volumes"])
    # the token itself is nowhere in the manifests: the Secret holds its sha256, the pod reads it from there
    (token_env,) = [e for e in c["env"] if e["name"] == "NBSERVE_AUTH_TOKEN_SHA256"]
    assert token_env["valueFrom"]["secretKeyRef"]["name"] == docs["Secret"]["metadata"]["name"]
    assert "x" * 20 not in json.dumps(list(docs.values()))
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert docs["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 3


def test_invalid_manifests_are_caught_by_the_validation(models):
    """The validation can fail: a misspelt field, a wrong type, an unknown KServe field."""
    import jsonschema
    import kubernetes_validate

    docs = {d["kind"]: d for d in k8s.manifests("diabetes", models[0], f"r/d@{DIGEST}", 2, {"kserve": True})}
    dep = json.loads(json.dumps(docs["Deployment"]))
    dep["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    dep = json.loads(json.dumps(docs["Deployment"]))
    dep["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    isvc = json.loads(json.dumps(docs["InferenceService"]))
    isvc["spec"]["predictor"]["replicas"] = 2
    with pytest.raises(jsonschema.ValidationError):
        validate_kserve(isvc)


def test_deploy_to_kubernetes_writes_manifests_by_digest_and_rolls_them(
    k8s_ws, models, container_registry, tmp_path, capsys, monkeypatch
):
    """Through the workspace: pushed to a real registry, manifests written, updated, rolled back."""
    from nbserve_testing import base_image, need_docker

    workspace = k8s_ws
    monkeypatch.setenv("NBSERVE_HOME", str(workspace.home))  # the CLI below reads the same registry
    need_docker()
    os.environ.setdefault("NBSERVE_BASE_IMAGE", base_image())
    mv = models[0]
    out = tmp_path / "k8s"
    with pytest.raises(PushError, match="registry"):
        workspace.deploy(mv, target="kubernetes", replicas=2, output=str(out), progress=False)
    dep = workspace.deploy(
        mv,
        target="kubernetes",
        replicas=2,
        registry=f"{container_registry}/k8s",
        output=str(out),
        kserve=True,
        progress=False,
    )
    assert (dep.target, dep.status, dep.directory) == ("kubernetes", "written", str(out))
    docs = k8s.read(out)
    validate_all(docs)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == dep.image and "@sha256:" in image
    dep.scale(5, progress=False)
    assert [d for d in k8s.read(out) if d["kind"] == "Deployment"][0]["spec"]["replicas"] == 5
    assert [d.name for d in workspace.deployments()] == ["diabetes"]
    # the faces are thin calls into the same core: the CLI and the panel's section see and act on it
    from nbserve.cli import main
    from nbserve.widgets import Panel

    assert main(["deployments"]) == 0
    listed = capsys.readouterr().out
    assert "diabetes" in listed and "kubernetes" in listed and str(out) in listed
    assert main(["deploy", "scale", "diabetes", "4"]) == 0
    assert [d for d in k8s.read(out) if d["kind"] == "Deployment"][0]["spec"]["replicas"] == 4
    panel = Panel(workspace, refresh_seconds=60)
    try:
        assert list(panel.deployments.choice.options) == ["diabetes"]
        assert "kubernetes" in panel.deployments.table.value
        panel.scale_deployment("diabetes", 3)
        assert panel.last_error is None
        assert [d for d in k8s.read(out) if d["kind"] == "Deployment"][0]["spec"]["replicas"] == 3
    finally:
        panel.close()
    dep.remove(progress=False)
    assert not out.exists() and workspace.deployments() == []


def test_the_apply_path_builds_the_official_clients_objects(models):
    """Every manifest deserialises into the kubernetes client's typed model and back without losing a
    field: what apply() sends is what was validated."""
    from kubernetes import client

    api = client.ApiClient()
    types = {
        "Secret": "V1Secret",
        "Deployment": "V1Deployment",
        "Service": "V1Service",
        "HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler",
        "PodDisruptionBudget": "V1PodDisruptionBudget",
    }
    for doc in k8s.manifests("diabetes", models[0], f"r/d@{DIGEST}", 2, {"auth_token": "y" * 20}):
        obj = api._ApiClient__deserialize(json.loads(json.dumps(doc)), types[doc["kind"]])
        back = api.sanitize_for_serialization(obj)
        if doc["kind"] == "Secret":
            back.pop("data", None)
        assert back == doc, doc["kind"]


def test_a_deployment_split_through_the_cli_writes_the_split_image_and_the_canary(
    k8s_ws, models, container_registry, tmp_path, monkeypatch, diabetes, capsys
):
    """Through the workspace and `nbserve deploy split`: the split image (v1's image plus v2's artifact and
    NBSERVE_VERSIONS) and v2's own image are pushed and named by digest in the manifests; ending the split rolls
    v1 alone, and a rollback returns to the split."""
    from nbserve_testing import base_image, need_docker
    from sklearn.linear_model import Ridge

    from nbserve.cli import main

    engine = need_docker()
    os.environ.setdefault("NBSERVE_BASE_IMAGE", base_image())
    monkeypatch.setenv("NBSERVE_HOME", str(k8s_ws.home))
    X, y, _ = diabetes
    v1 = models[0]
    v2 = k8s_ws.register(Ridge(alpha=0.5).fit(X, y), name="diabetes", sample=X, progress=False)
    out = tmp_path / "canary"
    registry = f"{container_registry}/k8s"
    dep = k8s_ws.deploy(
        v1,
        target="kubernetes",
        name="canary",
        replicas=2,
        registry=registry,
        output=str(out),
        kserve="serverless",
        progress=False,
    )
    alone = dep.image
    capsys.readouterr()
    assert main(["deploy", "split", "canary", f"{v1.id}=80", f"{v2.id}=20"]) == 0
    assert f"split: {v1.id} 80% + {v2.id} 20%" in capsys.readouterr().out
    assert main(["deployments"]) == 0
    assert f"canary  {v1.id} 80% + {v2.id} 20%  kubernetes" in capsys.readouterr().out
    docs = {d["kind"]: d for d in k8s.read(out)}
    validate_all(docs.values())
    pod = docs["Deployment"]["spec"]["template"]
    split_image = pod["spec"]["containers"][0]["image"]
    assert "@sha256:" in split_image and split_image != alone
    assert pod["metadata"]["annotations"]["nbserve.io/split"] == f"{v1.id}=80 {v2.id}=20"
    env = dict(e.split("=", 1) for e in engine.images.get(split_image).attrs["Config"]["Env"])
    assert [(v["model_id"], v["weight"]) for v in json.loads(env["NBSERVE_VERSIONS"])] == [(v1.id, 80), (v2.id, 20)]
    predictor = docs["InferenceService"]["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 20
    assert predictor["containers"][0]["image"] == k8s_ws.push(v2, registry=registry, progress=False).reference
    assert dep.reload().split_weights == {v1.id: 80.0, v2.id: 20.0} and dep.model == v1.id

    # the panel's End split button shows for a split deployment only, and ends it
    from nbserve.widgets import Panel

    panel = Panel(k8s_ws, refresh_seconds=60)
    try:
        section = panel.deployments
        section.choice.value = "canary"
        assert section.end_split.layout.display != "none"
        section.end_split.click()
        assert panel.last_error is None
        assert section.end_split.layout.display == "none"
    finally:
        panel.close()
    docs = {d["kind"]: d for d in k8s.read(out)}
    assert docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"] == alone
    assert "nbserve.io/split" not in docs["Deployment"]["metadata"]["annotations"]
    assert "canaryTrafficPercent" not in docs["InferenceService"]["spec"]["predictor"]
    assert dep.reload().split_weights is None
    dep.rollback(progress=False)  # back to the split
    docs = {d["kind"]: d for d in k8s.read(out)}
    assert docs["InferenceService"]["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert dep.reload().split_weights == {v1.id: 80.0, v2.id: 20.0}
    dep.remove(progress=False)
