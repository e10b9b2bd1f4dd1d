"""The benchmarks still run end to end (a tiny run: no figure is asserted, only that every server came up,
answered like the model, and was measured). The README's numbers come from the full command."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from nbserve_testing import need

ROOT = Path(__file__).resolve().parents[1]


def test_serve_bench_runs_and_reports_every_server(tmp_path):
    need(shutil.which("wrk") is not None, "wrk (the benchmark's load generator)", "apt-get install -y wrk")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "serve_bench.py"),
            "--model",
            "pipeline",  # the mixed-type DataFrame one: the bare app's frame decoding is checked too
            "--rounds",
            "1",
            "--starts",
            "1",
            "--requests",
            "200",
            "--batch-requests",
            "5",
            "--first-runs",
            "1",
            "--only",
            "nbserve,bare Flask",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| nbserve |" in proc.stdout and "| bare Flask |" in proc.stdout
    assert "nbserve / bare Flask: server CPU per 1-row request" in proc.stdout
    result = json.loads(out.read_text())
    for name in ("nbserve", "bare Flask"):
        row = result["medians"][name]
        assert row["cpu_us_per_req"] > 0 and row["req_per_s"] > 0 and row["cold_start_s"] > 0
        assert row["rss_mb"] > row["pss_mb"] > 0
    assert len(result["first_prediction"]["nbserve"]) == 1
    # the benchmark's temporary registry is gone, and no process it started is left
    workdir = proc.stdout.split("workdir ", 1)[1].split()[0].rstrip(";")
    assert workdir.startswith(tempfile.gettempdir()) and not Path(workdir).exists()
    assert not [pid for pid in _pids() if workdir.encode() in _environ(pid)]


def _pids():
    return [p.name for p in Path("/proc").iterdir() if p.name.isdigit()]


def _environ(pid) -> bytes:
    try:
        return (Path("/proc") / pid / "environ").read_bytes()
    except OSError:
        return b""


def test_wsgi_micro_benchmark_runs():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "wsgi_micro.py"), "--n", "20", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if "us CPU per 1-row request" in ln]
    assert [ln.split(":")[0].strip() for ln in lines] == ["nbserve", "bare Flask", "raw WSGI"]


def test_batch_bench_runs_and_reports_every_server(tmp_path):
    need(shutil.which("wrk") is not None, "wrk (the benchmark's load generator)", "apt-get install -y wrk")
    out = tmp_path / "batch.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "batch_bench.py"),
            "--models",
            "linear",
            "--rounds",
            "1",
            "--requests",
            "200",
            "--paced-seconds",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        env={k: v for k, v in os.environ.items() if k != "NBSERVE_BENCH_BENTOML_PYTHON"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| nbserve batch |" in proc.stdout and "| bare Flask |" in proc.stdout
    assert "nbserve batch / nbserve: req/s" in proc.stdout
    rows = json.loads(out.read_text())["linear"]["rows"]
    assert set(rows) == {"nbserve batch", "nbserve", "bare Flask"}
    for row in rows.values():
        assert row["req_per_s"] > 0 and row["errors"] == 0
    assert rows["nbserve batch"]["requests_per_call"] >= 1
    paced = json.loads(out.read_text())["linear"]["paced"]
    assert set(paced) == {"nbserve batch"} and paced["nbserve batch"]["errors"] == 0
    assert "client p99" in proc.stdout
    workdir = proc.stdout.split("workdir ", 1)[1].split()[0]
    assert workdir.startswith(tempfile.gettempdir()) and not Path(workdir).exists()


def test_protocols_benchmark_runs():
    """benchmarks/protocols_bench.py end to end: every adapter case answers 200 and gets a ratio (the
    ratios themselves are for the closing note, not asserted: timings here are noise)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "protocols_bench.py"), "--rows", "50", "--n", "2", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if "x native" in ln]
    assert len(lines) == 10 and sum("/v2 infer" in ln for ln in lines) == 3, proc.stdout


def test_streaming_bench_runs_and_compares_served_streams_with_the_kernel(tmp_path):
    out = tmp_path / "streaming.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "streaming_bench.py"),
            "--rounds",
            "1",
            "--items",
            "300",
            "--work-items",
            "20",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        env={**os.environ, "NBSERVE_HOME": str(tmp_path / "home")},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for name, items in (("count", 300), ("work", 20)):
        for how in ("kernel", "served"):
            row = result[name][how]
            assert row["items"] == items and row["first_item_ms"] > 0 and row["items_per_s"] > 0
    assert "| count | 300 | served |" in proc.stdout


def test_graph_bench_measures_the_chain_against_the_composed_function(tmp_path):
    """benchmarks/graph_bench.py end to end (no Docker rebuild: the Docker tests build graph images)."""
    need(shutil.which("wrk") is not None, "wrk (the benchmark's load generator)", "apt-get install -y wrk")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "graph_bench.py"),
            "--rounds",
            "1",
            "--requests",
            "200",
            "--no-docker",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| chain |" in proc.stdout and "| composed |" in proc.stdout
    assert "3-stage chain against the same calls composed in one function:" in proc.stdout
    assert "update_stage (register the stage and the graph, swap in place)" in proc.stdout
