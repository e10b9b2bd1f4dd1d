"""The system libraries a model's locked wheels need, and the packages that bring them into an image.

A wheel's compiled extensions name the shared libraries they link (ELF ``DT_NEEDED``). Most wheels carry
theirs (auditwheel puts them in ``<pkg>.libs/``), but some link a system one: LightGBM's ``lib_lightgbm.so``
wants ``libgomp.so.1`` (OpenMP), which a slim base image lacks, and the model then fails in the image with
``OSError: libgomp.so.1: cannot open shared object file``. So the image builder reads the locked
distributions' libraries (installed in the kernel's environment, the same pins as the image's), subtracts what
the wheels bring themselves and what the base image already has (its ``ldconfig -p``), and installs the
packages that provide the rest, with the user's own ``system_packages=[...]``, in a system layer.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

# Debian package of the libraries wheels commonly link from the system (anything else: ``dpkg -S`` here)
DEBIAN_PACKAGES = {
    "libgomp.so.1": "libgomp1",
    "libstdc++.so.6": "libstdc++6",
    "libgcc_s.so.1": "libgcc-s1",
    "libgfortran.so.5": "libgfortran5",
    "libquadmath.so.0": "libquadmath0",
    "libatomic.so.1": "libatomic1",
    "libopenblas.so.0": "libopenblas0",
    "libz.so.1": "zlib1g",
    "libexpat.so.1": "libexpat1",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0",
    "libX11.so.6": "libx11-6",
    "libXext.so.6": "libxext6",
    "libXrender.so.1": "libxrender1",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libsndfile.so.1": "libsndfile1",
}
# part of the C library itself: every glibc image has them
_GLIBC = ("libc.so", "libm.so", "libdl.so", "librt.so", "libpthread.so", "libutil.so", "libresolv.so", "ld-linux")


def needed_by_distributions(names) -> dict[str, set[str]]:
    """{soname: the distributions whose compiled files link it} for sonames none of these distributions
    ships itself (looked up in the kernel's environment, where the locked versions are installed)."""
    needed: dict[str, set[str]] = {}
    shipped: set[str] = set()
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for file in dist.files or ():
            base = file.name
            if ".so" not in base:
                continue
            shipped.add(base)
            for soname in elf_needed(Path(str(dist.locate_file(file)))):
                needed.setdefault(soname, set()).add(canonicalize_name(dist.metadata["Name"]))
    return {s: d for s, d in needed.items() if s not in shipped and not s.startswith(_GLIBC)}


def elf_needed(path: Path) -> list[str]:
    """The DT_NEEDED entries of a 64-bit little-endian ELF shared object ([] for anything else)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return []
            (shoff,) = struct.unpack_from("<Q", head, 0x28)
            shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            sections = [struct.unpack_from("<IIQQQQIIQQ", table, i * shentsize) for i in range(shnum)]
            out = []
            for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
                if kind != 6 or link >= len(sections):  # SHT_DYNAMIC, its strings in section ``link``
                    continue
                f.seek(offset)
                dynamic = f.read(size)
                f.seek(sections[link][4])
                strings = f.read(sections[link][5])
                for i in range(0, len(dynamic) - 15, entsize or 16):
                    tag, value = struct.unpack_from("<qQ", dynamic, i)
                    if tag == 0:
                        break
                    if tag == 1:  # DT_NEEDED
                        out.append(strings[value : strings.index(b"\0", value)].decode())
            return out
    except (OSError, struct.error, ValueError):
        return []


def debian_package(soname: str) -> str | None:
    """The Debian package that provides ``soname``: the table above, else ``dpkg -S`` on this machine."""
    if soname in DEBIAN_PACKAGES:
        return DEBIAN_PACKAGES[soname]
    if shutil.which("dpkg") is None:
        return None
    try:
        out = subprocess.run(["dpkg", "-S", soname], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        package, _, path = line.partition(": ")
        if path.rstrip().endswith("/" + soname):
            return package.split(":")[0].split(",")[0].strip()
    return None


def packages_for(requirements: list[str], base_libraries: set[str], extra=()) -> tuple[list[str], list[str]]:
    """(Debian packages to install, notes on libraries no package could be found for) for a lock whose
    distributions link libraries the base image lacks; ``extra``: the user's system_packages."""
    names = [line.split("==")[0] for line in requirements]
    packages = set(extra)
    unknown = []
    for soname, dists in sorted(needed_by_distributions(names).items()):
        if soname in base_libraries:
            continue
        package = debian_package(soname)
        if package:
            packages.add(package)
        else:
            unknown.append(f"{soname} (linked by {', '.join(sorted(dists))})")
    return sorted(packages), unknown
