"""The Docker runtime: a model's image (built by ``images.py``) run as a container published on 127.0.0.1.

Everything nbserve makes carries ``nbserve.*`` labels, and the truth about an instance is read from
Docker by the label ``nbserve.instance=<id>`` on every status call: a container that died, was restarted
by its restart policy on another port, or was removed with the docker CLI is reported as it is.

The docker SDK (an optional dependency, ``docker_engine.py``) is imported inside the methods that use
its exception types.
"""

from __future__ import annotations

import contextlib
import time
import urllib.error
import urllib.request
from typing import Any

from ..errors import InstanceStartError, NbserveError, PortInUseError
from ..resources import Image, InstanceStatus
from ..server.shared import Settings
from .base import Runtime, pick_port, wait_healthy
from .docker_engine import Engine, engine_available, remove_labelled, short
from .images import CONTAINER_PORT, ImageBuilder, container_logs, container_state, published_port
from .limits import server_settings

__all__ = ["DockerRuntime", "engine_available", "remove_labelled", "restart_policy"]

DEFAULT_RESTART: dict[str, Any] = {"Name": "on-failure", "MaximumRetryCount": 5}


def restart_policy(value) -> dict:
    """``serve(..., restart_policy=...)``: "on-failure" (default, 5 retries), "on-failure:N", "always",
    "unless-stopped", "no", or Docker's own dict."""
    if value is None:
        return dict(DEFAULT_RESTART)
    if isinstance(value, dict) and value.get("Name") in ("no", "always", "unless-stopped", "on-failure"):
        return dict(value)
    if isinstance(value, str):
        name, _, count = value.partition(":")
        if name == "on-failure" and (not count or count.isdigit()):
            return {"Name": name, "MaximumRetryCount": int(count or DEFAULT_RESTART["MaximumRetryCount"])}
        if name in ("no", "always", "unless-stopped") and not count:
            return {"Name": name}
    raise NbserveError(
        f"restart_policy={value!r} is not one of 'on-failure', 'on-failure:N', 'always', 'unless-stopped', 'no'"
    )


def _host_ip(host: str) -> str:
    return "127.0.0.1" if host == "localhost" else host


class DockerRuntime(Runtime):
    name = "docker"

    def __init__(self, workspace):
        super().__init__(workspace)
        self.engine = Engine(self.home)
        self.images = ImageBuilder(self.engine)

    @property
    def client(self):
        """The docker SDK client (connected on first use; DockerUnavailableError without an engine)."""
        return self.engine.client

    def build(self, version, base_image: str | None = None, progress=lambda *a, **k: None, cache: bool = True) -> Image:
        """The model's image (see ``images.ImageBuilder.build``)."""
        return self.images.build(version, base_image=base_image, progress=progress, cache=cache)

    # -- containers -----------------------------------------------------------------------------

    def _container(self, row):
        with self.engine.session() as client:
            found = client.containers.list(all=True, filters={"label": f"nbserve.instance={row.id}"})
        return found[0] if found else None

    def start(self, row, version, progress):
        policy = restart_policy(row.options.get("restart_policy"))  # a typo fails before any build
        image = self.build(version, base_image=row.options.get("base_image"), progress=progress)
        container = self._restartable(row, image, progress)
        if container is None:
            container = self._run(row, version, image, pick_port(row), policy)
        container.reload()
        row.port = published_port(container) or row.port
        restarts = container.attrs.get("RestartCount", 0)
        url = self.url(row)
        if url is None:
            raise InstanceStartError(f"the container of {row.id} publishes no port: `docker ps -a` shows it")
        wait_healthy(
            url,
            alive=lambda: (
                container_state(container) in ("running", "created")
                and container.attrs.get("RestartCount", 0) == restarts
            ),
            timeout=row.options.get("start_timeout", 120),
            failure=lambda why: InstanceStartError(
                f"{version.id} did not start in container {container.name} ({image.tag}): {why}\n"
                f"--- container log (tail) ---\n{container_logs(container, 30)}"
            ),
            on_failure=lambda: _quietly(container.stop, timeout=2),
        )
        return {"container": container.id, "name": container.name, "image": image.id, "tag": image.tag}

    def _restartable(self, row, image, progress):
        """Start the instance's existing container again (same port, logs kept) when it runs this image;
        None when there is none, or it had to go (older image, another port asked for, its port taken)."""
        import docker.errors

        container = self._container(row)
        if container is None:
            return None
        requested = row.options.get("port")
        port = _binding(container)
        settled = _env_matches(container, server_settings(row.options))  # e.g. batching changed on this start
        if container.image.id == image.id and port and settled and (not requested or int(requested) == port):
            progress(f"starting the existing container {container.name} on port {port}")
            for _ in range(3):
                try:
                    with self.engine.session():
                        container.start()
                    return container
                except docker.errors.APIError as exc:
                    error = exc
                    if not _port_clash(exc):
                        raise self._start_error(exc, row, port) from None
                    time.sleep(0.3)  # a just-stopped container's proxy may still hold the port for a moment
            if requested:
                raise self._start_error(error, row, port)
            progress(f"port {port} is taken now: starting {row.id} on another one")
        with self.engine.session():
            container.remove(force=True)
        return None

    def _run(self, row, version, image, port, policy):
        import docker.errors

        opts = row.options
        env = server_settings(opts).to_env()  # the settings the process runtime gives its server too
        labels = self.engine.labels(
            **{
                "nbserve.instance": row.id,
                "nbserve.model": version.name,
                "nbserve.version": version.version,
                "nbserve.sha256": version.sha256,
            }
        )
        name = f"nbserve-{row.id}"
        with self.engine.session() as client:
            try:
                return client.containers.run(
                    image.id,
                    detach=True,
                    name=name,
                    init=True,
                    labels=labels,
                    environment=env,
                    restart_policy=policy,
                    ports={CONTAINER_PORT: (_host_ip(row.host), port)},
                )
            except docker.errors.APIError as exc:
                # run() is create + start: a container whose start failed is left behind, created
                with contextlib.suppress(docker.errors.APIError):
                    client.containers.get(name).remove(force=True)
                raise self._start_error(exc, row, port) from None

    def _start_error(self, exc, row, port):
        text = short(exc)
        if _port_clash(exc):
            return PortInUseError(
                f"port {port} on {row.host} is in use (Docker: {text}); pass another port, or none to get a free one"
            )
        return InstanceStartError(f"Docker could not start the container for {row.model}: {text}")

    def status(self, row) -> InstanceStatus:
        """running, starting, restarting, exited, stopped or missing, as Docker has it now; also "unhealthy"
        (HEALTHCHECK failing) and "paused". A port Docker moved (it can after a restart) is set on the row,
        for the core to store."""
        container = self._container(row)
        if container is None:
            return InstanceStatus.MISSING
        state = container.attrs["State"]
        status = state.get("Status")
        if status == "running":
            port = published_port(container)
            if port:
                row.port = port
            health = (state.get("Health") or {}).get("Status")
            if health == "unhealthy":
                return InstanceStatus.UNHEALTHY
            if health == "starting":  # Docker's first check comes only after its interval: ask ourselves
                return InstanceStatus.RUNNING if _answers(self.url(row)) else InstanceStatus.STARTING
            return InstanceStatus.RUNNING
        if status in ("restarting", "paused"):
            return InstanceStatus(status)
        if status == "created":
            return InstanceStatus.STARTING
        return InstanceStatus.STOPPED if row.desired == "stopped" else InstanceStatus.EXITED

    def stop(self, row) -> None:
        container = self._container(row)
        if container is not None:
            with self.engine.session():
                container.stop(timeout=10)

    def logs(self, row, tail=200) -> str:
        container = self._container(row)
        if container is None:
            return f"(no container for {row.id}: it was removed)\n"
        return container_logs(container, tail)

    def remove(self, row) -> None:
        container = self._container(row)
        if container is not None:
            with self.engine.session():
                container.remove(force=True)


# -- small helpers -----------------------------------------------------------------------------------


def _port_clash(exc) -> bool:
    text = short(exc)
    return "port is already allocated" in text or "address already in use" in text


def _binding(container) -> int | None:
    """The host port the container was created with (known even when it is stopped)."""
    bindings = (container.attrs.get("HostConfig") or {}).get("PortBindings") or {}
    for binding in bindings.get(CONTAINER_PORT) or ():
        if binding.get("HostPort", "").isdigit():
            return int(binding["HostPort"])
    return None


def _env_matches(container, expected: Settings) -> bool:
    """The container runs with the server settings ``expected`` (what the image itself names aside)."""
    env = dict(e.split("=", 1) for e in container.attrs.get("Config", {}).get("Env") or [] if "=" in e)
    try:
        running = Settings.from_env(env)
    except ValueError:
        return False
    return running.replace(artifact=None, model_id=None, control=None) == expected


def _quietly(fn, **kwargs):
    with contextlib.suppress(Exception):
        fn(**kwargs)


def _answers(url: str | None) -> bool:
    if not url:
        return False
    try:
        with urllib.request.urlopen(url + "/health", timeout=0.5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False
