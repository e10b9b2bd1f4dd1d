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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

_tasks: list = []  # [period, next due, fn, name], registered by the served modules as an app is made
_starters: list = []  # run once in each process that starts (a worker, after its fork), on its main thread
_lock = threading.Lock()
_thread_pid: int | None = None  # the process whose thread runs (threads do not survive a fork)
_held = False  # in gunicorn's master: no thread there (a fork must not copy one holding a lock)
_wake = threading.Event()


def every(seconds: float, fn: Callable[[], object], name: str | None = None) -> None:
    """Run ``fn()`` every ``seconds`` on the process's housekeeping thread. Registered where an app is made:
    in gunicorn's master (held: the thread starts in each worker after its fork, ``start``), in a worker, or
    in a plain process (a test client's), where the thread starts at once."""
    with _lock:
        _tasks.append([float(seconds), time.monotonic() + float(seconds), fn, name or getattr(fn, "__name__", "task")])
    if not _held:
        start()
    _wake.set()


def on_start(fn: Callable[[], object]) -> None:
    """Run ``fn()`` on the main thread of each process that starts serving (a worker after its fork; at once
    in a plain process): what must be set up per process, such as a signal handler."""
    with _lock:
        _starters.append(fn)
    if not _held and _thread_pid == os.getpid():
        fn()


def hold() -> None:
    """The master: register tasks, start no thread (each worker starts its own after the fork)."""
    global _held
    _held = True


def reset() -> None:
    """The master, before it makes the app of a new artifact: the old app's tasks are not the new workers'."""
    with _lock:
        _tasks.clear()
        _starters.clear()


def start() -> None:
    """Start this process's housekeeping thread (a worker calls it after its fork; idempotent)."""
    global _thread_pid, _held
    _held = False
    with _lock:
        if _thread_pid == os.getpid():
            return
        _thread_pid = os.getpid()
        starters = list(_starters)
    for fn in starters:
        fn()
    threading.Thread(target=_run, name="nbserve-housekeeping", daemon=True).start()


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
