"""Who may call what: served models listen on 127.0.0.1 unless asked (and then nbserve warns), and an
optional bearer token guards everything but /health. The token is never shown in full: not in
repr, to_dict, progress messages, logs, the server's environment or the registry row's repr."""

import os
import warnings

import numpy as np
import pytest
import requests
from reliability_tools import record

import nbserve
from nbserve.workspace import Workspace


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a socket listening on ``port``, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                if len(addr) == 8:
                    found.add(".".join(str(b) for b in reversed(bytes.fromhex(addr))))
                else:
                    found.add(addr)
    return found


def test_served_models_listen_on_127_0_0_1_only(workspace, diabetes):
    X, _, lr = diabetes
    inst = workspace.serve(lr, name="diabetes", sample=X, runtime="process", progress=False)
    assert inst.host == "127.0.0.1" and inst.url.startswith("http://127.0.0.1:")
    assert listening_addresses(inst.port) == {"127.0.0.1"}


def test_another_address_is_served_only_with_a_warning(workspace):
    # (the serve fails later, on the unknown model: nothing is bound to 0.0.0.0 in this test)
    with pytest.warns(UserWarning, match="serving on 0.0.0.0: the model will answer anyone who can reach"):
        with pytest.raises(nbserve.ModelNotFoundError):
            workspace.serve("nope", host="0.0.0.0", runtime="process", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the local names are quiet
        for host in ("127.0.0.1", "localhost"):
            with pytest.raises(nbserve.ModelNotFoundError):
                workspace.serve("nope", host=host, runtime="process", progress=False)
    with pytest.raises(nbserve.NbserveError, match="host must be an IP address"):
        workspace.serve("nope", host="example.org", runtime="process", progress=False)


@pytest.fixture
def guarded(workspace, diabetes):
    X, _, lr = diabetes
    said = []
    inst = workspace.serve(
        lr,
        name="diabetes",
        sample=X,
        runtime="process",
        auth_token=True,
        progress=lambda msg, fraction=None: said.append(msg),
    )
    return inst, said


def test_without_the_token_every_route_but_health_is_a_401(guarded, diabetes):
    inst, _ = guarded
    token = inst.auth_token
    assert isinstance(token, str) and len(token) >= 32
    for path, verb in [
        ("/predict", "POST"),
        ("/interface.json", "GET"),
        ("/openapi.json", "GET"),
        ("/", "GET"),
        ("/docs", "GET"),
        ("/nope", "GET"),
        ("/predict", "GET"),
    ]:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token"},
            {"Authorization": token},
            {"Authorization": f"Basic {token}"},
            {"Authorization": f"Bearer {token[:-1]}"},
        ):
            resp = requests.request(verb, inst.url + path, json={"data": [[0] * 10]}, headers=headers, timeout=5)
            record(resp.status_code, "http")
            assert resp.status_code == 401, (path, verb, headers, resp.status_code)
            assert resp.json()["error"]["type"] == "Unauthorized"
            assert "Authorization: Bearer <token>" in resp.json()["error"]["message"]
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    # /health stays open for health checks (it tells only that the server is up and the model id)
    assert requests.get(inst.url + "/health", timeout=5).json() == {"status": "ok", "model": "diabetes:1"}
    resp = requests.post(
        inst.url + "/predict", json={"data": [[0] * 10]}, timeout=5, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 200


def test_the_client_sends_the_token_and_a_client_without_it_gets_a_clear_error(guarded, diabetes):
    inst, _ = guarded
    X, _, lr = diabetes
    np.testing.assert_allclose(inst.client().predict(X[:3]), lr.predict(X[:3]))
    with pytest.raises(nbserve.ServerError, match="401 Unauthorized: this model needs a bearer token") as err:
        nbserve.Client(inst.url).predict(X[:3])
    assert err.value.status == 401
    np.testing.assert_allclose(nbserve.Client(inst.url, token=inst.auth_token).predict(X[:1]), lr.predict(X[:1]))
    # another kernel (a fresh workspace on the same registry) finds the token with the instance
    again = Workspace(inst._workspace.home).get_instance(inst.id)
    np.testing.assert_allclose(again.client().predict(X[:1]), lr.predict(X[:1]))


def test_the_token_is_never_shown_in_full(guarded):
    inst, said = guarded
    token = inst.auth_token
    shown = {
        "repr": repr(inst),
        "str": str(inst),
        "to_dict": repr(inst.to_dict()),
        "listing": repr(inst._workspace.instances()),
        "progress": "\n".join(said),
        "logs": inst.logs(),
        "row repr": repr(inst._row),
        "client repr": repr(inst.client()),
        "server environment": open(f"/proc/{inst._row.handle['pid']}/environ", "rb").read().decode(errors="replace"),
        "server command line": open(f"/proc/{inst._row.handle['pid']}/cmdline", "rb").read().decode(errors="replace"),
    }
    for where, text in shown.items():
        assert token not in text, f"the token shows in full in the {where}"
        assert token[:12] not in text, f"too much of the token shows in the {where}"
    assert inst.to_dict()["auth"] == token[:4] + "…"
    assert any(token[:4] + "…" in line and "inst.client() sends it" in line for line in said)


def test_a_token_of_ones_own_and_bad_tokens(workspace, diabetes):
    X, _, lr = diabetes
    mine = "a-token-of-my-own-0123456789"
    inst = workspace.serve(lr, name="diabetes", sample=X, runtime="process", auth_token=mine, progress=False)
    assert inst.auth_token == mine
    assert requests.get(inst.url + "/interface.json", timeout=5, headers={"Authorization": f"Bearer {mine}"}).ok
    assert requests.get(inst.url + "/interface.json", timeout=5).status_code == 401
    for bad in ("short", "has a space in it 0123456", 12345):
        with pytest.raises(nbserve.NbserveError, match="auth_token must be"):
            workspace.serve("diabetes", runtime="process", auth_token=bad, progress=False)


def test_limits_are_checked_before_anything_starts(workspace):
    for options, says in [
        ({"timeout": -1}, "timeout must be a number of seconds >= 0"),
        ({"timeout": "soon"}, "timeout must be"),
        ({"max_body": 10}, "max_body must be a number of bytes >= 1024"),
    ]:
        with pytest.raises(nbserve.NbserveError, match=says):
            workspace.serve("nope", runtime="process", progress=False, **options)


def test_no_pickle_is_accepted_over_http(workspace):
    """Loading a model is unpickling, which runs code: the server takes JSON only, and a pickle sent as
    the body is refused as invalid JSON, never loaded."""
    import pickle

    def echo(x):
        return x

    inst = workspace.serve(echo, sample=["a"], runtime="process", progress=False)
    marker = inst._workspace.home / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for ctype in ("application/octet-stream", "application/python-pickle", "application/json"):
        resp = requests.post(
            inst.url + "/echo", data=pickle.dumps({"data": Evil()}), timeout=5, headers={"Content-Type": ctype}
        )
        record(resp.status_code, "http")
        assert resp.status_code == 400 and resp.json()["error"]["type"] == "InvalidJSON"
    assert not marker.exists()


def ping(x):
    """A model whose one method is named like MLflow's open health route."""
    return [v * 2 for v in x]


def test_a_method_named_like_a_health_route_needs_the_token(workspace, diabetes):
    # open paths are open for their GETs only: POST /ping calls the model's method `ping` and needs the
    # token; GET /ping and GET /health (the probes) stay open. Two families: a function and a linear model.
    X, _, lr = diabetes
    inst = workspace.serve(ping, sample=[1.0, 2.0], runtime="process", auth_token=True, progress=False)
    for verb, path in [("POST", "/ping"), ("PUT", "/ping"), ("POST", "/health"), ("DELETE", "/v2/health/live")]:
        resp = requests.request(verb, inst.url + path, json={"data": [1.0, 2.0]}, timeout=5)
        assert resp.status_code == 401, (verb, path, resp.status_code, resp.text[:200])
    resp = requests.post(
        inst.url + "/ping", json={"data": [1.0, 2.0]}, headers={"Authorization": f"Bearer {inst.auth_token}"}, timeout=5
    )
    assert resp.status_code == 200 and resp.json()["data"] == [2.0, 4.0]
    assert inst.client().ping([3.0]) == [6.0]
    for path in ("/ping", "/health", "/v2/health/live", "/v2/health/ready"):
        assert requests.get(inst.url + path, timeout=5).status_code == 200, path
    # a model with a predict method: its protocol routes are closed whatever the verb
    lin = workspace.serve(lr, name="diabetes", sample=X, runtime="process", auth_token=True, progress=False)
    assert requests.post(lin.url + "/invocations", json={"inputs": X[:1].tolist()}, timeout=5).status_code == 401
    assert requests.post(lin.url + "/ping", json={"data": 1}, timeout=5).status_code == 401
