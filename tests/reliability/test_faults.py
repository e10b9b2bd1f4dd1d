"""Faults in a served model and around it, with a real gunicorn (process runtime):

- the model raises, calls sys.exit(3), runs past the request timeout (also stuck in native code): a JSON 500 / 504,
  serving goes on;
- a worker segfaults, calls os._exit(1|3|4), or is SIGKILLed from outside: gunicorn replaces it and the
  instance answers again without the user doing anything (os._exit(3) used to halt gunicorn);
- the whole instance is killed: it shows as exited, with its log tail, and starts again;
- an artifact whose bytes changed on disk is refused at load, by the registry and by the server.
"""

import json
import os
import signal
import time

import pytest
import requests
from reliability_tools import fault, record, status_of, wait_until

import nbserve

TIMEOUT = 1.5  # seconds per request, for the instance here: short, so the timeout test is quick


def troublemaker(cmd):
    """A model that does what its input asks: the faults a user's model can have."""
    import ctypes
    import os
    import sys
    import time

    what = cmd[0]
    if what == "raise":
        raise ZeroDivisionError("the model divided by zero")
    if what == "sys.exit":
        sys.exit(3)
    if what == "os._exit":
        os._exit(int(cmd[1]))
    if what == "segfault":
        ctypes.string_at(0)
    if what == "sleep":
        time.sleep(float(cmd[1]))
    if what == "locked":  # native code that never returns (as a libgomp barrier after a fork): a mutex locked twice
        libc = ctypes.CDLL(None)
        mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER
        libc.pthread_mutex_lock(mutex)
        libc.pthread_mutex_lock(mutex)
    if what == "spin":  # pure Python, never sleeping
        deadline = time.monotonic() + float(cmd[1])
        while time.monotonic() < deadline:
            pass
    return [what, os.getpid() if what == "pid" else 0]  # the same answer on the sample: the proof compares


@pytest.fixture(scope="module")
def inst(module_workspace):
    return module_workspace.serve(
        troublemaker, sample=["ok"], runtime="process", timeout=TIMEOUT, workers=1, progress=False
    )


def call(inst, *cmd, timeout=10):
    resp = requests.post(inst.url + "/troublemaker", json={"data": list(cmd)}, timeout=timeout)
    record(resp.status_code, "http", fuzz=False)
    return resp


def worker_pid(inst):
    resp = call(inst, "pid")
    assert resp.status_code == 200, resp.text
    return resp.json()["data"][1]


def test_an_exception_in_the_model_is_a_json_500_without_a_traceback(inst):
    resp = call(inst, "raise")
    assert resp.status_code == 500 and resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {
        "error": {"type": "ModelError", "message": "troublemaker raised ZeroDivisionError: the model divided by zero"}
    }
    assert "Traceback" not in resp.text and "/" not in resp.json()["error"]["message"]
    assert call(inst, "ok").status_code == 200


def test_sys_exit_in_the_model_is_a_500_and_the_worker_lives_on(inst):
    pid = worker_pid(inst)
    resp = call(inst, "sys.exit")
    assert resp.status_code == 500
    assert resp.json()["error"]["message"] == "troublemaker raised ModelExit: the model called sys.exit(3)"
    assert worker_pid(inst) == pid
    fault(True)


@pytest.mark.parametrize(
    "cmd", [("sleep", "30"), ("spin", "30"), ("locked",)], ids=["sleeping", "spinning", "stuck-in-native-code"]
)
def test_a_request_over_the_timeout_is_a_json_504_and_the_instance_recovers(inst, cmd):
    pid = worker_pid(inst)
    started = time.monotonic()
    resp = call(inst, *cmd, timeout=TIMEOUT + 10)
    took = time.monotonic() - started
    assert resp.status_code == 504 and took < TIMEOUT + 3, (resp.status_code, took)
    err = resp.json()["error"]
    assert err["type"] == "Timeout"
    assert f"limit of {TIMEOUT:g} s" in err["message"] and "timeout=" in err["message"]
    # the interrupted worker is replaced (it may have been stopped while holding a lock), and serving goes on
    new = wait_until(lambda: (p := worker_pid(inst)) != pid and p, timeout=10)
    assert new != pid and inst.reload().status == "running"
    fault(True)


@pytest.mark.parametrize(
    "cmd",
    [("segfault",), ("os._exit", "1"), ("os._exit", "3"), ("os._exit", "4")],
    ids=["segfault", "os._exit(1)", "os._exit(3)", "os._exit(4)"],
)
def test_a_crashing_worker_is_replaced_and_the_instance_keeps_answering(inst, cmd):
    master = inst._row.handle["pid"]
    pid = worker_pid(inst)
    with pytest.raises(requests.ConnectionError):  # the worker died mid-request: no answer to this one
        call(inst, *cmd)
    new = wait_until(lambda: status_of(inst.url) == 200 and worker_pid(inst), timeout=15)
    assert new != pid
    assert inst.reload().status == "running" and inst._row.handle["pid"] == master
    assert call(inst, "ok").json()["data"][0] == "ok"
    fault(True)


def test_a_worker_killed_from_outside_is_replaced(inst):
    pid = worker_pid(inst)
    os.kill(pid, signal.SIGKILL)  # what the OOM killer does
    new = wait_until(lambda: status_of(inst.url) == 200 and worker_pid(inst), timeout=15)
    assert new != pid and inst.reload().status == "running"
    fault(True)


def test_a_killed_instance_shows_as_exited_with_its_log_tail_and_starts_again(workspace, diabetes):
    X, _, lr = diabetes
    inst = workspace.serve(lr, name="diabetes", sample=X, runtime="process", progress=False)
    os.killpg(inst._row.handle["pid"], signal.SIGKILL)
    wait_until(lambda: inst.reload().status == "exited", timeout=10)
    listed = {i.id: i.status for i in workspace.instances()}
    assert listed == {inst.id: "exited"}
    assert "--- starting diabetes" in inst.logs(tail=20)  # the log tail tells what ran
    inst.start(progress=False)
    assert inst.status == "running" and inst.client().predict(X[:2]).shape == (2,)
    fault(True)


def test_an_artifact_whose_bytes_changed_is_refused_by_the_registry_and_the_server(workspace, diabetes):
    X, _, lr = diabetes
    inst = workspace.serve(lr, name="diabetes", sample=X, runtime="process", progress=False)
    mv = workspace.get_model("diabetes")
    pkl = mv.artifact_dir / "model.pkl"
    good = pkl.read_bytes()
    pkl.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one bit

    with pytest.raises(
        nbserve.ArtifactIntegrityError,
        match=r"diabetes:1: artifact [0-9a-f]{12}: \S+/model.pkl "
        r"does not match its sha256",
    ):
        mv.load()
    inst.stop()
    with pytest.raises(
        nbserve.InstanceStartError, match="model.pkl does not match its recorded sha256; refusing to unpickle it"
    ) as err:
        inst.start(progress=False)
    assert mv.sha256 in str(err.value) and "diabetes:1" in str(err.value)
    fault(True)

    # the manifest (which holds the pickle's hash) cannot be edited to match either
    pkl.write_bytes(good)
    manifest = mv.artifact_dir / "manifest.json"
    data = json.loads(manifest.read_bytes())
    data["requirements"].append("evil==1.0")
    manifest.write_text(json.dumps(data))
    with pytest.raises(nbserve.ArtifactIntegrityError, match="manifest.json does not match its sha256"):
        workspace.get_model("diabetes").load()
    fault(True)


def test_the_deadline_in_process_interrupts_only_the_slow_request():
    """The same guard without gunicorn (Flask's test client): a 504 for the slow request, nothing for a
    quick one, and no stray interrupt after a request that finished just before its deadline."""
    import cloudpickle

    from nbserve.capture import capture
    from nbserve.server.app import make_app

    def nap(seconds):
        import time

        time.sleep(seconds[0])
        return seconds

    cap = capture(nap, label="nap", sample=[0.0], proof=False)
    client = make_app(cloudpickle.loads(cap.pickle), cap.manifest, model_id="nap:1", timeout=0.4).test_client()
    started = time.monotonic()
    resp = client.post("/nap", json={"data": [5.0]})
    assert resp.status_code == 504 and resp.get_json()["error"]["type"] == "Timeout"
    assert time.monotonic() - started < 2
    for seconds in (0.0, 0.35, 0.0, 0.0):
        resp = client.post("/nap", json={"data": [seconds]})
        assert resp.status_code == 200, resp.get_json()
    time.sleep(0.6)  # a late interrupt would land here, outside any request, and fail the test
    fault(True)


def test_a_client_that_stalls_mid_body_holds_nothing_and_gets_a_408(inst):
    """A client that sends a Content-Length and then stops sending holds no worker at all (the worker reads
    whole requests without blocking, server/worker.py): others are answered meanwhile, and the stalled
    client gets a 408 once the read timeout (10 s by default) is over."""
    import socket

    host, port = inst.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(
            b"POST /troublemaker HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"data": ['
        )
        started = time.monotonic()
        assert call(inst, "ok").status_code == 200  # served while the other client stalls
        assert time.monotonic() - started < 2
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"not received whole" in answer
    assert time.monotonic() - started < 10 + 3
    assert call(inst, "ok").status_code == 200
    fault(True)
