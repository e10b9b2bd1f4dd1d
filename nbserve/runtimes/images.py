"""The image builder: a model version in, a proven Docker image out.

Steps (each reported through ``progress``): check the base image (its Python must be the kernel's
major.minor, with glibc), make or reuse the dependency image for the lock (downloading the wheelhouse on
the host if needed, ``wheelhouse.py``), build the model image (``dockerfile.py`` writes both contexts),
then run it once and compare its answers with the kernel's (``readiness.py``) before handing it out.

Images are found again by content, not by tag: a model image is reused when one exists with the same
artifact (``nbserve.sha256``), server code and Dockerfiles (``nbserve.recipe``) and base image
(``nbserve.base``). Tags (``nbserve/<name>:<version>``) are a convenience for people: another registry's
model of the same name and version may take one over.

The docker SDK (an optional dependency) is imported inside the methods that use its exception types.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from .. import config
from ..errors import BuildError
from ..resources import Image
from . import readiness, system_libraries
from .base import kernel_python, report_phase, wait_healthy
from .docker_engine import Engine, short
from .dockerfile import (
    APP,
    PORT,
    SYSTEM_DOCKERFILE,
    deps_context,
    image_lock,
    image_name,
    lock_hash,
    model_context,
    recipe_hash,
    relabel_dockerfile,
    system_context,
)
from .wheelhouse import wheel_target, wheelhouse

CONTAINER_PORT = f"{PORT}/tcp"
# what the build needs to know about a base image: its Python, and the libc and CPU its wheels must fit
_PROBE = (
    "import json, platform, subprocess, sys, venv, ensurepip\n"
    "try: libs = subprocess.run(['ldconfig', '-p'], capture_output=True, text=True).stdout.splitlines()[1:]\n"
    "except OSError: libs = []\n"
    "print(json.dumps({'python': '%d.%d.%d' % sys.version_info[:3], 'libc': platform.libc_ver(), "
    "'machine': platform.machine(), 'libs': sorted({l.split()[0] for l in libs if l.strip()})}))"
)


class ImageBuilder:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.home = engine.home

    # -- base image ---------------------------------------------------------------------------

    def base_image_name(self, version, base_image: str | None = None) -> str:
        """argument > $NBSERVE_BASE_IMAGE > "base_image" in $NBSERVE_HOME/config.json > python:<X.Y>-slim."""
        return (
            base_image
            or os.environ.get("NBSERVE_BASE_IMAGE")
            or config.settings(self.home).get("base_image")
            or f"python:{minor(version.python)}-slim"
        )

    def _base_image(self, name: str, version, progress):
        """(image, facts) for the base image, pulled if missing, after checking that its Python is the
        kernel's major.minor and that it has glibc (the wheels are manylinux)."""
        import docker.errors

        want = minor(version.python)
        with self.engine.session() as client:
            try:
                image = client.images.get(name)
            except docker.errors.ImageNotFound:
                progress(f"base image {name} is not on this machine: pulling it")
                try:
                    image = client.images.pull(name)
                except docker.errors.APIError as exc:
                    raise BuildError(
                        f"the base image {name!r} is not on this machine and could not be pulled "
                        f"({short(exc)}). Provide an image with Python {want}: `docker pull {name}` where a "
                        f"registry is reachable (or `docker save` it there and `docker load` it here), or make "
                        f"one from Debian packages (.ci/setup-docker makes local/python:3.11-bookworm), then "
                        f'name it with base_image=..., NBSERVE_BASE_IMAGE or "base_image" in '
                        f"{self.home / 'config.json'}"
                    ) from None
            facts = self._base_facts(client, image, name)
        got = facts["python"]
        if minor(got) != want:
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

        cache_path = self.home / "docker" / "base-images.json"
        try:
            cache = json.loads(cache_path.read_text())
        except (FileNotFoundError, ValueError):
            cache = {}
        if isinstance(cache.get(image.id), dict) and "libs" in cache[image.id]:
            return cache[image.id]
        try:
            out = client.containers.run(
                image.id,
                ["python3", "-c", _PROBE],
                remove=True,
                network_mode="none",
                labels=self.engine.labels(**{"nbserve.probe": name}),
            )
        except (docker.errors.ContainerError, docker.errors.APIError) as exc:
            raise BuildError(
                f"the base image {name!r} has no working `python3` with the venv module "
                f"({short(exc)}); use a python:X.Y-slim image, or a Debian image with python3 and "
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
        with self.engine.session() as client:
            found = client.images.list(filters={"label": [f"{k}={v}" for k, v in labels.items()]})
        found = [i for i in found if _serves_its_artifact(i)]
        return max(found, key=lambda i: i.attrs.get("Created", "")) if found else None

    def _tagged(self, tag: str, labels: dict):
        """The image under ``tag`` if it carries ``labels`` (the stable choice among equal candidates)."""
        import docker.errors

        with self.engine.session() as client:
            try:
                image = client.images.get(tag)
            except docker.errors.ImageNotFound:
                return None
        return image if all(image.labels.get(k) == v for k, v in labels.items()) else None

    def build(self, version, base_image: str | None = None, progress=lambda *a, **k: None, cache: bool = True) -> Image:
        """The model's image, built unless an image of the same artifact, server code and base exists.

        ``cache=False`` builds both images from scratch: no image reused, no Docker layer cache (a
        cold build, as on a fresh machine; the wheelhouse in $NBSERVE_HOME is still used if there).
        """
        started = time.monotonic()
        name = self.base_image_name(version, base_image)
        base, facts = self._base_image(name, version, progress)
        tag = f"{image_name(version.name)}:{version.version}"
        key = {"nbserve.sha256": version.sha256, "nbserve.recipe": recipe_hash(), "nbserve.base": base.id}
        # an image names what it serves: found by its own model, version and registry, not only by content
        own = self.engine.labels(**{"nbserve.model": version.name, "nbserve.version": version.version})
        existing = self._find_image({**key, **own}) if cache else None
        if existing is not None:
            with self.engine.session():
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
        deps_image = self._deps_image(base, name, lines, lock_key, target, version, progress, cache)
        packages = self._system_packages(version, lines, facts, lock_key, progress)
        from_image = self._system_image(base, name, packages, progress, cache) if packages else name
        labels = self.engine.labels(
            **{
                "nbserve.model": version.name,
                "nbserve.version": version.version,
                "nbserve.lock": lock_key,
                "nbserve.base-name": name,
                "nbserve.system-packages": ",".join(version.system_packages),
                "nbserve.deps-image": deps_image,  # what the next version's image is built on too
            },
            **key,
        )
        with self._context("model-") as ctx:
            model_context(ctx, version, from_image, deps_image, labels)
            image_id = self._docker_build(ctx, tag, f"image {tag}", progress, cache=cache)
        with self.engine.session() as client:
            image = client.images.get(image_id)
        try:
            self._readiness(image, tag, version, progress)
        except BaseException:
            # an image that failed its check must not be found and reused by the next start
            with contextlib.suppress(Exception), self.engine.session() as client:
                client.images.remove(image.id, force=True)
            raise
        seconds = time.monotonic() - started
        progress(f"built {tag} ({image.short_id}, {image.attrs['Size'] / 1e6:.0f} MB) in {seconds:.1f} s", 1.0)
        report_phase(progress, "starting")
        return Image(tag, image.id, image.attrs["Size"], version.id, seconds)

    def dependencies(self, version, base_image: str | None = None) -> dict:
        """What an image of ``version`` shares with every image that can serve it in place: the lock's key (its
        pins and platform), the base image, the recipe (server code, Dockerfiles), the system packages asked
        for. A running container whose image labels say the same loads ``version`` without a rebuild."""
        name = self.base_image_name(version, base_image)
        base, facts = self._base_image(name, version, lambda *a, **k: None)
        lines = image_lock(version)
        return {
            "nbserve.lock": lock_hash(lines, " ".join(wheel_target(facts))),
            "nbserve.base": base.id,
            "nbserve.recipe": recipe_hash(),
            "nbserve.system-packages": ",".join(version.system_packages),
        }

    def build_split(self, versions, base_image: str | None = None, progress=lambda *a, **k: None) -> Image:
        """One image that serves several versions of a model by weight (a deployment's split): the image of
        the version of the largest weight, the other versions' artifacts added as layers, and
        ``NBSERVE_VERSIONS`` naming every version with its weight (the server splits as ``inst.split`` does).
        The versions must share the image's dependencies (lock, base, system packages)."""
        started = time.monotonic()
        primary = max(versions, key=lambda vw: vw[1])[0]
        wanted = self.dependencies(primary, base_image)
        for version, _ in versions:
            if self.dependencies(version, base_image) != wanted:
                raise BuildError(
                    f"{version.id} needs other requirements than {primary.id}: one image cannot serve both; "
                    f"update the deployment to it instead"
                )
        image = self.build(primary, base_image, progress)
        shas = {sha for sha, _dir in primary.artifact_layers()}
        layers = []
        for version, _ in versions:
            for sha, directory in version.artifact_layers():
                if sha not in shas:
                    shas.add(sha)
                    layers.append((sha, directory))
        spec = [{"artifact": f"{APP}/artifacts/{v.sha256}", "model_id": v.id, "weight": float(w)} for v, w in versions]
        split = ",".join(f"{v.id}={w:g}" for v, w in versions)
        digest = hashlib.sha256(json.dumps([image.id, spec]).encode()).hexdigest()[:12]
        tag = f"{image_name(primary.name)}:split-{digest}"
        # the labels of the primary's image are inherited: its content key (nbserve.sha256) is overridden, so
        # that a lookup of the primary's own image never finds this one
        labels = self.engine.labels(
            **{
                "nbserve.model": primary.name,
                "nbserve.version": primary.version,
                "nbserve.split": split,
                "nbserve.sha256": f"split-{digest}",
            }
        )
        with self._context("split-") as ctx:
            ctx.mkdir(parents=True)
            for sha, directory in layers:
                (ctx / sha).mkdir()
                for src in Path(directory).iterdir():
                    if src.is_file():
                        shutil.copy2(src, ctx / sha / src.name)
            copies = "".join(f"COPY {sha} {APP}/artifacts/{sha}\n" for sha, _dir in layers)
            (ctx / "Dockerfile").write_text(
                f"FROM {image.id}\n{copies}ENV NBSERVE_VERSIONS={json.dumps(json.dumps(spec))}\n"
            )
            image_id = self._docker_build(ctx, tag, f"split image {tag} ({split})", progress, labels=labels)
        with self.engine.session() as client:
            built = client.images.get(image_id)
        return Image(tag, built.id, built.attrs["Size"], primary.id, time.monotonic() - started)

    def _find_content(self, key: dict):
        """An image of the same artifact, server code and base, built under another name or registry (the
        one built in full rather than a relabelled one, so relabels do not stack)."""
        with self.engine.session() as client:
            found = client.images.list(filters={"label": [f"{k}={v}" for k, v in key.items()]})
        found = [i for i in found if _serves_its_artifact(i)]
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
        with self.engine.session() as client:
            return client.images.get(image_id)

    def _deps_image(self, base, base_name, lines, lock_key, target, version, progress, cache=True) -> str:
        """Id of the dependency image for this lock and base: reused when it exists, else built. The one the
        model's previous image of this lock was built on comes first (the next version's image then shares
        every layer below its own artifacts, however another build of the same lock moved the tag meanwhile);
        the model's Dockerfile names it by id, not by the tag."""
        tag = f"nbserve/deps:{lock_key[:12]}-{base.id.split(':')[-1][:12]}"
        labels = {"nbserve.deps": lock_key, "nbserve.base": base.id}
        existing = (
            (self._deps_of_previous(version, labels) or self._tagged(tag, labels) or self._find_image(labels))
            if cache
            else None
        )
        if existing is not None:
            with self.engine.session():
                existing.tag(*tag.split(":"))  # for people: `docker images nbserve/deps`
            progress(f"dependency layers for lock {lock_key[:12]} ({len(lines)} packages) exist: reused")
            return existing.id
        wheels = wheelhouse(lines, lock_key, self.home, kernel_python(version), target, progress)
        labels = self.engine.labels(**labels, **{"nbserve.base-name": base_name})
        with self._context("deps-") as ctx:
            deps_context(ctx, base_name, lines, lock_key, wheels)
            return self._docker_build(
                ctx, tag, f"dependency image ({len(lines)} packages)", progress, labels=labels, cache=cache
            )

    def _deps_of_previous(self, version, labels: dict):
        """The dependency image (with ``labels``) the latest image of this model and lock was built on, if any."""
        import docker.errors

        own = self.engine.labels(**{"nbserve.model": version.name, "nbserve.lock": labels["nbserve.deps"]})
        previous = self._find_image(own)
        deps_id = previous.labels.get("nbserve.deps-image") if previous is not None else None
        if not deps_id:
            return None
        with self.engine.session() as client:
            try:
                image = client.images.get(deps_id)
            except docker.errors.ImageNotFound:
                return None
        return image if all(image.labels.get(k) == v for k, v in labels.items()) else None

    def _system_packages(self, version, lines, facts, lock_key, progress) -> list[str]:
        """The Debian packages the image needs besides the base: those bringing the system libraries the
        locked wheels link and the base lacks (system_libraries.py; remembered per lock and base), and the
        version's own system_packages."""
        cache_path = self.home / "cache" / f"system-libraries-{lock_key[:16]}.json"
        try:
            needed = json.loads(cache_path.read_text())
        except (OSError, ValueError):
            needed = system_libraries.packages_for(lines, set(facts.get("libs") or ()))
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_text(json.dumps(needed))
        packages, unknown = needed
        for note in unknown:
            progress(
                f"a locked wheel links {note}, which the base image lacks and no known package provides: "
                f"register the model with system_packages=[...] naming the package that brings it"
            )
        own = list(version.manifest.get("system_packages") or ())
        if packages:
            progress(f"system packages the locked wheels need (their libraries are not in the base image): {packages}")
        return sorted(set(packages) | set(own))

    def _system_image(self, base, base_name, packages, progress, cache=True) -> str:
        """Tag of the base image plus ``packages`` (apt-get, the one build step with network): reused when it exists."""
        key = hashlib.sha256(f"{base.id}\n{' '.join(packages)}\n{SYSTEM_DOCKERFILE}".encode()).hexdigest()
        tag = f"nbserve/system:{key[:12]}"
        labels = {"nbserve.system": key, "nbserve.base": base.id}
        existing = (self._tagged(tag, labels) or self._find_image(labels)) if cache else None
        if existing is not None:
            with self.engine.session():
                existing.tag(*tag.split(":"))
            return tag
        labels = self.engine.labels(**labels, **{"nbserve.base-name": base_name})
        with self._context("system-") as ctx:
            system_context(ctx, base_name, packages)
            self._docker_build(
                ctx, tag, f"system layer ({', '.join(packages)})", progress, labels=labels, cache=cache, network=True
            )
        return tag

    @contextlib.contextmanager
    def _context(self, prefix):
        root = self.home / "build"
        root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
        try:
            yield path / "context"
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _docker_build(self, ctx: Path, tag: str, what: str, progress, labels=None, cache=True, network=False) -> str:
        """Build with the engine's builder, no network for RUN steps (but apt-get's in the system layer);
        report each Dockerfile step."""
        import docker.errors

        log, image_id, error, steps, cached = [], None, None, 0, 0
        step = re.compile(r"^Step (\d+)/(\d+) : (.*)")
        with self.engine.session() as client:
            try:
                stream = client.api.build(
                    path=str(ctx),
                    tag=tag,
                    rm=True,
                    forcerm=True,
                    decode=True,
                    network_mode=None if network else "none",
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
                error = short(exc)
        if error or image_id is None:
            tail = "\n".join(log[-30:])
            raise BuildError(
                f"building the {what} failed: {error or 'the engine reported no image'}\n"
                f"--- build log (tail) ---\n{tail}"
            )
        progress(f"{what}: built, {cached} of {steps} steps from the layer cache")
        return image_id

    def _readiness(self, image, tag, version, progress) -> None:
        """Start the image once and put it through the readiness check (``readiness.check``)."""
        bodies = readiness.requests_for(version)
        kernel = readiness.start_kernel_side(version, kernel_python(version), bodies) if bodies else None
        progress(f"readiness check: starting {tag} and calling {', '.join(bodies) or 'only /health'}")
        container = None
        try:
            with self.engine.session() as client:
                container = client.containers.run(
                    image.id,
                    detach=True,
                    init=True,
                    labels=self.engine.labels(**{"nbserve.readiness": version.id}),
                    ports={CONTAINER_PORT: ("127.0.0.1", None)},
                )
            container.reload()
            url = f"http://127.0.0.1:{published_port(container)}"
            wait_healthy(
                url,
                alive=lambda: container_state(container) in ("running", "created"),
                timeout=120,
                failure=lambda why: BuildError(
                    f"the image {tag} was built, but the server in it did not start ({why}): a "
                    f"dependency may be missing from the image.\n--- container log (tail) ---\n"
                    f"{container_logs(container, 30)}"
                ),
            )
            readiness.check(url, version, tag, bodies, kernel, progress)
        finally:
            if kernel is not None and kernel.poll() is None:
                kernel.kill()
            if container is not None:
                with contextlib.suppress(Exception):
                    container.remove(force=True)


# -- what the builder and the container runtime both read off a container ----------------------------


def _serves_its_artifact(image) -> bool:
    """An image labelled with a model's artifact serves that artifact: a user's image built FROM a model
    image inherits its labels but may serve something else (or nothing); such an image is never reused."""
    sha = image.labels.get("nbserve.sha256")
    if not sha or sha.startswith("split-"):
        return True  # not a model image (a dependency image), or a split image found by its own labels
    env = image.attrs.get("Config", {}).get("Env") or []
    return f"NBSERVE_ARTIFACT={APP}/artifacts/{sha}" in env


def minor(version: str) -> str:
    return ".".join(str(version).split(".")[:2])


def container_state(container) -> str:
    try:
        container.reload()
    except Exception:
        return "missing"
    return container.attrs["State"].get("Status", "unknown")


def published_port(container) -> int | None:
    """The host port Docker bound for the server now (None when the container is not running)."""
    ports = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
    for binding in ports.get(CONTAINER_PORT) or ():
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def container_logs(container, tail: int) -> str:
    try:
        return container.logs(tail=tail).decode(errors="replace")
    except Exception as exc:
        return f"(logs unavailable: {short(exc)})"
