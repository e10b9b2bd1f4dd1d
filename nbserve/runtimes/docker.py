"""The Docker runtime: a model's image (built by ``images.py``) run as a container published on 127.0.0.1.

Everything nbserve makes carries ``nbserve.*`` labels, and the truth about an instance is read from
Docker by the label ``nbserve.instance=<id>`` on every status call: a container that died, was restarted
by its restart policy on another port, or was removed with the docker CLI is reported as it is.

The docker SDK (an optional dependency, ``docker_engine.py``) is imported inside the methods that use
its exception types.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import InstanceStartError, NbserveError, PortInUseError
from ..resources import Image, InstanceStatus
from ..server.shared import Settings
from .base import Runtime, free_port, pick_port, wait_healthy
from .docker_engine import Engine, engine_available, remove_labelled, short
from .dockerfile import APP, PORT, VENV
from .images import CONTAINER_PORT, ImageBuilder, container_logs, container_state, published_port
from .limits import server_settings

__all__ = ["DockerRuntime", "engine_available", "remove_labelled", "restart_policy"]

DEFAULT_RESTART: dict[str, Any] = {"Name": "on-failure", "MaximumRetryCount": 5}
# where a container's master notes what it serves after an in-place change, so that a restart by the restart
# policy serves the same (its home: the one place the server's user may write)
STATE_FILE = "/home/nbserve/serving.json"
# the kernel's end of the control socket, run inside the container (docker exec, as the server's user): the
# request comes in the environment, the reply is the last line printed
CONTROL_SNIPPET = """\
import json, os, sys, time
from nbserve.server import control
request = json.loads(os.environ["NBSERVE_CONTROL_REQUEST"])
op, settle = request.pop("op"), request.pop("settle", 0)
ctl = control.Controller(control.address("container"), connect_timeout=30)
try:
    reply = ctl.call(op, **request)
    deadline = time.monotonic() + settle
    while settle and ctl.call("status", timeout=10)["retiring"] and time.monotonic() < deadline:
        time.sleep(0.02)
except control.ControlError as exc:
    reply = {"ok": False, "error": str(exc)}
print(json.dumps(reply))
"""


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
        self.last_unavailable: float | None = None  # seconds the URL did not answer in the last update (take-over)

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
        settled = _env_matches(container, _settings(row.options))  # e.g. batching changed on this start
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

    def _run(self, row, version, image, port, policy, name=None, instance=None, create_only=False):
        import docker.errors

        opts = row.options
        env = _settings(opts).to_env()  # the settings the process runtime gives its server too, and the state file
        labels = self.engine.labels(
            **{
                "nbserve.instance": instance or row.id,
                "nbserve.model": version.name,
                "nbserve.version": version.version,
                "nbserve.sha256": version.sha256,
            }
        )
        name = name or f"nbserve-{row.id}"
        with self.engine.session() as client:
            try:
                return (client.containers.create if create_only else client.containers.run)(
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

    # -- in place: a new version, a split, a shadow, in the running container -------------------------

    def update(self, row, version, progress):
        """Serve ``version`` at the instance's URL. When its image would have the running container's
        dependencies (the same lock, base, server code and system packages), the container loads it in place:
        the artifact is copied in and its master verifies it as at start and forks new workers on the same
        socket, no request dropped. Otherwise a new image is built; a container of it must answer (on a port of
        its own) before the old container stops; then a container of it takes the instance's port. Between
        the old one's stop and that one's first answer the URL is unavailable: that time is said."""
        container = self._running(row)
        if self._same_dependencies(container, version, row):
            progress(f"{row.id}: {version.id} has the container's requirements: loading it in place, no rebuild")
            self.route(row, [(version, 100.0)], None, progress)
            return row.handle
        return self._take_over(row, container, version, progress)

    def route(self, row, versions, shadow, progress) -> dict:
        """Serve ``versions`` ([(ModelVersion, weight)]) in the running container, with a shadow's copies
        going to ``shadow["url"]``: every version must have the container's dependencies."""
        container = self._running(row)
        for version, _ in versions:
            if not self._same_dependencies(container, version, row):
                raise InstanceStartError(
                    f"{version.id} needs other requirements than the container of {row.id} has: one container "
                    f"cannot serve it beside them; update to it alone (a new image), or use a deployment"
                )
        for version, _ in versions:
            self._put_artifact(container, version)
        primary = max(versions, key=lambda vw: vw[1])[0]
        specs = [{"artifact": f"{APP}/artifacts/{v.sha256}", "model_id": v.id, "weight": w} for v, w in versions]
        self._control(container, row, "serve", versions=specs, shadow=shadow, settle=30)
        wait_healthy(
            self.url(row) or "",
            alive=lambda: container_state(container) == "running",
            timeout=60,
            failure=lambda why: InstanceStartError(f"{row.id} did not answer as {primary.id}: {why}"),
            model=primary.id,
        )
        return row.handle

    def peer_url(self, row) -> str | None:
        """The address another container reaches this one's server at: its address on Docker's bridge."""
        container = self._container(row)
        if container is None:
            return None
        networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        for network in networks.values():
            if network.get("IPAddress"):
                return f"http://{network['IPAddress']}:{PORT}"
        return None

    def _running(self, row):
        container = self._container(row)
        if container is None or container.attrs["State"].get("Status") != "running":
            raise InstanceStartError(f"{row.id} has no running container to update: start it first")
        return container

    def _same_dependencies(self, container, version, row) -> bool:
        wanted = self.images.dependencies(version, base_image=row.options.get("base_image"))
        labels = container.image.labels or {}
        return all(labels.get(k, "") == v for k, v in wanted.items())

    def _put_artifact(self, container, version) -> None:
        """Copy the verified artifacts into the container (a graph's: its own and its stages', beside each
        other), readable by the server's user (the master verifies their hashes again before unpickling)."""
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w") as tar:
            for sha, directory in version.artifact_layers():
                self._add_artifact(tar, sha, directory)
        with self.engine.session():
            if not container.put_archive(f"{APP}/artifacts", data.getvalue()):
                raise InstanceStartError(f"could not copy {version.id} into {container.name}")

    @staticmethod
    def _add_artifact(tar, sha: str, directory) -> None:
        folder = tarfile.TarInfo(sha)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for path in sorted(Path(directory).iterdir()):
            if path.is_file():
                info = tar.gettarinfo(str(path), f"{sha}/{path.name}")
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mode = 0o644
                with open(path, "rb") as f:
                    tar.addfile(info, f)

    def _control(self, container, row, op: str, **request) -> dict:
        """One operation of the container's control socket (server/control.py), asked from inside it."""
        with self.engine.session():
            code, out = container.exec_run(
                [f"{VENV}/bin/python", "-c", CONTROL_SNIPPET],
                environment={"NBSERVE_CONTROL_REQUEST": json.dumps({"op": op, **request})},
            )
        text = out.decode(errors="replace").strip()
        try:
            reply = json.loads(text.splitlines()[-1])
        except (ValueError, IndexError):
            raise InstanceStartError(
                f"{row.id}: the container's server did not answer {op!r}: {text[-2000:]}"
            ) from None
        if not reply.get("ok"):
            raise InstanceStartError(
                f"{row.id}: the container's server refused {op!r}: {reply.get('error')}\n"
                f"--- container log (tail) ---\n{container_logs(container, 30)}"
            )
        return reply

    def _take_over(self, row, old, version, progress) -> dict:
        """Another image for ``version``: proven on a port of its own, then swapped onto the instance's port."""
        policy = restart_policy(row.options.get("restart_policy"))
        image = self.build(version, base_image=row.options.get("base_image"), progress=progress)
        port = row.port
        trial = f"{row.id}-next"
        with self.engine.session() as client:
            for leftover in client.containers.list(all=True, filters={"label": f"nbserve.instance={trial}"}):
                leftover.remove(force=True)
        progress(f"{row.id}: {version.id} needs other requirements: a container of {image.tag} answers first")
        probe = self._run(
            row,
            version,
            image,
            free_port(_host_ip(row.host)),
            policy,
            name=f"nbserve-{trial}",
            instance=trial,
        )
        try:
            probe.reload()
            wait_healthy(
                f"http://{_host_ip(row.host)}:{published_port(probe)}",
                alive=lambda: container_state(probe) in ("running", "created"),
                timeout=row.options.get("start_timeout", 120),
                failure=lambda why: InstanceStartError(
                    f"{version.id} did not start in {image.tag}: {why}\n--- container log (tail) ---\n"
                    f"{container_logs(probe, 30)}"
                ),
                model=version.id,
            )
        finally:
            with self.engine.session():
                probe.remove(force=True)
        with self.engine.session():
            old.rename(f"nbserve-{row.id}-retired-{int(time.time())}")
        new = self._run(row, version, image, port, policy, create_only=True)
        began = time.monotonic()
        with self.engine.session():
            old.stop(timeout=10)
            new.start()
        new.reload()
        row.port = published_port(new) or port
        wait_healthy(
            self.url(row) or "",
            alive=lambda: container_state(new) in ("running", "created"),
            timeout=row.options.get("start_timeout", 120),
            failure=lambda why: InstanceStartError(f"{version.id} did not start on port {port}: {why}"),
            model=version.id,
        )
        self.last_unavailable = time.monotonic() - began
        with self.engine.session():
            old.remove(force=True)
        progress(
            f"{row.id}: {version.id} answers at {self.url(row)}; the URL was unavailable for "
            f"{self.last_unavailable:.2f} s (the old container stopped, the new one started on its port)"
        )
        return {"container": new.id, "name": new.name, "image": image.id, "tag": image.tag}

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


def _settings(options: dict) -> Settings:
    """The server settings of a container of this runtime: the instance's, and where its master notes what it
    serves (so that a restart serves what an in-place update swapped in)."""
    return server_settings(options, state_file=STATE_FILE)


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
