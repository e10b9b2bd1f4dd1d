"""How serve's options become the server's settings, the same for every runtime and deploy target.

``serve(..., timeout=SECONDS, max_body=BYTES, auth_token=..., url_prefix=PATH, batch=True, max_batch=ROWS,
max_latency_ms=MS, default_method=NAME, metrics=..., request_log=..., drift=..., record=..., record_size=N,
workers=N, threads=N, jobs=..., job_queue=N, job_retention=SECONDS, job_timeout=SECONDS)`` land
in ``row.options`` (checked by ``check_options``); ``server_settings`` turns them into the one
``nbserve.server.settings.Settings`` object that the process runtime, the Docker image, Swarm and Kubernetes
all hand to ``python -m nbserve.server`` (as ``Settings.to_env()``), so a model behaves the same wherever it runs.
"""

from __future__ import annotations

import secrets

from ..errors import NbserveError
from ..server.shared import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_LATENCY_MS,
    EXTRA_COLUMNS,
    Settings,
    clean_prefix,
    token_sha256,
)


def server_command(python: str) -> list[str]:
    """The one command that runs a model's server, in a process and in an image (server/master.py)."""
    return [python, "-m", "nbserve.server"]


def server_settings(options: dict, **where) -> Settings:
    """The server's settings for an instance's (checked) options; ``where``: what the runtime adds (artifact,
    model_id, bind or listen_fd, metrics_dir, control)."""
    values: dict = dict(where)
    if options.get("timeout") is not None:
        values["timeout"] = float(options["timeout"])
    for key in ("max_body", "default_method", "url_prefix", "threads", "extra_columns"):
        if options.get(key) is not None:
            values[key] = options[key]
    if options.get("workers") is not None:
        values["workers"] = int(options["workers"])
    if options.get("jobs") is False:
        values["jobs"] = False
    for key in ("job_queue", "job_retention", "job_timeout"):
        if options.get(key) is not None:
            values[key] = options[key]
    if options.get("auth_token"):
        values["auth_sha256"] = token_sha256(options["auth_token"])
    if options.get("metrics") is False:
        values["metrics"] = False
    if options.get("drift") is False:
        values["drift"] = False
    if options.get("record") is False:
        values["record"] = False
    if options.get("record_size") is not None:
        values["record_size"] = int(options["record_size"])
    if options.get("request_log") is not None:
        values["request_log"] = {True: "on", False: "off"}.get(options["request_log"], options["request_log"])
    batching = batch_settings(options)
    if batching:
        values.update(batch=True, **batching)
    return Settings(**values)


BATCH_OPTIONS = ("batch", "max_batch", "max_latency_ms")


def batch_settings(options: dict) -> dict | None:
    """{"max_batch", "max_latency_ms"} with the defaults filled in when the options turn batching on, else None."""
    if not options.get("batch"):
        return None
    latency = options.get("max_latency_ms")
    return {
        "max_batch": int(options.get("max_batch") or DEFAULT_MAX_BATCH),
        "max_latency_ms": float(DEFAULT_MAX_LATENCY_MS if latency is None else latency),
    }


def with_batching(options: dict, batching: dict) -> dict:
    """An instance's options with the batching settings given in ``batching`` (batch, max_batch,
    max_latency_ms: what Workspace.start takes) changed, checked as serve(...) checks them."""
    unknown = set(batching) - set(BATCH_OPTIONS)
    if unknown:
        raise NbserveError(
            f"starting an instance again takes only the batching options ({', '.join(BATCH_OPTIONS)}), "
            f"not {', '.join(sorted(unknown))}: serve a new instance for those"
        )
    merged = dict(options)
    if batching.get("batch") is False:  # off: the old limits go with it
        merged.pop("max_batch", None)
        merged.pop("max_latency_ms", None)
    merged.update({k: v for k, v in batching.items() if v is not None})
    return check_options(merged)


def check_options(options: dict) -> dict:
    """The server options of serve(...), checked, with ``auth_token=True`` replaced by a fresh token.

    auth_token: True (generate one), a string of at least 16 characters, or None/False (no auth).
    timeout: seconds per request, > 0, or 0 for none. max_body: bytes, at least 1024.
    metrics: False turns /metrics off; drift: False turns /drift off; request_log: False (no log lines),
    True (the default) or "bodies" (request bodies logged too): three switches, each on its own.
    record: False keeps no traffic ring (GET /traffic, inst.traffic()); record_size: how many requests it keeps.
    threads: native (OpenMP/BLAS) threads per worker, >= 1 (default: the cores divided by the workers).
    extra_columns: what a DataFrame input's columns the model does not take get: "refuse" (the default, a
    400 naming them) or "ignore" (dropped before the model sees the frame).
    url_prefix: the path a proxy serves the model under when it sends no prefix header ("/models/x").
    batch: adaptive batching on (max_batch rows per model call, >= 1; max_latency_ms a request waits, >= 0).
    default_method: the method MLflow's /invocations and KServe's V1/V2 routes call (checked against the
    model's methods by Workspace.serve).
    jobs: False turns jobs (POST /<method>?async=1) off; job_queue: jobs that may wait, >= 1; job_retention:
    seconds a finished job's result is kept, >= 0; job_timeout: seconds a job may run, >= 0 (0: no limit).
    """
    options = dict(options)
    token = options.pop("auth_token", None)
    if token is True:
        options["auth_token"] = secrets.token_urlsafe(32)
    elif isinstance(token, str):
        if len(token) < 16 or any(c.isspace() for c in token) or not token.isprintable():
            raise NbserveError(
                "auth_token must be at least 16 printable characters without spaces (or True, to have one generated)"
            )
        options["auth_token"] = token
    elif token not in (None, False):
        raise NbserveError(f"auth_token must be True, a string or None, got {type(token).__name__}")
    if options.get("timeout") is not None:
        try:
            ok = float(options["timeout"]) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise NbserveError(f"timeout must be a number of seconds >= 0 (0: no limit), got {options['timeout']!r}")
    for switch in ("metrics", "drift", "record", "jobs"):
        if options.get(switch) not in (None, True, False):
            raise NbserveError(f"{switch} must be True or False, got {options[switch]!r}")
    if options.get("extra_columns") not in (None, *EXTRA_COLUMNS):
        raise NbserveError(f"extra_columns must be one of {EXTRA_COLUMNS}, got {options['extra_columns']!r}")
    size = options.get("record_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise NbserveError(f"record_size must be a number of requests >= 0 (the traffic ring's size), got {size!r}")
    threads = options.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise NbserveError(f"threads must be a number of threads per worker >= 1, got {threads!r}")
    if options.get("request_log") not in (None, True, False, "bodies"):
        raise NbserveError(f"request_log must be True, False or 'bodies', got {options['request_log']!r}")
    for key, low, what in (("max_batch", 1, "rows per model call"), ("max_latency_ms", 0, "milliseconds")):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < low):
            raise NbserveError(f"{key} must be a number of {what} >= {low}, got {value!r}")
    for key, low, what in (("job_queue", 1, "jobs"), ("job_retention", 0, "seconds"), ("job_timeout", 0, "seconds")):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < low):
            raise NbserveError(f"{key} must be a number of {what} >= {low}, got {value!r}")
    if (options.get("max_batch") is not None or options.get("max_latency_ms") is not None) and not options.get("batch"):
        raise NbserveError("max_batch and max_latency_ms apply with batch=True (adaptive batching)")
    if options.get("max_body") is not None:
        if not isinstance(options["max_body"], int) or options["max_body"] < 1024:
            raise NbserveError(f"max_body must be a number of bytes >= 1024, got {options['max_body']!r}")
    if options.get("url_prefix") is not None:
        prefix = clean_prefix(options["url_prefix"]) if isinstance(options["url_prefix"], str) else None
        if not prefix:
            raise NbserveError(
                f"url_prefix must be a plain path such as '/models/diabetes', got {options['url_prefix']!r}"
            )
        options["url_prefix"] = prefix
    method = options.get("default_method")
    if method is not None and (not isinstance(method, str) or not method.isidentifier()):
        raise NbserveError(f"default_method must be the name of one of the model's methods, got {method!r}")
    return options
