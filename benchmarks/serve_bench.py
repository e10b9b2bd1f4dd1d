"""nbserve's served model against a bare Flask app (and MLflow, BentoML where given), in one run.

    python benchmarks/serve_bench.py [--rounds 10] [--model linear|xgboost] [--mlflow-python PY] [--bentoml-python PY]

(or NBSERVE_BENCH_MLFLOW_PYTHON / NBSERVE_BENCH_BENTOML_PYTHON). Needs wrk (Debian: apt-get install wrk).

Every server gets the same budget: one worker, its processes pinned to CPU 0; wrk, the load generator,
runs as a separate process pinned to CPU 1. For each server:

1. cold start, --starts times (servers interleaved): from spawn to the first 200 on its health URL
   (polled every 5 ms from CPU 1); each start also checks the answers for all 442 rows against the
   model's own predictions;
2. then all servers run at once (an idle server costs nothing) and take --rounds short slices of load
   in turn (rotated order), so that what neighbours on a shared machine do falls on all of them alike:
   a fixed number of 1-row POSTs from wrk over 4 connections, then 1,000-row POSTs one at a time.
   Server CPU per request is the utime+stime (from /proc/<pid>/stat) of all the server's processes
   over those requests, divided by their number: the figure that stays stable on a shared machine,
   unlike req/s and latencies;
3. RSS and PSS, summed over the server's processes, after the load.

The table shows medians over the rounds (for the 1,000-row max: the median of each round's max).
Servers: nbserve (``nbserve.serve(..., runtime="process")``, its real process runtime), the bare
Flask app under gunicorn's sync worker with orjson (baseline_flask.py; the sync worker closes each
connection, so the same app also runs under gthread with keep-alive, as nbserve keeps wrk's connections
open), a raw WSGI callable under gunicorn (baseline_wsgi.py), and MLflow's and BentoML's servers from their
own venvs (thirdparty.py). Then the time to first prediction, in fresh processes
(first_prediction.py). Only 127.0.0.1; request counts and durations are bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SERVER_CPU, LOAD_CPU = 0, 1
TICK = 1.0 / os.sysconf("SC_CLK_TCK")
PY = sys.executable


# -- processes, from /proc -----------------------------------------------------------------------


def _stat(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    rest = data[data.rindex(")") + 2 :].split()
    return {"ppid": int(rest[1]), "session": int(rest[3]), "cpu_ticks": int(rest[11]) + int(rest[12])}


def _all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def listener_session(port: int) -> int:
    """The session id of the process listening on 127.0.0.1:port (each server runs in a session of its
    own, so the session holds exactly the server's processes: master, workers, helpers)."""
    want = f"0100007F:{port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[1].endswith(f":{port:04X}") and parts[3] == "0A" and (parts[1] == want or table[-1] == "6"):
                inodes.add(f"socket:[{parts[9]}]")
    for pid in _all_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return _stat(pid)["session"]
            except (OSError, TypeError):
                continue
    raise RuntimeError(f"no process listens on 127.0.0.1:{port}")


def session_pids(session: int):
    """The processes of the session and all their descendants (BentoML's supervisor starts its workers
    in sessions of their own)."""
    stats = {pid: st for pid in _all_pids() if (st := _stat(pid))}
    members = {pid for pid, st in stats.items() if st["session"] == session}
    grew = True
    while grew:
        more = {pid for pid, st in stats.items() if st["ppid"] in members} - members
        members |= more
        grew = bool(more)
    return sorted(members)


def cpu_snapshot(session: int) -> dict:
    return {pid: st["cpu_ticks"] for pid in session_pids(session) if (st := _stat(pid))}


def cpu_seconds_between(before: dict, after: dict) -> float:
    return sum(t - before.get(pid, 0) for pid, t in after.items()) * TICK


def memory_mb(session: int) -> tuple[float, float]:
    """(RSS, PSS) summed over the server's processes. RSS counts a page shared by gunicorn's master and
    its forked worker (everything loaded before the fork with --preload) once per process; PSS splits
    it between them, so PSS sums to the memory the server really holds."""
    rss = pss = 0
    for pid in session_pids(session):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss / 1024, pss / 1024


def pin(cpu):
    return lambda: os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _running(pid) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def kill_session(session: int, timeout=15.0):
    """SIGTERM the server's process group, then SIGKILL whatever of its tree is left."""
    pids = session_pids(session)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(session, sig)
        except ProcessLookupError:
            pass
        if sig == signal.SIGKILL:
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not any(_running(pid) for pid in pids):
                return
            time.sleep(0.05)


# -- servers -------------------------------------------------------------------------------------


class Server:
    """One server under test. ``spawn`` returns at once; the bench polls ``health_path``."""

    health_path = "/health"
    predict_path = "/predict"
    input_key = "data"

    def __init__(self, name):
        self.name = name
        self.port = None
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}{self.predict_path}"

    def spawn(self, port):
        raise NotImplementedError

    def stop(self, session):
        kill_session(session)
        if self.proc is not None:
            self.proc.wait(10)
            self.proc = None

    def predictions(self, answer) -> np.ndarray:
        return np.asarray(answer["data"], dtype=float)


class CommandServer(Server):
    def __init__(self, name, cmd, cwd=HERE, env=None, **kw):
        super().__init__(name)
        self.cmd, self.cwd, self.env = cmd, cwd, env or {}
        self.__dict__.update(kw)

    def spawn(self, port):
        cmd = [str(part).replace("{port}", str(port)) for part in self.cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GUNICORN"))}
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
                preexec_fn=pin(SERVER_CPU),
            )

    @property
    def log_path(self):
        return Path(tempfile.gettempdir()) / f"nbserve-bench-{self.name.replace(' ', '-')}.log"


class NbserveServer(Server):
    """nbserve's own process runtime, started the way a user starts it: nbserve.serve(name, runtime=...)."""

    def __init__(self, name="nbserve", model="diabetes", **options):
        super().__init__(name)
        self.model, self.options = model, options
        self.instance = None
        self.error = None

    def spawn(self, port):
        import nbserve

        def run():
            os.sched_setaffinity(0, {SERVER_CPU})  # this thread only: the gunicorn it forks inherits it
            try:
                self.instance = nbserve.serve(self.model, runtime="process", port=port, progress=False, **self.options)
            except BaseException as exc:  # reported by the health poll
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def failed(self):
        return self.error

    def stop(self, session):
        self.thread.join(60)
        if self.instance is not None:
            self.instance.remove()
            self.instance = None
        kill_session(session)


class MlflowServer(CommandServer):
    health_path = "/health"
    predict_path = "/invocations"
    input_key = "inputs"

    def predictions(self, answer):
        return np.asarray(answer["predictions"], dtype=float)


class BentomlServer(CommandServer):
    health_path = "/readyz"

    def predictions(self, answer):
        return np.asarray(answer, dtype=float)


# -- measurements --------------------------------------------------------------------------------


def http(url, body=None, timeout=5.0):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read()


def cold_start(server: Server, timeout=120.0) -> float:
    port = free_port()
    server.port = port
    started = time.perf_counter()
    server.spawn(port)
    url = f"http://127.0.0.1:{port}{server.health_path}"
    while True:
        try:
            status, _ = http(url, timeout=1.0)
            if status == 200:
                return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if getattr(server, "failed", lambda: None)():
            raise RuntimeError(f"{server.name} did not start: {server.failed()}")
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited during start (see {server.log_path})")
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"{server.name}: no 200 on {server.health_path} within {timeout:.0f} s")
        time.sleep(0.005)


def wrk(url, body_path, requests, connections, max_seconds=120, allow_errors=False, delay_ms=0.0) -> dict:
    """Run wrk for ``requests`` answers (or max_seconds); its figures as a dict. Errors (non-2xx answers,
    socket errors) raise unless ``allow_errors`` (then they are counted in the figures). ``delay_ms``: each
    connection's mean wait between an answer and its next request (post.lua), for a paced load."""
    env = dict(os.environ, BENCH_BODY=str(body_path), BENCH_REQUESTS=str(requests), BENCH_DELAY_MS=str(delay_ms))
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max_seconds}s", "-s", str(HERE / "post.lua"), url]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, preexec_fn=pin(LOAD_CPU)
    )
    result, output = None, []
    for line in proc.stdout:
        output.append(line)
        if line.startswith("WRK-STOP"):
            proc.send_signal(signal.SIGINT)
        elif line.startswith("WRK-RESULT "):
            result = json.loads(line[len("WRK-RESULT ") :])
    _, _, usage = os.wait4(proc.pid, 0)  # wrk's own CPU: shows whether the load generator kept up
    proc.returncode = 0
    if result is None:
        raise RuntimeError("wrk gave no result:\n" + "".join(output[-20:]))
    if not allow_errors and (result["non_2xx"] or result["socket_errors"] > connections):
        raise RuntimeError(f"wrk saw errors against {url}: {result}")
    result["seconds"] = result["duration_us"] / 1e6
    result["wrk_busy"] = (usage.ru_utime + usage.ru_stime) / result["seconds"]
    return result


def start(server: Server, bodies: dict, expected: np.ndarray) -> tuple[float, int]:
    """Start ``server``, check its answers; (cold start in s, its session)."""
    took = cold_start(server)
    session = listener_session(server.port)
    for pid in session_pids(session):
        try:
            os.sched_setaffinity(pid, {SERVER_CPU})
        except OSError:
            pass
    try:
        _, answer = http(server.url, bodies[server.input_key]["check"], timeout=30)
        got = server.predictions(json.loads(answer))
        tol = 1e-6 if expected.dtype == np.float32 else 1e-9  # float32 answers (xgboost) pass through JSON text
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=tol, atol=tol):
            raise RuntimeError(f"{server.name} answered {got[:3]}..., the model says {expected[:3]}...")
    except BaseException:
        server.stop(session)
        raise
    return took, session


def load_slice(server: Server, session: int, bodies: dict, args) -> dict:
    """One slice of load on a running server: 1-row requests, then 1,000-row requests one at a time."""
    out = {}
    before = cpu_snapshot(session)
    one = wrk(server.url, bodies[server.input_key]["one"], args.requests, args.connections)
    time.sleep(0.05)  # let the server finish the requests still in flight when wrk stopped
    cpu = cpu_seconds_between(before, cpu_snapshot(session))
    out.update(
        cpu_us_per_req=cpu / one["requests"] * 1e6,
        req_per_s=one["requests"] / one["seconds"],
        p50_ms=one["p50_us"] / 1e3,
        p99_ms=one["p99_us"] / 1e3,
        server_busy=cpu / one["seconds"],
        wrk_busy=one["wrk_busy"],
    )
    before = cpu_snapshot(session)
    batch = wrk(server.url, bodies[server.input_key]["batch"], args.batch_requests, 1)
    cpu = cpu_seconds_between(before, cpu_snapshot(session))
    out.update(
        batch_p50_ms=batch["p50_us"] / 1e3,
        batch_max_ms=batch["max_us"] / 1e3,
        rows_per_s=args.batch_rows * batch["requests"] / batch["seconds"],
        batch_cpu_ms_per_req=cpu / batch["requests"] * 1e3,
    )
    return out


def diabetes_registered(prefix: str):
    """(workdir, X, lr, bodies) of the small benchmarks: a temporary NBSERVE_HOME (never ~/.nbserve) where the
    diabetes LinearRegression is registered as "diabetes", and the bodies that start() and wrk send (one row, and
    every row to check the answers)."""
    import orjson
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["NBSERVE_HOME"] = str(workdir / "nbserve-home")
    import nbserve

    X, y = load_diabetes(return_X_y=True)
    lr = LinearRegression().fit(X, y)
    bodies: dict = {"data": {}}
    for kind, rows in (("one", X[:1]), ("check", X)):
        path = workdir / f"data-{kind}.json"
        path.write_bytes(orjson.dumps({"data": rows.tolist()}))
        bodies["data"][kind] = path.read_bytes() if kind == "check" else path
    nbserve.register(lr, name="diabetes", sample=X, progress=False)
    return workdir, X, lr, bodies


def rotations(items, n):
    """n orders of items, each starting one further on, so that no server always goes first."""
    for r in range(n):
        k = r % len(items)
        yield r, items[k:] + items[:k]


def time_to_first_prediction(runs: int, workdir: Path) -> list[dict]:
    results = []
    for i in range(runs):
        home = workdir / f"first-home-{i}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["NBSERVE_HOME"] = str(home)
        proc = subprocess.run(
            [PY, str(HERE / "first_prediction.py"), f"first{i}"], env=env, capture_output=True, text=True, timeout=300
        )
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"first_prediction.py failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        results.append(json.loads(line[7:]))
    return results


def thirdparty_first(python: str, tool: str, runs: int, workdir: Path) -> list[float]:
    out = []
    for i in range(runs):
        d = workdir / f"{tool}-first-{i}"
        proc = subprocess.run(
            [python, str(HERE / "thirdparty.py"), f"{tool}-first", str(d)], capture_output=True, text=True, timeout=300
        )
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"{tool} first prediction failed:\n{proc.stderr[-3000:]}")
        out.append(json.loads(line[7:])["total_s"])
    return out


# -- the report ----------------------------------------------------------------------------------

COLUMNS = [  # key, header, format
    ("cpu_us_per_req", "server CPU per 1-row request", "{:,.0f} us"),
    ("req_per_s", "1-row req/s", "{:,.0f}"),
    ("p50_ms", "1-row p50", "{:.2f} ms"),
    ("p99_ms", "1-row p99", "{:.2f} ms"),
    ("batch_p50_ms", "1,000-row p50", "{:.2f} ms"),
    ("batch_max_ms", "1,000-row max", "{:.2f} ms"),
    ("rows_per_s", "rows/s (1,000-row requests)", "{:,.0f}"),
    ("cold_start_s", "cold start", "{:.2f} s"),
    ("rss_mb", "RSS (sum)", "{:.0f} MB"),
    ("pss_mb", "PSS (sum)", "{:.0f} MB"),
]


def median_row(rounds: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0] if isinstance(rounds[0][k], (int, float))}


def table(rows: dict) -> str:
    lines = ["| server | " + " | ".join(h for _, h, _ in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(fmt.format(row[k]) for k, _, fmt in COLUMNS) + " |")
    return "\n".join(lines)


TARGETS = {  # nbserve / bare Flask, from issue 7
    "cpu_us_per_req": 1.1,
    "batch_p50_ms": 1.2,
    "cold_start_s": 1.2,
}


def ratios(rows: dict, results: dict, colds: dict, ref: str, name: str = "nbserve") -> str:
    """nbserve / ref for each column: the ratio of the medians, and (in brackets) the median of the ratios
    within each round (or start), where both servers met the same neighbours on the machine."""
    keys = [
        "cpu_us_per_req",
        "req_per_s",
        "p50_ms",
        "p99_ms",
        "batch_p50_ms",
        "batch_max_ms",
        "rows_per_s",
        "cold_start_s",
        "rss_mb",
        "pss_mb",
    ]
    a, b = rows[name], rows[ref]
    parts = []
    for k in keys:
        r = a[k] / b[k]
        if k == "cold_start_s":
            paired = [x / y for x, y in zip(colds[name], colds[ref])]
        else:
            paired = [x[k] / y[k] for x, y in zip(results[name], results[ref])]
        p = statistics.median(paired)
        target = TARGETS.get(k) if ref == "bare Flask" else None
        if target is None:
            mark = ""
        else:
            verdict = "met" if max(r, p) <= target else "met by one estimate" if min(r, p) <= target else "NOT met"
            mark = f" target <= {target:.1f}: {verdict}"
        parts.append(f"{dict((c, h) for c, h, _ in COLUMNS)[k]} {r:.2f} [{p:.2f}]{mark}")
    if ref == "bare Flask":
        for k, label in (("rss_mb", "RSS"), ("pss_mb", "PSS")):
            extra = a[k] - b[k]
            parts.append(
                f"{label} difference {extra:+.0f} MB (target <= +20 MB: {'met' if extra <= 20 else 'NOT met'})"
            )
    return f"{name} / {ref}: " + "; ".join(parts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10, help="interleaved load slices per server")
    ap.add_argument("--starts", type=int, default=5, help="cold starts per server")
    ap.add_argument("--requests", type=int, default=1500, help="1-row requests per server per round")
    ap.add_argument("--connections", type=int, default=4, help="wrk connections for the 1-row load")
    ap.add_argument("--batch-requests", type=int, default=40, help="1,000-row requests per server per round")
    ap.add_argument("--first-runs", type=int, default=3, help="time-to-first-prediction runs (0: skip)")
    ap.add_argument("--mlflow-python", default=os.environ.get("NBSERVE_BENCH_MLFLOW_PYTHON"))
    ap.add_argument("--bentoml-python", default=os.environ.get("NBSERVE_BENCH_BENTOML_PYTHON"))
    ap.add_argument(
        "--model",
        choices=["linear", "xgboost", "pipeline"],
        default="linear",
        help="the model every server serves (pipeline: the mixed-type DataFrame one of tests/models/frames.py)",
    )
    ap.add_argument(
        "--quiet-nbserve",
        action="store_true",
        help="also run nbserve with metrics=False, request_log=False (what observability costs per request)",
    )
    ap.add_argument("--only", help="comma-separated server names to run (default: all available)")
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args(argv)
    args.batch_rows = 1000

    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install -y wrk (Debian's package)")
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs 2 CPUs: one for the servers, one for the load generator")
    workdir = Path(tempfile.mkdtemp(prefix="nbserve-bench-"))
    os.environ["NBSERVE_HOME"] = str(workdir / "nbserve-home")  # never ~/.nbserve
    os.sched_setaffinity(0, {LOAD_CPU})
    try:
        run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def venv_path(python: str) -> str:
    """PATH with the venv's bin first: MLflow execs `uvicorn` by name."""
    return f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def run(args, workdir: Path):
    import pickle

    import orjson
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    import nbserve
    from nbserve.server.schema import frame_split

    model_env = {"BENCH_MODEL": str(workdir / "model.pkl")}
    if args.model == "pipeline":  # the mixed-type DataFrame (dates, categories, missing values) before boosting
        import cloudpickle

        sys.path.insert(0, str(HERE.parent / "tests" / "models"))
        import frames

        cloudpickle.register_pickle_by_value(frames)  # the bare app unpickles its date transformer by value
        X, _ = frames.rentals(442, seed=0)
        lr = frames.mixed_pipeline(*frames.rentals(1000, seed=1))
        batch = frames.rentals(args.batch_rows, seed=2)[0]
        (workdir / "model.pkl").write_bytes(cloudpickle.dumps(lr))
        (workdir / "dtypes.pkl").write_bytes(pickle.dumps(X.dtypes))
        model_env["BENCH_DTYPES"] = str(workdir / "dtypes.pkl")
        wire = {"data": frame_split}
    else:
        X, y = load_diabetes(return_X_y=True)
        if args.model == "xgboost":  # threaded native code (OpenMP) behind the same float rows
            import xgboost

            lr = xgboost.XGBRegressor(n_estimators=100, max_depth=4).fit(X, y)
        else:
            lr = LinearRegression().fit(X, y)
        (workdir / "model.pkl").write_bytes(pickle.dumps(lr))
        batch = np.resize(X, (args.batch_rows, X.shape[1]))  # the 442 rows repeated to 1,000
        wire = {"data": np.ndarray.tolist, "inputs": np.ndarray.tolist}
    expected = lr.predict(X)
    bodies = {}
    for key, encode in wire.items():
        bodies[key] = {}
        for kind, rows in (("one", X[:1]), ("batch", batch), ("check", X)):
            path = workdir / f"{key}-{kind}.json"
            path.write_bytes(orjson.dumps({key: encode(rows)}))
            bodies[key][kind] = path.read_bytes() if kind == "check" else path

    mv = nbserve.register(lr, name=f"bench-{args.model}", sample=X, progress=False)
    print(
        f"nbserve {nbserve.__version__ if hasattr(nbserve, '__version__') else ''} registered {mv.id}; "
        f"workdir {workdir}",
        flush=True,
    )

    gunicorn = [PY, "-m", "gunicorn", "--workers", "1", "--bind", "127.0.0.1:{port}"]
    servers = [
        NbserveServer(model=mv.name),
        CommandServer("bare Flask", gunicorn + ["baseline_flask:app"], env=model_env),
        # the sync worker closes every connection; nbserve keeps wrk's open: the same app with keep-alive too
        CommandServer(
            "bare Flask keep-alive",
            gunicorn + ["-k", "gthread", "--threads", "4", "--keep-alive", "15", "baseline_flask:app"],
            env=model_env,
        ),
    ]
    if args.quiet_nbserve:  # what the per-request metrics, request log and drift window cost
        servers.append(NbserveServer("nbserve quiet", model=mv.name, metrics=False, request_log=False))
    if args.model == "pipeline":
        print("raw WSGI, MLflow, BentoML: not run for the DataFrame pipeline (each needs its own frame decoding)")
        args.mlflow_python = args.bentoml_python = None
    else:
        servers.append(CommandServer("raw WSGI", gunicorn + ["baseline_wsgi:app"], env=model_env))
    prepare_env = dict(os.environ, **model_env) if args.model != "linear" else None
    if args.mlflow_python:
        print("preparing MLflow's model ...", flush=True)
        subprocess.run(
            [args.mlflow_python, str(HERE / "thirdparty.py"), "mlflow-prepare", str(workdir)],
            check=True,
            capture_output=True,
            env=prepare_env,
        )
        servers.append(
            MlflowServer(
                "MLflow",
                [
                    args.mlflow_python,
                    "-m",
                    "mlflow",
                    "models",
                    "serve",
                    "-m",
                    str(workdir / "mlflow-model"),
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    "{port}",
                    "-w",
                    "1",
                ],
                env={
                    "MLFLOW_TRACKING_URI": f"file://{workdir}/mlruns",
                    "MLFLOW_DISABLE_TELEMETRY": "true",
                    "DO_NOT_TRACK": "1",
                    "PATH": venv_path(args.mlflow_python),
                },
            )
        )
    else:
        print("MLflow: skipped (give --mlflow-python or NBSERVE_BENCH_MLFLOW_PYTHON: a venv with mlflow)")
    if args.bentoml_python:
        print("preparing BentoML's model ...", flush=True)
        subprocess.run(
            [args.bentoml_python, str(HERE / "thirdparty.py"), "bentoml-prepare", str(workdir)],
            check=True,
            capture_output=True,
            env=prepare_env,
        )
        servers.append(
            BentomlServer(
                "BentoML",
                [
                    str(Path(args.bentoml_python).parent / "bentoml"),
                    "serve",
                    "bentoml_service:Diabetes",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "{port}",
                ],
                cwd=workdir,
                env={
                    "BENTOML_HOME": str(workdir / "bentoml-home"),
                    "BENTOML_DO_NOT_TRACK": "True",
                    "DO_NOT_TRACK": "1",
                    "PATH": venv_path(args.bentoml_python),
                },
            )
        )
    else:
        print("BentoML: skipped (give --bentoml-python or NBSERVE_BENCH_BENTOML_PYTHON: a venv with bentoml)")
    if args.only:
        wanted = {n.strip() for n in args.only.split(",")}
        servers = [s for s in servers if s.name in wanted]

    # 1. cold starts: each server started and stopped --starts times, interleaved
    colds = {s.name: [] for s in servers}
    for r, order in rotations(servers, args.starts):
        for server in order:
            took, session = start(server, bodies, expected)
            server.stop(session)
            colds[server.name].append(took)
            print(
                f"start {r + 1}/{args.starts} {server.name:>10}: cold start {took:.2f} s, answers checked", flush=True
            )

    # 2. load: all servers up at once (idle ones cost nothing), then --rounds short slices each,
    # interleaved, so that what the neighbours on a shared machine do falls on every server alike
    sessions = {}
    try:
        for server in servers:
            sessions[server.name] = start(server, bodies, expected)[1]
            wrk(server.url, bodies[server.input_key]["one"], 200, 1)  # warm-up
        slices = {s.name: [] for s in servers}
        for r, order in rotations(servers, args.rounds):
            for server in order:
                res = load_slice(server, sessions[server.name], bodies, args)
                slices[server.name].append(res)
                print(
                    f"round {r + 1}/{args.rounds} {server.name:>10}: "
                    + ", ".join(f"{k} {v:.4g}" for k, v in res.items()),
                    flush=True,
                )
        memory = {s.name: memory_mb(sessions[s.name]) for s in servers}
    finally:
        for server in servers:
            if server.name in sessions:
                server.stop(sessions[server.name])

    results = {}
    for server in servers:
        rounds = slices[server.name]
        for res in rounds:
            res["cold_start_s"] = statistics.median(colds[server.name])
            res["rss_mb"], res["pss_mb"] = memory[server.name]
        results[server.name] = rounds
    rows = {name: median_row(rs) for name, rs in results.items()}
    print(
        f"\nMedians over {args.rounds} interleaved rounds of {args.requests} 1-row requests over "
        f"{args.connections} connections and {args.batch_requests} 1,000-row requests one at a time, per server; "
        f"cold start: median of {args.starts} starts. 1 worker per server, pinned to CPU {SERVER_CPU}; wrk on "
        f"CPU {LOAD_CPU}.\n"
    )
    print(table(rows))
    print()
    for ref in ("bare Flask", "bare Flask keep-alive", "raw WSGI", "MLflow", "BentoML"):
        if "nbserve" in rows and ref in rows:
            print(ratios(rows, results, colds, ref))
    for ref in ("bare Flask", "bare Flask keep-alive"):
        if "nbserve quiet" in rows and ref in rows:
            print(ratios(rows, results, colds, ref, name="nbserve quiet"))
    busy = ", ".join(f"{n} {row['server_busy']:.0%} (wrk {row['wrk_busy']:.0%})" for n, row in rows.items())
    print(
        f"\nCPU busy during the 1-row load, server (and wrk): {busy}. A server well below 100% while wrk is "
        f"too means that other processes on the machine took the CPUs; the CPU per request stays comparable."
    )

    first = {}
    if args.first_runs:
        runs = time_to_first_prediction(args.first_runs, workdir)
        first["nbserve"] = [r["total_s"] for r in runs]
        print(
            f"\ntime to first prediction, nbserve.serve(lr, name=..., sample=X, runtime='process') on a new model "
            f"to the client's first answer, fresh process each: median {statistics.median(first['nbserve']):.2f} s "
            f"(runs: {', '.join(f'{t:.2f}' for t in first['nbserve'])}); benchmarks/first_prediction.py sets it "
            f"beside the floor, the warm serve and %serve"
        )
        for tool, python in (("mlflow", args.mlflow_python), ("bentoml", args.bentoml_python)):
            if python:
                first[tool] = thirdparty_first(python, tool, args.first_runs, workdir)
                print(
                    f"  {tool}: save_model + local server + first answer: median "
                    f"{statistics.median(first[tool]):.2f} s (runs: {', '.join(f'{t:.2f}' for t in first[tool])})"
                )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rounds": results, "medians": rows, "first_prediction": first}, indent=1)
        )


if __name__ == "__main__":
    main()
