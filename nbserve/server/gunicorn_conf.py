"""gunicorn settings every nbserve server runs with: ``gunicorn -c python:nbserve.server.gunicorn_conf``.

A worker that dies is replaced by the arbiter; that is gunicorn's job and it does it well, with one
exception: a worker exiting with code 3 (WORKER_BOOT_ERROR) or 4 (APP_LOAD_ERROR) makes the arbiter
halt the whole server. Those codes are gunicorn's own, but a model calling ``os._exit(3)`` in the
middle of a request produces them too, and then a single bad request would take the instance down.
So in each worker (after the fork, once booted) ``os._exit`` maps 3 and 4 to 1: an ordinary crash,
replaced like any other. A segfault (a signal, not an exit code) is replaced without help.
(``sys.exit()`` in a model never gets that far: guards.contain_exits turns it into a 500.)
"""

import os
import sys

_RESERVED = (3, 4)


def post_worker_init(worker):
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
