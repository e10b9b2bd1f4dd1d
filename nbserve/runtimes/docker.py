"""The Docker runtime: build a model's image, run it as a container published on 127.0.0.1.

Everything nbserve makes carries ``nbserve.*`` labels, and the truth about an instance is read from
Docker by the label ``nbserve.instance=<id>`` on every status call: a container that died, was restarted
by its restart policy on another port, or was removed with the docker CLI is reported as it is.

Images (see ``dockerfile.py`` for their layers) are found again by content, not by tag: a model image is
reused when one exists with the same artifact (``nbserve.sha256``), server code and Dockerfiles
(``nbserve.recipe``) and base image (``nbserve.base``); otherwise it is built, and proven by the
readiness check (``readiness.py``) before it is handed out. Tags (``nbserve/<name>:<version>``) are a
convenience for people: another registry's model of the same name and version may take one over.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .. import config
from ..errors import BuildError, DockerUnavailableError, InstanceStartError, NbserveError, PortInUseError
from ..resources import Image
from . import readiness
from .base import Runtime, pick_port, report_phase, wait_healthy
from .dockerfile import (
    PORT,
    deps_context,
    image_lock,
    image_name,
    kernel_python,
    lock_hash,
    model_context,
    recipe_hash,
    relabel_dockerfile,
    wheel_target,
    wheelhouse,
)
from .limits import hard_timeout, server_limits_env

CONTAINER_PORT = f"{PORT}/tcp"
PING_TIMEOUT = 1.5
API_TIMEOUT = 600
DEFAULT_RESTART = {"Name": "on-failure", "MaximumRetryCount": 5}
# what the build needs to know about a base image: its Python, and the libc and CPU its wheels must fit
_PROBE = (
    "import json, platform, sys, venv, ensurepip; print(json.dumps({'python': '%d.%d.%d' % "
    "sys.version_info[:3], 'libc': platform.libc_ver(), 'machine': platform.machine()}))"
)

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
            f"no Docker engine answers at {where} ({_short(exc)}): {HOW_TO_GET_AN_ENGINE}"
        ) from None
    return client


def _short(exc) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    return text if len(text) < 300 else text[:300] + "..."


def remove_labelled(home_prefix: str) -> tuple[int, int]:
    """Remove every container and image nbserve made for a registry under ``home_prefix`` (by their
    ``nbserve.home`` label), even ones whose registry is gone. For test and CI cleanup: a test run
    passes the directory holding its registries. Returns (containers, images) removed."""
    import docker.errors

    client = connect()
    mine = lambda obj: (obj.labels.get("nbserve.home") or "").startswith(home_prefix)  # noqa: E731
    containers = [c for c in client.containers.list(all=True, filters={"label": "nbserve.home"}) if mine(c)]
    for container in containers:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    images = [i for i in client.images.list(filters={"label": "nbserve.home"}) if mine(i)]
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
        self._client = None

    # -- the engine ---------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            self._client = connect()
        return self._client

    @contextlib.contextmanager
    def _engine(self):
        """Turn a lost connection to the engine into DockerUnavailableError (API errors pass through)."""
        import docker.errors
        import requests

        try:
            yield self.client
        except docker.errors.APIError:
            raise
        except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
            self._client = None
            raise DockerUnavailableError(f"lost the Docker engine ({_short(exc)}): {HOW_TO_GET_AN_ENGINE}") from None

    def _labels(self, **extra) -> dict:
        return {"nbserve.home": str(self.workspace.home), **{k: str(v) for k, v in extra.items()}}

    # -- base image ---------------------------------------------------------------------------

    def base_image_name(self, version, base_image: str | None = None) -> str:
        """argument > $NBSERVE_BASE_IMAGE > "base_image" in $NBSERVE_HOME/config.json > python:<X.Y>-slim."""
        return (
            base_image
            or os.environ.get("NBSERVE_BASE_IMAGE")
            or config.settings(self.workspace.home).get("base_image")
            or f"python:{_minor(version.python)}-slim"
        )

    def _base_image(self, name: str, version, progress):
        """(image, facts) for the base image, pulled if missing, after checking that its Python is the
        kernel's major.minor and that it has glibc (the wheels are manylinux)."""
        import docker.errors

        want = _minor(version.python)
        with self._engine() as client:
            try:
                image = client.images.get(name)
            except docker.errors.ImageNotFound:
                progress(f"base image {name} is not on this machine: pulling it")
                try:
                    image = client.images.pull(name)
                except docker.errors.APIError as exc:
                    raise BuildError(
                        f"the base image {name!r} is not on this machine and could not be pulled "
                        f"({_short(exc)}). Provide an image with Python {want}: `docker pull {name}` where a "
                        f"registry is reachable (or `docker save` it there and `docker load` it here), or make "
                        f"one from Debian packages (.ci/setup-docker makes local/python:3.11-bookworm), then "
                        f'name it with base_image=..., NBSERVE_BASE_IMAGE or "base_image" in '
                        f"{self.workspace.home / 'config.json'}"
                    ) from None
            facts = self._base_facts(client, image, name)
        got = facts["python"]
        if _minor(got) != want:
            raise BuildError(
                f"the base image {name!r} has Python {got}, but {version.id} was pickled by Python "
                f"{version.python}: pickles and wheels need the same major.minor. Use a base image "
                f"with Python {want} (e.g. python:{want}-slim) via base_image=... or NBSERVE_BASE_IMAGE"
            )
        if facts["libc"][0] != "glibc":
            raise BuildError(
                f"the base image {name!r} has no glibc ({facts['libc'][0] or 'musl?'}): nbserve installs "
                f"manylinux wheels; use a glibc image such as python:{want}-slim or a Debian one"
            )
        return image, facts

    def _base_facts(self, client, image, name) -> dict:
        """The base image's Python, libc and CPU: run it once per image id, remember the answer in the home."""
        import docker.errors

        cache_path = self.workspace.home / "docker" / "base-images.json"
        try:
            cache = json.loads(cache_path.read_text())
        except (FileNotFoundError, ValueError):
            cache = {}
        if isinstance(cache.get(image.id), dict):
            return cache[image.id]
        try:
            out = client.containers.run(
                image.id,
                ["python3", "-c", _PROBE],
                remove=True,
                network_mode="none",
                labels=self._labels(**{"nbserve.probe": name}),
            )
        except (docker.errors.ContainerError, docker.errors.APIError) as exc:
            raise BuildError(
                f"the base image {name!r} has no working `python3` with the venv module "
                f"({_short(exc)}); use a python:X.Y-slim image, or a Debian image with python3 and "
                f"python3-venv"
            ) from None
        try:
            facts = json.loads(out.decode().strip().splitlines()[-1])
            if not (isinstance(facts["python"], str) and len(facts["libc"]) == 2 and facts["machine"]):
                raise ValueError(facts)
        except (ValueError, IndexError, KeyError, TypeError):
            raise BuildError(
                f"the base image {name!r}: `python3` does not answer like a Python 3 "
                f"({out.decode(errors='replace')[:200]!r})"
            ) from None
        cache[image.id] = facts
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, cache_path)
        return facts

    # -- images -------------------------------------------------------------------------------

    def _find_image(self, labels: dict):
        with self._engine() as client:
            found = client.images.list(filters={"label": [f"{k}={v}" for k, v in labels.items()]})
        return max(found, key=lambda i: i.attrs.get("Created", "")) if found else None

    def _tagged(self, tag: str, labels: dict):
        """The image under ``tag`` if it carries ``labels`` (the stable choice among equal candidates)."""
        import docker.errors

        with self._engine() as client:
            try:
                image = client.images.get(tag)
            except docker.errors.ImageNotFound:
                return None
        return image if all(image.labels.get(k) == v for k, v in labels.items()) else None

    def build(self, version, base_image: str | None = None, progress=lambda *a, **k: None, cache: bool = True) -> Image:
        """The model's image, built unless an image of the same artifact, server code and base exists.

        ``cache=False`` builds both images from scratch: no image reused, no Docker layer cache (a
        cold build, as on a fresh machine; the wheelhouse in $NBSERVE_HOME is still used if there).

        Steps (each reported through ``progress``): check the base image, make or reuse the dependency
        image for the lock (downloading the wheelhouse on the host if needed), build the model image,
        then replay a request through it and compare with the kernel's answer (``readiness.py``).
        """
        started = time.monotonic()
        name = self.base_image_name(version, base_image)
        base, facts = self._base_image(name, version, progress)
        tag = f"{image_name(version.name)}:{version.version}"
        key = {"nbserve.sha256": version.sha256, "nbserve.recipe": recipe_hash(), "nbserve.base": base.id}
        # an image names what it serves: found by its own model, version and registry, not only by content
        own = self._labels(**{"nbserve.model": version.name, "nbserve.version": version.version})
        existing = self._find_image({**key, **own}) if cache else None
        if existing is not None:
            with self._engine():
                existing.tag(*tag.split(":"))
            progress(f"image {tag} for {version.id} already built ({existing.short_id}): reused")
            return Image(tag, existing.id, existing.attrs["Size"], version.id, time.monotonic() - started)
        content = self._find_content(key) if cache else None
        if content is not None:
            image = self._relabel(content, tag, version, own, progress)
            return Image(tag, image.id, image.attrs["Size"], version.id, time.monotonic() - started)

        report_phase(progress, "building")
        lines = image_lock(version)
        target = wheel_target(facts)
        lock_key = lock_hash(lines, " ".join(target))
        deps_tag = self._deps_image(base, name, lines, lock_key, target, version, progress, cache)
        labels = self._labels(
            **{
                "nbserve.model": version.name,
                "nbserve.version": version.version,
                "nbserve.lock": lock_key,
                "nbserve.base-name": name,
            },
            **key,
        )
        with self._context("model-") as ctx:
            model_context(ctx, version, name, deps_tag, labels)
            image_id = self._docker_build(ctx, tag, f"image {tag}", progress, cache=cache)
        with self._engine() as client:
            image = client.images.get(image_id)
        try:
            self._readiness(image, tag, version, progress)
        except BaseException:
            # an image that failed its check must not be found and reused by the next start
            with contextlib.suppress(Exception), self._engine() as client:
                client.images.remove(image.id, force=True)
            raise
        seconds = time.monotonic() - started
        progress(f"built {tag} ({image.short_id}, {image.attrs['Size'] / 1e6:.0f} MB) in {seconds:.1f} s", 1.0)
        report_phase(progress, "starting")
        return Image(tag, image.id, image.attrs["Size"], version.id, seconds)

    def _find_content(self, key: dict):
        """An image of the same artifact, server code and base, built under another name or registry (the
        one built in full rather than a relabelled one, so relabels do not stack)."""
        with self._engine() as client:
            found = client.images.list(filters={"label": [f"{k}={v}" for k, v in key.items()]})
        found.sort(key=lambda i: ("nbserve.relabel-of" not in i.labels, i.attrs.get("Created", "")))
        return found[-1] if found else None

    def _relabel(self, content, tag, version, labels, progress):
        """A thin layer on ``content`` (proven when it was built) with this version's labels and model id:
        metadata only, no files, built in a fraction of a second."""
        progress(f"image {tag}: the same content exists as {content.short_id}; labelling it for {version.id}")
        labels = {**labels, "nbserve.relabel-of": content.id}
        with self._context("relabel-") as ctx:
            ctx.mkdir(parents=True)
            (ctx / "Dockerfile").write_text(relabel_dockerfile(content.id, version.id, labels))
            image_id = self._docker_build(ctx, tag, f"image {tag}", progress)
        with self._engine() as client:
            return client.images.get(image_id)

    def _deps_image(self, base, base_name, lines, lock_key, target, version, progress, cache=True) -> str:
        """Tag of the dependency image for this lock and base: reused when it exists, else built."""
        tag = f"nbserve/deps:{lock_key[:12]}-{base.id.split(':')[-1][:12]}"
        labels = {"nbserve.deps": lock_key, "nbserve.base": base.id}
        existing = (self._tagged(tag, labels) or self._find_image(labels)) if cache else None
        if existing is not None:
            with self._engine():
                existing.tag(*tag.split(":"))  # the model's Dockerfile names it by this tag
            progress(f"dependency layers for lock {lock_key[:12]} ({len(lines)} packages) exist: reused")
            return tag
        wheels = wheelhouse(lines, lock_key, self.workspace.home, kernel_python(version), target, progress)
        labels = self._labels(**labels, **{"nbserve.base-name": base_name})
        with self._context("deps-") as ctx:
            deps_context(ctx, base_name, lines, lock_key, wheels)
            self._docker_build(
                ctx, tag, f"dependency image ({len(lines)} packages)", progress, labels=labels, cache=cache
            )
        return tag

    @contextlib.contextmanager
    def _context(self, prefix):
        root = self.workspace.home / "build"
        root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
        try:
            yield path / "context"
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _docker_build(self, ctx: Path, tag: str, what: str, progress, labels=None, cache=True) -> str:
        """Build with the engine's builder, no network for RUN steps; report each Dockerfile step."""
        import docker.errors

        log, image_id, error, steps, cached = [], None, None, 0, 0
        step = re.compile(r"^Step (\d+)/(\d+) : (.*)")
        with self._engine() as client:
            try:
                stream = client.api.build(
                    path=str(ctx),
                    tag=tag,
                    rm=True,
                    forcerm=True,
                    decode=True,
                    network_mode="none",
                    labels=labels,
                    nocache=not cache,
                )
                for chunk in stream:
                    if "stream" in chunk:
                        for line in chunk["stream"].splitlines():
                            log.append(line)
                            m = step.match(line)
                            if m:
                                i, steps = int(m.group(1)), int(m.group(2))
                                progress(f"{what}: step {i}/{steps}: {m.group(3)[:110]}", i / steps)
                            elif line.strip() == "---> Using cache":
                                cached += 1
                            elif line.startswith("nbserve prune: "):  # prune_venv.py: the saving per package
                                progress(f"{what}: {line[len('nbserve prune: ') :]}")
                    if "error" in chunk:
                        error = chunk["error"]
                        log.append(error)
                    if "aux" in chunk and "ID" in chunk["aux"]:
                        image_id = chunk["aux"]["ID"]
            except docker.errors.APIError as exc:
                error = _short(exc)
        if error or image_id is None:
            tail = "\n".join(log[-30:])
            raise BuildError(
                f"building the {what} failed: {error or 'the engine reported no image'}\n"
                f"--- build log (tail) ---\n{tail}"
            )
        progress(f"{what}: built, {cached} of {steps} steps from the layer cache")
        return image_id

    def _readiness(self, image, tag, version, progress) -> None:
        """Start the image, ask each method what the kernel's environment is asked, compare the answers."""
        bodies = readiness.requests_for(version)
        kernel = readiness.start_kernel_side(version, kernel_python(version), bodies) if bodies else None
        progress(f"readiness check: starting {tag} and calling {', '.join(bodies) or 'only /health'}")
        container = None
        try:
            with self._engine() as client:
                container = client.containers.run(
                    image.id,
                    detach=True,
                    init=True,
                    labels=self._labels(**{"nbserve.readiness": version.id}),
                    ports={CONTAINER_PORT: ("127.0.0.1", None)},
                )
            container.reload()
            url = f"http://127.0.0.1:{_published_port(container)}"
            wait_healthy(
                url,
                alive=lambda: _state(container) in ("running", "created"),
                timeout=120,
                failure=lambda why: BuildError(
                    f"the image {tag} was built, but the server in it did not start ({why}): a "
                    f"dependency may be missing from the image.\n--- container log (tail) ---\n"
                    f"{_logs(container, 30)}"
                ),
            )
            served = _get_json(url + "/interface.json")
            names = [m["name"] for m in served.get("methods", [])]
            if names != version.methods:
                raise BuildError(f"the image {tag} serves methods {names}, the registry says {version.methods}")
            got = {m: _post(url + "/" + m, body) for m, body in bodies.items()}
            expected = readiness.kernel_answers(kernel) if kernel else {}
        except RuntimeError as exc:
            raise BuildError(f"readiness check of {tag}: {exc}") from None
        finally:
            if kernel is not None and kernel.poll() is None:
                kernel.kill()
            if container is not None:
                with contextlib.suppress(Exception):
                    container.remove(force=True)
        for method in bodies:
            (k_status, k_text), (i_status, i_text) = expected[method], got[method]
            if k_status == 200 and i_status != 200:
                raise BuildError(
                    f"{version.id}.{method} answers in the kernel but fails in the image {tag} "
                    f"(HTTP {i_status}): {_message(i_text)}"
                )
            if k_status != i_status:
                raise BuildError(
                    f"{version.id}.{method}: HTTP {k_status} in the kernel, {i_status} in the image "
                    f"{tag}: {_message(i_text)}"
                )
            if k_status != 200:
                progress(
                    f"readiness check: {method} could not be exercised with a synthesized input (the kernel "
                    f"answers it with HTTP {k_status} too: {_message(k_text)}); loading was checked"
                )
                continue
            diff = readiness.difference(json.loads(k_text)["data"], json.loads(i_text)["data"])
            if diff:
                raise BuildError(
                    f"{version.id}.{method} answers differently in the image {tag} than in the "
                    f"kernel's environment: {diff}"
                )
            progress(f"readiness check: {method} answers as in the kernel")

    # -- containers -----------------------------------------------------------------------------

    def _container(self, row):
        with self._engine() as client:
            found = client.containers.list(all=True, filters={"label": f"nbserve.instance={row.id}"})
        return found[0] if found else None

    def start(self, row, version, progress):
        policy = restart_policy(row.options.get("restart_policy"))  # a typo fails before any build
        image = self.build(version, base_image=row.options.get("base_image"), progress=progress)
        container = self._restartable(row, image, progress)
        if container is None:
            container = self._run(row, version, image, pick_port(row), policy)
        container.reload()
        row.port = _published_port(container) or row.port
        restarts = container.attrs.get("RestartCount", 0)
        wait_healthy(
            self.url(row),
            alive=lambda: (
                _state(container) in ("running", "created") and container.attrs.get("RestartCount", 0) == restarts
            ),
            timeout=row.options.get("start_timeout", 120),
            failure=lambda why: InstanceStartError(
                f"{version.id} did not start in container {container.name} ({image.tag}): {why}\n"
                f"--- container log (tail) ---\n{_logs(container, 30)}"
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
        if container.image.id == image.id and port and (not requested or int(requested) == port):
            progress(f"starting the existing container {container.name} on port {port}")
            for _ in range(3):
                try:
                    with self._engine():
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
        with self._engine():
            container.remove(force=True)
        return None

    def _run(self, row, version, image, port, policy):
        import docker.errors

        opts = row.options
        # the same settings the process runtime gives its server: workers, timeouts, body limit, auth digest
        env = {
            "GUNICORN_CMD_ARGS": f"--workers {int(opts.get('workers', 1))} --timeout {hard_timeout(opts)}",
            **server_limits_env(opts),
        }
        labels = self._labels(
            **{
                "nbserve.instance": row.id,
                "nbserve.model": version.name,
                "nbserve.version": version.version,
                "nbserve.sha256": version.sha256,
            }
        )
        name = f"nbserve-{row.id}"
        with self._engine() as client:
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
        text = _short(exc)
        if _port_clash(exc):
            return PortInUseError(
                f"port {port} on {row.host} is in use (Docker: {text}); pass another port, or none to get a free one"
            )
        return InstanceStartError(f"Docker could not start the container for {row.model}: {text}")

    def status(self, row) -> str:
        """running, starting, restarting, exited, stopped or missing, as Docker has it now; also "unhealthy"
        (HEALTHCHECK failing) and "paused". A port Docker moved (it can after a restart) is written back."""
        container = self._container(row)
        if container is None:
            return "missing"
        state = container.attrs["State"]
        status = state.get("Status")
        if status == "running":
            port = _published_port(container)
            if port and port != row.port:
                row.port = port
                self.workspace.registry.update_instance(row.id, port=port)
            health = (state.get("Health") or {}).get("Status")
            if health == "unhealthy":
                return "unhealthy"
            if health == "starting":  # Docker's first check comes only after its interval: ask ourselves
                return "running" if _answers(self.url(row)) else "starting"
            return "running"
        if status in ("restarting", "paused"):
            return status
        if status == "created":
            return "starting"
        return "stopped" if row.desired == "stopped" else "exited"

    def stop(self, row) -> None:
        container = self._container(row)
        if container is not None:
            with self._engine():
                container.stop(timeout=10)

    def logs(self, row, tail=200) -> str:
        container = self._container(row)
        if container is None:
            return f"(no container for {row.id}: it was removed)\n"
        return _logs(container, tail)

    def remove(self, row) -> None:
        container = self._container(row)
        if container is not None:
            with self._engine():
                container.remove(force=True)


# -- small helpers -----------------------------------------------------------------------------------


def _port_clash(exc) -> bool:
    text = _short(exc)
    return "port is already allocated" in text or "address already in use" in text


def _minor(version: str) -> str:
    return ".".join(str(version).split(".")[:2])


def _state(container) -> str:
    try:
        container.reload()
    except Exception:
        return "missing"
    return container.attrs["State"].get("Status", "unknown")


def _published_port(container) -> int | None:
    """The host port Docker bound for the server now (None when the container is not running)."""
    ports = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
    for binding in ports.get(CONTAINER_PORT) or ():
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def _binding(container) -> int | None:
    """The host port the container was created with (known even when it is stopped)."""
    bindings = (container.attrs.get("HostConfig") or {}).get("PortBindings") or {}
    for binding in bindings.get(CONTAINER_PORT) or ():
        if binding.get("HostPort", "").isdigit():
            return int(binding["HostPort"])
    return None


def _logs(container, tail: int) -> str:
    try:
        return container.logs(tail=tail).decode(errors="replace")
    except Exception as exc:
        return f"(logs unavailable: {_short(exc)})"


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


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _post(url: str, body: bytes) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _message(text: str) -> str:
    try:
        err = json.loads(text)["error"]
        return f"{err['type']}: {err['message']}"
    except (ValueError, KeyError, TypeError):
        return text[:500]
