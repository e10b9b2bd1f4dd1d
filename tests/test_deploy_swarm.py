"""Registry push and Docker Swarm deployments, live: a real registry (docker-registry on 127.0.0.1), the
shared engine's swarm (initialised with init_swarm=True when nobody has yet; never left), 3 replicas.

One deployment goes through the whole story in order (the tests of this module share it): it answers;
a replica killed by hand is replaced while a request loop runs; an update to v2 under a request loop of
at least 20 s ends with every replica on v2; a broken v3 rolls back by itself; scale and a manual rollback.
The request loops (tests/request_loop.py) count requests, retries (a refused connection, retried once on
another replica) and failures; the counts and the time each update took are printed (pytest -s shows them).
"""

import io
import json
import os
import subprocess
import time
import urllib.request

import numpy as np
import pytest
from nbserve_testing import base_image, need_docker
from request_loop import RequestLoop

from nbserve.deploy.push import PushError
from nbserve.deploy.swarm import RolledBack, SwarmError, service_name
from nbserve.workspace import Workspace

REPLICAS = 3


def report(what: str, **numbers) -> None:
    print(f"\n[deploy-report] {what}: " + json.dumps(numbers))


@pytest.fixture(scope="module")
def engine():
    client = need_docker()
    old = os.environ.get("NBSERVE_BASE_IMAGE")
    os.environ["NBSERVE_BASE_IMAGE"] = base_image()
    yield client
    if old is None:
        os.environ.pop("NBSERVE_BASE_IMAGE", None)
    client.close()


@pytest.fixture(scope="module")
def models(engine, tmp_path_factory, diabetes):
    """A registry with diabetes:1 (LinearRegression), :2 (Ridge), :3 (Lasso): same requirements."""
    from sklearn.linear_model import Lasso, Ridge

    X, y, lr = diabetes
    ws = Workspace(tmp_path_factory.mktemp("deploy-home"))
    versions = [
        ws.register(model, name="diabetes", sample=X, progress=False)
        for model in (lr, Ridge(alpha=0.5).fit(X, y), Lasso(alpha=0.1).fit(X, y))
    ]
    return ws, versions, X


@pytest.fixture(scope="module")
def registry(container_registry):
    return f"{container_registry}/deploy-tests"


def manifest_digest(registry: str, repository: str, tag: str) -> str:
    host, path = repository.split("/", 1)
    req = urllib.request.Request(
        f"http://{host}/v2/{path}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers["Docker-Content-Digest"]


def test_push_names_the_image_by_digest_and_a_new_version_reuses_the_dependency_layers(models, registry, engine):
    ws, (v1, v2, _), _ = models
    first = ws.push(v1, registry=registry, progress=False)
    assert first.repository == f"{registry}/diabetes" and first.tag == "1"
    assert first.digest.startswith("sha256:") and first.reference == f"{first.repository}@{first.digest}"
    # what the registry itself serves under the tag is the digest we recorded
    assert manifest_digest(registry, first.repository, "1") == first.digest
    second = ws.push(v2, registry=registry, progress=False)
    assert manifest_digest(registry, second.repository, "2") == second.digest != first.digest
    # the registry already holds every layer v2 shares with v1 (the base, and with the same requirements the
    # dependency layers too, when both images come from one build chain): none of them is uploaded again (v2's
    # own layer may be there too, when another test of the session pushed the same model to this registry)
    layers = [engine.images.get(p.image_id).attrs["RootFS"]["Layers"] for p in (first, second)]
    shared = len(set(layers[0]) & set(layers[1]))
    assert shared >= 1 and second.layers_reused >= shared, (second, layers)
    assert second.layers_pushed + second.layers_reused == len(set(layers[1])), (second, layers)
    assert second.layers_pushed <= len(set(layers[1])) - shared
    report(
        "push",
        v1_pushed=first.layers_pushed,
        v2_pushed=second.layers_pushed,
        v2_reused=second.layers_reused,
        v1_seconds=round(first.seconds, 1),
        v2_seconds=round(second.seconds, 1),
        image_mb=round(first.size / 1e6),
    )


def test_push_without_or_with_a_bad_registry_says_what_to_do(models, monkeypatch):
    ws, (v1, _, _), _ = models
    monkeypatch.delenv("NBSERVE_REGISTRY", raising=False)
    with pytest.raises(PushError, match="NBSERVE_REGISTRY"):
        ws.push(v1, progress=False)
    with pytest.raises(PushError, match="HOST"):
        ws.push(v1, registry="http://127.0.0.1:5000/x", progress=False)
    with pytest.raises(PushError, match="Is a registry listening"):
        ws.push(v1, registry="127.0.0.1:9/nothing-here", progress=False)


@pytest.fixture(scope="module")
def deployment(models, registry, engine):
    ws, (v1, v2, _), _ = models
    swarm = engine.info()["Swarm"]["LocalNodeState"]
    if swarm != "active":
        # nobody made a swarm yet: without init_swarm nbserve refuses and says how
        with pytest.raises(SwarmError, match="init_swarm=True"):
            ws.deploy(v1, target="swarm", replicas=REPLICAS, registry=registry, progress=False)
    ws.push(v2, registry=registry, progress=False)  # v2's image is ready before any rollout is timed
    started = time.monotonic()
    dep = ws.deploy(v1, target="swarm", replicas=REPLICAS, registry=registry, init_swarm=True, progress=False)
    report("deploy", replicas=REPLICAS, seconds_until_all_healthy=round(time.monotonic() - started, 1))
    yield dep
    try:
        dep.remove(progress=False)
    finally:
        for svc in engine.services.list(filters={"label": f"nbserve.home={ws.home}"}):
            svc.remove()


def predictions(url, X):
    body = json.dumps({"data": X[:5].tolist()}).encode()
    req = urllib.request.Request(url + "/predict", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return np.array(json.loads(resp.read())["data"])


def health(url):
    with urllib.request.urlopen(url + "/health", timeout=5) as resp:
        return json.loads(resp.read())


def loop_for(ws, dep, X):
    return RequestLoop(lambda: ws.get_deployment(dep.name).endpoints, {"data": X[:2].tolist()})


def test_three_replicas_answer_with_the_rollout_policy_swarm_runs(deployment, models, engine, diabetes):
    ws, (v1, _, _), X = models
    dep = deployment.reload()
    assert (dep.target, dep.model, dep.replicas, dep.ready, dep.status) == ("swarm", "diabetes:1", 3, 3, "running")
    assert len(dep.endpoints) == 3 and "@sha256:" in dep.image
    for url in dep.endpoints:
        assert health(url)["model"] == "diabetes:1"
        np.testing.assert_allclose(predictions(url, X), diabetes[2].predict(X[:5]))
    assert [d.name for d in ws.deployments()] == ["diabetes"]
    svc = engine.services.get(service_name("diabetes", ws.home))
    spec = svc.attrs["Spec"]
    assert spec["Labels"]["nbserve.model"] == "diabetes" and spec["Labels"]["nbserve.home"] == str(ws.home)
    update = spec["UpdateConfig"]
    assert (update["Parallelism"], update["Order"], update["FailureAction"]) == (1, "start-first", "rollback")
    assert update["Monitor"] > 0 and spec["RollbackConfig"]["Order"] == "start-first"
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "any"
    image_test = engine.images.get(dep.image).attrs["Config"]["Healthcheck"]["Test"]
    assert container["Healthcheck"]["Test"] == image_test  # the image's own health check
    # every replica's container carries the labels too, so listings reconcile with the engine
    for replica in dep.replica_list:
        labels = engine.containers.get(replica["container"]).labels
        assert labels["nbserve.deployment"] == "diabetes" and labels["nbserve.version"] == "1"
    if not dep._record.get("mesh"):
        assert "no routing mesh" in dep.notes
        assert spec["EndpointSpec"]["Mode"] == "dnsrr"


def test_a_replica_killed_by_hand_is_replaced_and_the_loop_sees_no_failure(deployment, models):
    ws, _, X = models
    dep = deployment.reload()
    victim = dep.replica_list[0]["container"]
    with loop_for(ws, dep, X) as loop:
        time.sleep(2)
        subprocess.run(["docker", "kill", victim], check=True, capture_output=True, timeout=30)
        killed = time.monotonic()
        while True:
            dep.reload()
            if dep.ready == REPLICAS and victim not in [r["container"] for r in dep.replica_list]:
                break
            assert time.monotonic() - killed < 90, f"the killed replica was not replaced: {dep.replica_list}"
            time.sleep(0.5)
        replaced = time.monotonic() - killed
        loop.run_for_at_least(replaced + 4)
    report(
        "kill",
        replaced_seconds=round(replaced, 1),
        requests=loop.requests,
        retries=loop.retries,
        retry_reasons=sorted(set(loop.retry_reasons)),
        failures=len(loop.failures),
    )
    assert not loop.failures, loop.summary()
    assert loop.requests > 50


def test_update_to_v2_under_a_request_loop_drops_nothing(deployment, models, diabetes):
    ws, (v1, v2, _), X = models
    with loop_for(ws, deployment, X) as loop:
        time.sleep(1)
        started = time.monotonic()
        deployment.update(v2.id, progress=False)
        rollout = time.monotonic() - started
        loop.run_for_at_least(20)
    report(
        "update v1->v2",
        rollout_seconds=round(rollout, 1),
        loop_seconds=round(loop.seconds, 1),
        requests=loop.requests,
        retries=loop.retries,
        failures=len(loop.failures),
    )
    assert not loop.failures, loop.summary()
    assert loop.seconds >= 20
    assert deployment.model == "diabetes:2" and deployment.ready == REPLICAS
    assert [r["model"] for r in deployment.replica_list] == ["diabetes:2"] * REPLICAS
    for url in deployment.endpoints:
        assert health(url)["model"] == "diabetes:2"
    # the loop was answered by both versions: the rollout happened while it ran
    v1_answer, v2_answer = (round(float(m.load().predict(X[:2])[0]), 6) for m in (v1, v2))
    assert loop.answers.get(v1_answer) and loop.answers.get(v2_answer), loop.answers


def broken_image(engine, registry, ws, base: str) -> str:
    """v3 as a hand-made image whose server cannot load its model: every replica of it dies at start."""
    repo = f"{registry}/diabetes"
    dockerfile = f"FROM {base}\nENV NBSERVE_ARTIFACT=/opt/nbserve/artifacts/missing\n"
    image, _ = engine.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=f"{repo}:3-broken", labels={"nbserve.home": str(ws.home)}
    )
    for line in engine.api.push(repo, tag="3-broken", stream=True, decode=True):
        assert "error" not in line, line
    image.reload()
    return next(d for d in image.attrs["RepoDigests"] if d.startswith(repo + "@"))


def test_a_broken_v3_rolls_back_by_itself(deployment, models, engine, registry):
    ws, (_, v2, v3), X = models
    broken = broken_image(engine, registry, ws, deployment.image)
    with loop_for(ws, deployment, X) as loop:
        started = time.monotonic()
        with pytest.raises(RolledBack, match="rolled back to diabetes:2"):
            deployment.update(v3.id, image=broken, progress=False)
        seconds = time.monotonic() - started
        loop.run_for_at_least(3)
    report(
        "update v2->broken v3",
        seconds_until_rolled_back=round(seconds, 1),
        requests=loop.requests,
        retries=loop.retries,
        failures=len(loop.failures),
    )
    assert not loop.failures, loop.summary()
    assert deployment.model == "diabetes:2" and deployment.image != broken
    assert [r["model"] for r in deployment.replica_list] == ["diabetes:2"] * REPLICAS
    assert ws.get_deployment("diabetes").model == "diabetes:2"  # the record follows the engine


def test_scale_logs_and_a_manual_rollback(deployment, models):
    ws, _, X = models
    deployment.scale(2, progress=False)
    assert (deployment.replicas, deployment.ready, len(deployment.endpoints)) == (2, 2, 2)
    logs = deployment.logs(tail=50)  # the replicas' own lines: gunicorn's, or the request log's
    assert logs.count("--- replica") == 2 and ("/predict" in logs or "Listening at" in logs), logs[-2000:]
    started = time.monotonic()
    deployment.rollback(progress=False)
    report("manual rollback v2->v1 (2 replicas)", seconds=round(time.monotonic() - started, 1))
    assert deployment.model == "diabetes:1"
    assert [r["model"] for r in deployment.replica_list] == ["diabetes:1"] * 2


def test_a_split_serves_both_versions_by_weight_on_every_replica(deployment, models, engine):
    """dep.split: one image holding v1 and v2 rolled out to every replica (start-first, under a request loop);
    each replica serves both by weight, each answer naming its version in X-Model-Version and equal to that
    version's own; dep.split(None) rolls v1 alone again."""
    ws, (v1, v2, _), X = models
    with loop_for(ws, deployment, X) as loop:
        started = time.monotonic()
        deployment.split({v1.id: 75, v2.id: 25}, progress=False)
        rollout = time.monotonic() - started
        loop.run_for_at_least(3)
    assert not loop.failures, loop.summary()
    assert deployment.split_weights == {v1.id: 75.0, v2.id: 25.0} and deployment.model == v1.id
    svc = engine.services.get(service_name("diabetes", ws.home))
    assert svc.attrs["Spec"]["Labels"]["nbserve.split"] == f"{v1.id}=75,{v2.id}=25"
    own = {mv.id: mv.load().predict(X[:5]) for mv in (v1, v2)}
    body = json.dumps({"data": X[:5].tolist()}).encode()
    answered = {v1.id: 0, v2.id: 0}
    for url in deployment.endpoints:
        assert health(url)["versions"] == {v1.id: 75.0, v2.id: 25.0}
        for _ in range(40):
            req = urllib.request.Request(url + "/predict", data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                version = resp.headers["X-Model-Version"]
                np.testing.assert_allclose(json.loads(resp.read())["data"], own[version])
            answered[version] += 1
    share = answered[v2.id] / sum(answered.values())
    report("split 75/25", rollout_seconds=round(rollout, 1), answered=answered, requests=loop.requests)
    assert 0.15 <= share <= 0.35, answered
    deployment.split(None, progress=False)
    assert deployment.split_weights is None and deployment.model == v1.id
    for url in deployment.endpoints:
        assert health(url) == {"status": "ok", "model": v1.id}


def test_a_graph_deploys_as_one_service_and_answers_as_the_kernels_graph(models, registry, engine):
    """A graph of stages on Swarm is one service of its image, every replica running every stage: the linear
    and ridge versions registered above, averaged by a function stage (the image shares their lock)."""
    import nbserve

    ws, (v1, v2, _), X = models

    def mean(answers):
        return (answers["linear"] + answers["ridge"]) / 2

    g = nbserve.graph(linear=v1.id, ridge=v2.id, mean=mean, edges={("linear", "ridge"): "mean"})
    mv = ws.register(g, name="averaged", sample=X, progress=False)
    dep = ws.deploy(mv, target="swarm", replicas=2, registry=registry, init_swarm=True, progress=False)
    try:
        assert (dep.model, dep.ready, len(dep.endpoints)) == ("averaged:1", 2, 2)
        mine = {"label": [f"nbserve.model={mv.name}", f"nbserve.home={ws.home}"]}
        assert len(engine.services.list(filters=mine)) == 1
        expected = (v1.load().predict(X[:5]) + v2.load().predict(X[:5])) / 2
        np.testing.assert_array_equal(g(X[:5]), expected)
        for url in dep.endpoints:
            np.testing.assert_array_equal(predictions(url, X), expected)
            with urllib.request.urlopen(url + "/graph", timeout=10) as resp:
                doc = json.loads(resp.read())
            assert [(s["name"], s["model"]) for s in doc["stages"]] == [
                ("linear", "diabetes:1"),
                ("ridge", "diabetes:2"),
                ("mean", "averaged.mean:1"),
            ]
    finally:
        dep.remove(progress=False)


def test_removing_a_deployment_removes_its_service_and_replicas(models, registry, engine, tmp_path):
    ws, (v1, _, _), _ = models
    dep = ws.deploy(v1, target="swarm", replicas=1, name="short-lived", registry=registry, progress=False)
    assert dep.ready == 1
    dep.remove(progress=False)
    assert engine.services.list(filters={"name": service_name("short-lived", ws.home)}) == []
    assert engine.api.containers(all=True, filters={"label": "nbserve.deployment=short-lived"}) == []
    assert [d.name for d in ws.deployments()] == ["diabetes"]
