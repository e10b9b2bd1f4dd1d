"""The Jupyter REST routes of deployments (what the sidebar calls): list, scale, logs, remove, and the
errors, on a real Kubernetes-target deployment (manifests pushed by digest to a real registry)."""

import os

import pytest
from nbserve_testing import base_image, need_docker

from nbserve.deploy import kubernetes as k8s

pytest_plugins = ("pytest_jupyter.jupyter_server",)


@pytest.fixture
def jp_server_config(home):
    return {"ServerApp": {"jpserver_extensions": {"nbserve": True}}}


@pytest.fixture
def api(jp_fetch):
    import json

    from nbserve.jupyter.handlers import API_PREFIX

    async def call(method, *parts, body=None, **kwargs):
        if body is not None:
            body = json.dumps(body)
        if body is None and method == "POST":
            body = b""
        resp = await jp_fetch(*API_PREFIX.split("/"), *parts, method=method, body=body, raise_error=False, **kwargs)
        return resp.code, (json.loads(resp.body) if resp.body else None)

    return call


async def test_deployment_routes(api, workspace, diabetes, container_registry, tmp_path):
    need_docker()
    os.environ.setdefault("NBSERVE_BASE_IMAGE", base_image())
    X, _, lr = diabetes
    mv = workspace.register(lr, name="diabetes", sample=X, progress=False)
    out = tmp_path / "k8s"
    workspace.deploy(
        mv, target="kubernetes", replicas=2, registry=f"{container_registry}/routes", output=str(out), progress=False
    )
    status, body = await api("GET", "deployments")
    assert status == 200
    (dep,) = body["deployments"]
    assert (dep["name"], dep["model"], dep["target"], dep["replicas"]) == ("diabetes", "diabetes:1", "kubernetes", 2)
    status, body = await api("POST", "deployments", "diabetes", "scale", body={"replicas": 4})
    assert status == 200 and body["deployment"]["replicas"] == 4
    assert [d for d in k8s.read(out) if d["kind"] == "Deployment"][0]["spec"]["replicas"] == 4
    status, body = await api("POST", "deployments", "diabetes", "scale", body={"replicas": "four"})
    assert status == 400 and "replicas" in body["error"]["message"]
    status, body = await api("POST", "deployments", "nothing", "rollback")
    assert status == 404 and "no deployment named" in body["error"]["message"]
    status, body = await api("POST", "deployments", "diabetes", "rollback")
    assert status == 400 and "no previous version" in body["error"]["message"]
    status, body = await api("POST", "deployments", "diabetes", "split", body={"weights": [90, 10]})
    assert status == 400 and "weights" in body["error"]["message"]
    status, body = await api("POST", "deployments", "diabetes", "split", body={"weights": None})
    assert status == 400 and "is not split" in body["error"]["message"]
    status, body = await api("GET", "deployments", "diabetes", "logs")
    assert status == 200 and "manifests" in body["logs"]
    status, _ = await api("DELETE", "deployments", "diabetes")
    assert status == 204 and not out.exists()
    status, body = await api("GET", "deployments")
    assert body == {"deployments": []}
