"""The build's readiness check: the image must answer like the kernel's environment does.

The registry keeps the model's signature, not its sample (the artifact is content-addressed and the
sample is the user's data), so the check cannot replay the user's rows. What it does instead, and
honestly calls a *synthesized* request: for each method it builds a small, deterministic batch from the
recorded input schema (3 rows of the recorded shape, dtypes and columns), sends that same JSON body

* to the server code run by the interpreter that registered the model (the kernel's, with the
  kernel's packages), in a subprocess through Flask's test client, and
* to a container started from the freshly built image,

and compares the two answers (``capture.compare``: numbers to float tolerance). A missing or different
dependency in the image shows up here, at build time. A method whose input schema is unknown (a function
registered without a sample) can only be checked for loading: /health answers after the artifact is
unpickled.
"""

from __future__ import annotations

import json
import random
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from ..capture.compare import answers_differ
from ..errors import BuildError
from ..server.shared import KINDS, column_kind

ROWS = 3
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


def synthesize(schema: dict | None, rng: random.Random | None = None):
    """A JSON value that fits ``schema`` (the server's input schema), or None when the schema is unknown."""
    rng = rng or random.Random(0)
    schema = schema or {}
    kind = schema.get("type", "any")
    if kind == "ndarray":
        shape = [ROWS if d is None else d for d in schema["shape"]]
        return _nested(shape, lambda: _scalar(schema["dtype"], rng)) if shape else None
    if kind == "dataframe":
        names = [c["name"] for c in schema["columns"]]
        rows = [[_cell(c, rng) for c in schema["columns"]] for _ in range(ROWS)]
        return {"columns": names, "data": rows}
    if kind == "series":
        return [_cell(schema, rng) for _ in range(ROWS)]
    if kind == "list":
        item = synthesize(schema.get("items"), rng)
        return None if item is None else [item] * ROWS
    if kind == "dict":
        fields = {k: synthesize(v, rng) for k, v in schema["fields"].items()}
        return None if any(v is None for v in fields.values()) else fields
    return {"number": 0.5, "integer": 1, "string": "a", "boolean": True}.get(kind)


def _nested(shape, make):
    if len(shape) == 1:
        return [make() for _ in range(shape[0])]
    return [_nested(shape[1:], make) for _ in range(shape[0])]


def _cell(col: dict, rng: random.Random):
    """A value the server's decoder takes for this column (its kind's example in nbserve/server/dtypes.py)."""
    return KINDS[column_kind(col)].example(col, rng)


def _scalar(dtype: str, rng: random.Random):
    return _cell({"dtype": dtype}, rng)


def requests_for(version) -> dict:
    """method -> JSON request body (bytes) for every method whose input schema allows one."""
    out = {}
    for method in version.methods:
        data = synthesize(version.signature.get(method, {}).get("input"))
        if data is not None:
            out[method] = json.dumps({"data": data}).encode()
    return out


_KERNEL_SIDE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from nbserve.server.app import create_app
client = create_app(sys.argv[2], model_id=sys.argv[3]).test_client()
answers = {}
for method, body in json.loads(sys.stdin.read()).items():
    resp = client.post("/" + method, data=body.encode(), content_type="application/json")
    answers[method] = [resp.status_code, resp.get_data(as_text=True)]
print("NBSERVE-ANSWERS " + json.dumps(answers))
"""


def start_kernel_side(version, python: str, bodies: dict) -> subprocess.Popen:
    """Answer the same requests with the kernel's interpreter (started now, read with kernel_answers)."""
    proc = subprocess.Popen(
        [python, "-I", "-c", _KERNEL_SIDE, _PACKAGE_PARENT, str(version.artifact_dir), version.id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None  # stdin=PIPE
    proc.stdin.write(json.dumps({m: b.decode() for m, b in bodies.items()}))
    proc.stdin.close()
    return proc


def kernel_answers(proc: subprocess.Popen, timeout: float = 300) -> dict:
    assert proc.stdout is not None and proc.stderr is not None  # both PIPE
    try:
        out = proc.stdout.read()
        err = proc.stderr.read()
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RuntimeError(f"the kernel-side replay took over {timeout:.0f} s") from None
    for line in out.splitlines():
        if line.startswith("NBSERVE-ANSWERS "):
            return {m: (status, text) for m, (status, text) in json.loads(line[16:]).items()}
    raise RuntimeError(f"the kernel-side replay failed (exit {proc.returncode}): {err[-2000:]}")


def check(url: str, version, tag: str, bodies: dict, kernel, progress) -> None:
    """Ask the server at ``url`` (the image's) what the kernel's side is asked, and compare the answers.

    ``kernel`` is the process of ``start_kernel_side`` (None when no method has a synthesized input).
    A failure is a BuildError naming the method and how the image differs.
    """
    try:
        served = _get_json(url + "/interface.json")
        names = [m["name"] for m in served.get("methods", [])]
        if names != version.methods:
            raise BuildError(f"the image {tag} serves methods {names}, the registry says {version.methods}")
        got = {m: _post(url + "/" + m, body) for m, body in bodies.items()}
        expected = kernel_answers(kernel) if kernel else {}
    except RuntimeError as exc:
        raise BuildError(f"readiness check of {tag}: {exc}") from None
    for method in bodies:
        (k_status, k_text), (i_status, i_text) = expected[method], got[method]
        if k_status == 200 and i_status != 200:
            raise BuildError(
                f"{version.id}.{method} answers in the kernel but fails in the image {tag} "
                f"(HTTP {i_status}): {_message(i_text)}"
            )
        if k_status != i_status:
            raise BuildError(
                f"{version.id}.{method}: HTTP {k_status} in the kernel, {i_status} in the image {tag}: "
                f"{_message(i_text)}"
            )
        if k_status != 200:
            progress(
                f"readiness check: {method} could not be exercised with a synthesized input (the kernel "
                f"answers it with HTTP {k_status} too: {_message(k_text)}); loading was checked"
            )
            continue
        # by the rule the version was proven with: a model that is not deterministic is compared within its
        # tolerance, or by the shapes of its answers only
        diff = answers_differ(_answer_data(k_text), _answer_data(i_text), version.manifest.get("proof"))
        if diff:
            raise BuildError(
                f"{version.id}.{method} answers differently in the image {tag} than in the kernel's environment: {diff}"
            )
        progress(f"readiness check: {method} answers as in the kernel")


def _answer_data(text: str):
    """The ``data`` of an answer; of a streamed one (NDJSON, a line per item), the list of its items' data. A
    failure midway (a last ``{"error": ...}`` line) is a difference, not a crash of the check."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    if len(lines) == 1 and "data" in lines[0]:
        return lines[0]["data"]
    return [line.get("data", line) for line in lines]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _post(url: str, body: bytes) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _message(text: str) -> str:
    from ..client import error_text

    kind, message = error_text(text)
    if message is None:
        return text[:500]
    return f"{kind}: {message}" if kind else message
