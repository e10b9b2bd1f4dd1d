"""Streaming methods: a served function that returns a generator answers its items as it makes them.

On two model families (a linear model on an array, a gradient-boosted pipeline on a mixed-type DataFrame) the
streamed items equal the kernel's, through ``inst.client().stream(...)``, as NDJSON and as server-sent events
(``curl -N``); the request deadline applies between items, not to the stream; a client that goes away stops the
generator within a second; failures before and after the first item; metrics count items and time to the first
item; /openapi.json says the method streams. On the process runtime and on Docker.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from types import SimpleNamespace
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
import requests
from long_calls import ticks
from nbserve_testing import RUNTIMES, docker_workspace, frames, need

from nbserve.errors import ServerError

TIMEOUT = 30


@pytest.fixture(scope="module")
def families(diabetes):
    """The two families' streaming functions, with their inputs."""
    X, _, lr = diabetes
    f = frames()
    frame, target = f.rentals()
    pipeline = f.mixed_pipeline(frame, target)

    def chunks(X):  # the linear model's predictions, two rows at a time
        for start in range(0, len(X), 2):
            yield lr.predict(X[start : start + 2])

    def chunk_series(rows):  # the pipeline's classes, three rows at a time, as Series keeping the rows' index
        for start in range(0, len(rows), 3):
            part = rows.iloc[start : start + 3]
            yield pd.Series(pipeline.predict(part), index=part.index, name="busy")

    return SimpleNamespace(chunks=chunks, chunk_series=chunk_series, X=X, frame=frame)


def _serve(ws, runtime, families):
    ticking = ws.serve(ticks, runtime=runtime, timeout=1, progress=False)
    linear = ws.serve(families.chunks, sample=families.X, runtime=runtime, progress=False)
    return ticking, linear


@pytest.fixture(scope="module")
def process(module_workspace, families):
    ticking, linear = _serve(module_workspace, "process", families)
    boosted = module_workspace.serve(families.chunk_series, sample=families.frame, runtime="process", progress=False)
    return SimpleNamespace(runtime="process", ticks=ticking, linear=linear, boosted=boosted)


@pytest.fixture(scope="module")
def docker(tmp_path_factory, families):
    for ws in docker_workspace(tmp_path_factory, "streaming-docker"):
        ticking, linear = _serve(ws, "docker", families)
        yield SimpleNamespace(runtime="docker", ticks=ticking, linear=linear)


@pytest.fixture(params=RUNTIMES)
def served(request):
    return request.getfixturevalue(request.param)


def metric(inst, name: str, **labels) -> float:
    """The sum of a metric's samples with these labels, from /metrics now."""
    total = 0.0
    for line in requests.get(inst.url + "/metrics", timeout=TIMEOUT).text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.index("}")]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- the items equal the kernel's -------------------------------------------------------------------------


def test_a_linear_models_stream_equals_the_kernels_items(served, families):
    X = families.X[:7]
    expected = list(families.chunks(X))
    client = served.linear.client(timeout=TIMEOUT)
    got = list(client.stream("chunks", X))
    assert len(got) == len(expected) == 4
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert [a.tolist() for a in client.chunks(X)] == [b.tolist() for b in expected]  # a call: the list of items
    # on the wire: one line of NDJSON per item, sent chunked
    resp = requests.post(served.linear.url + "/chunks", json={"data": X.tolist()}, timeout=TIMEOUT)
    assert resp.headers["Content-Type"] == "application/x-ndjson" and resp.headers["Transfer-Encoding"] == "chunked"
    assert [json.loads(line)["data"] for line in resp.text.splitlines()] == [b.tolist() for b in expected]


def test_a_boosted_pipelines_stream_of_series_equals_the_kernels(process, families):
    rows = families.frame.iloc[10:18]
    expected = list(families.chunk_series(rows))
    got = list(process.boosted.client(timeout=TIMEOUT).stream("chunk_series", rows))
    assert len(got) == len(expected) == 3
    for a, b in zip(got, expected):
        pd.testing.assert_series_equal(a, b)  # values, dtype, the rows' index, the name


def test_openapi_and_the_interface_say_the_method_streams_and_what_an_item_is(process):
    interface = requests.get(process.linear.url + "/interface.json", timeout=TIMEOUT).json()
    method = interface["methods"][0]
    assert method["stream"] is True
    assert method["output"]["type"] == "ndarray" and method["output"]["dtype"] == "float64"  # one item
    spec = requests.get(process.linear.url + "/openapi.json", timeout=TIMEOUT).json()
    post = spec["paths"]["/chunks"]["post"]
    assert post["x-nbserve-stream"] is True
    line = post["responses"]["200"]["content"]["application/x-ndjson"]["schema"]
    assert line["properties"]["data"]["type"] == "array"
    assert "text/event-stream" in post["responses"]["200"]["content"]
    assert spec["paths"]["/chunks"]["get"]["x-nbserve-stream"] is True  # the EventSource route


# -- server-sent events ------------------------------------------------------------------------------------


def test_server_sent_events_arrive_as_they_are_made_with_curl(served):
    """``curl -N`` prints each event when it arrives: the first long before the last."""
    curl = shutil.which("curl")
    need(curl is not None, "curl", "apt-get install curl (.ci/run does)")
    body = json.dumps({"data": {"n": 5, "every": 0.4}})
    cmd = [curl, "-sN", "--max-time", "20", "-H", "Accept: text/event-stream", "-H", "Content-Type: application/json"]
    start = time.monotonic()
    proc = subprocess.Popen([*cmd, "-d", body, served.ticks.url + "/ticks"], stdout=subprocess.PIPE, text=True)
    arrivals = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip():
            arrivals.append((time.monotonic() - start, line.strip()))
    assert proc.wait(20) == 0
    lines = [text for _, text in arrivals]
    assert lines == [f'data: {{"data":{{"i":{i}}}}}' for i in range(5)] + ["event: end", "data: {}"]
    assert arrivals[-1][0] - arrivals[0][0] > 1.2  # four more items, 0.4 s apart, after the first one


def test_the_get_route_streams_events_for_a_browsers_eventsource(process):
    resp = requests.get(
        process.ticks.url + "/ticks",
        params={"data": json.dumps({"n": 2})},
        headers={"Accept": "text/event-stream"},
        timeout=TIMEOUT,
    )
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.text.endswith("event: end\ndata: {}\n\n") and resp.text.count('data: {"data"') == 2
    resp = requests.get(process.ticks.url + "/ticks", timeout=TIMEOUT)
    assert resp.status_code == 400 and "?data=" in resp.json()["error"]["message"]
    resp = requests.get(process.linear.url + "/interface.json", timeout=TIMEOUT)
    assert requests.get(process.linear.url + "/chunks", params={"data": "[[1"}, timeout=TIMEOUT).status_code == 400


# -- a client that goes away --------------------------------------------------------------------------------


def _open_stream(url: str, path: str, data) -> socket.socket:
    """A raw connection that asked for a stream; returns once the head and some items have arrived."""
    where = urlsplit(url)
    sock = socket.create_connection((where.hostname, where.port), timeout=TIMEOUT)
    body = json.dumps({"data": data}).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    got = b""
    while got.count(b'"i":') < 3:
        got += sock.recv(65536)
    return sock


def test_a_client_that_disconnects_stops_the_generator_within_a_second(served, tmp_path):
    log = tmp_path / "ticks.log"
    before = metric(served.ticks, "nbserve_streams_total", method="ticks", outcome="disconnected")
    data = {"n": 100000, "every": 0.02}
    if served.runtime == "process":
        data["log"] = str(log)  # the generator's own record of what it made (the container cannot write here)
    sock = _open_stream(served.ticks.url, "/ticks", data)
    sock.close()
    closed = time.monotonic()
    while metric(served.ticks, "nbserve_streams_total", method="ticks", outcome="disconnected") == before:
        assert time.monotonic() - closed < 1.0, "the stream did not end within a second of the client leaving"
        time.sleep(0.02)
    if served.runtime == "process":
        lines = log.read_text().split()
        assert lines[-1] == "closed"  # the generator's finally ran: it was closed, not left suspended
        time.sleep(0.5)
        assert log.read_text().split() == lines  # and it made nothing more
        assert len(lines) < 100  # far from the 100,000 items it would have made for nobody
    # the worker serves on
    assert requests.get(served.ticks.url + "/health", timeout=TIMEOUT).status_code == 200


# -- the deadline applies between items ---------------------------------------------------------------------


def test_the_request_deadline_applies_between_items_not_to_the_stream(served):
    """Served with timeout=1: four items 0.6 s apart (2.4 s in all) stream whole; a stall of 3 s before the
    third item ends the stream with a Timeout error after two items, and the server serves on."""
    client = served.ticks.client(timeout=TIMEOUT)
    assert list(client.stream("ticks", {"n": 4, "every": 0.6})) == [{"i": i} for i in range(4)]
    resp = requests.post(
        served.ticks.url + "/ticks", json={"data": {"n": 4, "stall_at": 2, "stall": 3}}, timeout=TIMEOUT
    )
    lines = [json.loads(line) for line in resp.text.splitlines()]
    assert lines[:2] == [{"data": {"i": 0}}, {"data": {"i": 1}}]
    assert lines[2]["error"]["type"] == "Timeout" and "between two items" in lines[2]["error"]["message"]
    assert len(lines) == 3
    with pytest.raises(ServerError, match="Timeout"):
        list(client.stream("ticks", {"n": 4, "stall_at": 1, "stall": 3}))
    deadline = time.monotonic() + 30  # the worker that was interrupted is replaced; the server answers on
    while True:
        try:
            if list(client.stream("ticks", {"n": 2})) == [{"i": 0}, {"i": 1}]:
                break
        except Exception:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert metric(served.ticks, "nbserve_streams_total", method="ticks", outcome="timeout") >= 1


def test_an_item_stuck_in_native_code_ends_the_stream_with_a_timeout_and_the_worker_is_replaced(process):
    """The watch answers for code that never returns to the interpreter: what was not sent, an error line and
    the stream's last chunk (a well-formed end, not a 504 head in the middle of a body); then the worker ends."""
    resp = requests.post(process.ticks.url + "/ticks", json={"data": {"n": 4, "stuck_at": 2}}, timeout=TIMEOUT)
    lines = [json.loads(line) for line in resp.text.splitlines()]
    assert lines[:2] == [{"data": {"i": 0}}, {"data": {"i": 1}}]
    assert lines[2]["error"]["type"] == "Timeout" and len(lines) == 3
    deadline = time.monotonic() + 30
    while True:  # a new worker answers
        try:
            if requests.post(process.ticks.url + "/ticks", json={"data": {"n": 1}}, timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.2)


# -- failures ---------------------------------------------------------------------------------------------------


def test_a_generator_that_fails_before_its_first_item_is_a_500_and_after_it_an_error_line(process):
    resp = requests.post(process.ticks.url + "/ticks", json={"data": {"n": 3, "fail_at": 0}}, timeout=TIMEOUT)
    assert resp.status_code == 500
    assert resp.json()["error"] == {"type": "ModelError", "message": "ticks raised ValueError: no item 0"}
    resp = requests.post(process.ticks.url + "/ticks", json={"data": {"n": 3, "fail_at": 2}}, timeout=TIMEOUT)
    assert resp.status_code == 200
    lines = [json.loads(line) for line in resp.text.splitlines()]
    assert lines == [
        {"data": {"i": 0}},
        {"data": {"i": 1}},
        {"error": {"type": "ModelError", "message": "ticks raised ValueError: no item 2"}},
    ]
    items = []
    with pytest.raises(ServerError, match="no item 2"):
        for item in process.ticks.client(timeout=TIMEOUT).stream("ticks", {"n": 3, "fail_at": 2}):
            items.append(item)
    assert items == [{"i": 0}, {"i": 1}]
    # a bad input is refused before the method runs, as for any call
    resp = requests.post(process.linear.url + "/chunks", json={"data": [[1.0, 2.0]]}, timeout=TIMEOUT)
    assert resp.status_code == 400 and resp.headers["Content-Type"] == "application/json"


# -- metrics -------------------------------------------------------------------------------------------------------


def test_metrics_count_items_time_to_first_item_and_how_streams_end(process):
    inst = process.ticks
    items = metric(inst, "nbserve_stream_items_total", method="ticks")
    complete = metric(inst, "nbserve_streams_total", method="ticks", outcome="complete")
    first = metric(inst, "nbserve_stream_first_item_seconds_count", method="ticks")
    slow_first = metric(inst, "nbserve_stream_first_item_seconds_bucket", method="ticks", le="0.25")
    assert list(inst.client(timeout=TIMEOUT).stream("ticks", {"n": 5, "stall_at": 0, "stall": 0.3})) == [
        {"i": i} for i in range(5)
    ]
    assert metric(inst, "nbserve_stream_items_total", method="ticks") == items + 5
    assert metric(inst, "nbserve_streams_total", method="ticks", outcome="complete") == complete + 1
    assert metric(inst, "nbserve_stream_first_item_seconds_count", method="ticks") == first + 1
    # its first item came after 0.3 s: not in the bucket of 0.25 s
    assert metric(inst, "nbserve_stream_first_item_seconds_bucket", method="ticks", le="0.25") == slow_first
    row = inst.metrics().set_index("method").loc["ticks"]  # what the panel and the sidebar show
    assert row["items"] >= 5 and row["first_item_p50_ms"] > 0 and row["items_per_s"] > 0
