"""What goes into a model's image: the requirement lock, the Dockerfiles, the build contexts.

Two images per model, built from two small contexts:

* the **dependency image** ``nbserve/deps:<lock>-<base>``: the base image plus a venv with exactly the
  pinned wheels, installed with ``pip install --no-index`` from a wheelhouse downloaded on the host
  (``wheelhouse.py``). It is
  keyed by the lock's hash and the base image id, so every model version with the same requirements
  shares it and a rebuild needs neither the wheels nor a download.
* the **model image** ``nbserve/<name>:<version>``: base, non-root user, the venv copied from the
  dependency image, the server package, the artifact last: layers from least to most often changing.

The server package is copied from this source tree (never resolved from PyPI, where an unrelated
``nbserve`` lives) with an empty ``nbserve/__init__.py`` beside it, so the image runs the same
``python -m nbserve.server`` entry point as the process runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from packaging.utils import canonicalize_name

from ..capture.requirements import lock
from .limits import server_command
from .wheelhouse import link_or_copy, wheel_key

SERVER_PACKAGE = Path(__file__).resolve().parents[1] / "server"
# what nbserve/server/ imports (see its __init__): pinned like the model's own requirements
SERVER_NEEDS = ("flask", "gunicorn", "orjson", "cloudpickle", "numpy", "prometheus_client")
PORT = 8080
UID = 10001
VENV = "/opt/venv"
APP = "/opt/nbserve"
FIXED_MTIME = 946684800  # 2000-01-01
PRUNE_SCRIPT = Path(__file__).with_name("prune_venv.py")  # runs inside the dependency image
# the same command as the process runtime's (settings arrive in the environment: Settings.to_env())
SERVER_CMD = server_command(f"{VENV}/bin/python")
HEALTHCHECK = [
    f"{VENV}/bin/python",
    "-c",
    f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}/health', timeout=2)",
]

DEPS_DOCKERFILE = """\
# nbserve dependency image: {base} + the pinned wheels of lock {lock_hash}
FROM {base}
COPY requirements.lock /tmp/nbserve/requirements.lock
COPY wheels /tmp/nbserve/wheels
COPY prune_venv.py /tmp/nbserve/prune_venv.py
# --no-index: nothing is fetched while building; --no-deps: the lock is already the closure, and pip must
# not second-guess the kernel's environment that the model was proven in. Then, in the same layer, drop what
# the server never imports (test suites, sources, headers, stubs) and compile the bytecode: prune_venv.py
RUN python3 -m venv {venv} \\
 && {venv}/bin/pip install --no-index --no-deps --no-cache-dir --disable-pip-version-check \\
        --find-links /tmp/nbserve/wheels -r /tmp/nbserve/requirements.lock{uninstall} \\
 && {venv}/bin/python /tmp/nbserve/prune_venv.py {venv}
"""

# the base image plus the Debian packages that bring system libraries the locked wheels link (libgomp1 for
# LightGBM's OpenMP, say) and the version's own system_packages: built with network, for apt-get alone
SYSTEM_DOCKERFILE = """\
# nbserve system layer: {base} + {packages}
FROM {base}
RUN if ! command -v apt-get >/dev/null 2>&1; then \\
        echo "nbserve: the base image has no apt-get to install {packages}: use a Debian-based image" >&2; exit 1; \\
    fi \\
 && apt-get update -q \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {packages} \\
 && rm -rf /var/lib/apt/lists/*
"""

MODEL_DOCKERFILE = """\
# nbserve model image for {model_id}, built from {base}
FROM {deps_image} AS deps

FROM {base}
# a user of its own with a writable home, and nothing else writable
RUN (useradd --system --uid {uid} --user-group --create-home --home-dir /home/nbserve --shell /usr/sbin/nologin \\
        nbserve 2>/dev/null \\
     || (echo 'nbserve:x:{uid}:{uid}::/home/nbserve:/usr/sbin/nologin' >> /etc/passwd \\
         && echo 'nbserve:x:{uid}:' >> /etc/group && mkdir -p /home/nbserve)) \\
 && chown {uid}:{uid} /home/nbserve
COPY --from=deps {venv} {venv}
# everything that is the same for every model comes before the model's own files, so it stays cached
ENV PATH={venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONPATH={app}/server PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR {app}
EXPOSE {port}
# no curl in the image: the server's own Python asks /health
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \\
    CMD {healthcheck}
# the server's settings arrive at run time in its environment (nbserve/server/settings.py)
CMD {cmd}
USER {uid}:{uid}
COPY server {app}/server
{artifact_copies}
ENV NBSERVE_ARTIFACT={app}/artifacts/{sha256} NBSERVE_MODEL_ID={model_id} NBSERVE_CONTROL=container{environment}
LABEL {labels}
"""


def image_lock(version) -> list[str]:
    """The model's pinned requirements plus what the server itself needs, pinned as installed here.

    On a name both lists pin, the model's pin wins: it is what the model was proven with.
    """
    pinned = {canonicalize_name(line.split("==")[0]): line for line in version.requirements}
    for line in lock(SERVER_NEEDS):
        pinned.setdefault(canonicalize_name(line.split("==")[0]), line)
    return sorted(pinned.values(), key=str.lower)


def lock_hash(lines: list[str], target: str) -> str:
    """The key of the dependency layers: the exact pins, the platform they are for, and how they are
    installed (the Dockerfile and the pruning script), so a changed recipe is not served from an old image."""
    text = f"target {target}\n" + "\n".join(lines) + "\n"
    recipe = DEPS_DOCKERFILE + PRUNE_SCRIPT.read_text()
    return hashlib.sha256(text.encode() + hashlib.sha256(recipe.encode()).digest()).hexdigest()


def recipe_hash() -> str:
    """A hash of what makes an image besides the model: the server package's files and the Dockerfiles,
    so an image built by an older nbserve is not reused."""
    h = hashlib.sha256(
        DEPS_DOCKERFILE.encode()
        + b"\0"
        + MODEL_DOCKERFILE.encode()
        + b"\0"
        + SYSTEM_DOCKERFILE.encode()
        + b"\0"
        + json.dumps([SERVER_CMD, HEALTHCHECK]).encode()
    )
    for path in _server_files():
        h.update(str(path.relative_to(SERVER_PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _server_files() -> list[Path]:
    return sorted(
        p
        for p in SERVER_PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def image_name(name: str) -> str:
    """A Docker repository name for a model name (lowercase; separators not doubled or at the ends)."""
    repo = re.sub(r"[._-]{2,}", "-", name.lower()).strip("._-")
    return f"nbserve/{repo or 'model'}"


# -- build contexts ----------------------------------------------------------------------------


def deps_context(path: Path, base: str, lines: list[str], key: str, wheels: Path) -> None:
    """Lock + wheelhouse + Dockerfile of the dependency image."""
    path.mkdir(parents=True)
    (path / "requirements.lock").write_text("\n".join(lines) + "\n")
    (path / "wheels").mkdir()
    for whl in wheels.glob("*.whl"):
        link_or_copy(whl, path / "wheels" / whl.name)
    shutil.copy2(PRUNE_SCRIPT, path / "prune_venv.py")
    # venv brings pip and setuptools; the running server needs neither (unless the model pinned them)
    pinned = {wheel_key(line)[0] for line in lines}
    drop = [n for n in ("pip", "setuptools") if n not in pinned]
    uninstall = f" \\\n && {VENV}/bin/python -m pip uninstall -y -q {' '.join(drop)}" if drop else ""
    (path / "Dockerfile").write_text(
        DEPS_DOCKERFILE.format(base=base, lock_hash=key[:12], venv=VENV, uninstall=uninstall)
    )


def system_context(path: Path, base: str, packages: list[str]) -> None:
    """Dockerfile of the system layer: the base image plus ``packages``."""
    path.mkdir(parents=True)
    (path / "Dockerfile").write_text(SYSTEM_DOCKERFILE.format(base=base, packages=" ".join(packages)))


def model_context(path: Path, version, base: str, deps_image: str, labels: dict) -> None:
    """Server package + artifact + Dockerfile of the model image."""
    path.mkdir(parents=True)
    server = path / "server" / "nbserve"
    (server / "server").mkdir(parents=True)
    (server / "__init__.py").write_text('"""nbserve\'s server package alone, as copied into a model image."""\n')
    for src in _server_files():
        dst = server / "server" / src.relative_to(SERVER_PACKAGE)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    # one layer per artifact: a graph's stages each in its own (artifact_layers orders them), shared by the
    # images of every graph version that runs the same stage version
    layers = version.artifact_layers()
    for sha, directory in layers:
        art = path / "artifacts" / sha
        art.mkdir(parents=True)
        for src in Path(directory).iterdir():
            if src.is_file():
                shutil.copy2(src, art / src.name)
    copies = "\n".join(f"COPY artifacts/{sha} {APP}/artifacts/{sha}" for sha, _dir in layers)
    _same_mtimes(path)
    label_text = " \\\n      ".join(f"{k}={_quote(v)}" for k, v in labels.items())
    (path / "Dockerfile").write_text(
        MODEL_DOCKERFILE.format(
            model_id=version.id,
            base=base,
            deps_image=deps_image,
            uid=UID,
            app=APP,
            venv=VENV,
            sha256=version.sha256,
            port=PORT,
            cmd=json.dumps(SERVER_CMD),
            healthcheck=json.dumps(HEALTHCHECK),
            labels=label_text,
            artifact_copies=copies,
            environment="".join(f" \\\n    {k}={_quote(v)}" for k, v in version.environment.items()),
        )
    )


def relabel_dockerfile(content_id: str, model_id: str, labels: dict) -> str:
    """The thin image of an artifact registered under another name: the same files, its own labels and id."""
    label_text = " \\\n      ".join(f"{k}={_quote(v)}" for k, v in labels.items())
    return f"FROM {content_id}\nENV NBSERVE_MODEL_ID={_quote(model_id)}\nLABEL {label_text}\n"


def _same_mtimes(path: Path) -> None:
    # the builder's COPY cache looks at file metadata too: fresh mtimes would defeat it on every rebuild
    for p in [path, *path.rglob("*")]:
        os.utime(p, (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)


def _quote(value) -> str:
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
