"""The sidebar's pure helpers (js/src/metrics.ts, js/src/format.ts: quantiles, axis ticks, drift bin labels,
log times) under node's own test runner: `cd js && jlpm test` compiles them with js/tsconfig.test.json and
runs js/test/*.test.ts. No browser needed; the node modules come from .ci/setup-browser."""

import shutil
import subprocess
import sys
from pathlib import Path

from nbserve_testing import need

JS = Path(__file__).resolve().parents[2] / "js"


def test_the_sidebar_helpers_pass_their_unit_tests():
    tsc = JS / "node_modules" / ".bin" / "tsc"
    need(tsc.exists() and shutil.which("node") is not None, "node and js/node_modules", "run .ci/setup-browser")
    build = subprocess.run([str(tsc), "-p", "tsconfig.test.json"], cwd=JS, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, f"tsc -p js/tsconfig.test.json failed:\n{build.stdout}{build.stderr}"
    run = subprocess.run(["node", "--test", "lib-test/test/"], cwd=JS, capture_output=True, text=True, timeout=300)
    sys.stdout.write(run.stdout[-2000:])
    assert run.returncode == 0, f"node --test failed:\n{run.stdout[-6000:]}{run.stderr[-2000:]}"
    counts = dict(
        line[2:].split(" ", 1) for line in run.stdout.splitlines() if line.startswith("# ") and " " in line[2:]
    )
    assert int(counts["pass"]) >= 8 and int(counts["fail"]) == 0, counts
