"""The build's readiness check: the image must answer like the kernel's environment does.

The registry keeps the model's signature, not its sample (the artifact is content-addressed and the
sample is the user's data), so the check cannot replay the user's rows. What it does instead, and
honestly calls a *synthesized* request: for each method it builds a small, deterministic batch from the
recorded input schema (3 rows of the recorded shape, dtypes and columns), sends that same JSON body

* to the server code run by the interpreter that registered the model (the kernel's, with the
  kernel's packages), in a subprocess through Flask's test client, and
* to a container started from the freshly built image,

and compares the two answers (numbers to float tolerance). A missing or different dependency in the
image shows up here, at build time. A method whose input schema is unknown (a function registered
without a sample) can only be checked for loading: /health answers after the artifact is unpickled.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

from ..server.schema import column_kind

ROWS = 3
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


def synthesize(schema: dict | None, rng: random.Random | None = None):
    """A JSON value that fits ``schema`` (the server's input schema), or None when the schema is unknown."""
    rng = rng or random.Random(0)
    kind = (schema or {}).get("type", "any")
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
    """A value the server's decoder takes for this column (kinds of nbserve/server/schema.py)."""
    kind = column_kind(col)
    if kind == "category" and col.get("categories"):
        return rng.choice(col["categories"])
    if kind == "datetime":
        offset = "+00:00" if col.get("tz") else ""
        return f"2024-01-{rng.randrange(1, 29):02d}T{rng.randrange(0, 24):02d}:00:00{offset}"
    if kind == "timedelta":
        return f"P0DT{rng.randrange(0, 24)}H0M0S"
    if kind == "boolean":
        return rng.random() < 0.5
    if kind in ("integer", "nullable_integer"):
        return rng.randrange(0, 3)
    if kind == "string":
        return rng.choice(["a", "b"])
    return _scalar(col.get("dtype", "float64"), rng)


def _scalar(dtype: str, rng: random.Random):
    dtype = str(dtype).lower()
    if dtype.startswith(("float", "complex")):
        return round(rng.uniform(0.0, 1.0), 6)
    if dtype.startswith(("int", "uint")):
        return rng.randrange(0, 3)
    if dtype in ("bool", "boolean"):
        return rng.random() < 0.5
    return rng.choice(["a", "b"])  # strings and objects: the model may still reject them (then said so)


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
    proc.stdin.write(json.dumps({m: b.decode() for m, b in bodies.items()}))
    proc.stdin.close()
    return proc


def kernel_answers(proc: subprocess.Popen, timeout: float = 300) -> dict:
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


def difference(expected, got) -> str | None:
    """None when two JSON answers agree (numbers to float tolerance), else where and how they differ."""
    return _diff(expected, got, "data")


def _diff(a, b, where):
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{where}: keys {sorted(a)} in the kernel, {sorted(b)} in the image"
        for k in a:
            d = _diff(a[k], b[k], f"{where}[{k!r}]")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items in the kernel, {len(b)} in the image"
        if a and all(_is_number(x) for x in a) and all(_is_number(x) for x in b):
            gaps = [_gap(x, y) for x, y in zip(a, b)]
            i = max(range(len(gaps)), key=gaps.__getitem__)  # the first of the largest differences
            if gaps[i] > 0:
                return f"{where}[{i}]: {a[i]!r} in the kernel, {b[i]!r} in the image"
            return None
        for i, (x, y) in enumerate(zip(a, b)):
            d = _diff(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    if _is_number(a) and _is_number(b):
        return None if _gap(a, b) == 0 else f"{where}: {a!r} in the kernel, {b!r} in the image"
    return None if a == b else f"{where}: {a!r} in the kernel, {b!r} in the image"


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) or x is None


def _gap(x, y) -> float:
    """0 when equal as numpy.allclose would say (rtol 1e-5, atol 1e-8; NaN, sent as null, equals NaN)."""
    if x is None or y is None:
        return 0.0 if x is y else float("inf")
    if abs(x - y) <= 1e-8 + 1e-5 * abs(y):
        return 0.0
    return abs(x - y)
