"""How every runtime runs the server: the gunicorn command, and the per-instance settings (request
timeout, body limit, auth, URL prefix, adaptive batching) passed the same way.

``serve(..., timeout=SECONDS, max_body=BYTES, auth_token=..., url_prefix=PATH, batch=True, max_batch=ROWS,
max_latency_ms=MS, default_method=NAME)`` land in ``row.options``; a runtime turns them into the server's
environment (read by nbserve/server/guards.py, app.py, batching.py and gunicorn_conf.py) with
``server_limits_env``, and gives gunicorn ``hard_timeout`` as its own --timeout: a little longer than
the request timeout, so the server answers a JSON 504 first, and gunicorn kills a worker stuck in C
code only when that could not happen.
"""

from __future__ import annotations

import secrets

from ..errors import NbserveError
from ..server.auth import token_env
from ..server.batching import DEFAULT_MAX_BATCH, DEFAULT_MAX_LATENCY_MS
from ..server.dispatch import EXTRA_COLUMNS_ENV
from ..server.guards import DEFAULT_TIMEOUT  # seconds per request; 0 turns the limit off
from ..server.prefix import ENV as URL_PREFIX_ENV
from ..server.prefix import clean as clean_prefix
from ..server.schema import EXTRA_COLUMNS

GRACE = 5.0
WSGI_APP = "nbserve.server.wsgi:app"
GUNICORN_CONF = "python:nbserve.server.gunicorn_conf"


def gunicorn_command(python: str, binds: list[str] | str, *options: str) -> list[str]:
    """The one command that runs a model's server, in a process and in an image: gunicorn with the model
    preloaded in the master (a worker replaced after a timeout is forked ready in milliseconds) and
    nbserve's gunicorn settings (``server/gunicorn_conf.py``)."""
    bind_args = [a for b in ([binds] if isinstance(binds, str) else binds) for a in ("--bind", b)]
    return [python, "-m", "gunicorn", *bind_args, "--preload", *options, "--config", GUNICORN_CONF, WSGI_APP]


def worker_options(options: dict) -> list[str]:
    """gunicorn's worker count and --timeout for an instance's options (on the command line, or in
    GUNICORN_CMD_ARGS where the command is fixed in an image)."""
    return ["--workers", str(int(options.get("workers", 1))), "--timeout", str(hard_timeout(options))]


def request_timeout(options: dict) -> float:
    value = options.get("timeout")
    return DEFAULT_TIMEOUT if value is None else float(value)


def hard_timeout(options: dict) -> int:
    """gunicorn's --timeout (0: none) for the given options."""
    timeout = request_timeout(options)
    return 0 if timeout == 0 else int(timeout + GRACE + 0.999)


def server_limits_env(options: dict) -> dict:
    env = {"NBSERVE_TIMEOUT": f"{request_timeout(options):g}"}
    if options.get("max_body"):
        env["NBSERVE_MAX_BODY"] = str(int(options["max_body"]))
    if options.get("default_method"):  # what /invocations, /v1 and /v2 infer call (server/protocols)
        env["NBSERVE_DEFAULT_METHOD"] = options["default_method"]
    env.update(token_env(options.get("auth_token")))
    if options.get("metrics") is False:  # see nbserve/server/metrics.py
        env["NBSERVE_METRICS"] = "0"
    if options.get("request_log") is not None:  # True, False or "bodies"
        env["NBSERVE_REQUEST_LOG"] = {True: "1", False: "0"}.get(options["request_log"], str(options["request_log"]))
    if options.get("url_prefix"):
        env[URL_PREFIX_ENV] = options["url_prefix"]
    if options.get("extra_columns"):  # a table's columns the model does not take: refused (400) or dropped
        env[EXTRA_COLUMNS_ENV] = options["extra_columns"]
    batching = batch_settings(options)
    if batching:  # adaptive batching: server/batching.py, and gunicorn_conf's threaded worker
        env["NBSERVE_BATCH"] = "1"
        env["NBSERVE_MAX_BATCH"] = str(batching["max_batch"])
        env["NBSERVE_MAX_LATENCY_MS"] = f"{batching['max_latency_ms']:g}"
    return env


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
    metrics: False turns /metrics, /drift and the request log off. request_log: False (no log lines),
    True (the default) or "bodies" (request bodies logged too).
    url_prefix: the path a proxy serves the model under when it sends no prefix header ("/models/x").
    batch: adaptive batching on (max_batch rows per model call, >= 1; max_latency_ms a request waits, >= 0).
    default_method: the method MLflow's /invocations and KServe's V1/V2 routes call (checked against the
    model's methods by Workspace.serve).
    extra_columns: what a DataFrame input's columns the model does not take get: "refuse" (the default, a
    400 naming them) or "ignore" (dropped before the model sees the table).
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
    if options.get("metrics") not in (None, True, False):
        raise NbserveError(f"metrics must be True or False, got {options['metrics']!r}")
    if options.get("request_log") not in (None, True, False, "bodies"):
        raise NbserveError(f"request_log must be True, False or 'bodies', got {options['request_log']!r}")
    for key, low, what in (("max_batch", 1, "rows per model call"), ("max_latency_ms", 0, "milliseconds")):
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
    if options.get("extra_columns") not in (None, *EXTRA_COLUMNS):
        raise NbserveError(f"extra_columns must be one of {EXTRA_COLUMNS}, got {options['extra_columns']!r}")
    return options
