"""The Docker engine as the image builder and the container runtime both reach it: the connection, the
``nbserve.*`` labels, and a lost engine turned into ``DockerUnavailableError``.

The docker SDK is imported inside the functions that need it: it is an optional dependency (the
``nbserve[docker]`` extra), and importing it costs about 0.2 s that a process-runtime user never pays.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import DockerUnavailableError

PING_TIMEOUT = 1.5
API_TIMEOUT = 600

HOW_TO_GET_AN_ENGINE = (
    "start a Docker engine (Docker Desktop, `sudo systemctl start docker`, or `sudo dockerd &`; on a fresh "
    "Debian CI machine `.ci/setup-docker` installs and starts one), or serve with runtime='process', which "
    "needs no Docker"
)


def engine_available(timeout: float = PING_TIMEOUT) -> bool:
    """True when a Docker engine answers a ping within ``timeout`` seconds (decides runtime='auto')."""
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=timeout)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def connect():
    """A docker SDK client for the engine of the environment (DOCKER_HOST), or DockerUnavailableError."""
    try:
        import docker
    except ImportError:
        raise DockerUnavailableError(
            "the Docker runtime needs the docker SDK: pip install 'nbserve[docker]'; or serve with runtime='process'"
        ) from None
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=API_TIMEOUT)
        client.ping()
    except Exception as exc:
        raise DockerUnavailableError(
            f"no Docker engine answers at {where} ({short(exc)}): {HOW_TO_GET_AN_ENGINE}"
        ) from None
    return client


def short(exc) -> str:
    """An engine error's message, at most 300 characters."""
    text = str(getattr(exc, "explanation", None) or exc)
    return text if len(text) < 300 else text[:300] + "..."


class Engine:
    """One lazily opened connection, shared by a registry's image builder and container runtime."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = connect()
        return self._client

    @contextlib.contextmanager
    def session(self):
        """Turn a lost connection to the engine into DockerUnavailableError (API errors pass through)."""
        import docker.errors
        import requests

        try:
            yield self.client
        except docker.errors.APIError:
            raise
        except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
            self._client = None
            raise DockerUnavailableError(f"lost the Docker engine ({short(exc)}): {HOW_TO_GET_AN_ENGINE}") from None

    def labels(self, **extra) -> dict:
        """Labels for an object made for this registry: ``nbserve.home`` finds (and cleans up) them all."""
        return {"nbserve.home": str(self.home), **{k: str(v) for k, v in extra.items()}}


def remove_labelled(home_prefix: str) -> tuple[int, int]:
    """Remove every container and image nbserve made for a registry under ``home_prefix`` (by their
    ``nbserve.home`` label), even ones whose registry is gone. For test and CI cleanup: a test run
    passes the directory holding its registries. Returns (containers, images) removed."""
    import docker.errors

    client = connect()

    def mine(obj) -> bool:
        return (obj.labels.get("nbserve.home") or "").startswith(home_prefix)

    containers = [c for c in client.containers.list(all=True, filters={"label": "nbserve.home"}) if mine(c)]
    for container in containers:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    images = []
    # by id and one inspect each: docker-py's images.list() fails whole when one image goes meanwhile
    # (another session's cleanup), so each is read on its own and a vanished one skipped
    for image_id in client.api.images(filters={"label": "nbserve.home"}, quiet=True):
        with contextlib.suppress(docker.errors.NotFound):
            image = client.images.get(image_id)
            if mine(image):
                images.append(image)
    removed = 0
    # relabelled images, then the model images under them, then their deps
    for image in sorted(images, key=lambda i: ("nbserve.deps" in i.labels, "nbserve.relabel-of" not in i.labels)):
        try:
            client.images.remove(image.id, force=True)
            removed += 1
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: another registry's relabelled image still builds on it
                raise
    client.close()
    return len(containers), removed
