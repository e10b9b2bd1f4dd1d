"""Push a model's image to a container registry, and name it by digest from then on.

``push(ref, registry="HOST:PORT/PREFIX")`` builds the image if needed (the Docker runtime's builder, by
content: an image of the same artifact and server code is reused), tags it ``HOST:PORT/PREFIX/<name>:<version>``
and pushes it. The registry keeps layers by content too, so a second model version with the same
requirements uploads only its last layers (the server code and the artifact): ``layers_reused`` says how
many the registry already had. Deployments refer to ``PushedImage.reference`` (``repo@sha256:...``):
a tag can move, a digest cannot, so every replica of a deployment runs the same bytes.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

from .. import config
from ..errors import NbserveError
from .engine import docker_client, short_error

# HOST[:PORT][/path]: what `docker push` accepts before the repository name (lowercase path components)
_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


class PushError(NbserveError):
    pass


@dataclass
class PushedImage:
    model: str  # "diabetes:1"
    repository: str  # "127.0.0.1:5000/nbserve/diabetes"
    tag: str  # "1"
    digest: str  # "sha256:..." (the manifest digest the registry answered)
    size: int  # bytes of the local image
    layers_pushed: int
    layers_reused: int
    seconds: float
    image_id: str = ""  # the local image that was pushed

    @property
    def reference(self) -> str:
        """What deployments run: the repository pinned to the digest."""
        return f"{self.repository}@{self.digest}"

    def __repr__(self):
        return (
            f"<PushedImage {self.repository}:{self.tag} {self.digest[:19]} "
            f"pushed {self.layers_pushed} layers, reused {self.layers_reused}>"
        )


def registry_for(registry: str | None, home=None) -> str:
    """argument > $NBSERVE_REGISTRY > "registry" in $NBSERVE_HOME/config.json; checked, no trailing /."""
    value = registry or os.environ.get("NBSERVE_REGISTRY") or config.settings(home).get("registry")
    if not value:
        raise PushError(
            "no registry to push to: pass registry='HOST:PORT/PREFIX' (e.g. '127.0.0.1:5000/team'), or set "
            'NBSERVE_REGISTRY, or "registry" in $NBSERVE_HOME/config.json'
        )
    value = value.strip().rstrip("/")
    if "://" in value or not _REGISTRY.match(value):
        raise PushError(
            f"registry {value!r} is not HOST[:PORT][/PREFIX] (no scheme, lowercase path), e.g. '127.0.0.1:5000/team'"
        )
    return value


def repository_for(registry: str, model_name: str) -> str:
    """'127.0.0.1:5000/team' + 'diabetes' -> '127.0.0.1:5000/team/diabetes'; a bare host gets 'nbserve/'."""
    from ..runtimes.dockerfile import image_name

    repo = image_name(model_name).split("/", 1)[1]
    prefix = registry if "/" in registry else f"{registry}/nbserve"
    return f"{prefix}/{repo}"


def push(workspace, ref, registry: str | None = None, progress=lambda *a, **k: None) -> PushedImage:
    started = time.monotonic()
    target = registry_for(registry, workspace.home)
    mv = workspace.get_model(ref)
    image = workspace.build(mv, progress=progress)
    return push_image(image, repository_for(target, mv.name), str(mv.version), mv.id, progress, started)


def push_image(image, repository: str, tag: str, model_id: str, progress, started: float | None = None) -> PushedImage:
    """Tag a local image (an Image) ``repository:tag`` and push it; the registry's digest names it from then on."""
    started = time.monotonic() if started is None else started
    target = repository.rsplit("/", 1)[0]
    client = docker_client()
    local = client.images.get(image.id)
    local.tag(repository, tag)
    progress(f"pushing {repository}:{tag} ({image.size / 1e6:.0f} MB image)")
    layers: dict[str, str] = {}
    digest = error = None
    try:
        for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                error = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            status, layer = chunk.get("status", ""), chunk.get("id")
            if layer and status in ("Pushed", "Layer already exists") or (layer and status.startswith("Mounted")):
                layers[layer] = status
                progress(f"layer {layer}: {status.lower()}")
            digest = (chunk.get("aux") or {}).get("Digest", digest)
    except Exception as exc:  # the engine could not even start the push (registry unreachable...)
        error = short_error(exc)
    if error or not digest:
        raise PushError(
            f"pushing {repository}:{tag} failed: {error or 'the engine reported no digest'}. Is a registry "
            f"listening at {target.split('/')[0]}? (Docker talks plain HTTP only to registries on 127.0.0.0/8 "
            f"or ones listed in the daemon's insecure-registries)"
        )
    reused = sum(1 for s in layers.values() if s != "Pushed")
    pushed = PushedImage(
        model=model_id,
        repository=repository,
        tag=tag,
        digest=digest,
        size=image.size,
        layers_pushed=len(layers) - reused,
        layers_reused=reused,
        seconds=time.monotonic() - started,
        image_id=image.id,
    )
    progress(
        f"pushed {pushed.reference}: {pushed.layers_pushed} layers uploaded, {reused} already in the registry, "
        f"{pushed.seconds:.1f} s"
    )
    return pushed
