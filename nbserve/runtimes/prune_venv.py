"""Run inside the dependency image, by the venv's own Python, right after the wheels are installed:

    /opt/venv/bin/python prune_venv.py /opt/venv

Drops from site-packages what a served model never imports (test suites, C/Cython sources and headers,
type stubs, cached bytecode of what is dropped), compiles the bytecode of the rest (so no worker compiles
at start, and the image runs with PYTHONDONTWRITEBYTECODE), and prints the saving per package so that the
build output shows it. Standard library only: it runs before anything but the lock is installed.

Directories named ``testing`` or ``_testing`` stay: numpy.testing and pandas.testing are imported at run
time by the packages themselves; only ``tests`` suites go.
"""

import compileall
import os
import shutil
import sys
from pathlib import Path

DROP_DIRS = {"tests"}
DROP_SUFFIXES = {".pyx", ".pxd", ".pxi", ".c", ".cc", ".cpp", ".h", ".hpp", ".pyi"}


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def prune(site: Path) -> dict:
    """{top-level package: bytes dropped}."""
    saved = {}
    for top in sorted(site.iterdir()):
        if not top.is_dir() or top.name.endswith((".dist-info", ".egg-info")) or top.name == "__pycache__":
            continue
        dropped = 0
        for dirpath, dirnames, filenames in os.walk(top):
            for d in [d for d in dirnames if d in DROP_DIRS]:
                path = Path(dirpath) / d
                dropped += _size(path)
                shutil.rmtree(path)
                dirnames.remove(d)
            for f in filenames:
                if os.path.splitext(f)[1] in DROP_SUFFIXES:
                    path = Path(dirpath) / f
                    dropped += _size(path)
                    path.unlink()
        if dropped:
            saved[top.name] = dropped
    return saved


def main(venv: str) -> None:
    lib = Path(venv) / "lib"
    sites = sorted(lib.glob("python*/site-packages"))
    if not sites:
        sys.exit(f"no site-packages under {lib}")
    site = sites[0]
    before = _size(site)
    saved = prune(site)
    compileall.compile_dir(str(site), quiet=1, workers=0)
    after = _size(site)
    for name, n in sorted(saved.items(), key=lambda kv: -kv[1]):
        if n >= 100_000:
            print(f"nbserve prune: {name}: -{n / 1e6:.1f} MB (tests, sources, headers, stubs)")
    print(
        f"nbserve prune: site-packages {before / 1e6:.0f} MB -> {after / 1e6:.0f} MB "
        f"(-{sum(saved.values()) / 1e6:.0f} MB dropped; bytecode compiled)"
    )


if __name__ == "__main__":
    main(sys.argv[1])
