"""Follow the kernel: ``%serve lr --follow`` (``serve(lr, ..., follow=True)``) re-serves ``lr`` in place after
every cell that changed it, refit or reassigned, with one line; a change that fails its proof or would break
the callers (another input or output) leaves the served version serving and says why.

The check after a cell must cost a cell almost nothing, so it never reads the model's bytes: ``fingerprint``
walks the objects reachable from the variable's value and notes their identities, types and sizes, the
address, shape and a few evenly spaced values of each array (a refit makes new arrays; an in-place update
of some values shows in the sampled ones) and torch's in-place version counter of each tensor. Containers
larger than ``SAMPLED_ITEMS`` are sampled too, and the walk stops after ``LIMIT`` objects: a change that
touches neither identities nor sampled values (an edit of one value inside an array that the sample misses)
is not seen; ``%serve lr`` again serves it. ``benchmarks/follow_check.py`` measures the cost on a 100 MB model.

A face of the notebook (it registers an IPython ``post_run_cell`` hook); the re-serve itself is
``Workspace.reserve``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from .errors import InstanceNotFoundError, NbserveError
from .notebook_text import error_text

LIMIT = 20_000  # objects visited per check, at most
SAMPLED_ITEMS = 256  # a list or dict longer than this is fingerprinted by its length and this many items
ARRAY_SAMPLES = 32  # values read from each array
_ATOMS = (int, float, complex, bool, str, type(None))


def fingerprint(obj, limit: int = LIMIT) -> int:
    """A number that changes when ``obj`` is refit or reassigned (see the module's docstring)."""
    np = sys.modules.get("numpy")
    torch = sys.modules.get("torch")
    ndarray = np.ndarray if np is not None else ()
    tensor = torch.Tensor if torch is not None else ()
    parts: list = []
    seen: set = set()
    stack = [obj]
    visited = 0
    while stack:
        o = stack.pop()
        t = type(o)
        if t in _ATOMS:
            parts.append(o)
            continue
        if t is bytes or t is bytearray:
            parts.append((len(o), bytes(o[:64])))
            continue
        key = id(o)
        if key in seen:
            continue
        seen.add(key)
        visited += 1
        if visited > limit:
            parts.append(visited)
            break
        parts.append(key)
        parts.append(t)
        if isinstance(o, ndarray):
            parts.append(_array(np, o))
            continue
        if isinstance(o, tensor):
            parts.append((o.data_ptr(), o._version, tuple(o.shape), str(o.dtype)))
            continue
        if isinstance(o, dict):
            parts.append(len(o))
            items = list(o.items()) if len(o) <= SAMPLED_ITEMS else _sampled(list(o.items()))
            for k, v in items:
                stack.append(k)
                stack.append(v)
            continue
        if isinstance(o, (list, tuple, set, frozenset)):
            parts.append(len(o))
            seq = o if isinstance(o, (list, tuple)) else list(o)
            stack.extend(seq if len(seq) <= SAMPLED_ITEMS else _sampled(seq))
            continue
        if isinstance(o, type) or callable(o) and not hasattr(o, "__dict__"):
            continue  # classes and builtins: their identity is enough
        state = getattr(o, "__dict__", None)
        if isinstance(state, dict):
            stack.append(state)
        for name in getattr(t, "__slots__", ()) or ():
            stack.append(getattr(o, name, None))
    return hash(tuple(parts))


def _array(np, a):
    """Where an array's data is, its shape and dtype, and a few evenly spaced values (no copy of the data)."""
    described: tuple = (a.__array_interface__["data"][0], a.shape, a.dtype.str)
    if a.size and a.dtype.kind in "biufcmM":
        picks = np.linspace(0, a.size - 1, num=min(ARRAY_SAMPLES, a.size)).astype(np.intp)
        described += (a.flat[picks].tobytes(),)
    return described


def _sampled(seq) -> list:
    step = max(1, len(seq) // SAMPLED_ITEMS)
    return list(seq[::step][:SAMPLED_ITEMS]) + [seq[-1]]


@dataclass
class Followed:
    variable: str
    instance: str
    sample: str | None = None  # the notebook variable holding the sample, read again at each change
    last: int = 0
    checks_ms: list = field(default_factory=list)  # what the last checks cost (the benchmark reads them)


class Follower:
    """The followed variables of one IPython shell, checked after each of its cells."""

    def __init__(self, shell, workspace_fn):
        self.shell = shell
        self.workspace = workspace_fn
        self.followed: dict[str, Followed] = {}
        shell.events.register("post_run_cell", self.after_cell)

    def follow(self, variable: str, instance: str, sample: str | None = None) -> Followed:
        value = self.shell.user_ns.get(variable)
        entry = Followed(variable, instance, sample, fingerprint(value))
        self.followed[variable] = entry
        self.workspace().set_follow(instance, variable)
        return entry

    def unfollow(self, variable: str) -> bool:
        entry = self.followed.pop(variable, None)
        if entry is None:
            return False
        try:
            self.workspace().set_follow(entry.instance, None)
        except InstanceNotFoundError:
            pass
        return True

    def after_cell(self, result=None) -> None:
        for entry in list(self.followed.values()):
            self.check(entry)

    def check(self, entry: Followed) -> str | None:
        """Re-serve the variable if it changed since the last check; the line said, or None."""
        ns = self.shell.user_ns
        started = time.perf_counter()
        if entry.variable not in ns:
            return None
        value = ns[entry.variable]
        now = fingerprint(value)
        entry.checks_ms.append((time.perf_counter() - started) * 1000.0)
        del entry.checks_ms[:-100]
        if now == entry.last:
            return None
        entry.last = now
        ws = self.workspace()
        try:
            inst = ws.get_instance(entry.instance)
        except InstanceNotFoundError:
            self.followed.pop(entry.variable, None)
            return self._say(
                f"{entry.variable} changed, but its instance {entry.instance} is gone: no longer following"
            )
        if inst.status != "running":
            return self._say(f"{entry.variable} changed, but {inst.id} is {inst.status}: start it to serve the change")
        sample = ns.get(entry.sample) if entry.sample else None
        before = inst.model
        try:
            after = ws.reserve(entry.instance, value, sample=sample, progress=False)
        except NbserveError as exc:
            return self._say(f"{entry.variable} changed, but {before} keeps serving: {error_text(exc)}")
        if after.model == before:
            return None  # the same artifact again (a change that did not change what is served)
        return self._say(f"{after.model} now answers at {after.url}, was {before}")

    @staticmethod
    def _say(line: str) -> str:
        print(line)
        return line


_followers: dict[int, Follower] = {}


def follower(shell, workspace_fn) -> Follower:
    """The Follower of ``shell`` (made, and its hook registered, on first use)."""
    found = _followers.get(id(shell))
    if found is None or found.shell is not shell:
        found = _followers[id(shell)] = Follower(shell, workspace_fn)
    return found


def follow_in_kernel(obj, instance, sample=None) -> str:
    """``serve(obj, ..., follow=True)``: follow the notebook variable bound to ``obj``; its name."""
    try:
        from IPython import get_ipython
    except ImportError:
        shell = None
    else:
        shell = get_ipython()
    if shell is None:
        raise NbserveError("follow=True checks a notebook variable after every cell: it needs an IPython kernel")
    ns = shell.user_ns
    hidden = getattr(shell, "user_ns_hidden", {})
    variable = next((k for k, v in ns.items() if v is obj and not k.startswith("_") and k not in hidden), None)
    if variable is None:
        raise NbserveError("follow=True follows a variable of the notebook: assign the model to one, then serve it")
    sample_name = None
    if sample is not None:
        sample_name = next(
            (k for k, v in ns.items() if v is sample and not k.startswith("_") and k not in hidden), None
        )
    from .workspace import default_workspace

    follower(shell, default_workspace).follow(variable, instance.id, sample_name)
    return variable
