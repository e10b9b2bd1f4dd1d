"""The REST API of the JupyterLab sidebar, against a real jupyter_server with the extension loaded
(pytest-jupyter's ``jp_fetch``, base URL ``/a%40b/``) and real process-runtime instances."""

import asyncio
import json
import os
import socket
import time

import pytest
import requests
from tornado.web import RequestHandler

import nbserve
from nbserve.jupyter.handlers import API_PREFIX

pytest_plugins = ("pytest_jupyter.jupyter_server",)

VERBS = ("get", "post", "put", "patch", "delete", "head")


@pytest.fixture
def jp_server_config(home, request):
    # `home` first: the server's workspace is the test's registry ($NBSERVE_HOME); a test marked
    # remote_browser is asked for by another host name, as a browser on another machine asks
    config = {"ServerApp": {"jpserver_extensions": {"nbserve": True}}}
    if request.node.get_closest_marker("remote_browser"):
        config["ServerApp"]["allow_remote_access"] = True
    return config


@pytest.fixture
def api(jp_fetch):
    """(status, JSON body) of a call under <base_url>/nbserve/api/, errors included."""

    async def call(method, *parts, body=None, token=True, headers=None, **kwargs):
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        headers = dict(headers or {}, **({} if token else {"Authorization": "token not-the-token"}))
        resp = await jp_fetch(
            *API_PREFIX.split("/"), *parts, method=method, body=body, headers=headers, raise_error=False, **kwargs
        )
        return resp.code, (json.loads(resp.body) if resp.body else None)

    return call


@pytest.fixture
def diabetes_model(workspace, diabetes):
    X, _, lr = diabetes
    return workspace.register(lr, name="diabetes", sample=X[:5], progress=False)


def nbserve_handlers(web_app):
    """(URL pattern, handler class) of every route under /nbserve/ in the server's routing tables."""
    found = []

    def walk(router):
        for rule in getattr(router, "rules", []):
            if hasattr(rule.target, "rules"):
                walk(rule.target)
                continue
            regex = getattr(rule.matcher, "regex", None)
            if regex is not None and "/nbserve/" in regex.pattern:
                found.append((regex.pattern, rule.target))

    walk(web_app.wildcard_router)
    walk(web_app.default_router)
    return found


def is_authenticated(method) -> bool:
    # tornado.web.authenticated wraps with functools.wraps; its wrapper's code is named after it
    return hasattr(method, "__wrapped__") and method.__code__.co_qualname.startswith("authenticated")


def test_every_verb_of_every_route_requires_authentication(jp_web_app):
    handlers = nbserve_handlers(jp_web_app)
    assert len(handlers) >= 7, handlers
    checked, missing = 0, []
    for pattern, cls in handlers:
        assert issubclass(cls, RequestHandler)
        for verb in VERBS:
            method = getattr(cls, verb)
            if method is getattr(RequestHandler, verb):
                continue  # not implemented: tornado answers 405
            checked += 1
            if not is_authenticated(method):
                missing.append(f"{verb.upper()} {pattern} ({cls.__name__})")
    assert checked >= 8
    assert not missing, f"verbs without @tornado.web.authenticated: {missing}"


ROUTES = [
    ("GET", ("overview",)),
    ("GET", ("instances", "x", "monitor")),
    ("GET", ("models",)),
    ("GET", ("models", "diabetes")),
    ("GET", ("instances",)),
    ("POST", ("instances",)),
    ("POST", ("instances", "x", "stop")),
    ("POST", ("instances", "x", "start")),
    ("POST", ("instances", "x", "update-stage")),
    ("DELETE", ("instances", "x")),
    ("GET", ("instances", "x", "logs")),
    ("GET", ("jobs", "x")),
]


@pytest.mark.parametrize("method,parts", ROUTES, ids=[f"{m} {'/'.join(p)}" for m, p in ROUTES])
async def test_without_the_token_every_route_answers_403(api, method, parts):
    status, body = await api(method, *parts, token=False, body={"model": "diabetes"} if method == "POST" else None)
    assert status == 403
    assert body["error"]["type"] == "Forbidden"


async def test_models_registered_after_the_server_started_are_listed(api, workspace, diabetes):
    X, y, lr = diabetes
    status, body = await api("GET", "models")
    assert (status, body) == (200, {"models": []})

    from sklearn.linear_model import LinearRegression

    workspace.register(lr, name="diabetes", sample=X[:5], progress=False)
    workspace.register(LinearRegression().fit(X[:200], y[:200]), name="diabetes", sample=X[:5], progress=False)

    status, body = await api("GET", "models")
    assert status == 200
    [model] = body["models"]
    assert (model["id"], model["versions"], model["methods"]) == ("diabetes:2", [1, 2], ["predict"])
    assert any(r.startswith("scikit-learn==") for r in model["requirements"])

    status, body = await api("GET", "models", "diabetes")
    assert status == 200
    assert [v["id"] for v in body["versions"]] == ["diabetes:1", "diabetes:2"]

    status, body = await api("GET", "models", "diabetes:1")
    assert status == 400 and "models/diabetes" in body["error"]["message"]

    status, body = await api("GET", "models", "nope")
    assert status == 404
    assert body["error"]["type"] == "ModelNotFoundError"
    assert "nope" in body["error"]["message"]


async def test_the_overview_is_one_reading_shared_by_the_sidebars_and_dropped_on_a_change(
    api, jp_web_app, workspace, diabetes, iris
):
    X, _, lr = diabetes
    workspace.register(lr, name="diabetes", sample=X[:5], progress=False)
    workspace.register(iris[2], name="iris", sample=iris[0][:5], progress=False)
    inst = workspace.serve("diabetes", runtime="process", progress=False)
    cache = jp_web_app.settings["nbserve_overview"]
    before = cache.readings
    # five sidebars polling at once: one reading of the workspace
    answers = await asyncio.gather(*(api("GET", "overview") for _ in range(5)))
    assert cache.readings == before + 1
    status, body = answers[0]
    assert status == 200 and all(a == answers[0] for a in answers)
    assert [(m["id"], m["versions"]) for m in body["models"]] == [("diabetes:1", [1]), ("iris:1", [1])]
    assert [(i["id"], i["status"]) for i in body["instances"]] == [(inst.id, "running")]
    assert body["runtimes"]["choices"][0] == "auto"
    assert body["hint"] is None  # asked for by 127.0.0.1: the browser reaches the direct address
    # a stop through the API drops the reading: the next one shows it at once
    assert (await api("POST", "instances", inst.id, "stop"))[0] == 200
    status, body = await api("GET", "overview")
    assert [(i["id"], i["status"]) for i in body["instances"]] == [(inst.id, "stopped")]
    assert cache.readings == before + 2


@pytest.mark.remote_browser
async def test_the_remote_access_hint_is_for_a_browser_on_another_machine(api, workspace, diabetes):
    X, _, lr = diabetes
    inst = workspace.serve(lr, name="diabetes", sample=X[:5], runtime="process", progress=False)
    status, body = await api("GET", "overview")
    assert status == 200 and body["hint"] is None  # from this machine: no hint
    status, body = await api("GET", "overview", headers={"Host": "hub.example.org"})
    assert status == 200 and "jupyter-server-proxy" in body["hint"]
    assert [i["id"] for i in body["instances"]] == [inst.id]  # said once, not per instance


async def test_monitor_answers_for_a_stopped_instance_and_logs_come_as_table_rows(api, workspace, diabetes):
    X, _, lr = diabetes
    inst = workspace.serve(lr, name="diabetes", sample=X, runtime="process", progress=False)
    assert requests.post(inst.url + "/predict", json={"data": X[:3].tolist()}, timeout=10).status_code == 200
    assert requests.post(inst.url + "/predict", json={"data": [[1.0]]}, timeout=10).status_code == 400
    status, body = await api("GET", "instances", inst.id, "monitor")
    assert status == 200 and body["status"] == "running"
    assert body["snapshot"]["methods"]["predict"]["requests"] >= 1 and body["drift"]["available"] is True
    deadline = time.monotonic() + 10
    while True:  # the request log is written in batches, at the latest a second later
        status, body = await api("GET", "instances", inst.id, "logs")
        requests_seen = [e for e in body["entries"] if e["kind"] == "request"]
        if len(requests_seen) >= 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert [(e["status"], e["rows"], e["error"]) for e in requests_seen[:2]] == [(200, 3, False), (400, None, False)]
    assert all(e["request_id"] and e["latency_ms"] >= 0 and e["raw"].startswith("{") for e in requests_seen)
    assert any(e["kind"] == "server" and "starting diabetes" in e["text"] for e in body["entries"])
    inst.stop()
    status, body = await api("GET", "instances", inst.id, "monitor")
    stopped = {
        "id": inst.id,
        "status": "stopped",
        "snapshot": None,
        "drift": None,
        "jobs": None,
        "text_kind": None,
        "stages": None,
    }
    assert (status, body) == (200, stopped)
    status, body = await api("GET", "instances", "nope", "monitor")
    assert status == 404


async def test_a_graphs_monitor_reading_has_its_stages_and_one_stage_updates_in_place(api, workspace):
    import numpy as np

    def double(x):
        return x * 2.0

    def total(x):
        return x.sum(axis=1)

    def triple(x):
        return x * 3.0

    X = np.arange(6, dtype="float64").reshape(2, 3)
    inst = workspace.serve(nbserve.chain(double, total), name="arith", sample=X, runtime="process", progress=False)
    assert requests.post(inst.url + "/predict", json={"data": X.tolist()}, timeout=10).status_code == 200
    status, body = await api("GET", "instances", inst.id, "monitor")
    assert status == 200 and body["snapshot"]["methods"]["predict"]["requests"] >= 1
    stages = body["stages"]
    assert [(s["stage"], s["model"], s["inputs"]) for s in stages] == [
        ("double", "arith.double:1", []),
        ("total", "arith.total:1", ["double"]),
    ]
    assert all(s["calls"] >= 1 and s["errors"] == 0 and s["p50_ms"] > 0 for s in stages)
    status, body = await api("POST", "instances", inst.id, "update-stage", body={"stage": "double"})
    assert status == 400 and "NAME:VERSION" in body["error"]["message"]
    workspace.register(triple, name="triple", sample=X, progress=False)
    status, body = await api(
        "POST", "instances", inst.id, "update-stage", body={"stage": "double", "model": "triple:1"}
    )
    assert status == 200 and body["instance"]["model"] == "arith:2", body
    assert requests.post(inst.url + "/predict", json={"data": X.tolist()}, timeout=10).json()["data"] == [9.0, 36.0]
    status, body = await api("GET", "instances", inst.id, "monitor")
    assert [s["model"] for s in body["stages"]] == ["triple:1", "arith.total:1"]
    status, body = await api(
        "POST", "instances", inst.id, "update-stage", body={"stage": "nowhere", "model": "triple:1"}
    )
    assert status == 400 and "no stage 'nowhere'" in body["error"]["message"]


async def wait_for_job(api, job_id, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        status, body = await api("GET", "jobs", job_id)
        assert status == 200, body
        job = body["job"]
        if job["state"] in ("running", "failed"):
            return job
        assert job["state"] in ("building", "starting"), job
        assert time.monotonic() < deadline, f"job still {job['state']} after {timeout} s: {job}"
        await asyncio.sleep(0.2)


async def test_start_predict_stop_start_remove_through_the_api(api, diabetes_model, diabetes):
    X, _, lr = diabetes
    # with batching, max_latency_ms=0 (no wait for more requests) kept as a setting, not taken for "none"
    start = {"model": "diabetes", "runtime": "process", "batch": True, "max_latency_ms": 0}
    status, body = await api("POST", "instances", body=start)
    assert status == 202, body
    job = body["job"]
    assert (job["model"], job["runtime"], job["state"]) == ("diabetes:1", "process", "starting")

    # while the start is in flight (or just after), the listing shows the job or the instance, once
    status, body = await api("GET", "instances")
    assert status == 200
    assert len(body["instances"]) == 1

    job = await wait_for_job(api, job["id"])
    assert job["state"] == "running", job
    inst = job["instance"]
    assert inst["status"] == "running" and inst["runtime"] == "process"
    assert inst["batching"] == {"max_batch": 64, "max_latency_ms": 0.0}
    report = requests.get(inst["url"] + "/batching", timeout=10).json()
    assert (report["max_batch"], report["max_latency_ms"]) == (64, 0.0)
    assert nbserve.Client(inst["url"]).predict(X[:5]).tolist() == pytest.approx(lr.predict(X[:5]).tolist())

    status, body = await api("GET", "instances")
    assert [(i["id"], i["status"], i["url"]) for i in body["instances"]] == [(inst["id"], "running", inst["url"])]
    assert "job" not in body["instances"][0]

    status, body = await api("GET", "instances", inst["id"], "logs", params={"tail": 50})
    assert status == 200
    assert "starting diabetes:1" in body["logs"]

    status, body = await api("POST", "instances", inst["id"], "stop")
    assert (status, body["instance"]["status"]) == (200, "stopped")
    status, body = await api("POST", "instances", inst["id"], "start")
    assert (status, body["instance"]["status"]) == (200, "running")
    assert nbserve.Client(body["instance"]["url"]).predict(X[:2]).shape == (2,)

    status, body = await api("DELETE", "instances", inst["id"])
    assert (status, body) == (200, {"removed": inst["id"]})
    status, body = await api("GET", "instances")
    assert body == {"instances": []}


async def test_unknown_instance_or_job_is_404(api):
    for method, parts in [
        ("POST", ("instances", "nope", "stop")),
        ("POST", ("instances", "nope", "start")),
        ("DELETE", ("instances", "nope")),
        ("GET", ("instances", "nope", "logs")),
    ]:
        status, body = await api(method, *parts)
        assert status == 404, (method, parts, body)
        assert body["error"]["type"] == "InstanceNotFoundError"
        assert "nope" in body["error"]["message"]
    status, body = await api("GET", "jobs", "job-nope")
    assert status == 404 and "job-nope" in body["error"]["message"]


@pytest.mark.parametrize(
    "payload,kind,words",
    [
        ("{not json", "BadRequest", "not valid JSON"),
        ("[1, 2]", "BadRequest", "JSON object"),
        ({}, "BadRequest", '"model" is required'),
        ({"model": "diabetes", "gpu": True}, "BadRequest", "unknown field(s) gpu"),
        ({"model": "diabetes", "runtime": "kubernetes"}, "BadRequest", "runtime"),
        ({"model": "diabetes", "port": "9000"}, "BadRequest", '"port" must be an integer'),
        ({"model": "diabetes", "version": "1"}, "BadRequest", '"version" must be an integer'),
        ({"model": "diabetes", "batch": "on"}, "BadRequest", '"batch" must be true, false or null'),
        ({"model": "diabetes", "max_batch": 8}, "NbserveError", "apply with batch=True"),
        ({"model": "diabetes", "batch": True, "max_latency_ms": -1}, "NbserveError", "max_latency_ms must be"),
        ({"model": "diabetes", "batch": True, "max_batch": 0}, "NbserveError", "max_batch must be"),
    ],
)
async def test_bad_start_requests_are_400_and_say_what_is_expected(api, payload, kind, words):
    status, body = await api("POST", "instances", body=payload)
    assert status == 400, body
    assert body["error"]["type"] == kind
    assert words in body["error"]["message"]


async def test_start_refusals_have_fitting_statuses(api, diabetes_model, monkeypatch):
    status, body = await api("POST", "instances", body={"model": "nope"})
    assert (status, body["error"]["type"]) == (404, "ModelNotFoundError")
    status, body = await api("POST", "instances", body={"model": "diabetes", "version": 7})
    assert (status, body["error"]["type"]) == (404, "ModelNotFoundError")
    # numbers no registry can hold, and ports no TCP has: the client's 400 saying the range (were a 500, a 409)
    status, body = await api("POST", "instances", body={"model": "diabetes", "version": 10**20})
    assert status == 400 and "out of range: versions count up from 1" in body["error"]["message"], body
    for port in (0, -1, 70000):
        status, body = await api("POST", "instances", body={"model": "diabetes", "runtime": "process", "port": port})
        assert status == 400 and f"port {port} is out of range" in body["error"]["message"], body
        assert "from 1 to 65535" in body["error"]["message"]

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, body = await api("POST", "instances", body={"model": "diabetes", "runtime": "process", "port": port})
    assert (status, body["error"]["type"]) == (409, "PortInUseError")
    assert str(port) in body["error"]["message"]

    # an engine that does not answer, for real: point the Docker client at a socket nobody serves
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    status, body = await api("POST", "instances", body={"model": "diabetes", "runtime": "docker"})
    assert (status, body["error"]["type"]) == (503, "DockerUnavailableError")
    assert "process runtime" in body["error"]["message"]

    status, body = await api("GET", "instances")
    assert body == {"instances": []}  # nothing was started by a refused request


async def test_a_start_that_fails_later_is_a_failed_job_until_dismissed(api, workspace, diabetes_model):
    # A damaged artifact: the served side verifies the pickle's hash and refuses to start.
    pkl = diabetes_model.artifact_dir / "model.pkl"
    pkl.chmod(0o644)
    pkl.write_bytes(pkl.read_bytes() + b"tampered")

    status, body = await api("POST", "instances", body={"model": "diabetes", "runtime": "process"})
    assert status == 202
    job = await wait_for_job(api, body["job"]["id"])
    assert job["state"] == "failed"
    assert job["error"]["type"] == "InstanceStartError"
    assert "sha256" in job["error"]["message"]  # the log tail says why

    status, body = await api("GET", "instances")
    assert [(i["id"], i["status"], i.get("job")) for i in body["instances"]] == [(job["id"], "failed", True)]
    status, body = await api("GET", "instances", job["id"], "logs")
    assert "sha256" in body["logs"]

    status, body = await api("DELETE", "instances", job["id"])
    assert status == 200
    status, body = await api("GET", "instances")
    assert body == {"instances": []}


@pytest.fixture
def docker_base_image(request, monkeypatch, home):
    """The base image's name in the environment; the test's containers go with its home (the ``home``
    fixture), its images with the session's (tests/conftest.py), so a dependency image it built stays for
    the other tests of the same lock."""
    from nbserve_testing import base_image, need_docker

    need_docker().close()
    base = base_image()
    monkeypatch.setenv("NBSERVE_BASE_IMAGE", base)
    return base


@pytest.mark.docker
async def test_a_docker_start_runs_off_the_event_loop_and_reports_its_progress(
    api, workspace, diabetes, docker_base_image
):
    from sklearn.linear_model import LinearRegression

    X, y, _ = diabetes
    # a model no other test has built an image for (its own artifact), so this start has a build phase
    n = 300 + int.from_bytes(os.urandom(2), "big") % 100
    lr = LinearRegression().fit(X[:n], y[:n])
    workspace.register(lr, name="diabetes", sample=X[:5], progress=False)
    status, body = await api("POST", "instances", body={"model": "diabetes", "runtime": "docker"})
    assert status == 202, body
    job_id = body["job"]["id"]

    # While the image builds and the container starts, the Jupyter server keeps answering at once.
    states, slowest = [], 0.0
    deadline = time.monotonic() + 600
    while True:
        t0 = time.monotonic()
        status, body = await api("GET", "instances")
        slowest = max(slowest, time.monotonic() - t0)
        [entry] = [e for e in body["instances"] if e["id"] == job_id] or [None]
        if entry is None:
            break  # finished: the listing shows the instance instead of the job
        assert entry["status"] in ("building", "starting"), entry
        if not states or states[-1] != entry["status"]:
            states.append(entry["status"])
        assert time.monotonic() < deadline, entry
        await asyncio.sleep(0.25)
    assert slowest < 3.0, f"GET instances took {slowest:.1f} s during a docker start"
    assert states in (["building", "starting"], ["starting", "building", "starting"]), states

    status, body = await api("GET", "jobs", job_id)
    job = body["job"]
    assert job["state"] == "running", job
    inst = job["instance"]
    assert (inst["runtime"], inst["status"]) == ("docker", "running")
    assert nbserve.Client(inst["url"]).predict(X[:5]).tolist() == pytest.approx(lr.predict(X[:5]).tolist())
    status, body = await api("GET", "instances", job_id, "logs")
    assert "on the docker runtime" in body["logs"]

    status, body = await api("POST", "instances", inst["id"], "stop")
    assert (status, body["instance"]["status"]) == (200, "stopped")
    status, body = await api("DELETE", "instances", inst["id"])
    assert status == 200


def test_a_start_whose_instance_is_already_listed_is_listed_once():
    from nbserve.jupyter.handlers import _unlisted
    from nbserve.jupyter.jobs import Job

    older = {"id": "diabetes-aaaaaa", "model": "diabetes:1", "created": 100.0}
    job = Job(id="job-1", model="diabetes:1", runtime="process", port=None, created=200.0)
    other = Job(id="job-2", model="iris:1", runtime="process", port=None, created=200.0)
    assert _unlisted([job, other], [older]) == [job, other]  # its instance is not in the registry yet
    mine = {"id": "diabetes-bbbbbb", "model": "diabetes:1", "created": 201.0}
    # recorded a moment before its job says "running": listed once, as the instance
    assert _unlisted([job, other], [older, mine]) == [other]
    job.state, job.error = "failed", {"type": "X", "message": "m", "status": 500}
    assert _unlisted([job], [older, mine]) == [job]  # a failure is shown until dismissed
