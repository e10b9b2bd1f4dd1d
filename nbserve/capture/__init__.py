"""Capture a live object: its pickle, its methods, its signature and the requirements it really needs."""

from __future__ import annotations

import hashlib
import inspect
import json
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cloudpickle

from ..errors import CaptureError, RequirementsError, SampleError
from ..server.artifact import bind_methods
from ..server.replay import REPORT, SAMPLE, STAGED_ARTIFACT, read_report
from . import pickling, reference, requirements
from .compare import difference
from .signature import batch_slice, describe, example, sliced_fields

SAMPLE_ROWS = 5
PROOF_TIMEOUT = 300


@dataclass
class Captured:
    pickle: bytes
    manifest: dict  # everything but pickle_sha256, which the registry adds when it stores the bytes
    outputs: dict  # method -> its answer on the sample slice, in the kernel


def _is_torch_module(obj) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def resolve_methods(obj, methods=None) -> tuple[str, list[str]]:
    """(kind, method names): 'function' objects are served under one name; 'object's by attribute;
    a torch 'torch_module' as ``predict`` (its ``__call__``) and the methods named (``forward``), each in
    eval mode without gradients, numpy in and out (server/artifact.py binds them)."""
    if _is_torch_module(obj):
        kind, names = "torch_module", list(methods) if methods else ["predict"]
        missing = [m for m in names if m != "predict" and not callable(getattr(obj, m, None))]
        if missing:
            raise CaptureError(f"{type(obj).__name__} has no callable method(s) {missing}")
    elif inspect.isroutine(obj) or (
        callable(obj) and not hasattr(obj, "predict") and not hasattr(obj, "transform") and not methods
    ):
        default = obj.__name__ if getattr(obj, "__name__", "").isidentifier() else "predict"
        names = list(methods) if methods else [default]
        if len(names) != 1:
            raise CaptureError(f"a function is served as one method; got methods={names}")
        kind = "function"
    else:
        if methods:
            names = list(methods)
            missing = [m for m in names if not callable(getattr(obj, m, None))]
            if missing:
                raise CaptureError(f"{type(obj).__name__} has no callable method(s) {missing}")
        elif hasattr(obj, "predict"):
            names = ["predict"] + (["predict_proba"] if hasattr(obj, "predict_proba") else [])
        elif hasattr(obj, "transform"):
            names = ["transform"]
        else:
            raise CaptureError(
                f"{type(obj).__name__} has no predict or transform method; "
                f"pass methods=[...] naming the ones to serve, or serve a function"
            )
        kind = "object"
    for name in names:
        if not name.isidentifier() or name.startswith("_") or name in ("health", "docs", "static"):
            raise CaptureError(f"{name!r} cannot be a served method name: use a public identifier")
    return kind, names


@dataclass
class Draft:
    """A captured object before its proof: everything but the requirements the proof confirms."""

    label: str
    pickle: bytes
    kind: str
    names: list
    signature: dict
    outputs: dict
    modules: set  # found statically: pickle globals, the captured functions' globals, the sample's type
    sample_slice: object
    object_type: str
    reference: dict | None = None  # drift reference of the sample (capture/reference.py)

    def stage(self, directory: Path) -> Path:
        """Write what a clean interpreter needs to replay this draft: the artifact and the sample."""
        art = Path(directory) / STAGED_ARTIFACT
        art.mkdir(parents=True, exist_ok=True)
        (art / "model.pkl").write_bytes(self.pickle)
        (art / "manifest.json").write_text(
            json.dumps(
                {
                    "kind": self.kind,
                    "methods": self.names,
                    "signature": self.signature,
                    "pickle_sha256": hashlib.sha256(self.pickle).hexdigest(),
                }
            )
        )
        (Path(directory) / SAMPLE).write_bytes(cloudpickle.dumps(self.sample_slice))
        return art

    def finish(self, report: dict | None) -> Captured:
        """Check the proof's report (if any) against the kernel's answers and lock the requirements."""
        modules = set(self.modules)
        if report is not None:
            modules |= check_report(report, self)
        manifest = {
            "format": 1,
            "kind": self.kind,
            "object_type": self.object_type,
            "methods": self.names,
            "signature": self.signature,
            "requirements": requirements.lock(
                requirements.distributions_for(modules), imported=set(report["imports"]) if report else None
            ),
            "python": platform.python_version(),
        }
        if self.reference:
            manifest["reference"] = self.reference
        if self.sample_slice is not None:  # /docs' "Try it out" starts from a real row and its answer
            examples = {
                name: {"input": example(self.sample_slice), "output": example(self.outputs.get(name))}
                for name in self.names
            }
            manifest["examples"] = {k: v for k, v in examples.items() if v["input"] is not None}
        if report is not None:  # whether a server master may load it before forking (server/forksafe.py)
            manifest["load_starts_threads"] = report.get("load_starts_threads")
        return Captured(self.pickle, manifest, self.outputs)


def draft(obj, label="model", sample=None, methods=None) -> Draft:
    kind, names = resolve_methods(obj, methods)
    pkl = pickling.dump(obj, label)

    signature, outputs = {}, {}
    sample_slice = batch_slice(sample, SAMPLE_ROWS) if sample is not None else None
    for name in names:
        signature[name] = {"input": describe(sample) if sample is not None else {"type": "any"}}
        signature[name]["output"] = {"type": "any"}
    # the methods as the server binds them (a torch module's in eval mode, numpy in and out)
    bound = bind_methods(obj, {"kind": kind, "methods": names, "signature": signature})
    if sample is not None:
        for name in names:
            try:
                outputs[name] = bound[name](sample_slice)
            except Exception as exc:
                raise SampleError(
                    f"calling {label}.{name} on the first {SAMPLE_ROWS} rows of the sample{sliced_fields(sample)} "
                    f"failed with {type(exc).__name__}: {exc}; pass a sample the model accepts"
                ) from exc
            signature[name]["output"] = describe(outputs[name])

    modules = requirements.modules_in_pickle(pkl) | requirements.modules_used_by_functions(obj)
    ref = None
    if sample is not None:
        modules |= {type(sample).__module__.partition(".")[0]}
        ref = reference.compute(bound.__getitem__, sample, names)
    return Draft(
        label,
        pkl,
        kind,
        names,
        signature,
        outputs,
        modules,
        sample_slice,
        f"{type(obj).__module__}.{type(obj).__qualname__}",
        ref,
    )


def capture(obj, label="model", sample=None, methods=None, proof=True) -> Captured:
    d = draft(obj, label, sample, methods)
    return d.finish(prove(d) if proof else None)


def prove(d: Draft) -> dict:
    """Load the draft in a clean interpreter (``python -I``, another working directory) and replay the sample."""
    package_parent = str(Path(__file__).resolve().parents[2])
    boot = "import sys; sys.path.insert(0, sys.argv.pop(1)); from nbserve.server.replay import main; main(sys.argv[1:])"
    with tempfile.TemporaryDirectory(prefix="nbserve-proof-") as tmp_name:
        tmp = Path(tmp_name)
        art = d.stage(tmp)
        cmd = [
            sys.executable,
            "-I",
            "-c",
            boot,
            package_parent,
            str(art),
            str(tmp / SAMPLE),
            str(tmp / REPORT),
        ]
        try:
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=PROOF_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RequirementsError(f"loading {d.label} in a clean interpreter took over {PROOF_TIMEOUT} s") from None
        if not (tmp / REPORT).exists():
            raise RequirementsError(
                f"loading {d.label} in a clean interpreter crashed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
            )
        return read_report(tmp / REPORT)


def check_report(report: dict, d: Draft) -> set[str]:
    """The modules the proof showed the artifact needs; an error if it did not load or answered differently."""
    if "load_error" in report:
        raise RequirementsError(
            f"{d.label} does not load in a clean interpreter of {sys.executable}: {report['load_error']}"
        )
    if d.sample_slice is not None:
        for name in d.names:
            if name in report["errors"]:
                raise RequirementsError(
                    f"{d.label}.{name} works in the kernel but fails in a clean interpreter: {report['errors'][name]}"
                )
            diff = difference(d.outputs.get(name), report["outputs"].get(name), "output", there="a clean interpreter")
            if diff:
                raise RequirementsError(f"{d.label}.{name} answers differently in a clean interpreter: {diff}")
    return requirements.needed_imports(report["imports"])
