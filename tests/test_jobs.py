"""Jobs for long calls: ``POST /<method>?async=1`` (or ``Prefer: respond-async``) answers 202 at once; the call
runs on the server's job runner, and ``GET /jobs/<id>`` tells its status, progress and result.

On two model families the results equal the kernel's answers; a call longer than the request deadline runs
to completion as a job (the instance's deadline is 1 s; the job runs ``LONG_JOB_SECONDS``, 3 s in CI, and
``NBSERVE_LONG_JOB_SECONDS=60`` runs it for a minute: the same code path, only longer); a 60-second job is
cancelled within a second; jobs wait through a worker replacement (a killed HTTP worker; a killed job runner,
which fails only the job it ran); a running job when its instance stops is failed as interrupted and queued
jobs run when it starts again; the queue is bounded and results are kept for the retention. On the process
runtime and on Docker.
"""

from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

import numpy as np
import pytest
import requests
from long_calls import simulate
from nbserve_testing import RUNTIMES, docker_workspace, frames

from nbserve.errors import ServerError
from nbserve.server import control

TIMEOUT = 30
LONG_JOB_SECONDS = float(os.environ.get("NBSERVE_LONG_JOB_SECONDS", "3"))


def fails(params):
    raise ValueError("no answer for " + str(params))


@pytest.fixture(scope="module")
def families(module_workspace, diabetes):
    X, _, lr = diabetes
    f = frames()
    frame, target = f.rentals()
    pipeline = f.mixed_pipeline(frame, target)
    linear = module_workspace.serve(lr, name="diabetes", sample=X, runtime="process", progress=False)
    boosted = module_workspace.serve(pipeline, name="rentals", sample=frame, runtime="process", progress=False)
    return SimpleNamespace(linear=linear, boosted=boosted, X=X, lr=lr, frame=frame, pipeline=pipeline)


@pytest.fixture(scope="module")
def process(module_workspace):
    inst = module_workspace.serve(simulate, runtime="process", timeout=1, progress=False)
    return SimpleNamespace(runtime="process", sim=inst, ws=module_workspace)


@pytest.fixture(scope="module")
def docker(tmp_path_factory):
    for ws in docker_workspace(tmp_path_factory, "jobs-docker"):
        yield SimpleNamespace(runtime="docker", sim=ws.serve(simulate, runtime="docker", timeout=1, progress=False))


@pytest.fixture(params=RUNTIMES)
def served(request):
    return request.getfixturevalue(request.param)


def wait_for(predicate, timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(every)


def status(inst) -> dict:
    h = inst._row.handle  # the process runtime's server: its control socket names the workers
    return control.Controller(control.address(h["control"])).call("status", timeout=10)


# -- results equal the kernel's ----------------------------------------------------------------------------


def test_jobs_answer_as_calls_do_on_two_families(families):
    X, lr = families.X, families.lr
    job = families.linear.client(timeout=TIMEOUT).submit("predict", X[:50])
    result = job.result(timeout=TIMEOUT)
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result, lr.predict(X[:50]))
    assert job.done() and job.status == "succeeded" and not job.cancelled()
    rows = families.frame.iloc[:40]
    job = families.boosted.client(timeout=TIMEOUT).submit("predict_proba", rows)
    np.testing.assert_array_equal(job.result(timeout=TIMEOUT), families.pipeline.predict_proba(rows))
    # the HTTP contract: 202 at once, the job's URL in Location, the status and result at that URL
    body = {"data": X[:3].tolist()}
    resp = requests.post(families.linear.url + "/predict", json=body, headers={"Prefer": "respond-async"}, timeout=10)
    assert resp.status_code == 202 and resp.headers["Preference-Applied"] == "respond-async"
    doc = resp.json()
    assert doc["status"] == "queued" and resp.headers["Location"] == doc["url"] == f"/jobs/{doc['id']}"
    found = wait_for(
        lambda: (d := requests.get(families.linear.url + doc["url"], timeout=10).json())["status"] == "succeeded" and d,
        TIMEOUT,
        "the job to succeed",
    )
    np.testing.assert_array_equal(found["result"]["data"], lr.predict(X[:3]))
    listed = requests.get(families.linear.url + "/jobs", timeout=10).json()
    assert doc["id"] in [j["id"] for j in listed["jobs"]] and listed["limits"]["queue"] == 100


def test_a_bad_input_is_refused_at_once_and_a_failing_model_fails_its_job(families, module_workspace):
    resp = requests.post(families.linear.url + "/predict?async=1", json={"data": [[1.0, 2.0]]}, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "InvalidInput"  # no job for a bad input
    good = {"data": [[0.0] * 10]}
    resp = requests.post(families.linear.url + "/predict?async=yes", json=good, timeout=10)
    assert resp.status_code == 400 and "async must be one of 1, true, 0, false" in resp.json()["error"]["message"]
    resp = requests.post(families.linear.url + "/predict?async=0", json=good, timeout=10)
    assert resp.status_code == 200 and len(resp.json()["data"]) == 1  # answered in the request
    inst = module_workspace.serve(fails, runtime="process", progress=False)
    job = inst.client(timeout=TIMEOUT).submit("fails", {"x": 1})
    with pytest.raises(ServerError, match="ValueError: no answer for"):
        job.result(timeout=TIMEOUT)
    assert job.status == "failed" and job.doc["error"]["type"] == "ModelError"


# -- long calls -------------------------------------------------------------------------------------------------


def test_a_call_longer_than_the_request_deadline_runs_to_completion_as_a_job(served):
    client = served.sim.client(timeout=TIMEOUT)
    with pytest.raises(ServerError, match="504"):  # the instance's deadline is 1 s
        client.simulate({"seconds": 1.5, "steps": 3})
    steps = max(3, int(LONG_JOB_SECONDS * 2))
    job = client.submit("simulate", {"seconds": LONG_JOB_SECONDS, "steps": steps})
    wait_for(lambda: (job.progress or {}).get("fraction"), TIMEOUT, "progress")
    assert job.running() and 0 < job.progress["fraction"] < 1
    assert job.result(timeout=LONG_JOB_SECONDS + TIMEOUT) == {"steps": steps, "seconds": LONG_JOB_SECONDS}
    assert job.progress == {"fraction": 1.0, "message": f"step {steps} of {steps}"}
    assert job.doc["finished"] - job.doc["started"] >= LONG_JOB_SECONDS


def test_a_sixty_second_job_is_cancelled_within_a_second(served, tmp_path):
    log = tmp_path / "steps.log"
    params = {"seconds": 60, "steps": 600}
    if served.runtime == "process":
        params["log"] = str(log)
    client = served.sim.client(timeout=TIMEOUT)
    job = client.submit("simulate", params)
    wait_for(lambda: (job.progress or {}).get("fraction", 0) > 0.005, TIMEOUT, "the job to run")
    asked = time.monotonic()
    assert job.cancel()
    wait_for(lambda: job.cancelled(), 5, "the cancel")
    assert time.monotonic() - asked < 1.0
    assert job.doc["error"]["type"] == "Cancelled" and job.doc["progress"]["fraction"] < 0.2
    with pytest.raises(Exception, match="cancelled"):
        job.result(timeout=1)
    if served.runtime == "process":
        made = log.read_text()
        time.sleep(0.5)
        assert log.read_text() == made  # the call itself was stopped, not only the job's record
    # a cancelled queued job never runs; the next one runs on a fresh runner
    first = client.submit("simulate", {"seconds": 0.6, "steps": 3})
    queued = client.submit("simulate", {"seconds": 0.3, "steps": 3})
    assert queued.cancel() and queued.cancelled()
    assert first.result(timeout=TIMEOUT) == {"steps": 3, "seconds": 0.6}
    assert queued.status == "cancelled" and "started" not in queued.doc


def test_a_job_stuck_in_native_code_is_cancelled_and_the_next_runs(process):
    client = process.sim.client(timeout=TIMEOUT)
    stuck = client.submit("simulate", {"seconds": 0.2, "steps": 2, "stuck": True})
    after = client.submit("simulate", {"seconds": 0.1, "steps": 1})
    wait_for(lambda: (stuck.progress or {}).get("fraction"), TIMEOUT, "the job to run")
    time.sleep(0.3)  # past its first step: in the mutex now
    assert stuck.cancel()
    wait_for(lambda: stuck.cancelled(), 10, "the cancel of a call stuck in native code")
    assert after.result(timeout=TIMEOUT) == {"steps": 1, "seconds": 0.1}  # on a new runner


# -- jobs survive what happens to workers --------------------------------------------------------------------


def test_queued_jobs_wait_through_worker_replacements(process):
    inst = process.sim
    client = inst.client(timeout=TIMEOUT)
    running = client.submit("simulate", {"seconds": 1.5, "steps": 5})
    queued = [client.submit("simulate", {"seconds": 0.1, "steps": 1}) for _ in range(3)]
    wait_for(lambda: running.running(), TIMEOUT, "the first job to run")
    http_worker = status(inst)["workers"][0]
    os.kill(http_worker, signal.SIGKILL)  # the worker that took the jobs in: gunicorn replaces it
    assert running.result(timeout=TIMEOUT) == {"steps": 5, "seconds": 1.5}
    assert [j.result(timeout=TIMEOUT) for j in queued] == [{"steps": 1, "seconds": 0.1}] * 3
    assert http_worker not in status(inst)["workers"]
    # the job runner killed mid-call: that job fails as interrupted, the queued ones run on a new runner
    doomed = client.submit("simulate", {"seconds": 30, "steps": 300})
    after = [client.submit("simulate", {"seconds": 0.1, "steps": 1}) for _ in range(2)]
    wait_for(lambda: doomed.running(), TIMEOUT, "the long job to run")
    runner = status(inst)["job_runners"][0]
    os.kill(runner, signal.SIGKILL)
    with pytest.raises(ServerError, match="Interrupted"):
        doomed.result(timeout=TIMEOUT)
    assert [j.result(timeout=TIMEOUT) for j in after] == [{"steps": 1, "seconds": 0.1}] * 2
    assert runner not in status(inst)["job_runners"]


def test_a_running_job_fails_as_interrupted_when_its_instance_stops_and_queued_ones_run_after(served):
    inst = served.sim
    client = inst.client(timeout=TIMEOUT)
    running = client.submit("simulate", {"seconds": 60, "steps": 600})
    queued = client.submit("simulate", {"seconds": 0.2, "steps": 2})
    wait_for(lambda: running.running(), TIMEOUT, "the long job to run")
    inst.stop()
    inst.start()
    client = inst.client(timeout=TIMEOUT)  # the instance's URL may have changed (Docker publishes a port again)
    assert client.job(queued.id).result(timeout=TIMEOUT) == {"steps": 2, "seconds": 0.2}
    stopped = client.job(running.id)
    assert stopped.status == "failed"
    assert stopped.doc["error"]["type"] == "Interrupted" and "stopped" in stopped.doc["error"]["message"]


# -- limits -----------------------------------------------------------------------------------------------------


def test_the_queue_is_bounded_and_finished_jobs_are_kept_for_the_retention(module_workspace):
    inst = module_workspace.serve(
        simulate, name="bounded", runtime="process", job_queue=2, job_retention=2, progress=False
    )
    client = inst.client(timeout=TIMEOUT)
    running = client.submit("simulate", {"seconds": 30, "steps": 300})
    wait_for(lambda: running.running(), TIMEOUT, "the job to run")
    waiting = [client.submit("simulate", {"seconds": 0.1, "steps": 1}) for _ in range(2)]
    resp = requests.post(inst.url + "/simulate?async=1", json={"data": {"seconds": 0.1}}, timeout=10)
    assert resp.status_code == 503 and resp.json()["error"]["type"] == "QueueFull"
    assert resp.headers["Retry-After"] and "limit is 2" in resp.json()["error"]["message"]
    assert running.cancel()
    assert [j.result(timeout=TIMEOUT) for j in waiting] == [{"steps": 1, "seconds": 0.1}] * 2
    kept = client.jobs()
    assert {j["id"] for j in kept} >= {running.id, *(j.id for j in waiting)}
    time.sleep(2.5)  # past the retention: forgotten
    assert client.jobs() == []
    resp = requests.get(inst.url + f"/jobs/{running.id}", timeout=10)
    assert resp.status_code == 404 and "kept 2 s" in resp.json()["error"]["message"]


def test_jobs_need_the_models_token_and_a_server_without_jobs_says_so(module_workspace):
    inst = module_workspace.serve(
        simulate, name="no_jobs", runtime="process", auth_token=True, jobs=False, progress=False
    )
    resp = requests.post(inst.url + "/simulate?async=1", json={"data": {"seconds": 0.1}}, timeout=10)
    assert resp.status_code == 401
    with pytest.raises(ServerError, match="jobs are off"):
        inst.client(timeout=TIMEOUT).submit("simulate", {"seconds": 0.1})
    inst = module_workspace.serve(simulate, name="locked", runtime="process", auth_token=True, progress=False)
    assert requests.get(inst.url + "/jobs", timeout=10).status_code == 401
    job = inst.client(timeout=TIMEOUT).submit("simulate", {"seconds": 0.1, "steps": 1})
    assert job.result(timeout=TIMEOUT) == {"steps": 1, "seconds": 0.1}  # the runner's call needs no token
