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


# -- one listening socket per server, also with SO_REUSEPORT ----------------------------------------------
# With reuse_port (nbserve's process runtime sets it, for in-place updates) gunicorn gives each worker a
# socket of its own instead of sharing the master's. A worker that exits then closes its socket, and the
# connections waiting in that socket's queue are reset, and while no worker runs nobody listens: a
# replaced worker (after a timeout, a crash) would drop requests. So the master makes the one socket
# (with SO_REUSEPORT set, so a later server can still bind beside it) and every worker uses that.
def on_starting(server):
    if server.cfg.reuse_port and not server.LISTENERS:
        from gunicorn import sock

        server.LISTENERS = sock.create_sockets(server.cfg, server.log)


def post_fork(server, worker):
    if server.cfg.reuse_port and server.LISTENERS:
        own, worker.sockets = worker.sockets, list(server.LISTENERS)
        for listener in own:
            if listener not in server.LISTENERS:
                listener.close()


# -- taking over a shared port (nbserve's in-place update of a process instance) -------------------------
# Two servers bound to one port with SO_REUSEPORT form a group, and the kernel spreads new connections
# over it. When the old one closes, connections waiting in its accept queue are reset: a request lost.
# So the new server, once listening, attaches a one-instruction classic BPF program to the group that
# sends every new connection to the newest socket (index 1, the old one being 0): the old server only
# finishes what it already has, and closes with an empty queue. Once it is gone the index is out of range
# and the kernel falls back to its usual hashing. Linux only; elsewhere the update still works, unsteered.
SO_ATTACH_REUSEPORT_CBPF = 51
_BPF_RET_K = 0x06


def when_ready(server):
    port = os.environ.get("NBSERVE_TAKE_OVER_PORT")
    if port and sys.platform.startswith("linux"):
        for listener in server.LISTENERS:
            sock = getattr(listener, "sock", None)
            try:
                if sock is not None and sock.getsockname()[1] == int(port):
                    _steer_to_newest(sock)
                    server.log.info("nbserve: new connections on port %s now come to this server", port)
            except OSError as exc:
                server.log.warning("nbserve: could not steer port %s to this server: %s", port, exc)


def _steer_to_newest(sock) -> None:
    import ctypes
    import struct

    program = (ctypes.c_uint8 * 8).from_buffer_copy(struct.pack("=HBBI", _BPF_RET_K, 0, 0, 1))  # ret #1
    fprog = struct.pack("@HP", 1, ctypes.addressof(program))
    sock.setsockopt(__import__("socket").SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
