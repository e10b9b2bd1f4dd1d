"""The notebook loop on the Docker runtime (issue 22): a re-serve whose requirements lock is the container's is
copied into the running container and swapped in by its master (no image built, the same container, no request
dropped), as are a split, a shadow's promotion and a rollback; a version with another lock gets a new image,
proven on a port of its own before the old container stops, and the time the URL did not answer is measured.
A client loop of 500+ requests runs through every change; two families. The times are printed (pytest -s)."""

import json
import os
import time

import pytest
import requests
from loop_families import FAMILIES, WithPandas
from nbserve_testing import base_image, need_docker
from request_loop import RequestLoop
from test_loop import through

import nbserve

pytestmark = pytest.mark.docker


def report(what, **numbers):
    print(f"\n[loop-report] docker {what}: " + json.dumps(numbers))


@pytest.fixture
def docker_home(home, monkeypatch):
    client = need_docker()
    monkeypatch.setenv("NBSERVE_BASE_IMAGE", base_image())
    yield client
    client.close()


def container_of(inst):
    return inst._workspace.registry.get_instance(inst.id).handle["container"]


def images_of(client, name):
    return {
        i.id
        for i in client.images.list(
            filters={"label": [f"nbserve.model={name}", f"nbserve.home={os.environ['NBSERVE_HOME']}"]}
        )
    }


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_container_loads_new_versions_in_place_through_the_loop(docker_home, name):
    f = FAMILIES[name]()
    inst = nbserve.serve(f.v1, name=f.name, sample=f.sample, runtime="docker", threads=1, progress=False)
    url, port, container = inst.url, inst.port, container_of(inst)
    images = images_of(docker_home, f.name)
    keys = {f"{f.name}:1": f.expected(f.v1), f"{f.name}:2": f.expected(f.v2)}
    said = []
    with RequestLoop(lambda: [url], f.body(), path=f.path, key=f.key) as loop:
        time.sleep(0.5)
        again = through(
            loop,
            f"{f.name}: re-serve (in place)",
            lambda: nbserve.serve(f.v2, name=f.name, sample=f.sample, progress=said.append),
            keys,
        )
        assert (again.id, again.url, again.model) == (inst.id, url, f"{f.name}:2")
        assert any("loading it in place, no rebuild" in line for line in said), said
        assert container_of(again) == container and images_of(docker_home, f.name) == images  # no image built
        through(loop, f"{f.name}: split 90/10", lambda: inst.split({f"{f.name}:1": 90, f"{f.name}:2": 10}), keys)
        assert set(loop.by_version) == set(keys)
        candidate = inst.shadow(f"{f.name}:2", progress=False)  # a container beside, reached on Docker's bridge
        assert candidate.runtime == "docker"
        for _ in range(10):
            requests.post(url + f.path, json=f.body(), timeout=30)
        deadline = time.monotonic() + 30
        while inst.comparison(summary=True)["requests"] < 10 and time.monotonic() < deadline:
            time.sleep(0.3)
        summary = inst.comparison(summary=True)
        assert summary["requests"] >= 10 and summary["candidate"] == f"{f.name}:2"
        through(loop, f"{f.name}: promote", lambda: inst.promote(progress=False), keys)
        assert inst.model == f"{f.name}:2" and candidate.id not in {i.id for i in nbserve.instances()}
        through(loop, f"{f.name}: rollback", lambda: inst.rollback(progress=False), keys)
    assert (inst.model, inst.url, inst.port) == (f"{f.name}:1", url, port) and container_of(inst) == container
    # a restart by the restart policy serves what the master served last, not what the image began with
    inst.update(f"{f.name}:2", progress=False)
    docker_home.containers.get(container).restart(timeout=10)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=2).json()["model"] == f"{f.name}:2":
                break
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.2)
    assert requests.get(url + "/health", timeout=5).json()["model"] == f"{f.name}:2"


def test_another_lock_takes_over_the_port_after_its_container_answers(docker_home):
    f = FAMILIES["diabetes"]()
    inst = nbserve.serve(f.v1, name="diabetes", sample=f.sample, runtime="docker", progress=False)
    url, old = inst.url, container_of(inst)
    other = WithPandas(f.v2)  # the same answers as v2, with pandas in its lock
    said = []
    with RequestLoop(lambda: [url], f.body(), path=f.path, key=f.key, timeout=30) as loop:
        time.sleep(0.5)
        started = time.monotonic()
        again = nbserve.serve(other, name="diabetes", sample=f.sample, progress=lambda m, fraction=None: said.append(m))
        took = time.monotonic() - started
        loop.run_for_at_least(loop.seconds + 2)
    line = next((s for s in said if "the URL was unavailable for" in s), "")
    gap = float(line.split("unavailable for ")[1].split(" s")[0]) if line else None
    # while the port changes containers a connection is refused, reset or closed unanswered: requests' ConnectionError
    unanswered = [f for f in loop.failures if ": ConnectionError: " in f]
    report(
        "another lock: take-over",
        update_seconds=round(took, 1),
        unavailable_seconds=gap,
        requests=loop.requests,
        failures=len(loop.failures),
        refused_or_closed=len(unanswered),
    )
    assert again.model == "diabetes:2" and again.url == url and container_of(again) != old
    assert gap is not None and gap < 30, said
    assert len(unanswered) == len(loop.failures), [f for f in loop.failures if f not in unanswered][
        :5
    ]  # the URL was down a moment: never a wrong answer
    assert set(loop.by_version) <= {"diabetes:1", "diabetes:2"} and loop.by_version.get("diabetes:2")
    import docker.errors

    with pytest.raises(docker.errors.NotFound):
        docker_home.containers.get(old)  # the old container is gone
