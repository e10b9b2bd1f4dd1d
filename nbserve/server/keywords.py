"""Keyword arguments a served method may take besides its input.

* ``progress``: a callable, ``progress(fraction=None, message=None, **info)``, which a job records (jobs.py) and
  a plain call ignores;
* the sampling parameters of the OpenAI routes (protocols/openai.py): ``max_tokens``, ``temperature``,
  ``top_p``, ``stop``, ``seed``, ...

A method gets those its signature names (with a default, or keyword-only); called in the notebook it gets its
own defaults. The wrappers between the route and the method (metrics, batching, the ``sys.exit`` guard) pass one
input along, so what else a call carries is set here, for the call in hand (the app runs one call at a time on
a worker's main thread), with ``given(...)``, and added by the innermost wrapper, ``bind``.

Imports nothing else of nbserve.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .jobworker import RunningJob

_given: dict = {}
_job: RunningJob | None = None  # the job the job runner of this process is running (jobworker.py sets it)


def report_progress(fraction: float | None = None, message: str | None = None, **info: Any) -> None:
    """What a method's ``progress`` argument is: recorded while it runs as a job, ignored otherwise."""
    job = _job
    if job is not None:
        job.progress(fraction=fraction, message=message, **info)


def set_job(job: RunningJob | None) -> None:
    global _job
    _job = job


@contextmanager
def given(**kwargs: Any) -> Iterator[None]:
    """Keyword arguments for the method called within (those it takes)."""
    global _given
    before, _given = _given, {k: v for k, v in kwargs.items() if v is not None}
    try:
        yield
    finally:
        _given = before


# every keyword a served method may be given: a method that names none of them is called as it is
NAMES = frozenset(
    {"progress", "max_tokens", "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty"}
    | {"user", "dimensions"}
)


def accepted(fn: Callable[..., Any]) -> frozenset[str]:
    """The keywords of NAMES that ``fn`` takes by name besides its first argument (its input). ``**kwargs``
    does not count: what it passes on is unknown."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return frozenset()
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return frozenset(
        p.name for p in named[1:] if p.name in NAMES and (p.kind is p.KEYWORD_ONLY or p.default is not p.empty)
    )


def bind(methods: dict) -> dict:
    """Each method that takes some of these keywords, called with those given for the call (``progress``
    always); the others as they are."""

    def binding(fn: Callable[..., Any], names: frozenset[str]) -> Callable[[Any], Any]:
        def call(data: Any) -> Any:
            extra = {k: v for k, v in _given.items() if k in names}
            if "progress" in names:
                extra.setdefault("progress", report_progress)
            return fn(data, **extra)

        call.__name__ = getattr(fn, "__name__", "method")
        return call

    out = {}
    for name, fn in methods.items():
        names = accepted(fn)
        out[name] = binding(fn, names) if names else fn
    return out
