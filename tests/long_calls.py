"""Functions the stream and job tests serve (imported by name: capture pickles them by value, as it does a
notebook's functions): a generator whose pace, stalls and failures the request chooses, and a long
computation that reports its progress."""


def ticks(params):
    """Items ``{"i": i}``, one every ``every`` seconds (``stall`` seconds before item ``stall_at``), raising at
    item ``fail_at``; each item's index goes to the file ``log`` when given, and "closed" when it stops, however
    it stops."""
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
            time.sleep(float(params["stall"]) if i == params.get("stall_at") else float(params.get("every", 0)))
            note(str(i))
            yield {"i": i}
    finally:
        note("closed")


def simulate(params, progress=None):
    """A long computation: ``seconds`` in ``steps`` equal steps, reporting its progress after each; each step
    goes to the file ``log`` when given (a test sees whether it ran on)."""
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
    return {"steps": steps, "seconds": seconds}
