"""What a worker does beside answering requests: one thread per worker process, started after the fork, that
runs the periodic work of every served module (the request deadline's watch, metrics, the request log,
drift), so that a request only appends to lists; and the size of the native thread pools.

A module registers a task with ``every(seconds, fn)``; the thread starts with the first task and runs each at
its period. A task that raises is logged once and keeps its place (bookkeeping never takes a worker down).
Imports nothing else from nbserve.
"""

from __future__ import annotations

import os
import sys
import threading
import time

_tasks: list = []  # [period, next due, fn, name]
_lock = threading.Lock()
_thread: threading.Thread | None = None
_pid: int | None = None
_wake = threading.Event()


def every(seconds: float, fn, name: str | None = None) -> None:
    """Run ``fn()`` every ``seconds`` on this process's housekeeping thread (started on first use)."""
    global _thread, _pid
    with _lock:
        if _pid != os.getpid():  # a fork (gunicorn's worker) inherits the list but not the thread
            _tasks.clear()
            _thread, _pid = None, os.getpid()
        _tasks.append([float(seconds), time.monotonic() + float(seconds), fn, name or getattr(fn, "__name__", "task")])
        if _thread is None:
            _thread = threading.Thread(target=_run, name="nbserve-housekeeping", daemon=True)
            _thread.start()
    _wake.set()


def _run() -> None:
    failed = set()
    while True:
        with _lock:
            tasks = list(_tasks)
        now = time.monotonic()
        wait = 1.0
        for task in tasks:
            period, due, fn, name = task
            if now >= due:
                try:
                    fn()
                except Exception as exc:
                    if name not in failed:
                        failed.add(name)
                        sys.stderr.write(f"nbserve: housekeeping task {name} failed: {type(exc).__name__}: {exc}\n")
                task[1] = now + period
            wait = min(wait, max(0.0, task[1] - time.monotonic()))
        _wake.wait(wait)
        _wake.clear()


def limit_threads(budget: int) -> dict:
    """Size this worker's native thread pools (OpenMP, BLAS, torch's) to ``budget`` threads: with each of
    several workers' pools using every core, a served model computes slower than in the kernel. Only the
    libraries loaded so far are limited (call it once the model is loaded). Returns {library: threads}."""
    limited = {}
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=budget)
        limited["openmp/blas"] = budget
    except Exception:
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            torch.set_num_threads(budget)
            limited["torch"] = budget
        except Exception:
            pass
    os.environ["OMP_NUM_THREADS"] = str(budget)  # for a library loaded later in this worker
    return limited
