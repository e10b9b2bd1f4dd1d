"""Optional bearer-token auth for a served model.

The server never holds the token itself, only its sha256 (``NBSERVE_AUTH_TOKEN_SHA256``), so the
token does not show in the process environment, ``docker inspect`` or the server's logs. A request
must send ``Authorization: Bearer <token>``; the digests are compared in constant time.

``GET /health`` stays open on purpose: runtimes and Docker's HEALTHCHECK poll it without credentials,
and it tells only that the server is up and which model id it serves. Only the GET (and HEAD) of the
health routes is open: a model method may carry the same name (``POST /ping`` calls a method ``ping``).
Everything else (the methods, /interface.json, /openapi.json, /docs) needs the token.

Like the rest of ``nbserve.server`` this module imports nothing else from nbserve.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

ENV_SHA256 = "NBSERVE_AUTH_TOKEN_SHA256"
# health probes of the other protocols too (MLflow's /ping, the Open Inference Protocol's), for the same reason
OPEN_PATHS = frozenset({"/health", "/ping", "/v2/health/live", "/v2/health/ready"})
OPEN_VERBS = frozenset({"GET", "HEAD"})


def is_open(verb: str, path: str) -> bool:
    """Whether a request needs no token: a health probe's GET (or HEAD), nothing else."""
    return verb in OPEN_VERBS and path in OPEN_PATHS


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_env(token: str | None) -> dict[str, str]:
    """The environment a runtime gives the server for ``token`` (none when auth is off)."""
    return {ENV_SHA256: token_sha256(token)} if token else {}


def mask(token: str | None) -> str | None:
    """How a token is shown anywhere a person may read it: its first 4 characters, never more."""
    if not token:
        return None
    return token[:4] + "…" if len(token) > 8 else "…"


def bearer_checker(expected_sha256: str) -> Callable[[str | None], bool]:
    """A function of the Authorization header value: True when it carries the right token."""
    expected = bytes.fromhex(expected_sha256.strip().lower())
    if len(expected) != 32:
        raise ValueError(f"{ENV_SHA256} must be a sha256 hex digest (64 hex digits)")

    def check(header: str | None) -> bool:
        if not header:
            return False
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return False
        digest = hashlib.sha256(presented.strip().encode(errors="replace")).digest()
        return hmac.compare_digest(digest, expected)

    return check
