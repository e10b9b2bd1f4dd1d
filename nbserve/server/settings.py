"""Everything a served model's server is told, in one frozen object.

Every runtime and deploy target (the process runtime, the Docker image, Swarm, Kubernetes) writes a
``Settings`` into the server's environment with ``to_env()``, and every served module reads the one the
master built with ``Settings.from_env()``: a deployed model behaves exactly as the same model served
locally, and a setting is parsed in one place, one way ("0", "false", "no", "off" and "" are off).

The fields are the public knobs of ``serve(...)`` (timeout, max_body, auth, url_prefix, default_method,
metrics, request_log, drift, record, batching, workers, threads, jobs) and the few the runtimes add (what to
serve, where to listen, the metrics and jobs directories, the control socket). Imports nothing else from nbserve.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MiB = 1024 * 1024
DEFAULT_TIMEOUT = 60.0  # seconds per request (per item, for a stream); 0: no limit
# A JSON body becomes Python objects before numpy arrays: a worker grows by 5x a body of typical floats and by
# up to 17x one of one-character numbers (benchmarks/body_memory.py: 64 MiB took a worker to 1.3 GB). 16 MiB
# keeps that peak near 500 MB, and bounds what one connection buffers; max_body raises it for a model that needs it.
DEFAULT_MAX_BODY = 16 * MiB
GRACE = 5.0  # gunicorn's own timeout is the request's plus this: the server answers its JSON 504 first
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_LATENCY_MS = 10.0
REQUEST_LOG_MODES = ("on", "off", "bodies")
DEFAULT_JOB_QUEUE = 100  # jobs waiting at most
DEFAULT_JOB_RETENTION = 3600.0  # seconds a finished job's result is kept
DEFAULT_JOB_TIMEOUT = 3600.0  # seconds a job may run (0: no limit)

_OFF = ("0", "false", "no", "off", "")
_ON = ("1", "true", "yes", "on")


def _env(name: str, **extra: Any) -> Any:
    return field(metadata={"env": f"NBSERVE_{name}", **extra})


@dataclass(frozen=True)
class Settings:
    # what is served (an artifact directory, verified before it is unpickled) and as which id
    artifact: str | None = field(default=None, metadata={"env": "NBSERVE_ARTIFACT"})
    model_id: str | None = field(default=None, metadata={"env": "NBSERVE_MODEL_ID"})
    # several versions served by weight from the start (a deployment's split: its image holds every version's
    # artifact): JSON, [{"artifact": DIR, "model_id": "diabetes:1", "weight": 90}, ...]; None: artifact alone
    versions: str | None = field(default=None, metadata={"env": "NBSERVE_VERSIONS"})
    # where to listen: "HOST:PORT", or a socket handed over already bound (listen_fd, the process runtime's:
    # the kernel binds the port once, so two servers can never share it)
    bind: str = field(default="0.0.0.0:8080", metadata={"env": "NBSERVE_BIND"})
    listen_fd: int | None = field(default=None, metadata={"env": "NBSERVE_LISTEN_FD"})
    # the request path
    timeout: float = field(default=DEFAULT_TIMEOUT, metadata={"env": "NBSERVE_TIMEOUT"})
    max_body: int = field(default=DEFAULT_MAX_BODY, metadata={"env": "NBSERVE_MAX_BODY"})
    auth_sha256: str | None = field(default=None, metadata={"env": "NBSERVE_AUTH_TOKEN_SHA256"})
    url_prefix: str | None = field(default=None, metadata={"env": "NBSERVE_URL_PREFIX"})
    default_method: str | None = field(default=None, metadata={"env": "NBSERVE_DEFAULT_METHOD"})
    # DataFrame columns the model was not trained on: "refuse" them (a 400 naming them) or "ignore" them
    extra_columns: str = field(default="refuse", metadata={"env": "NBSERVE_EXTRA_COLUMNS"})
    # what the server tells about itself: /metrics, the request log, /drift, each with its own switch
    metrics: bool = field(default=True, metadata={"env": "NBSERVE_METRICS"})
    request_log: str = field(default="on", metadata={"env": "NBSERVE_REQUEST_LOG"})
    drift: bool = field(default=True, metadata={"env": "NBSERVE_DRIFT"})
    drift_window: int = field(default=1000, metadata={"env": "NBSERVE_DRIFT_WINDOW"})
    metrics_dir: str | None = field(default=None, metadata={"env": "NBSERVE_METRICS_DIR"})
    # adaptive batching (batching.py)
    batch: bool = field(default=False, metadata={"env": "NBSERVE_BATCH"})
    max_batch: int = field(default=DEFAULT_MAX_BATCH, metadata={"env": "NBSERVE_MAX_BATCH"})
    max_latency_ms: float = field(default=DEFAULT_MAX_LATENCY_MS, metadata={"env": "NBSERVE_MAX_LATENCY_MS"})
    # processes and threads: worker processes, and native (OpenMP/BLAS) threads per worker (None: the
    # machine's cores divided by the workers)
    workers: int = field(default=1, metadata={"env": "NBSERVE_WORKERS"})
    threads: int | None = field(default=None, metadata={"env": "NBSERVE_THREADS"})
    # connections (worker.py): how long an idle kept-alive connection stays open, how long a client may take
    # to send a whole request once it began, and how many connections one worker holds
    keepalive: float = field(default=15.0, metadata={"env": "NBSERVE_KEEPALIVE"})
    read_timeout: float = field(default=10.0, metadata={"env": "NBSERVE_READ_TIMEOUT"})
    max_connections: int = field(default=1000, metadata={"env": "NBSERVE_MAX_CONNECTIONS"})
    # the traffic ring (traffic.py): the last record_size model calls with their answers, in record_dir (by
    # default a directory the master makes in memory and removes when it exits); record=False keeps none
    record: bool = field(default=True, metadata={"env": "NBSERVE_RECORD"})
    record_size: int = field(default=1000, metadata={"env": "NBSERVE_RECORD_SIZE"})
    record_dir: str | None = field(default=None, metadata={"env": "NBSERVE_RECORD_DIR"})
    # where the master notes what it serves after an in-place change (the versions, a split, a shadow), so that
    # a server restarted in the same place (a container's restart policy) serves it again, not what it began with
    state_file: str | None = field(default=None, metadata={"env": "NBSERVE_STATE_FILE"})
    # the name of the master's control socket (control.address makes the address; master.py answers it)
    control: str | None = field(default=None, metadata={"env": "NBSERVE_CONTROL"})
    # jobs (jobs.py): POST /<method>?async=1 queues a call in a directory (jobs_dir; default a directory of the
    # temp dir named after the server) that a job runner process works through, one call at a time; at most
    # job_queue jobs wait, a finished job's result is kept job_retention seconds, a job runs at most
    # job_timeout seconds (0: no limit)
    jobs: bool = field(default=True, metadata={"env": "NBSERVE_JOBS"})
    jobs_dir: str | None = field(default=None, metadata={"env": "NBSERVE_JOBS_DIR"})
    job_queue: int = field(default=DEFAULT_JOB_QUEUE, metadata={"env": "NBSERVE_JOB_QUEUE"})
    job_retention: float = field(default=DEFAULT_JOB_RETENTION, metadata={"env": "NBSERVE_JOB_RETENTION"})
    job_timeout: float = field(default=DEFAULT_JOB_TIMEOUT, metadata={"env": "NBSERVE_JOB_TIMEOUT"})

    def __post_init__(self) -> None:
        problems = []
        if self.timeout < 0:
            problems.append(f"timeout must be >= 0 seconds (0: none), got {self.timeout:g}")
        if self.max_body < 1024:
            problems.append(f"max_body must be at least 1024 bytes, got {self.max_body}")
        if self.extra_columns not in ("refuse", "ignore"):
            problems.append(f"extra_columns must be 'refuse' or 'ignore', got {self.extra_columns!r}")
        if self.request_log not in REQUEST_LOG_MODES:
            problems.append(f"request_log must be one of {', '.join(REQUEST_LOG_MODES)}, got {self.request_log!r}")
        if self.max_batch < 1 or self.max_latency_ms < 0:
            problems.append("max_batch must be >= 1 and max_latency_ms >= 0")
        if self.workers < 1 or (self.threads is not None and self.threads < 1):
            problems.append("workers and threads must be at least 1")
        if self.record_size < 0:
            problems.append(f"record_size must be >= 0 requests, got {self.record_size}")
        if self.keepalive < 0 or self.read_timeout <= 0 or self.max_connections < 1:
            problems.append("keepalive must be >= 0, read_timeout > 0 and max_connections >= 1")
        if self.job_queue < 1 or self.job_retention < 0 or self.job_timeout < 0:
            problems.append("job_queue must be >= 1, job_retention >= 0 seconds and job_timeout >= 0 (0: none)")
        if self.auth_sha256 is not None and not _is_sha256(self.auth_sha256):
            problems.append("auth_sha256 must be a sha256 hex digest (64 hex digits)")
        if problems:
            raise ValueError("; ".join(problems))

    # -- the environment: how runtimes hand the settings over ----------------------------------------

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings in ``env`` (default os.environ); a variable that is absent keeps the default."""
        env = os.environ if env is None else env
        values = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None:
                continue
            try:
                values[f.name] = _parse(f, raw.strip())
            except ValueError:
                raise ValueError(f"{f.metadata['env']}={raw!r} is not a valid {f.name}") from None
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """Every setting that differs from its default, as environment variables (from_env reads them back)."""
        env = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                env[f.metadata["env"]] = _format(value)
        return env

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    # -- what follows from them ------------------------------------------------------------------------

    @property
    def hard_timeout(self) -> int:
        """gunicorn's own per-worker timeout (0: none): a little over the request's, so the server answers
        its JSON 504 first and the arbiter kills a worker only when that could not happen."""
        return 0 if self.timeout == 0 else int(self.timeout + GRACE + 0.999)

    def gunicorn_config(self) -> dict:
        """gunicorn's settings for this server (master.py gives them to its application)."""
        return {
            "bind": [self.bind],
            "workers": self.workers,
            "worker_class": "nbserve.server.worker.LoopWorker",
            "worker_connections": self.max_connections,
            "timeout": self.hard_timeout,
            "graceful_timeout": int(max(self.timeout, 30.0) + 0.999) if self.timeout else 30,
            "keepalive": int(self.keepalive + 0.999),  # gunicorn takes whole seconds; the worker reads the setting
            "loglevel": "warning",
        }

    def public(self) -> dict:
        """What a served model may tell about how it is served (GET /interface.json): no paths, no digest."""
        hidden = {
            "artifact",
            "model_id",
            "versions",
            "listen_fd",
            "metrics_dir",
            "record_dir",
            "state_file",
            "control",
            "auth_sha256",
            "bind",
            "jobs_dir",
        }
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in hidden}
        out["auth"] = self.auth_sha256 is not None
        out["threads_per_worker"] = thread_budget(self)  # what the setting comes to on this machine
        return out


def _parse(f: dataclasses.Field, raw: str) -> Any:  # the field's own type
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if kind == "bool":
        low = raw.lower()
        if low in _ON:
            return True
        if low in _OFF:
            return False
        raise ValueError(raw)
    if raw == "" and "None" in kind:
        return None
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    if f.name == "request_log":  # the switch's spellings: on/off as for the others, or "bodies"
        low = raw.lower()
        return "on" if low in _ON else "off" if low in _OFF else low
    return raw


def _format(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text.lower())


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask, as a container's cpuset limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_budget(settings: Settings) -> int:
    """Native threads per worker: the setting, else the cores shared out between the workers (at least 1)."""
    return settings.threads or max(1, cpu_count() // settings.workers)
