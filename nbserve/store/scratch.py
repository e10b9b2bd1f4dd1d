"""Scratch directories of a register, and what a full disk means for them.

A register writes its pickle before the artifact store has it: into a staged draft under
``<home>/staging/`` (the process runtime's server proves it) or a proof directory ``nbserve-proof-*`` in the
temp dir (a clean interpreter replays it). Each names its owner (pid, process start time, host) in a small
file, so a later start removes the directories of owners that are gone (a kernel killed mid-register left
one; with a large model each holds hundreds of MB) and never a live register's. A directory without an owner
file, or of another host (a shared home), is removed only once it is an hour old.

A write that fails for want of space raises ``DiskFullError`` saying where, how much was needed and what is
free; the caller has already removed what it wrote.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import DiskFullError

OWNER = ".nbserve-owner"
PROOF_PREFIX = "nbserve-proof-"
STAGING = "staging"
MAX_AGE = 3600.0  # seconds: the age at which a directory of no known owner is taken as left behind
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _started(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, Linux), None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22 of stat: the fields after the command name


def _owner() -> dict:
    return {"pid": os.getpid(), "started": _started(os.getpid()), "host": socket.gethostname()}


def make(parent: Path, prefix: str = "") -> Path:
    """A new scratch directory under ``parent``, owned by this process."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        (path / OWNER).write_text(json.dumps(_owner()))
    except OSError as exc:
        shutil.rmtree(path, ignore_errors=True)
        raise full_disk_error(exc, path, "a scratch directory") from None
    return path


@contextmanager
def directory(parent: Path | None = None, prefix: str = PROOF_PREFIX) -> Iterator[Path]:
    """A scratch directory (in the temp dir by default), removed when the block ends, however it ends."""
    path = make(Path(parent or tempfile.gettempdir()), prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def left_behind(path: Path, max_age: float = MAX_AGE) -> bool:
    """Whether ``path`` is a scratch directory no live process owns."""
    try:
        owner = json.loads((path / OWNER).read_text())
        pid = int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        owner = None
    if owner is None or owner.get("host") != socket.gethostname():
        try:
            return time.time() - path.stat().st_mtime > max_age
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    started = owner.get("started")
    return started is not None and _started(pid) not in (None, started)  # the pid now names another process


def sweep(parent: Path, pattern: str = "*", max_age: float = MAX_AGE) -> list[Path]:
    """Remove the scratch directories under ``parent`` matching ``pattern`` that no live process owns."""
    removed: list[Path] = []
    try:
        candidates = [p for p in Path(parent).glob(pattern) if p.is_dir()]
    except OSError:
        return removed
    for path in candidates:
        if left_behind(path, max_age):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def sweep_all(home: Path) -> list[Path]:
    """What killed registers left: staged drafts under ``home`` and proof directories in the temp dir."""
    return sweep(Path(home) / STAGING) + sweep(Path(tempfile.gettempdir()), PROOF_PREFIX + "*")


def is_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _FULL


def full_disk_error(exc: OSError, where: Path, what: str, size: int | None = None) -> DiskFullError:
    """The error a failed write for want of space becomes: where, how much, what is free, what to do."""
    probe = Path(where)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = f"{shutil.disk_usage(probe).free / 2**20:.1f} MB free there"
    except OSError:
        free = "the free space there could not be read"
    need = f" ({size / 2**20:.1f} MB)" if size else ""
    return DiskFullError(
        f"no space left to write {what}{need} under {probe}: {free} ({exc.strerror or exc}). Nothing of this "
        f"register was kept. Free some space, or put the registry (NBSERVE_HOME) or the temp dir (TMPDIR) "
        f"on a larger disk."
    )


@contextmanager
def writing(where: Path, what: str, size: int | None = None) -> Iterator[None]:
    """Turn a write that fails for want of space into a DiskFullError (other errors pass unchanged)."""
    try:
        yield
    except OSError as exc:
        if is_full(exc):
            raise full_disk_error(exc, where, what, size) from None
        raise
