"""The notebook loop on the process runtime (issue 22), through the Python API, on two model families: a
re-serve updates the running instance in place, a split shares its URL, a shadow candidate is compared on
copies of its requests and promoted, and a rollback returns to the version before; a client loop of at
least 500 requests (each with a timeout) runs through every one of those changes without a failure, and
every answer equals its version's own (named by X-Model-Version). The times are printed (pytest -s)."""

import json
import time

import numpy as np
import pandas as pd
import pytest
import requests
from loop_families import FAMILIES
from request_loop import RequestLoop

import nbserve
from nbserve.errors import IncompatibleVersionError, NbserveError

PER_CHANGE = 500  # requests the client loop sends while each change happens (and after it, to this count)


def report(what, **numbers):
    print(f"\n[loop-report] {what}: " + json.dumps(numbers))


def through(loop, what, change, versions: dict):
    """Run ``change()`` under the loop; then keep the loop going until PER_CHANGE requests were sent since the
    change began. Every answer of the phase must be the answer of the version its X-Model-Version names, one
    of ``versions`` ({id: expected key})."""
    loop.by_version = {}
    begun_at, began = loop.requests, time.monotonic()
    result = change()
    took = time.monotonic() - began
    deadline = time.monotonic() + 120
    while loop.requests - begun_at < PER_CHANGE and time.monotonic() < deadline and not loop.failures:
        time.sleep(0.05)
    sent = loop.requests - begun_at
    report(what, change_seconds=round(took, 2), requests=sent, failures=len(loop.failures))
    assert not loop.failures, loop.summary()
    assert sent >= PER_CHANGE
    for version, seen in loop.by_version.items():
        assert version in versions, (version, list(versions))
        assert set(seen) == {versions[version]}, (what, version, seen, versions[version])
    return result


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    return FAMILIES[request.param]()


def test_every_change_of_the_loop_keeps_answering_on_two_families(home, family):
    """serve -> re-serve (in place) -> split 90/10 -> shadow + promote -> rollback. One native thread per worker:
    on a loaded 2-core machine the pipeline's OpenMP pool of two makes each call several times slower."""
    f = family
    said = []
    inst = nbserve.serve(f.v1, name=f.name, sample=f.sample, runtime="process", threads=1, progress=False)
    url, port, id = inst.url, inst.port, inst.id
    keys = {f"{f.name}:1": f.expected(f.v1), f"{f.name}:2": f.expected(f.v2)}
    assert keys[f"{f.name}:1"] != keys[f"{f.name}:2"]
    with RequestLoop(lambda: [url], f.body(), path=f.path, key=f.key) as loop:
        time.sleep(0.5)
        again = through(
            loop,
            f"{f.name}: re-serve (update in place)",
            lambda: nbserve.serve(f.v2, name=f.name, sample=f.sample, progress=said.append),
            keys,
        )
        assert (again.id, again.url, again.port, again.model) == (id, url, port, f"{f.name}:2")
        assert f"{f.name}:2 now answers at {url}, was {f.name}:1" in said
        assert nbserve.get_instance(id).model == f"{f.name}:2" and again.history == [f"{f.name}:1"]
        assert loop.by_version.get(f"{f.name}:2")

        through(loop, f"{f.name}: split 90/10", lambda: inst.split({f"{f.name}:1": 90, f"{f.name}:2": 10}), keys)
        assert set(loop.by_version) == set(keys)  # both versions answered on the one URL
        counts = {v: sum(seen.values()) for v, seen in loop.by_version.items()}
        share = counts[f"{f.name}:2"] / sum(counts.values())
        assert 0.05 < share < 0.2, counts  # the change itself moved a few requests; 10% after it
        assert inst.split_weights == {f"{f.name}:1": 90.0, f"{f.name}:2": 10.0} and inst.model == f"{f.name}:1"

        # a shadow of v2 beside the split, then its promotion (which ends the split)
        candidate = inst.shadow(f"{f.name}:2")
        assert candidate.candidate_of == id and inst.shadowed_by["model"] == f"{f.name}:2"
        through(loop, f"{f.name}: promote", lambda: inst.promote(progress=said.append), keys)
        assert inst.model == f"{f.name}:2" and inst.shadowed_by is None and inst.split_weights is None
        assert set(loop.by_version) == {f"{f.name}:2"} or loop.by_version.get(f"{f.name}:2")
        assert candidate.id not in {i.id for i in nbserve.instances()}  # the candidate went with the promotion

        through(loop, f"{f.name}: rollback", lambda: inst.rollback(progress=said.append), keys)
        assert (inst.model, inst.url, inst.port) == (f"{f.name}:1", url, port)
    report(f"{f.name}: whole loop", requests=loop.requests, seconds=round(loop.seconds, 1))


def test_a_split_shares_by_weight_and_names_the_version_on_every_answer(home, diabetes):
    X, y, lr = diabetes
    from sklearn.linear_model import Ridge

    inst = nbserve.serve(lr, name="diabetes", sample=X, runtime="process", progress=False)
    v2 = nbserve.register(Ridge(alpha=0.5).fit(X, y), name="diabetes", sample=X, progress=False)
    inst.split({"diabetes:1": 90, v2.id: 10})
    session = requests.Session()
    answered = [
        session.post(inst.url + "/predict", json={"data": X[:1].tolist()}, timeout=10).headers["X-Model-Version"]
        for _ in range(200)
    ]
    assert answered.count("diabetes:2") == 20 and answered.count("diabetes:1") == 180  # one worker: exact
    pinned = session.post(
        inst.url + "/predict", json={"data": X[:1].tolist()}, headers={"X-Model-Version": "diabetes:2"}, timeout=10
    )
    assert pinned.headers["X-Model-Version"] == "diabetes:2"
    assert pinned.json()["data"] == pytest.approx(v2.load().predict(X[:1]).tolist())
    health = session.get(inst.url + "/health", timeout=10)
    assert health.json()["versions"] == {"diabetes:1": 90.0, "diabetes:2": 10.0}
    assert health.headers["X-Model-Version"] == "diabetes:1"
    time.sleep(1.5)  # the workers hand their counts to the shared files every second
    metrics = session.get(inst.url + "/metrics", timeout=10).text
    by_version = {
        v: sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("nbserve_requests_total{") and f'version="{v}"' in line and 'method="predict"' in line
        )
        for v in ("1", "2")
    }
    assert by_version == {"1": 180.0, "2": 21.0}, by_version
    other = nbserve.register(lr, name="other", sample=X, progress=False)
    with pytest.raises(NbserveError, match="versions of diabetes"):
        inst.split({"diabetes:1": 50, other.id: 50})
    inst.split(None)
    assert session.get(inst.url + "/health", timeout=10).json() == {"status": "ok", "model": "diabetes:1"}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_shadow_agrees_fully_with_an_identical_candidate_and_on_the_known_share_with_another(home, name):
    f = FAMILIES[name]()
    inst = nbserve.serve(f.v1, name=f.name, sample=f.sample, runtime="process", threads=1, progress=False)
    rows = f.sample[:120] if name == "diabetes" else f.sample.iloc[:120]
    client = inst.client(timeout=30)

    def send_each_row():
        for i in range(len(rows)):
            client.predict(rows[i : i + 1] if name == "diabetes" else rows.iloc[i : i + 1])

    def comparison_of(n_rows):
        deadline = time.monotonic() + 60
        while True:
            frame = inst.comparison()
            if len(frame) >= n_rows or time.monotonic() > deadline:
                return frame
            time.sleep(0.2)

    # identical: the same object again is the same version
    twin = inst.shadow(f.v1, sample=f.sample)
    assert twin.model == inst.model
    send_each_row()
    frame = comparison_of(len(rows))
    summary = inst.comparison(summary=True)
    assert len(frame) == len(rows) and summary["agreement"] == 1.0 and summary["requests"] == len(rows)
    assert summary["latency_ms"]["live"]["p50"] > 0 and summary["latency_ms"]["candidate"]["p50"] > 0
    inst.discard()
    assert twin.id not in {i.id for i in nbserve.instances()}

    # differs exactly on the rows Nudged picks
    nudged = inst.shadow(f.nudged(f.v1), sample=f.sample)
    assert nudged.model == f"{f.name}:2"
    send_each_row()
    frame = comparison_of(len(rows))
    expected = 1.0 - float(np.mean(f.differs(rows)))
    assert 0 < expected < 1
    summary = inst.comparison(summary=True)
    report(f"{name}: shadow", agreement=summary["agreement"], expected=expected, latency=summary["latency_ms"])
    assert summary["agreement"] == pytest.approx(expected)
    disagreeing = frame.loc[~frame["agree"]]
    if name == "diabetes":
        assert (disagreeing["x0"] > 0).all() and disagreeing["abs_error"].round(9).eq(1.0).all()
    else:
        assert (disagreeing["season"] == "summer").all()
        assert frame["season"].dtype == f.sample["season"].dtype and frame["day"].dtype == f.sample["day"].dtype
    assert summary["copies"]["dropped"] == 0 and summary["copies"]["failed"] == 0
    inst.discard()


def test_traffic_comes_back_in_the_training_dtypes_bounded_and_only_when_recording(home):
    f = FAMILIES["rentals"]()
    inst = nbserve.serve(f.v1, name=f.name, sample=f.sample, runtime="process", record_size=8, progress=False)
    client = inst.client(timeout=30)
    for i in range(0, 40, 4):
        client.predict(f.sample.iloc[i : i + 4])
    frame = inst.traffic(n=1000)
    assert frame["_request"].nunique() == 8  # the ring keeps the last 8 requests
    sent = f.sample.iloc[8:40].reset_index(drop=True)
    features = frame[frame.attrs["features"]]
    pd.testing.assert_frame_equal(features, sent)  # dates, categories, Int64, booleans, strings as trained
    np.testing.assert_array_equal(frame["predict"], f.v1.predict(sent))
    assert frame.attrs["drift"] and set(frame.attrs["drift"]) <= set(sent.columns)
    assert (frame["_version"] == "rentals:1").all() and frame["_latency_ms"].gt(0).all()
    assert f.v1.fit(features, frame["predict"]) is not None  # ready to refit on

    quiet = nbserve.serve(f.v1, name="norecord", sample=f.sample, runtime="process", record=False, progress=False)
    quiet.client(timeout=30).predict(f.sample.iloc[:2])
    with pytest.raises(NbserveError, match="record=False"):
        quiet.traffic()


def test_a_re_serve_that_would_break_callers_leaves_the_served_version(home, diabetes):
    from sklearn.linear_model import LinearRegression

    X, y, lr = diabetes
    inst = nbserve.serve(lr, name="diabetes", sample=X, runtime="process", progress=False)
    narrow = LinearRegression().fit(X[:, :8], y)
    with pytest.raises(IncompatibleVersionError, match=r"diabetes:1 keeps serving.*shape \[None, 8\]"):
        nbserve.serve(narrow, name="diabetes", sample=X[:, :8], progress=False)
    assert inst.reload().model == "diabetes:1"
    assert [v.id for v in nbserve.Workspace().versions("diabetes")] == ["diabetes:1"]
    second = nbserve.serve(narrow, name="diabetes", sample=X[:, :8], update=False, progress=False)
    assert second.id != inst.id and second.model == "diabetes:2" and inst.reload().model == "diabetes:1"
    with pytest.raises(NbserveError, match="nothing to roll back"):
        inst.rollback()
