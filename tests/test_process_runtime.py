"""The process runtime, for real: gunicorn subprocesses answering over HTTP on 127.0.0.1."""

import os
import signal
import socket
import time

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
