"""The process runtime, for real: gunicorn subprocesses answering over HTTP on 127.0.0.1."""

import json
import os
import signal
import socket
import time
import urllib.request

import numpy as np
import pytest
import requests

import nbserve
from nbserve.workspace import Workspace


def test_the_issue_snippet(home, diabetes):
    X, _, lr = diabetes
    mv = nbserve.register(lr, name="diabetes", sample=X, progress=False)
    assert mv.id == "diabetes:1" and mv.methods == ["predict"]
    inst = nbserve.serve("diabetes", runtime="process", progress=False)
    client = inst.client()
    assert client.methods == ["predict"]
    assert (client.predict(X[:5]) == lr.predict(X[:5])).all()

    def is_bad(data):
        return lr.predict(data) > 50

    inst2 = nbserve.serve(is_bad, name="diabetes_flag", sample=X, runtime="process", progress=False)
    np.testing.assert_array_equal(inst2.client().is_bad(X[:3]), is_bad(X[:3]))
    assert {i.id: i.status for i in nbserve.instances()} == {inst.id: "running", inst2.id: "running"}
    assert inst.stop().status == "stopped" and inst2.stop().status == "stopped"
    with pytest.raises(requests.ConnectionError):
        requests.get(inst.url + "/health", timeout=2)


def test_stop_start_kill_and_a_new_workspace_sees_the_truth(workspace, diabetes):
    X, _, lr = diabetes
    inst = workspace.serve(lr, name="diabetes", sample=X, runtime="process", workers=2, progress=False)
    assert requests.get(inst.url + "/health", timeout=5).json() == {"status": "ok", "model": "diabetes:1"}

    # a restarted kernel: a fresh Workspace over the same home finds the instance running
    again = Workspace(workspace.home).get_instance(inst.id)
    assert again.status == "running" and again.url == inst.url

    url = inst.url
    inst.stop()
    assert inst.reload().status == "stopped"
    inst.start(progress=False)
    assert inst.status == "running"
    assert inst.url == url  # a restart keeps its port when it is free
    np.testing.assert_array_equal(inst.client().predict(X[:2]), lr.predict(X[:2]))

    os.killpg(inst._row.handle["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while inst.reload().status != "exited" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert inst.status == "exited"
    assert "starting diabetes:1" in inst.logs()
    inst.remove()
    assert workspace.instances() == []


def test_fixed_port_and_port_in_use(workspace, diabetes):
    X, _, lr = diabetes
    workspace.register(lr, name="diabetes", sample=X, progress=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(nbserve.PortInUseError, match=f"port {port} on 127.0.0.1 is in use"):
            workspace.serve("diabetes", runtime="process", port=port, progress=False)
    assert workspace.instances() == []
    inst = workspace.serve("diabetes", runtime="process", port=port, progress=False)
    assert inst.url == f"http://127.0.0.1:{port}"


def test_two_concurrent_starts_on_one_port_one_wins_the_other_is_refused(workspace, diabetes, iris):
    """The port is bound once, by the kernel, and handed to the server: of two starts racing for one port (two
    different models, two threads, live and registered) exactly one serves there, the other is refused with
    PortInUseError (a 409 from the Jupyter routes) and leaves no instance; the one that serves answers as itself."""
    import threading

    X, _, lr = diabetes
    Xi, _, clf = iris
    workspace.register(lr, name="diabetes", sample=X, progress=False)
    from nbserve.runtimes.base import free_port

    port = free_port()
    barrier = threading.Barrier(2)
    outcome: dict = {}

    def start(who, target, **kw):
        barrier.wait(60)
        try:
            outcome[who] = workspace.serve(target, runtime="process", port=port, progress=False, **kw)
        except nbserve.PortInUseError as exc:
            outcome[who] = exc

    threads = [
        threading.Thread(target=start, args=("diabetes", "diabetes")),
        threading.Thread(target=start, args=("iris", clf), kwargs={"name": "iris", "sample": Xi}),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    won = [name for name, got in outcome.items() if isinstance(got, nbserve.Instance)]
    lost = [name for name, got in outcome.items() if isinstance(got, nbserve.PortInUseError)]
    assert len(won) == 1 and len(lost) == 1, outcome
    assert f"port {port}" in str(outcome[lost[0]])
    winner = outcome[won[0]]
    assert [i.id for i in workspace.instances()] == [winner.id]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as resp:
        assert json.loads(resp.read())["model"] == winner.model


def test_a_model_that_fails_to_load_reports_its_log(workspace, diabetes):
    X, _, lr = diabetes
    mv = workspace.register(lr, name="diabetes", sample=X, progress=False)
    # corrupt the artifact behind the registry's back: the server must refuse it and say why
    (mv.artifact_dir / "model.pkl").write_bytes(b"garbage")
    with pytest.raises(nbserve.InstanceStartError, match="does not match its recorded sha256"):
        workspace.serve("diabetes", runtime="process", progress=False)
    assert workspace.instances() == []


def test_client_round_trips_frames_and_raises_server_errors(workspace, iris):
    Xi, _, clf = iris
    inst = workspace.serve(clf, name="iris", sample=Xi, runtime="process", progress=False)
    client = nbserve.Client(inst.url)
    assert client.methods == ["predict", "predict_proba"]
    # Instance.client() takes the interface from the registry instead of asking: it must be the same, but for
    # how the server says it serves (its settings: Instance.serving())
    served = requests.get(inst.url + "/interface.json", timeout=10).json()
    assert served.pop("serving") == inst.serving()
    assert inst.client().interface == {k: v for k, v in client.interface.items() if k != "serving"} == served
    np.testing.assert_array_equal(client.predict(Xi[:4]), clf.predict(Xi[:4]))
    np.testing.assert_allclose(client.predict_proba(Xi[:4]), clf.predict_proba(Xi[:4]))
    with pytest.raises(nbserve.ServerError, match="missing columns") as err:
        client.predict(Xi[["sepal length (cm)"]][:2])
    assert err.value.status == 400
    with pytest.raises(AttributeError, match="no method 'transform'"):
        client.transform(Xi)
