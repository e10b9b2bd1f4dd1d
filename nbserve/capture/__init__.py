"""Capture a live object: its pickle, its methods, its signature and the requirements it really needs."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cloudpickle

from ..errors import CaptureError, RequirementsError, SampleError
from ..server.shared import REPORT, SAMPLE, STAGED_ARTIFACT, bind_methods, is_stream, read_report
from ..store import scratch
from . import pickling, reference, requirements
from .compare import answers_differ
from .signature import batch_slice, describe, example, sliced_fields

SAMPLE_ROWS = 5
PROOF_TIMEOUT = 300
# Environment variables that change what a model's libraries do (Keras' backend, the size of thread pools,
# offline switches): captured with the version when the kernel has them set, and set again wherever the
# version is served (the process runtime's environment, the image's ENV, and the server before unpickling)
CAPTURED_ENV = (
    "KERAS_BACKEND",
    "TF_USE_LEGACY_KERAS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "TOKENIZERS_PARALLELISM",
    "JAX_PLATFORMS",
    "JAX_ENABLE_X64",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
)
COMPARES = ("values", "shapes")


def captured_environment(env: dict | None = None) -> dict:
    """The CAPTURED_ENV variables set in this kernel, and ``env`` (variables the user names) over them."""
    found = {k: os.environ[k] for k in CAPTURED_ENV if k in os.environ}
    for key, value in (env or {}).items():
        if not isinstance(key, str) or not key or "=" in key or not isinstance(value, str):
            raise CaptureError(f"env must map variable names to strings, got {key!r}: {value!r}")
        found[key] = value
    return dict(sorted(found.items()))


def system_packages_of(packages) -> list[str]:
    """Debian package names (``system_packages=[...]``) an image of the model installs besides what nbserve
    finds the locked wheels need (runtimes/system_libraries.py)."""
    if packages is None:
        return []
    if isinstance(packages, str) or not all(
        isinstance(p, str) and re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", p) for p in packages
    ):
        raise CaptureError(
            f"system_packages must be a list of Debian package names such as ['libgomp1'], got {packages!r}"
        )
    return sorted(set(packages))


def proof_rule(compare: str = "values", tolerance: float | None = None) -> dict:
    """How the proof compares the kernel's answers with a clean interpreter's (and an image's): exactly to
    float precision ("values"), within a relative ``tolerance``, or only their shapes and dtypes ("shapes")."""
    if compare not in COMPARES:
        raise CaptureError(f"compare must be one of {COMPARES}, got {compare!r}")
    if tolerance is not None:
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1e6:
            raise CaptureError(f"tolerance must be a relative difference >= 0 (0.05 for 5%), got {tolerance!r}")
        if compare == "shapes":
            raise CaptureError("tolerance applies when values are compared, not with compare='shapes'")
    rule: dict = {"compare": compare}
    if tolerance is not None:
        rule["rtol"] = float(tolerance)
    return rule


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
    environment: dict | None = None  # the CAPTURED_ENV variables, set wherever the version is served
    proof: dict | None = None  # how answers are compared (proof_rule): {"compare": "values"} unless told
    system_packages: list | None = None  # Debian packages an image installs (system_packages_of)
    text_kind: str | None = None  # "chat" or "embeddings": served on OpenAI's routes too (check_text_function)

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
                    **({"environment": self.environment} if self.environment else {}),
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
        if self.environment:
            manifest["environment"] = self.environment
        if self.system_packages:
            manifest["system_packages"] = self.system_packages
        if self.text_kind:
            manifest["openai"] = self.text_kind  # the server adds OpenAI's routes (server/protocols/openai.py)
        if self.proof and self.proof != {"compare": "values"}:
            manifest["proof"] = self.proof  # the image's readiness check compares by the same rule
        if report is not None:  # whether a server master may load it before forking (server/forksafe.py)
            manifest["load_starts_threads"] = report.get("load_starts_threads")
        return Captured(self.pickle, manifest, self.outputs)


def draft(
    obj,
    label="model",
    sample=None,
    methods=None,
    env=None,
    compare="values",
    tolerance=None,
    system_packages=None,
    text_kind=None,
) -> Draft:
    kind, names = resolve_methods(obj, methods)
    if text_kind is not None:
        if text_kind not in TEXT_KINDS:
            raise CaptureError(
                f"kind must be one of {TEXT_KINDS} (OpenAI's routes for text functions), got {text_kind!r}"
            )
        if len(names) != 1:
            raise CaptureError(f"kind={text_kind!r} serves one method; name it with methods=[...] (got {names})")
        if sample is None:  # a text function's input is known: the proof needs no sample from the user
            sample = TEXT_SAMPLES[text_kind]
    rule = proof_rule(compare, tolerance)
    packages = system_packages_of(system_packages)
    environment = captured_environment(env)
    pkl = pickling.dump(obj, label)

    signature, outputs = {}, {}
    sample_slice = batch_slice(sample, SAMPLE_ROWS) if sample is not None else None
    for name in names:
        signature[name] = {"input": describe(sample) if sample is not None else {"type": "any"}}
        signature[name]["output"] = {"type": "any"}
    # the methods as the server binds them (a torch module's in eval mode, numpy in and out); a method that
    # returns a generator streams its items when served: here its items are collected, to be described and proven
    raw = bind_methods(obj, {"kind": kind, "methods": names, "signature": signature})
    streams = {name for name in names if _is_generator_function(obj if kind == "function" else raw[name])}
    bound = {name: _collecting(fn, name, streams) for name, fn in raw.items()}
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
            check_deterministic(label, name, bound[name], sample_slice, outputs[name], rule)
    for name in streams:  # the schema of one item; the answer is their stream
        items = outputs.get(name) or []
        signature[name]["output"] = describe(items[0], top=False) if items else {"type": "any"}
        signature[name]["stream"] = True
    if text_kind is not None:
        check_text_function(label, names[0], text_kind, sample_slice, outputs[names[0]])

    modules = requirements.modules_in_pickle(pkl) | requirements.modules_used_by_functions(obj)
    ref = None
    if sample is not None:
        modules |= {type(sample).__module__.partition(".")[0]}
        # drift: a streaming method's input counts, its items do not (reference.py bins whole answers)
        ref = reference.compute(bound.__getitem__, sample, [n for n in names if n not in streams])
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
        environment,
        rule,
        packages,
        text_kind,
    )


TEXT_KINDS = ("chat", "embeddings")
TEXT_SAMPLES: dict = {"chat": [{"role": "user", "content": "Hello"}], "embeddings": ["Hello", "world"]}


def check_text_function(label: str, name: str, text_kind: str, sample, output) -> None:
    """A function served on OpenAI's routes must answer as they need: a chat function text (a str, or pieces of
    it: str, or dicts with "content"), an embeddings function one vector per text."""
    if text_kind == "chat":
        pieces = output if isinstance(output, list) else [output]
        ok = all(isinstance(p, str) or (isinstance(p, dict) and isinstance(p.get("content", ""), str)) for p in pieces)
        if not ok:
            raise SampleError(
                f"{label}.{name} answered {type(output).__name__} to the messages {sample!r}; a function served with "
                f"kind='chat' takes a list of {{'role', 'content'}} messages and returns the reply's text (a str), or "
                f"yields its pieces (str, or dicts with 'content' and, once, 'usage')"
            )
        return
    vectors: object = output.get("embeddings") if isinstance(output, dict) else output
    tolist = getattr(vectors, "tolist", None)
    rows = tolist() if tolist is not None else vectors
    if not isinstance(rows, list) or len(rows) != len(sample) or not all(isinstance(r, list) and r for r in rows):
        raise SampleError(
            f"{label}.{name} answered {type(output).__name__} to the texts {sample!r}; a function served with "
            f"kind='embeddings' takes a list of texts and returns one vector per text (a 2-D array or a list of lists)"
        )


def _is_generator_function(fn) -> bool:
    if not inspect.isroutine(fn):  # a callable object: its __call__
        fn = type(fn).__call__ if callable(fn) else fn
    return inspect.isgeneratorfunction(fn) or inspect.isgeneratorfunction(getattr(fn, "__func__", None))


def _collecting(fn, name, streams: set):
    """``fn``, with a streamed answer (a generator or other iterator) collected into the list of its items;
    a method seen to stream joins ``streams``."""

    def call(data):
        result = fn(data)
        if is_stream(result):
            streams.add(name)
            return list(result)
        return result

    return call


def check_deterministic(label, name, method, rows, first, rule) -> None:
    """Call the method a second time on the same rows in the kernel: a model that answers differently (it
    samples at random) cannot be proven by comparing values; say so in plain words, and what to do."""
    try:
        second = method(rows)
    except Exception:  # it answered once: the proof will tell if it cannot answer again
        return
    diff = answers_differ(first, second, rule, here="the first call", there="the second")
    if diff:
        within = f"within the tolerance {rule['rtol']:g}" if "rtol" in rule else "equal"
        raise SampleError(
            f"{label}.{name} is not deterministic: called twice on the same first {SAMPLE_ROWS} rows of the sample "
            f"in this kernel, its answers were not {within} ({diff}). Its answers cannot be proven equal in a clean "
            f"interpreter. If it draws random numbers on purpose (Prophet's uncertainty intervals, sampling from a "
            f"distribution), register it with tolerance=0.05 (answers may differ by 5%) or compare='shapes' (only "
            f"the shapes and dtypes of its answers are proven); or fix its random seed"
        )


def capture(obj, label="model", sample=None, methods=None, proof=True, **rules) -> Captured:
    """``rules``: env, compare, tolerance, system_packages (see draft)."""
    d = draft(obj, label, sample, methods, **rules)
    return d.finish(prove(d) if proof else None)


def prove(d: Draft) -> dict:
    """Load the draft in a clean interpreter (``python -I``, another working directory) and replay the sample."""
    package_parent = str(Path(__file__).resolve().parents[2])
    boot = "import sys; sys.path.insert(0, sys.argv.pop(1)); from nbserve.server.replay import main; main(sys.argv[1:])"
    with scratch.directory(prefix=scratch.PROOF_PREFIX) as tmp:  # removed however the proof ends
        with scratch.writing(tmp, f"the draft of {d.label} for its proof", len(d.pickle)):
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
            diff = answers_differ(
                d.outputs.get(name), report["outputs"].get(name), d.proof, "output", there="a clean interpreter"
            )
            if diff:
                raise RequirementsError(f"{d.label}.{name} answers differently in a clean interpreter: {diff}")
    return requirements.needed_imports(report["imports"])
