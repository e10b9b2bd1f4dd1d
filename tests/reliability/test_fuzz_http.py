"""Fuzzing over real HTTP: schemathesis against each served model's own /openapi.json (inputs that fit
the schema and inputs that break it), the hypothesis bodies of test_fuzz_inputs.py, and hand-picked
edge cases (bare NaN tokens, oversized and chunked bodies, wrong content types), all to a real
gunicorn started by the process runtime. Never a 5xx, never a hang, and the next good request is
answered correctly."""

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import schemathesis
from fuzz_strategies import CONTENT_TYPES, bodies
from hypothesis import given, settings
from reliability_tools import PROTOCOL_PATHS, TALLY, assert_error_form, record
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

MAX_BODY = 100_000
# from the hypothesis profile (conftest.py: "ci" by default, "long" with --hypothesis-profile=long)
SCHEMATHESIS_EXAMPLES = settings.default.max_examples // 2  # per method and generation mode
HTTP_EXAMPLES = settings.default.max_examples  # hypothesis bodies per model
TIMEOUT = 10  # seconds: an answer slower than this is a hang


@pytest.fixture(scope="module")
def served(module_workspace, diabetes, iris):
    X, _, lr = diabetes
    Xi, _, clf = iris
    d = module_workspace.serve(lr, name="diabetes", sample=X, runtime="process", max_body=MAX_BODY, progress=False)
    i = module_workspace.serve(clf, name="iris", sample=Xi, runtime="process", max_body=MAX_BODY, progress=False)

    def good_diabetes():
        return np.testing.assert_allclose(d.client().predict(X[:3]), lr.predict(X[:3]))

    def good_iris():
        return np.testing.assert_allclose(i.client().predict_proba(Xi[:3]), clf.predict_proba(Xi[:3]))

    return {"diabetes": (d, good_diabetes), "iris": (i, good_iris)}


def assert_explains(resp, what="", path=""):
    """A 4xx with the JSON error shape of the route's protocol, or a 200; never a 5xx (counted either way)."""
    record(resp.status_code, "http")
    assert resp.status_code < 500, f"{what} -> {resp.status_code} {resp.text[:300]}"
    if resp.status_code >= 400:
        assert_error_form(path, resp.json(), resp.content)


@pytest.mark.parametrize("name", ["diabetes", "iris"])
def test_schemathesis_against_the_servers_own_openapi(served, name):
    inst, still_serving = served[name]
    schema = schemathesis.openapi.from_url(inst.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/health", "/interface.json", "/predict"}
    for op in operations:
        # GET routes take no input: one positive call each; methods get schema-fitting and -breaking data
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if op.method.upper() == "POST" else [])
        for mode in modes:

            @settings(max_examples=SCHEMATHESIS_EXAMPLES)  # the rest from the profile
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case):
                resp = case.call(base_url=inst.url, timeout=TIMEOUT)
                TALLY["schemathesis"] += 1
                # run() is called in this iteration: op and mode are this iteration's
                assert_explains(resp, f"{op.method} {op.path} {mode} {str(case.body)[:200]}", op.path)  # noqa: B023
                # the answer matches the documented responses (status, content type, body schema). The
                # protocol adapters' documents describe each protocol's envelope, not the model's input,
                # so a body that fits the envelope may still be the client's 400: for them, "schema-valid
                # data is accepted" does not apply (never a 5xx and the error form still do).
                adapter = op.path.startswith(PROTOCOL_PATHS)  # noqa: B023
                case.validate_response(resp, excluded_checks=[positive_data_acceptance] if adapter else None)

            run()
            still_serving()


SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
PROTOCOL_REGEX = "^/(v1/|v2|invocations)"


@pytest.mark.parametrize("name, token", [("diabetes", False), ("diabetes", True), ("iris", False)])
def test_schemathesis_cli_checks_all_with_and_without_a_token(served, module_workspace, name, token, tmp_path):
    """`schemathesis run --checks all`, as a user runs it against /openapi.json: every check passes on
    nbserve's own routes but use_after_free, which holds that a DELETEd resource answers 404 after: DELETE
    /jobs/<id> cancels a job, and the job stays readable (status "cancelled") for its retention, so that
    the caller sees the cancel take effect (the OpenAPI document says so); on the protocol adapters all but
    positive_data_acceptance, since their documents describe each protocol's envelope, not the model's
    tensors (a V2 shape must match its data: no JSON Schema says that). With a token, the requests carry it
    and schemathesis also checks that omitting it is a 401."""
    inst = served[name][0]
    headers = []
    if token:
        inst = module_workspace.serve("diabetes", runtime="process", max_body=MAX_BODY, auth_token=True, progress=False)
        headers = ["-H", f"Authorization: Bearer {inst.auth_token}"]
    common = [
        "-n",
        "15",
        "--request-timeout",
        str(TIMEOUT),
        "--generation-deterministic",
        "--suppress-health-check",
        "all",
    ]
    for selection, excluded in (
        (["--exclude-path-regex", PROTOCOL_REGEX], ["--exclude-checks", "use_after_free"]),
        (["--include-path-regex", PROTOCOL_REGEX], ["--exclude-checks", "positive_data_acceptance"]),
    ):
        done = subprocess.run(
            [
                SCHEMATHESIS,
                "run",
                inst.url + "/openapi.json",
                "--checks",
                "all",
                *excluded,
                *selection,
                *common,
                *headers,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,  # its cache directory (.schemathesis/) goes there, not into the checkout
        )
        tail = done.stdout[-4000:]
        assert done.returncode == 0, tail
        generated = re.search(r"(\d+) generated, (\d+) passed", tail)
        assert generated and generated.group(1) == generated.group(2) and int(generated.group(1)) > 50, tail
        TALLY["schemathesis"] += int(generated.group(1))
    served[name][1]()


@pytest.mark.parametrize("name", ["diabetes", "iris"])
def test_hypothesis_bodies_over_http(served, name):
    inst, still_serving = served[name]
    method = "predict"

    @settings(max_examples=HTTP_EXAMPLES)  # the rest from the profile
    @given(body=bodies(name), ctype=CONTENT_TYPES)
    def run(body, ctype):
        raw = body.encode(errors="surrogatepass") if isinstance(body, str) else body
        resp = requests.post(
            f"{inst.url}/{method}",
            data=raw,
            timeout=TIMEOUT,
            headers={"Content-Type": ctype.encode("utf-8")} if ctype else {},
        )
        assert_explains(resp, repr(raw[:200]))

    run()
    still_serving()


def raw_http(url, request: bytes) -> bytes:
    """Send bytes as they are (for what requests will not send) and read the whole answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as s:
        s.sendall(request)
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def status_and_json(answer: bytes):
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body.strip() else None


EDGE_BODIES = [
    b'{"data": [[NaN, 1, 2, 3, 4, 5, 6, 7, 8, 9]]}',
    b'{"data": [[Infinity, -Infinity, 2, 3, 4, 5, 6, 7, 8, 9]]}',
    b'{"data": [[1e400, 1, 2, 3, 4, 5, 6, 7, 8, 9]]}',
    b'{"data": [[' + b"1" * 400 + b", 1, 2, 3, 4, 5, 6, 7, 8, 9]]}",
    b'{"data": [["NaN", "inf", "2", "3", "4", "5", "6", "7", "8", "9"]]}',
    b'{"data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    b'{"data": [[' + b", ".join([b"1"] * 10) + b"]]" + b"," * 3 + b"}",
    b'{"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], "data": "again"}',
    b'{"data": [[\xc3\xa9, 1]]}',
    b'"\xed\xa0\x80"',
    b"\x00\x01\x02",
    b"",
    b"null",
    b"{}",
    b'{"data": []}',
    b'{"data": [[]]}',
    b'{"data": {}}',
    b'{"data": null}',
    b'{"data": [[true, false, 1, 2, 3, 4, 5, 6, 7, 8]]}',
    '{"data": "\U0001f600\u202e\ufeff"}'.encode(),
]


@pytest.mark.parametrize("body", EDGE_BODIES, ids=lambda b: repr(b[:24]))
@pytest.mark.parametrize("ctype", ["application/json", "text/plain", "application/x-www-form-urlencoded"])
def test_edge_bodies(served, body, ctype):
    inst, still_serving = served["diabetes"]
    resp = requests.post(inst.url + "/predict", data=body, headers={"Content-Type": ctype}, timeout=TIMEOUT)
    assert_explains(resp, repr(body[:60]))
    if body.startswith(b'{"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], "data": "again"'):
        assert resp.status_code == 400  # the last "data" wins in the parser: a string, refused
    still_serving()


def test_oversized_bodies_are_a_413_that_names_the_limit(served):
    inst, still_serving = served["diabetes"]
    big = b'{"data": [' + b"[1,2,3,4,5,6,7,8,9,0]," * 10_000 + b"[1,2,3,4,5,6,7,8,9,0]]}"
    assert len(big) > MAX_BODY
    # with a Content-Length: refused before the body is read
    resp = requests.post(inst.url + "/predict", data=big, headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert_explains(resp, "oversized")
    assert resp.status_code == 413 and str(MAX_BODY) in resp.json()["error"]["message"]
    # chunked, with no length up front: refused once the limit is crossed
    resp = requests.post(
        inst.url + "/predict",
        data=iter([big[i : i + 8192] for i in range(0, len(big), 8192)]),
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert_explains(resp, "oversized chunked")
    assert resp.status_code == 413
    # a Content-Length that claims more than the limit, with no body behind it
    status, body = status_and_json(
        raw_http(
            inst.url,
            (
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 999999999999\r\nConnection: close\r\n\r\n"
            ),
        )
    )
    record(status, "http")
    assert status == 413 and body["error"]["type"] == "PayloadTooLarge"
    still_serving()


def test_every_route_and_verb_over_http(served):
    inst, still_serving = served["iris"]
    for path in [
        "/",
        "/health",
        "/interface.json",
        "/openapi.json",
        "/docs",
        "/predict",
        "/predict_proba",
        "/nope",
        "/predict/extra",
        "/%00",
        "/..%2f..%2fetc%2fpasswd",
        "/" + "a" * 2000,
        "/static/x",
    ]:
        for verb in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]:
            resp = requests.request(verb, inst.url + path, data=b'{"data": 1}', timeout=TIMEOUT)
            record(resp.status_code, "http")
            assert resp.status_code < 500, (verb, path, resp.status_code, resp.text[:200])
            if resp.status_code == 405:  # RFC 9110
                assert resp.headers.get("Allow") and verb not in resp.headers["Allow"], (verb, path, resp.headers)
            if resp.status_code >= 400 and verb != "HEAD":
                assert resp.json()["error"]["message"], (verb, path)
    still_serving()


def test_the_http_fuzzing_counted_its_inputs():
    assert TALLY["schemathesis"] >= SCHEMATHESIS_EXAMPLES and TALLY["http"] >= 2 * HTTP_EXAMPLES, TALLY
