"""Runtimes: where instances run. The one list of them, with what each can do.

Every face (magics, widgets, the Jupyter REST API and through it the sidebar, the CLI) and the core
read this list; none names a runtime of its own. Adding a runtime is one module under ``runtimes/``
(a subclass of ``base.Runtime``) and one ``RuntimeSpec`` line in ``RUNTIMES`` below.

This module imports no runtime: a spec names its class as ``"module:Class"``, loaded on first use, so
that listing runtimes (a magic's argument parser, the sidebar's form) costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ..errors import DockerUnavailableError, NbserveError, RuntimeUnavailableError

AUTO = "auto"


@dataclass(frozen=True)
class RuntimeSpec:
    """What a runtime declares about itself.

    ``proves_registration``: its server process can double as the proof of a new registration (one
    interpreter start instead of two); the runtime then implements ``start_early``/``prove``/``hand_over``/
    ``abort_proof`` (see ``base.Runtime``). ``builds_images``: it runs models from images it builds
    (``build`` makes one). ``replicas``: one instance can run several copies. ``auto``: a candidate for
    ``runtime="auto"``, in the order of ``RUNTIMES``, when its ``check`` says it can serve here (a runtime
    without a check always can: it is the fallback).
    """

    name: str
    cls: str  # "module:Class", the module relative to this package
    description: str
    proves_registration: bool = False
    builds_images: bool = False
    replicas: bool = False
    auto: bool = True
    # "module:function" of (workspace, base_image) -> (can serve here, why): decides runtime="auto"
    check: str | None = None
    # "module:function" of () -> bool, quick: refuses a start of this runtime before it begins (REST API)
    reachable: str | None = None
    unavailable_error: type[RuntimeUnavailableError] = RuntimeUnavailableError
    unavailable_message: str = ""
    fallback_note: str = ""  # for a runtime that always works: what choosing it instead means

    def to_dict(self) -> dict:
        """What the REST API tells the sidebar."""
        d = asdict(self)
        for internal in ("cls", "check", "reachable", "unavailable_error", "unavailable_message"):
            d.pop(internal)
        return d


# The one list of runtimes, in the order `auto` prefers them. A new runtime adds one entry here.
RUNTIMES: tuple[RuntimeSpec, ...] = (
    RuntimeSpec(
        "docker",
        ".docker:DockerRuntime",
        "an image per model version, run as a container published on 127.0.0.1",
        builds_images=True,
        check=".auto:check",
        reachable=".docker_engine:engine_available",
        unavailable_error=DockerUnavailableError,
        unavailable_message=(
            "no Docker engine answers on this machine; start one (dockerd) or choose the process runtime"
        ),
    ),
    RuntimeSpec(
        "process",
        ".process:ProcessRuntime",
        "a local gunicorn subprocess on 127.0.0.1, under the interpreter that registered the model",
        proves_registration=True,
        fallback_note="locally as a subprocess instead (no Docker needed)",
    ),
)

NAMES: tuple[str, ...] = tuple(s.name for s in RUNTIMES)
CHOICES: tuple[str, ...] = (AUTO, *NAMES)  # what the faces offer


def spec(name: str) -> RuntimeSpec:
    for s in RUNTIMES:
        if s.name == name:
            return s
    raise NbserveError(f"unknown runtime {name!r}; expected {', '.join(map(repr, CHOICES))}")


def _load(ref: str) -> Callable:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module, __name__), attr)


def get_runtime(name: str, workspace):
    """A new runtime object for ``workspace`` (the core keeps one per name)."""
    return _load(spec(name).cls)(workspace)


def fallback() -> RuntimeSpec:
    """The runtime that always works (no check): where `auto` lands last."""
    return next(s for s in RUNTIMES if s.check is None)


def choose_auto(workspace, base_image: str | None = None) -> tuple[str, str]:
    """(runtime, why) for runtime='auto': the first candidate, in the list's order, whose check says it
    can serve here; else the fallback, with why the others could not."""
    problems = []
    for s in RUNTIMES:
        if not s.auto or s.check is None:
            continue
        ok, why = _load(s.check)(workspace, base_image)
        if ok:
            return s.name, why
        problems.append(why)
    return fallback().name, "; ".join(problems)


def reachable(name: str) -> bool:
    """True unless the runtime can be seen not to run here (quickly: a start is refused before it begins)."""
    s = spec(name)
    if s.reachable is None:
        return True
    try:
        probe = _load(s.reachable)
    except ImportError:  # an optional dependency (e.g. the docker SDK) is not installed
        return False
    return bool(probe())


def unavailable(name: str) -> RuntimeUnavailableError:
    s = spec(name)
    return s.unavailable_error(s.unavailable_message or f"the {name} runtime cannot run on this machine")


def image_builder() -> str:
    """The runtime that builds images (``nbserve.build``, ``Workspace.prepare``)."""
    return next(s.name for s in RUNTIMES if s.builds_images)
