"""The wheelhouse: the model's pinned wheels, downloaded on the host for the base image's platform.

The host has the network, the proxy and the CA bundle; a build has none of them (``network_mode="none"``),
so the dependency image installs from these files with ``pip install --no-index``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from packaging.utils import canonicalize_name

try:
    import fcntl
except ImportError:  # Windows: no lock; one process at a time fills a wheelhouse there
    fcntl = None  # type: ignore[assignment]

from ..errors import BuildError


def wheel_target(facts: dict) -> list[str]:
    """pip options that select the wheels the base image can install (its Python, glibc and CPU), so
    that a host with a newer glibc, or a Mac, still downloads wheels that fit the image."""
    major, minor = facts["python"].split(".")[:2]
    glibc_minor = int(facts["libc"][1].split(".")[1])
    arch = facts["machine"]
    opts = [
        "--python-version",
        f"{major}.{minor}",
        "--implementation",
        "cp",
        "--abi",
        f"cp{major}{minor}",
        "--abi",
        "abi3",
        "--abi",
        "none",
    ]
    for k in range(glibc_minor, 16, -1):
        opts += ["--platform", f"manylinux_2_{k}_{arch}"]
    for legacy, k in (("manylinux2014", 17), ("manylinux2010", 12), ("manylinux1", 5)):
        if glibc_minor >= k:
            opts += ["--platform", f"{legacy}_{arch}"]
    return opts + ["--platform", f"linux_{arch}"]


def wheelhouse(lines: list[str], key: str, home: Path, python: str, target: list[str], progress) -> Path:
    """A directory holding one wheel per pinned line, under $NBSERVE_HOME/wheels/<key>.

    Downloaded on the host with ``pip download --only-binary=:all: --no-deps`` for the image's platform
    (``target``, from wheel_target): the host has the network, the proxy and the CA bundle; the build
    has none of them. A complete wheelhouse is marked and reused as it is; wheels already in another
    wheelhouse are linked instead of downloaded again. A lock file keeps two processes (a kernel and
    the Jupyter server) from filling the same wheelhouse at once.
    """
    root = home / "wheels"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{key}.lock", "w") as lock_file:
        if fcntl is not None:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        return _fill_wheelhouse(lines, key, root, python, target, progress)


def _fill_wheelhouse(lines, key, root: Path, python, platform_opts, progress) -> Path:
    target = root / key
    if (target / ".complete").exists():
        progress(f"wheelhouse for lock {key[:12]} already downloaded ({len(lines)} wheels)")
        return target
    target.mkdir(parents=True, exist_ok=True)
    wanted = {wheel_key(line) for line in lines}
    for other in root.glob("*/*.whl"):
        if other.parent != target and _wheel_file_key(other.name) in wanted and not (target / other.name).exists():
            link_or_copy(other, target / other.name)
    (target / "requirements.lock").write_text("\n".join(lines) + "\n")
    cmd = [
        python,
        "-m",
        "pip",
        "download",
        "--only-binary=:all:",
        "--no-deps",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        *platform_opts,
        "-d",
        str(target),
        "-r",
        str(target / "requirements.lock"),
    ]
    progress(f"downloading {len(lines)} pinned wheels on the host into {target}", 0.0)
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
        )
    except OSError as exc:
        raise BuildError(f"cannot run pip with {python}: {exc}") from None
    tail: list[str] = []
    done = 0
    assert proc.stdout is not None  # stdout=PIPE
    for raw in proc.stdout:
        line = raw.rstrip()
        tail = (tail + [line])[-40:]
        if line.startswith(("Saved ", "File was already downloaded")):
            done += 1
            progress(f"wheel {done}/{len(lines)}: {Path(line.split()[-1]).name}", done / max(len(lines), 1))
    if proc.wait() != 0:
        missing = [m.group(1) for m in re.finditer(r"No matching distribution found for (\S+)", "\n".join(tail))]
        hint = (
            f"no wheel on the index for {', '.join(missing)}: the image installs wheels only. Build one with "
            f"`pip wheel` and put it where pip finds it (PIP_FIND_LINKS), or leave the package out of the model"
            if missing
            else "check the pip output above: the host needs access to the package index "
            "(or PIP_INDEX_URL / PIP_FIND_LINKS pointing at a mirror)"
        )
        raise BuildError(
            f"downloading the wheels for the image failed; {hint}\n--- pip output (tail) ---\n" + "\n".join(tail[-20:])
        )
    got = {_wheel_file_key(p.name) for p in target.glob("*.whl")}
    if not wanted <= got:
        raise BuildError(f"pip download did not produce wheels for {sorted(wanted - got)} in {target}")
    (target / ".complete").write_text("")
    return target


def wheel_key(line: str) -> tuple[str, str]:
    name, _, ver = line.partition("==")
    return canonicalize_name(name), ver.strip()


def _wheel_file_key(filename: str) -> tuple[str, str]:
    name, ver = filename.split("-")[:2]
    return canonicalize_name(name), ver


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
