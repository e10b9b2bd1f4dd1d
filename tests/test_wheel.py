"""The wheel is the product: build the wheel and the sdist as a release would (``python -m build``) from a
CLEAN CLONE of the checkout (no node_modules, no built extension, nothing a developer's tree has lying
around: the build itself must make all of it, install.json included), install the WHEEL with the
``jupyter`` extra into a fresh venv with no Node on PATH, and check what a user checks: JupyterLab lists
the sidebar and the server extension as enabled, ``%load_ext nbserve`` works, the README's example script
serves, and a served model's /docs is Swagger UI from the wheel's own files.

Building needs Node 20+ on PATH (the wheel must not need it to install); jlpm comes with the build's own
requirements. Everything is installed from the package index through pip's and yarn's caches."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests
from nbserve_testing import need

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "nbserve-ml"
SWAGGER = Path("nbserve", "server", "static", "vendor", "swagger-ui", "swagger-ui-bundle.js")
# building in isolated envs and installing jupyterlab take minutes on a busy 2-core machine
pytestmark = pytest.mark.timeout(900)


def run(cmd, timeout=900, **kwargs):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin dir, environment without Node, a working directory outside the source tree)."""
    need(shutil.which("node") is not None, "Node.js (to build the JupyterLab extension)", "apt-get install nodejs")
    need((ROOT / ".git").exists(), "a git checkout (the wheel is built from a clean clone of it)", "git clone it")
    base = tmp_path_factory.mktemp("wheel")
    dist, clone = base / "dist", base / "clone"
    run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)])
    assert not (clone / "nbserve" / "labextension").exists() and not (clone / "js" / "node_modules").exists()
    # the sdist, then the wheel built from that sdist: what a release uploads
    env = {k: v for k, v in os.environ.items() if k not in ("SKIP_JUPYTER_BUILDER",)}
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(clone)], cwd=base, env=env)
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    assert [w.name.split("-")[0] for w in wheels] == ["nbserve_ml"] and len(sdists) == 1, list(dist.iterdir())
    with zipfile.ZipFile(wheels[0]) as whl:
        shipped = set(whl.namelist())
    extension = "nbserve_ml-0.1.0.data/data/share/jupyter/labextensions/nbserve/"
    for name in ("install.json", "package.json", "static/style.js"):
        assert extension + name in shipped, f"the wheel lacks {extension + name}"

    venv = base / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "NBSERVE_"))}
    env["PATH"] = str(bin_dir)  # no Node, no jlpm, nothing of the development venv
    assert shutil.which("node", path=env["PATH"]) is None
    # nbserve-ml with its jupyter extra (JupyterLab, the server proxy), and what the example script uses
    run([bin_dir / "pip", "install", "-q", f"{wheels[0]}[jupyter]", "scikit-learn"], env=env)
    work = base / "work"
    work.mkdir()
    return bin_dir, env, work


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_the_wheel_brings_the_sidebar_and_the_server_extension(installed):
    bin_dir, env, work = installed
    out = run([bin_dir / "jupyter", "labextension", "list"], env=env, cwd=work)
    listing = plain(out.stdout + out.stderr)
    assert re.search(rf"^\s+nbserve v\S+ enabled\s+OK \(python, {DISTRIBUTION}\)", listing, re.M), listing
    assert str(bin_dir.parent / "share" / "jupyter" / "labextensions") in listing
    out = run([bin_dir / "jupyter", "server", "extension", "list"], env=env, cwd=work)
    listing = plain(out.stdout + out.stderr)
    assert re.search(r"^\s+nbserve enabled", listing, re.M) and re.search(r"^\s+nbserve (\S+ )?OK", listing, re.M), (
        listing
    )


def test_load_ext_works_from_the_installed_package(installed):
    bin_dir, env, work = installed
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'nbserve')\n"
        "magics = ip.magics_manager.magics\n"
        "assert 'serve' in magics['line'] and 'serve' in magics['cell'] and 'nbserve' in magics['line']\n"
        "import nbserve; print(nbserve.__file__)\n"
    )
    out = run([bin_dir / "python", "-c", code], env={**env, "IPYTHONDIR": str(work / "ipython")}, cwd=work)
    assert out.stdout.strip().startswith(str(bin_dir.parent / "lib")), out.stdout  # the wheel's, not the tree's


def test_the_example_serves_and_docs_come_from_the_wheel(installed, tmp_path):
    bin_dir, env, work = installed
    home = tmp_path / "home"
    example = work / "serve_diabetes.py"
    shutil.copy(ROOT / "examples" / "serve_diabetes.py", example)
    # no engine here (the Docker path has its own tests): the process runtime, chosen by "auto"
    env = {**env, "NBSERVE_HOME": str(home), "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    out = run([bin_dir / "python", example, "--keep"], env=env, cwd=work, timeout=600)
    assert "runtime 'auto' chose process" in out.stderr
    url, instance = re.search(r" at (http://127\.0\.0\.1:\d+) \(process\)", out.stdout), out.stdout.split()[-1]
    assert f"stop it with: {bin_dir / 'nbserve'} stop {instance}" in out.stdout  # the venv's own script
    assert url, out.stdout
    try:
        page = requests.get(url.group(1) + "/docs", timeout=30)
        assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text and "SwaggerUIBundle" in page.text
        asset = requests.get(url.group(1) + "/static/vendor/swagger-ui/swagger-ui-bundle.js", timeout=30)
        site = Path(
            run([bin_dir / "python", "-c", "import nbserve; print(nbserve.__file__)"], env=env, cwd=work).stdout.strip()
        ).parents[1]
        assert asset.status_code == 200 and asset.content == (site / SWAGGER).read_bytes()
        assert "//cdn" not in page.text and "https://" not in page.text  # no CDN: local assets only
    finally:
        # the installed console script removes it
        removed = run([bin_dir / "nbserve", "remove", instance], env=env, cwd=work)
        assert f"{instance} removed" in removed.stdout
