"""Replay a sample through an artifact in a clean interpreter and report what that needed.

Two ways: in a forked child of a server's master (``replay_in_child``, master.py's ``prove``: the master
imported the modules the pickle names first, recording who imported what, and the child only unpickles and
calls), or as ``python -I -c "...replay.main()" ARTIFACT_DIR SAMPLE_PICKLE REPORT_PICKLE`` (capture.prove,
for registrations that start no server). The report holds the top-level modules that importing, loading and
calling the model imported, each with the module that imported it (the proof behind the requirement list),
and each method's output, so the caller can compare them with the answers in the kernel.
"""

from __future__ import annotations

import builtins
import os
import pickle
import sys
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import FrameType, ModuleType

# The staging directory of a new registration, as the kernel writes it (capture's Draft.stage and the
# runtime) and the proof reads it. The names live here, in the one module both sides import.
STAGED_ARTIFACT = "artifact"  # model.pkl + manifest.json of the draft
SAMPLE = "sample.pkl"  # the first rows of the registration sample
REPORT = "report.pkl"  # what the replay found (written by the proof)


def read_report(path: str | os.PathLike[str]) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)


class ImportRecorder:
    """Notes, for each top-level module, which modules imported it: a meta-path finder (finding
    nothing) sees first imports, including importlib.import_module; a wrapper of __import__ sees
    every import statement, also of modules already loaded. The caller can then tell a library's
    optional import (``try: import pandas``) from a real need of the captured code."""

    def __init__(self) -> None:
        self.importers: dict[str, set[str | None]] = {}
        self._import = builtins.__import__

    def _note(self, name: str, importer: str | None) -> None:
        self.importers.setdefault(name.partition(".")[0], set()).add(importer)

    def find_spec(self, name: str, path: Sequence[str] | None = None, target: object = None) -> None:
        if "." not in name and name not in sys.modules:
            self._note(name, _importer(sys._getframe(1)))
        return None

    def __enter__(self) -> ImportRecorder:
        original = self._import = builtins.__import__
        own = globals()

        def recording_import(
            name: str,
            globals: Mapping[str, Any] | None = None,
            locals: Mapping[str, object] | None = None,
            fromlist: Sequence[str] | None = (),
            level: int = 0,
        ) -> ModuleType:
            if level == 0 and globals is not None:
                # An import made by C code (a compiled extension's module init, say matplotlib's ft2font)
                # comes with the globals of the nearest Python frame, this very function: the importer is
                # the code further out, never the replay itself (else optional imports of libraries landed in
                # the lock as the model's own needs)
                importer = _importer(sys._getframe(1)) if globals is own else globals.get("__name__")
                self._note(name, importer)
            return original(name, globals, locals, fromlist, level)

        builtins.__import__ = recording_import
        sys.meta_path.insert(0, self)
        return self

    def __exit__(self, *exc: object) -> None:
        builtins.__import__ = self._import
        sys.meta_path.remove(self)


def _importer(frame: FrameType | None) -> str | None:
    """The module of the nearest frame outside the import machinery and this recorder."""
    while frame is not None:
        mod = frame.f_globals.get("__name__") or ""
        if not mod.startswith(("importlib", "_frozen_importlib")) and mod != __name__:
            return mod
        frame = frame.f_back
    return None


def replay(artifact_dir: str, sample_path: str) -> tuple[dict, Any]:
    """(report, loaded object): load the artifact and call each method on the sample, recording imports,
    and whether loading alone started threads (forksafe.py: then no server master may load it)."""
    from . import artifact
    from .forksafe import ThreadCountingLoads
    from .streaming import is_stream

    # the sample's own modules (numpy, pandas) count: the server builds the same types from JSON
    outputs, errors = {}, {}
    with ImportRecorder() as recorder:
        with open(sample_path, "rb") as f:
            sample = pickle.load(f)
        loads = ThreadCountingLoads()
        obj, manifest = artifact.load(artifact_dir, loads=loads)
        methods = artifact.bind_methods(obj, manifest)
        for name, fn in methods.items():
            try:
                outputs[name] = fn(sample)
                if is_stream(outputs[name]):  # a streaming method: its items, as the kernel collected them
                    outputs[name] = list(outputs[name])
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}"
    report: dict[str, Any] = {"imports": recorder.importers, "outputs": outputs, "errors": errors}
    report["load_starts_threads"] = loads.starts_threads
    return report, obj


def _write_report(report: dict, path: str) -> None:
    """Write atomically (the reader polls for the file), keeping the module list if outputs won't pickle."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        try:
            pickle.dump(report, f)
        except Exception:
            report["outputs"] = {}
            f.seek(0)
            f.truncate()
            pickle.dump(report, f)
    os.replace(tmp, path)


def replay_in_child(stage: str | os.PathLike[str], imported: dict | None = None) -> str:
    """Replay the staged draft in a forked child, so that whatever the model starts (an OpenMP pool) never
    lives in the master that forks the workers; write the report (also when the child dies) and return its
    path. ``imported``: {module: importers} the master recorded while importing the pickle's modules before
    the fork (the child sees those imports done): merged into the report as if the child had made them."""

    stage = os.fspath(stage)
    report_path = os.path.join(stage, REPORT)
    pid = os.fork()
    if pid == 0:  # the child: replay, report, and leave without running the parent's cleanup
        code = 0
        try:
            try:
                report, _ = replay(os.path.join(stage, STAGED_ARTIFACT), os.path.join(stage, SAMPLE))
                for name, importers in (imported or {}).items():
                    report["imports"].setdefault(name, set()).update(importers)
            except Exception as exc:
                report = {"load_error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-5)}"}
            _write_report(report, report_path)
        except BaseException:
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if not os.path.exists(report_path):
        how = f"signal {-os.waitstatus_to_exitcode(status)}" if os.WIFSIGNALED(status) else f"exit {status >> 8}"
        _write_report({"load_error": f"loading and calling the model crashed the interpreter ({how})"}, report_path)
    return report_path


def main(argv: list[str] | None = None) -> None:
    artifact_dir, sample_path, report_path = (argv or sys.argv[1:])[:3]
    try:
        report, _ = replay(artifact_dir, sample_path)
    except Exception as exc:
        report = {"load_error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-5)}"}
    _write_report(report, report_path)


if __name__ == "__main__":
    main()
