"""Plain-text helpers the notebook faces share: times, durations, small tables, one-line errors, a job's progress."""

from __future__ import annotations

import datetime
import re

from .errors import BuildError, InstanceStartError

# These errors carry a log tail after their first line: keep it, it is what the user needs to read.
MULTILINE_ERRORS = (InstanceStartError, BuildError)


def when(ts: float | None) -> str:
    """A timestamp as local 'YYYY-MM-DD HH:MM' (fixed width, so tables stay aligned)."""
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "-"


def duration(seconds: float | None) -> str:
    """12 s, 4 min, 2.5 h, 3.0 d: coarse on purpose, an uptime is glanced at, not read."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def table(rows, headers) -> str:
    """Left-aligned columns separated by two spaces; put volatile columns last so widths stay stable."""
    rows = [[str(x) for x in row] for row in rows]
    widths = [max(len(x) for x in col) for col in zip(headers, *rows)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in (list(headers), *rows))


def error_text(exc: BaseException) -> str:
    """The message of an error as the user should see it: one line, unless it carries a log tail."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, MULTILINE_ERRORS):
        return message.rstrip()
    return re.sub(r"\s*\n\s*", " ", message).strip()


def job_progress(job: dict) -> str:
    """'40% step 4 of 10', '12 items', or '-'."""
    progress = job.get("progress") or {}
    parts = []
    if progress.get("fraction") is not None:
        parts.append(f"{progress['fraction']:.0%}")
    if progress.get("items") is not None:
        parts.append(f"{progress['items']} items")
    if progress.get("message"):
        parts.append(str(progress["message"]))
    return " ".join(parts) or "-"


def job_time(job: dict, now: float | None = None) -> str:
    """How long it waited, has run, or ran."""
    import time

    now = time.time() if now is None else now
    if job.get("finished") and job.get("started"):
        return f"ran {duration(job['finished'] - job['started'])}"
    if job.get("started"):
        return f"running {duration(now - job['started'])}"
    if job.get("finished"):
        return f"ended {duration(now - job['finished'])} ago"
    return f"waiting {duration(now - job.get('created', now))}"
