"""The sidebar's REST routes of the notebook loop (issue 22) against a real jupyter_server with the extension
loaded and real process-runtime instances: the overview says what an instance follows, splits and is shadowed
by; comparison, promote, rollback, split and discard answer as the workspace acts, and refusals are 4xx."""

import time

import numpy as np
import requests
from loop_families import FAMILIES
from test_jupyter_routes import api, jp_server_config  # noqa: F401  (fixtures)

import nbserve

pytest_plugins = ("pytest_jupyter.jupyter_server",)


async def test_loop_routes(api, workspace):  # noqa: F811
    f = FAMILIES["diabetes"]()
    inst = nbserve.serve(f.v1, name="diabetes", sample=f.sample, runtime="process", progress=False)
    workspace.set_follow(inst.id, "lr")
    status, body = await api("POST", "instances", inst.id, "rollback")
    assert status == 400 and "nothing to roll back" in body["error"]["message"]
    status, body = await api("GET", "instances", inst.id, "comparison")
    assert status == 400 and "no candidate shadows" in body["error"]["message"]

    inst.shadow(f.nudged(f.v1), sample=f.sample, progress=False)
    session = requests.Session()
    rows = f.sample[:30]
    for i in range(len(rows)):
        session.post(inst.url + "/predict", json={"data": rows[i : i + 1].tolist()}, timeout=10)
    deadline = time.monotonic() + 30
    while len(inst.comparison()) < len(rows) and time.monotonic() < deadline:
        time.sleep(0.2)

    status, body = await api("GET", "overview")
    entry = next(i for i in body["instances"] if i["id"] == inst.id)
    assert entry["following"] == "lr" and entry["shadow"]["model"] == "diabetes:2" and entry["history"] == []
    candidate = next(i for i in body["instances"] if i["id"] == entry["shadow"]["instance"])
    assert candidate["candidate_of"] == inst.id

    status, body = await api("GET", "instances", inst.id, "comparison")
    assert status == 200 and body["summary"]["agreement"] == 1.0 - float(np.mean(f.differs(rows)))
    assert len(body["points"]) == len(rows) and len(body["latency"]["live"]) == len(rows)
    assert all(isinstance(p[2], bool) for p in body["points"])

    status, body = await api("POST", "instances", inst.id, "promote")
    assert status == 200 and body["instance"]["model"] == "diabetes:2" and body["instance"]["shadow"] is None
    status, body = await api(
        "POST", "instances", inst.id, "split", body={"weights": {"diabetes:1": 50, "diabetes:2": 50}}
    )
    assert status == 200 and body["instance"]["split"] == {"diabetes:1": 50.0, "diabetes:2": 50.0}
    status, body = await api("POST", "instances", inst.id, "split", body={"weights": "half"})
    assert status == 400 and '"weights"' in body["error"]["message"]
    status, body = await api("POST", "instances", inst.id, "split", body={"weights": None})
    assert status == 200 and body["instance"]["split"] is None
    status, body = await api("POST", "instances", inst.id, "rollback")
    assert status == 200 and body["instance"]["model"] == "diabetes:1"
    status, body = await api("POST", "instances", inst.id, "discard")
    assert status == 400 and "no candidate shadows" in body["error"]["message"]
    status, body = await api("POST", "instances", "nope", "promote")
    assert status == 404
