"""Runtimes: where instances run. ``process`` always works; ``docker`` needs an engine."""

from __future__ import annotations

from ..errors import NbserveError

RUNTIMES = ("process", "docker")


def get_runtime(name: str, workspace):
    if name == "process":
        from .process import ProcessRuntime

        return ProcessRuntime(workspace)
    if name == "docker":
        from .docker import DockerRuntime

        return DockerRuntime(workspace)
    raise NbserveError(f"unknown runtime {name!r}; expected one of {', '.join(RUNTIMES)} or 'auto'")


def docker_available() -> bool:
    """True when a Docker engine answers (quickly: this decides runtime='auto')."""
    try:
        from .docker import engine_available
    except ImportError:
        return False
    return engine_available()
