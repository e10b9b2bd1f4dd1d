"""What the gunicorn master may do with a model before it forks the workers.

gunicorn's ``--preload`` loads the app once in the master and forks ready workers from it, so a worker
replaced after a crash or a timeout answers at once. That is only safe while the master has started no
thread pool: libgomp (OpenMP, used by xgboost, lightgbm, scikit-learn's HistGradientBoosting, torch) keeps
its pool across ``fork()`` as data only, and the first parallel region in a child waits forever for
threads that do not exist there.

So the master never *calls* a model (the live replay runs in a forked child, see replay.py), and it
*loads* (unpickles) one only when the registration's proof saw that loading starts no thread
(``load_starts_threads`` in the manifest: xgboost and lightgbm start their pool while unpickling,
scikit-learn models do not). Otherwise each worker loads the model itself, right after the fork and
before it accepts a request (``_post_worker_init`` in master.py), with the thread budget of a worker.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from flask import Flask


def thread_count() -> int | None:
    """Threads of this process, native ones included (Linux), or None where that cannot be read."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


class ThreadCountingLoads:
    """``loads`` for artifact.load that tells threads started by building the objects (a pool started
    while unpickling: fork-unsafe) from threads started by importing their modules (BLAS pools, which
    are fork-safe, start at import): every import goes through ``find_class``, counted apart."""

    def __init__(self) -> None:
        self.by_imports = 0
        self.total: int | None = None

    def __call__(self, data: bytes) -> Any:
        import io
        import pickle

        counter = self

        class Unpickler(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:
                before = thread_count()
                try:
                    return super().find_class(module, name)
                finally:
                    after = thread_count()
                    if before is not None and after is not None:
                        counter.by_imports += after - before

        before = thread_count()
        obj = Unpickler(io.BytesIO(data)).load()
        after = thread_count()
        if before is not None and after is not None:
            self.total = after - before
        return obj

    @property
    def starts_threads(self) -> bool | None:
        """True when building the objects started threads, None when that could not be seen."""
        return None if self.total is None else self.total - self.by_imports > 0


def preload_is_safe(manifest: dict) -> bool:
    """True when the proof saw the artifact load without starting a thread; unknown counts as unsafe."""
    return manifest.get("load_starts_threads") is False


class DeferredApp:
    """A WSGI app whose model is loaded in the process that serves it (a worker), not in the master."""

    def __init__(self, artifact_dir: str, model_id: str | None = None) -> None:
        self.artifact_dir, self.model_id = artifact_dir, model_id
        self._app: Flask | None = None

    def load(self) -> Flask:
        if self._app is None:
            from .app import create_app

            self._app = create_app(self.artifact_dir, model_id=self.model_id)
        return self._app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return self.load()(environ, start_response)
