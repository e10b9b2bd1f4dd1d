"""Helpers of the reliability suite: the tallies its closing line prints (the issue's closing note
quotes them), and small waits on real servers."""

import collections
import time

import requests
from nbserve_testing import need  # noqa: F401  (re-exported for the tests here)

TALLY = collections.Counter()


def record(status: int, channel: str = "in-process", fuzz: bool = True) -> None:
    """Count one input sent to a served model. For fuzzing input a 5xx counts against us (the caller
    asserts too); fault tests (fuzz=False) provoke their 500s and 504s on purpose."""
    TALLY["inputs"] += 1
    TALLY[channel] += 1
    if status >= 500 and fuzz:
        TALLY["5xx"] += 1


PROTOCOL_PATHS = ("/invocations", "/v1/", "/v2")  # the protocol adapters answer in their protocol's error form


def assert_error_form(path: str, body, raw=b"") -> None:
    """A 4xx body that says something, in nbserve's error form or (for the protocol adapters' own
    refusals) in the protocol's: MLflow's {"error_code", "message"}, KServe's {"error": "..."}. The
    server's generic answers (405, 401, 504) keep nbserve's form on every route."""
    assert isinstance(body, dict), raw[:300]
    if path.startswith(PROTOCOL_PATHS) and not isinstance(body.get("error"), dict):
        if "error_code" in body:
            assert path.startswith(PROTOCOL_PATHS[0]) and str(body.get("message", "")).strip(), raw[:300]
        else:
            assert set(body) == {"error"} and str(body["error"]).strip(), raw[:300]
        return
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, raw[:300]
    assert body["error"]["message"].strip(), "an error must say what was expected"


def fault(survived: bool) -> None:
    """Count one injected fault (a crash, a kill, a tampered file, a lost engine) and whether we recovered."""
    TALLY["faults"] += 1
    TALLY["survived"] += bool(survived)


def summary(tally=TALLY) -> str:
    return (
        f"nbserve reliability: {tally['inputs']} inputs tried ({tally['in-process']} in-process, "
        f"{tally['http']} over HTTP to gunicorn, of which {tally['schemathesis']} from schemathesis); "
        f"{tally['5xx']} 5xx seen; {tally['faults']} faults injected, {tally['survived']} survived; "
        f"{tally['concurrent_registers']} concurrent registers"
    )


def wait_until(predicate, timeout=15.0, interval=0.05):
    """Poll predicate() until it is truthy (and return it); AssertionError when the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)


def status_of(url, path="/health", timeout=3, **kw):
    """The status of GET url+path, or None when nothing answers."""
    try:
        return requests.get(url + path, timeout=timeout, **kw).status_code
    except requests.RequestException:
        return None
