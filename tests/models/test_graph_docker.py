"""A graph of stages served as one container (nbserve/graphs.py, server/graph.py, runtimes/docker.py).

The chain of test_graph.py (cleaning function -> HistGradientBoosting pipeline -> threshold) and the fan-out
ensemble (linear + xgboost, averaged) in images of their own: the answers equal the kernel's graph evaluated
in process. One stage is updated under a request loop of at least 500 requests: the container, which has the
packages, swaps the new stage in without a failed request; the image of the next graph version shares the
dependency layers and the unchanged stages' layers with the first; and the container, killed afterwards,
comes back serving the updated graph.
"""

import os
import signal
import time

import numpy as np
import pytest
import requests
from frames import mixed_pipeline, rentals
from nbserve_testing import base_image, need_docker
from request_loop import RequestLoop
from test_graph import clean, mean, stricter, threshold

import nbserve
from nbserve.server.schema import frame_split

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]  # two images, one rebuild
TIMEOUT = 60


@pytest.fixture(scope="module")
def docker_ws(module_workspace):
    client = need_docker()
    os.environ.setdefault("NBSERVE_BASE_IMAGE", base_image())
    yield module_workspace, client
    client.close()


@pytest.fixture(scope="module")
def chain(docker_ws):
    ws, _ = docker_ws
    frame, target = rentals()
    pipe = mixed_pipeline(frame, target)
    g = nbserve.chain(clean, (pipe, "predict_proba"), threshold)
    inst = ws.serve(g, name="rentals", sample=frame, runtime="docker", progress=False)
    return g, inst, pipe, frame


def test_the_chain_in_a_container_answers_as_the_kernels_graph(chain):
    g, inst, pipe, frame = chain
    rows = frame.iloc[:60]
    expected = threshold(pipe.predict_proba(clean(rows)))
    got = inst.client(timeout=TIMEOUT).predict(rows)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(g(rows), expected)
    doc = requests.get(inst.url + "/graph", timeout=TIMEOUT).json()
    assert [s["model"] for s in doc["stages"]] == ["rentals.clean:1", "rentals.pipeline:1", "rentals.threshold:1"]
    alone = requests.post(
        inst.url + "/stages/pipeline/predict_proba", json={"data": frame_split(clean(rows))}, timeout=TIMEOUT
    )
    np.testing.assert_array_equal(np.array(alone.json()["data"]), pipe.predict_proba(clean(rows)))
    closed = frame.iloc[:2].copy()
    closed["station"] = "closed"
    failed = requests.post(inst.url + "/predict", json={"data": frame_split(closed)}, timeout=TIMEOUT)
    assert failed.status_code == 500 and failed.json()["error"]["message"].startswith(
        "stage 'clean' (rentals.clean:1) raised ValueError"
    )
    bad = requests.post(inst.url + "/predict", json={"data": [[1, 2]]}, timeout=TIMEOUT)
    assert bad.status_code == 400


def test_the_ensemble_in_a_container_answers_as_the_kernels_graph(docker_ws, diabetes):
    xgboost = pytest.importorskip("xgboost")
    from sklearn.linear_model import LinearRegression

    ws, _ = docker_ws
    X, y, _ = diabetes
    lin = LinearRegression().fit(X, y)
    boosted = xgboost.XGBRegressor(n_estimators=20, max_depth=3).fit(X, y)
    g = nbserve.graph(linear=lin, boosted=boosted, mean=mean, edges={("linear", "boosted"): "mean"})
    inst = ws.serve(g, name="diabetes", sample=X, runtime="docker", progress=False)
    try:
        expected = (lin.predict(X[:50]) + boosted.predict(X[:50])) / 2
        got = inst.client(timeout=TIMEOUT).predict(X[:50])
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(g(X[:50]), expected)
    finally:
        inst.remove()


def artifact_layers(client, image_id):
    """The image's artifact layers (its top filesystem layers), as (the COPY that made it, the layer's content
    digest). Content, not the build cache's ids: a COPY of the same files is the same layer to a registry,
    whatever was built below it (and the engine is shared: another build may retag the dependency image)."""
    image = client.images.get(image_id)
    found = []
    for entry in image.history():  # newest first: the labels and environment (no layer), then the artifacts
        made = entry["CreatedBy"]
        if " COPY " in made and " in /opt/nbserve/artifacts/" in made:
            found.append(made)
        elif found or " COPY " in made or "#(nop)" not in made:
            break
    digests = image.attrs["RootFS"]["Layers"][-len(found) :]
    return list(zip(reversed(found), digests))


def test_updating_one_stage_drops_no_request_and_its_image_shares_the_other_layers(chain, docker_ws):
    _, inst, pipe, frame = chain
    ws, client = docker_ws
    proba = pipe.predict_proba(clean(frame))[:, 1]
    row = int(np.flatnonzero((proba > 0.5) & (proba < 0.9))[0])
    before = ws.get_model(inst.model)
    first_image = inst._row.handle["image"]
    url = inst.url
    with RequestLoop(lambda: [url], {"data": frame_split(frame.iloc[[row]])}, timeout=TIMEOUT) as loop:
        while loop.requests < 100:
            time.sleep(0.05)
        started = time.monotonic()
        said = []
        inst.update_stage("threshold", stricter, progress=lambda m, *a: said.append(m))
        took = time.monotonic() - started
        while loop.requests < 500 or loop.answers.get(0.0, 0) < 50:
            assert loop.seconds < 900, loop.summary()
            time.sleep(0.05)
    print(f"\n[graph-report] docker update_stage: {took:.1f} s; {loop.summary()}; answers {loop.answers}")
    assert not loop.failures, loop.summary()
    assert loop.requests >= 500 and set(loop.answers) == {1.0, 0.0}
    after = ws.get_model(inst.model)
    assert inst.url == url and inst.status == "running" and after.id == "rentals:2"
    assert any("loading it in place, no rebuild" in m for m in said), said  # the container has its packages
    assert after.stages == {**before.stages, "threshold": "rentals.threshold:2"}
    assert [v.version for v in ws.versions("rentals.clean")] == [1]
    assert [v.version for v in ws.versions("rentals.pipeline")] == [1]
    rows = frame.iloc[:30]
    np.testing.assert_array_equal(inst.client().predict(rows), stricter(pipe.predict_proba(clean(rows))))

    # the image of the new graph version (a restart, a push, a deployment runs it): the dependency layers and
    # the unchanged stages' layers are the previous image's, only the new stage's and the graph's are built
    said = []
    started = time.monotonic()
    image = ws.build(after, progress=lambda m, *a: said.append(m))
    print(f"[graph-report] docker image of rentals:2 after one stage changed: {time.monotonic() - started:.1f} s")
    assert any(m.startswith("dependency layers for lock") and m.endswith("exist: reused") for m in said), said
    old_layers, new_layers = artifact_layers(client, first_image), artifact_layers(client, image.id)
    shas = {name: ws.get_model(ref).sha256 for name, ref in after.stages.items()}
    for name in ("clean", "pipeline"):
        old = [lid for made, lid in old_layers if shas[name] in made]
        new = [lid for made, lid in new_layers if shas[name] in made]
        assert old and old == new, (name, old, new)
    assert not any(shas["threshold"] in made for made, _ in old_layers)
    assert any(shas["threshold"] in made for made, _ in new_layers)

    # a crash after the update: the restarted container serves the updated graph, not its image's first one
    container = client.containers.get(inst._row.handle["container"])
    os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)
    deadline = time.monotonic() + 90
    while True:
        container.reload()
        try:
            health = requests.get(inst.reload().url + "/health", timeout=5).json()
        except (requests.RequestException, ValueError):
            health = {}
        if container.attrs["RestartCount"] >= 1 and health.get("model"):
            break
        assert time.monotonic() < deadline, container.logs(tail=30)
        time.sleep(0.5)
    assert health["model"] == "rentals:2"
    np.testing.assert_array_equal(inst.client().predict(rows), stricter(pipe.predict_proba(clean(rows))))
