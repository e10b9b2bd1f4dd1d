"""The Docker runtime's check for ``runtime="auto"`` (its ``check`` in ``runtimes/__init__.py``): Docker
only where it can really serve, the process runtime otherwise.

An engine that answers is not enough: behind a company proxy (and on machines with no registry) the base
image can be neither found nor pulled, and the first ``serve`` would die in the middle of a build. So
"auto" picks Docker only when an engine answers *and* the base image is on this machine with the kernel's
Python (or a registry says it can be pulled); otherwise it picks the process runtime and says why in one
line. The answer is cached: in this process for a minute, and a "cannot be pulled" on disk in the home
for ten minutes (a script or the CLI starts a new process each time, and a registry that does not answer
costs seconds).
"""

from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

from .. import config
from .docker_engine import API_TIMEOUT, PING_TIMEOUT, Engine
from .images import ImageBuilder

PULL_CHECK_TIMEOUT = 4.0  # seconds the engine may take to ask a registry about the base image
MEMORY_TTL = 60.0
DISK_TTL = 600.0
HOW_TO_GET_DOCKER = (
    "for the Docker runtime, start an engine (Docker Desktop, `sudo systemctl start docker`; "
    ".ci/setup-docker on Debian) with a Python {minor} base image (NBSERVE_BASE_IMAGE); "
    "runtime='docker' shows the full error"
)
NO_ENGINE = "no Docker engine answered"
NO_SDK = "the docker Python package is not installed (pip install docker)"
MAX_CANDIDATES = 8  # local images probed for the kernel's Python (each probe is cached by image id)

_memory: dict = {}


def check(workspace, base_image: str | None = None) -> tuple[bool, str]:
    """(whether the Docker runtime can serve here, why)."""
    name = base_image_name(workspace, base_image)
    key = (str(workspace.home), os.environ.get("DOCKER_HOST", ""), name)
    hit = _memory.get(key)
    if hit and time.monotonic() - hit[0] < MEMORY_TTL:
        return hit[1]
    problem = docker_problem(workspace, name)
    if problem is None:
        answer = (True, f"a Docker engine answered and the base image {name} is usable")
    elif problem in (NO_ENGINE, NO_SDK):
        answer = (False, f"{problem}; {HOW_TO_GET_DOCKER.format(minor=config.python_tag())}")
    else:  # the engine runs: what would serve is another base image, never "start an engine"
        answer = (False, f"{problem}; {local_images_hint(workspace, name)}")
    _memory[key] = (time.monotonic(), answer)
    return answer


def forget() -> None:
    """Drop the in-process answers (after starting an engine or loading an image)."""
    _memory.clear()


def base_image_name(workspace, base_image: str | None = None) -> str:
    return _builder(workspace).base_image_name(SimpleNamespace(python=config.python_tag()), base_image)


def _builder(workspace) -> ImageBuilder:
    return ImageBuilder(Engine(workspace.home))


def docker_problem(workspace, name: str) -> str | None:
    """Why the Docker runtime cannot serve here with the base image ``name``, or None when it can."""
    try:
        import docker
        import docker.errors
    except ImportError:
        return NO_SDK

    try:
        ping = docker.from_env(timeout=PING_TIMEOUT)
        try:
            ping.ping()
        finally:
            ping.close()
        client = docker.from_env(timeout=API_TIMEOUT)  # the base image's probe may take seconds on a busy engine
    except Exception:
        return NO_ENGINE
    try:
        try:
            image = client.images.get(name)
        except docker.errors.ImageNotFound:
            return _pull_problem(workspace, client, name)
        except Exception as exc:
            return f"the Docker engine did not say whether it has the base image {name} ({_short(exc)})"
        try:
            facts = _builder(workspace)._base_facts(client, image, name)
        except Exception as exc:
            return _short(exc)
        want = config.python_tag()
        got = ".".join(str(facts.get("python", "")).split(".")[:2])
        if got != want:
            return f"the base image {name} has Python {got}, the kernel {want}"
        if (facts.get("libc") or [""])[0] != "glibc":
            return f"the base image {name} has no glibc"
        return None
    finally:
        client.close()


def _pull_problem(workspace, client, name: str) -> str | None:
    """None when a registry knows ``name`` (the build will pull it), else why not; a "no" is cached on disk."""
    import docker
    import docker.errors

    cache_path = workspace.home / "docker" / "pullable.json"
    key = f"{os.environ.get('DOCKER_HOST', '')} {name}"
    try:
        cache = json.loads(cache_path.read_text())
    except (FileNotFoundError, ValueError):
        cache = {}
    seen = cache.get(key)
    if isinstance(seen, dict) and time.time() - seen.get("at", 0) < DISK_TTL:
        return seen["problem"]
    problem = None
    try:
        quick = docker.from_env(timeout=PULL_CHECK_TIMEOUT)
        try:
            quick.images.get_registry_data(name)
        finally:
            quick.close()
    except Exception as exc:
        problem = f"the base image {name} is not on this machine and cannot be pulled ({_short(exc)})"
    if problem is not None:
        cache[key] = {"at": time.time(), "problem": problem}
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, cache_path)
    return problem


def local_images_hint(workspace, name: str) -> str:
    """One line: the local images with the kernel's Python and glibc that could serve instead of ``name``,
    and how to pick one. Candidates are the images tagged with "python" in their name; each is probed
    once (its Python, libc: cached by image id in the home, as for any base image)."""
    import docker

    want = config.python_tag()
    found = []
    try:
        client = docker.from_env(timeout=API_TIMEOUT)
    except Exception:
        client = None
    if client is not None:
        try:
            builder = _builder(workspace)
            candidates = [
                (tag, image)
                for image in client.images.list()
                for tag in image.tags
                if "python" in tag.lower() and tag != name
            ]
            for tag, image in candidates[:MAX_CANDIDATES]:
                try:
                    facts = builder._base_facts(client, image, tag)
                except Exception:
                    continue
                python = ".".join(str(facts.get("python", "")).split(".")[:2])
                if python == want and (facts.get("libc") or [""])[0] == "glibc":
                    found.append(tag)
        except Exception:
            pass
        finally:
            client.close()
    if found:
        return (
            f"local images with Python {want} that could serve: {', '.join(found)} "
            f"(pick one: NBSERVE_BASE_IMAGE={found[0]}, or serve(..., base_image=...))"
        )
    return (
        f"no local image with Python {want} was found: make one (.ci/setup-docker on Debian builds "
        f"local/python:{want}-bookworm) and name it with NBSERVE_BASE_IMAGE"
    )


def _short(exc) -> str:
    text = " ".join(str(getattr(exc, "explanation", None) or exc).split())
    return text if len(text) < 160 else text[:160] + "..."
