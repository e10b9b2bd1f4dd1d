"""Functions the stream and job tests serve (imported by name: capture pickles them by value, as it does a
notebook's functions): a generator whose pace, stalls and failures the request chooses, and a long
computation that reports its progress."""


def stuck_in_native_code():
    """Native code that never returns (as a libgomp barrier after a fork does): a mutex locked twice. No signal
    handler runs meanwhile; only the deadline's watch, from another thread, can answer for it."""
    import ctypes

    libc = ctypes.CDLL(None)
    mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)


def ticks(params):
    """Items ``{"i": i}``, one every ``every`` seconds (``stall`` seconds before item ``stall_at``), raising at
    item ``fail_at``, stuck in native code at item ``stuck_at``; each item's index goes to the file ``log`` when
    given, and "closed" when it stops, however it stops."""
    import time

    log = params.get("log")

    def note(text):
        if log:
            with open(log, "a") as f:
                f.write(text + "\n")

    try:
        for i in range(int(params.get("n", 3))):
            if i == params.get("fail_at"):
                raise ValueError(f"no item {i}")
            if i == params.get("stuck_at"):
                stuck_in_native_code()
            time.sleep(float(params["stall"]) if i == params.get("stall_at") else float(params.get("every", 0)))
            note(str(i))
            yield {"i": i}
    finally:
        note("closed")


def simulate(params, progress=None):
    """A long computation: ``seconds`` in ``steps`` equal steps, reporting its progress after each (and stuck in
    native code after the first with ``stuck``); each step goes to the file ``log`` when given (a test sees
    whether it ran on)."""
    import time

    steps, seconds = int(params.get("steps", 10)), float(params["seconds"])
    log = params.get("log")
    for i in range(steps):
        time.sleep(seconds / steps)
        if log:
            with open(log, "a") as f:
                f.write(f"{i}\n")
        if progress is not None:
            progress(fraction=(i + 1) / steps, message=f"step {i + 1} of {steps}")
        if params.get("stuck"):
            stuck_in_native_code()
    return {"steps": steps, "seconds": seconds}
