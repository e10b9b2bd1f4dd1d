"""gunicorn settings every nbserve server runs with: ``gunicorn -c python:nbserve.server.gunicorn_conf``.

A worker that dies is replaced by the arbiter; that is gunicorn's job and it does it well, with one
exception: a worker exiting with code 3 (WORKER_BOOT_ERROR) or 4 (APP_LOAD_ERROR) makes the arbiter
halt the whole server. Those codes are gunicorn's own, but a model calling ``os._exit(3)`` in the
middle of a request produces them too, and then a single bad request would take the instance down.
So in each worker (after the fork, once booted) ``os._exit`` maps 3 and 4 to 1: an ordinary crash,
replaced like any other. A segfault (a signal, not an exit code) is replaced without help.
(``sys.exit()`` in a model never gets that far: guards.contain_exits turns it into a 500.)

Metrics (metrics.py): prometheus_client's multiprocess mode needs a directory of its own for each
instance, empty at start and named in ``PROMETHEUS_MULTIPROC_DIR`` before prometheus_client is first
imported, which is before the app is (pre)loaded and the workers fork: this module is read by the
arbiter first, so it sets it here. The directory is ``NBSERVE_METRICS_DIR`` when the runtime names one
(the process runtime: the instance's own directory), else a fresh temporary one, removed at exit. A
worker that exits leaves its live gauges and drift window behind: ``child_exit`` drops them.
"""

import os
import shutil
import sys
import tempfile

_RESERVED = (3, 4)

if os.environ.get("NBSERVE_BATCH", "") not in ("", "0"):
    # batching (server/batching.py) gathers concurrent requests: a worker must hold many at once
    worker_class = "gthread"
    threads = max(4, int(os.environ.get("NBSERVE_MAX_BATCH") or 64))


def post_worker_init(worker):
    # a model the master must not load (forksafe.DeferredApp) loads here, before the first request
    from nbserve.server.forksafe import DeferredApp

    if isinstance(worker.wsgi, DeferredApp):
        worker.wsgi.load()
    real_exit = os._exit

    def _exit(code=0):
        if code in _RESERVED:
            sys.stderr.write(
                f"nbserve: worker {os.getpid()} called os._exit({code}); exiting with 1 so "
                f"that gunicorn replaces the worker instead of halting the server\n"
            )
            sys.stderr.flush()
            code = 1
        real_exit(code)

    os._exit = _exit


def _metrics_dir():
    if os.environ.get("NBSERVE_METRICS", "1").strip().lower() in ("0", "false", "no", "off"):
        return None, False
    given = os.environ.get("NBSERVE_METRICS_DIR")
    if given:
        shutil.rmtree(given, ignore_errors=True)  # counts of an earlier run are not this run's
        os.makedirs(given, exist_ok=True)
        return given, False
    shm = "/dev/shm"
    parent = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix="nbserve-metrics-", dir=parent), True


_METRICS_DIR, _OWN_DIR = _metrics_dir()
if _METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _METRICS_DIR


def child_exit(server, worker):
    if not _METRICS_DIR:
        return
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, _METRICS_DIR)
    except ImportError:
        pass
    from nbserve.server.drift import forget_worker

    forget_worker(_METRICS_DIR, worker.pid)


def on_exit(server):
    if _OWN_DIR:
        shutil.rmtree(_METRICS_DIR, ignore_errors=True)
