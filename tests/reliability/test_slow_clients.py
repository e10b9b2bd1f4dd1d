"""No slow or idle client can stall a served model (server/worker.py reads whole requests without blocking).

64 connections that send nothing and 64 that trickle a request a byte at a time stay open while /health and
a prediction are asked for: each must answer within 2 s, with the kernel's answer. Then the HTTP details a
client relies on: keep-alive and pipelining, chunked bodies, ``Expect: 100-continue``, a head too large, a
malformed request line, and a trickling client's 408. Two model families: a linear model on an array and
the gradient-boosted pipeline over the mixed-type rentals frame. Every socket has a timeout.
"""

import json
import socket
import threading
import time

import numpy as np
import pandas as pd
import pytest
from models.frames import mixed_pipeline, rentals

IDLE, TRICKLING = 64, 64
ANSWER_WITHIN = 2.0


@pytest.fixture(scope="module")
def served(module_workspace, diabetes):
    X, _, lr = diabetes
    frame, target = rentals()
    pipe = mixed_pipeline(frame, target)
    linear = module_workspace.serve(lr, name="slow_linear", sample=X, runtime="process", progress=False)
    boosted = module_workspace.serve(pipe, name="slow_boosted", sample=frame, runtime="process", progress=False)
    return {
        "linear": (linear, X[:3], lr.predict(X[:3])),
        "boosted": (boosted, frame.head(3), pipe.predict(frame.head(3))),
    }


def _address(inst):
    host, port = inst.url.removeprefix("http://").split(":")
    return host, int(port)


def _exchange(address, raw: bytes, timeout=10.0) -> bytes:
    """Send raw bytes on a new connection; everything the server sends back until it closes."""
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize("family", ["linear", "boosted"])
def test_64_idle_and_64_trickling_connections_do_not_stall_the_model(served, family):
    inst, rows, expected = served[family]
    address = _address(inst)
    idle = [socket.create_connection(address, timeout=5) for _ in range(IDLE)]
    trickling = [socket.create_connection(address, timeout=5) for _ in range(TRICKLING)]
    request = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n"
    stop = threading.Event()

    def trickle():
        i = 0
        while not stop.is_set() and i < len(request):
            for s in trickling:
                try:
                    s.send(request[i : i + 1])
                except OSError:
                    pass
            i += 1
            stop.wait(0.05)

    dripper = threading.Thread(target=trickle, daemon=True)
    dripper.start()
    client = inst.client(timeout=10)
    try:
        for _ in range(5):
            started = time.monotonic()
            with socket.create_connection(address, timeout=ANSWER_WITHIN + 1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert s.recv(4096).startswith(b"HTTP/1.1 200")
            got = client.predict(rows)
            took = time.monotonic() - started
            assert took < ANSWER_WITHIN, f"/health and a prediction took {took:.2f} s with slow clients open"
            if isinstance(expected, np.ndarray):
                np.testing.assert_array_equal(np.asarray(got), expected)
            time.sleep(0.2)
    finally:
        stop.set()
        dripper.join(5)
        for s in idle + trickling:
            s.close()


def test_keep_alive_and_pipelined_requests_are_answered_in_order(served):
    inst, rows, expected = served["linear"]
    body = json.dumps({"data": np.asarray(rows).tolist()}).encode()
    one = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    close = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = _exchange(_address(inst), one + health + one + close)  # four requests in one write
    parts = answer.split(b"HTTP/1.1 ")[1:]
    assert [p[:3] for p in parts] == [b"200"] * 4
    assert b'"status":"ok"' in parts[1] and b'"status":"ok"' in parts[3]
    for part in (parts[0], parts[2]):
        got = json.loads(part.split(b"\r\n\r\n", 1)[1])["data"]
        np.testing.assert_array_equal(got, expected)


def test_chunked_and_expect_continue_bodies(served):
    inst, rows, expected = served["boosted"]
    frame = pd.DataFrame(rows)
    body = json.dumps({"data": json.loads(frame.to_json(orient="split", date_format="iso", index=False))}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 50]), body[i : i + 50]) for i in range(0, len(body), 50))
    raw = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + chunked
        + b"0\r\n\r\n"
    )
    answer = _exchange(_address(inst), raw)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["data"] == expected.tolist()
    with socket.create_connection(_address(inst), timeout=10) as s:
        s.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        assert s.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
    assert rest.startswith(b"HTTP/1.1 200") and json.loads(rest.split(b"\r\n\r\n", 1)[1])["data"] == expected.tolist()


@pytest.mark.parametrize(
    "raw, status, says",
    [
        (b"GARBAGE\r\n\r\n", b"400", b"malformed request line"),
        (b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", b"505", b"not supported"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70000 + b"\r\n\r\n", b"431", b"larger than"),
        (b"POST /predict HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", b"400", b"both"),
        (b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n", b"400", b"header field name"),
        (b"POST /predict HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n", b"413", b"max_body"),
    ],
)
def test_requests_that_are_not_http_get_a_clear_4xx_and_the_server_goes_on(served, raw, status, says):
    inst, rows, expected = served["linear"]
    answer = _exchange(_address(inst), raw)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    assert b"application/json" in answer and says in answer
    np.testing.assert_array_equal(inst.client(timeout=10).predict(rows), expected)
