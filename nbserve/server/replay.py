"""Replay a sample through an artifact in a clean interpreter and report what that needed.

Run as ``python -I -c "...replay.main()" ARTIFACT_DIR SAMPLE_PICKLE REPORT_PICKLE``. The report holds
the top-level modules that loading and calling the model imported, each with the module that
imported it (the proof behind the requirement list), and each method's output, so the caller can
compare them with the answers in the kernel.
"""

import pickle
import sys
import traceback


class _ImportRecorder:
    """Notes, for each top-level module, which modules imported it: a meta-path finder (finding
    nothing) sees first imports, including importlib.import_module; a wrapper of __import__ sees
    every import statement, also of modules already loaded. The caller can then tell a library's
    optional import (``try: import pandas``) from a real need of the captured code."""

    def __init__(self):
        self.importers = {}
        self._import = None

    def _note(self, name, importer):
        self.importers.setdefault(name.partition(".")[0], set()).add(importer)

    def find_spec(self, name, path=None, target=None):
        if "." not in name and name not in sys.modules:
            frame = sys._getframe(1)
            while frame is not None:
                mod = frame.f_globals.get("__name__") or ""
                if not mod.startswith(("importlib", "_frozen_importlib")) and mod != __name__:
                    break
                frame = frame.f_back
            self._note(name, frame.f_globals.get("__name__") if frame is not None else None)
        return None

    def __enter__(self):
        import builtins

        original = self._import = builtins.__import__

        def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
            if level == 0 and globals is not None:
                self._note(name, globals.get("__name__"))
            return original(name, globals, locals, fromlist, level)

        builtins.__import__ = recording_import
        sys.meta_path.insert(0, self)
        return self

    def __exit__(self, *exc):
        import builtins

        builtins.__import__ = self._import
        sys.meta_path.remove(self)


def replay(artifact_dir, sample_path):
    from . import artifact

    # the sample's own modules (numpy, pandas) count: the server builds the same types from JSON
    outputs, errors = {}, {}
    with _ImportRecorder() as recorder:
        with open(sample_path, "rb") as f:
            sample = pickle.load(f)
        obj, manifest = artifact.load(artifact_dir)
        methods = artifact.bind_methods(obj, manifest)
        for name, fn in methods.items():
            try:
                outputs[name] = fn(sample)
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}"
    return {"imports": recorder.importers, "outputs": outputs, "errors": errors}


def main(argv=None):
    artifact_dir, sample_path, report_path = (argv or sys.argv[1:])[:3]
    try:
        report = replay(artifact_dir, sample_path)
    except Exception as exc:
        report = {"load_error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-5)}"}
    with open(report_path, "wb") as f:
        try:
            pickle.dump(report, f)
        except Exception:  # outputs that cannot be pickled are still no reason to lose the module list
            report["outputs"] = {}
            f.seek(0)
            f.truncate()
            pickle.dump(report, f)


if __name__ == "__main__":
    main()
