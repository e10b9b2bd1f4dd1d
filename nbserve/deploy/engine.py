"""The one seam between deploy/ and the Docker runtime: the engine client and its error wording.

Kept here so that when runtimes/ is reorganised (image builder and container runtime apart), only this
file follows it.
"""

from __future__ import annotations


def docker_client():
    """A docker SDK client for the engine of the environment, or DockerUnavailableError saying how to get one."""
    from ..runtimes.docker_engine import connect  # the docker SDK is optional: loaded on first use

    return connect()


def short_error(exc) -> str:
    from ..runtimes.docker_engine import short

    return short(exc)


def build_split(workspace, versions, progress):
    """The image that serves ``versions`` ([(ModelVersion, weight)]) by weight (``ImageBuilder.build_split``)."""
    from .. import runtimes

    return workspace.runtime(runtimes.image_builder()).images.build_split(versions, progress=progress)
