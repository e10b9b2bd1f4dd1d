"""Drift's statistics: the population stability index, a Kolmogorov-Smirnov statistic on binned numbers, Pearson's
chi-squared on categories, and each feature's status against the thresholds."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .bins import _round

if TYPE_CHECKING:
    from collections.abc import Sequence

PSI_WARN = 0.1
PSI_ALERT = 0.25
OVERALL_SHARE = 0.5
MIN_ROWS = 100
EPS = 1e-4
STATUS_CODES = {"ok": 0, "warn": 1, "alert": 2, "collecting": -1, "not_computed": -2}


def psi(ref: list, live: list) -> float:
    total = 0.0
    for e, a in zip(ref, live):
        e, a = max(e, EPS), max(a, EPS)
        total += (a - e) * math.log(a / e)
    return total


def _kolmogorov_p(d: float, n: int, m: int) -> float:
    """Asymptotic p-value of a two-sample KS statistic d for samples of n and m."""
    if d <= 0 or n == 0 or m == 0:
        return 1.0
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * d
    total = 0.0
    for k in range(1, 101):
        term = 2 * (-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-10:
            break
    return min(max(total, 0.0), 1.0)


def _chi2_p(stat: float, dof: int) -> float:
    """P(chi2_dof >= stat) by the Wilson-Hilferty normal approximation (no scipy on the served side)."""
    if dof <= 0:
        return 1.0
    z = ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


def not_computed(spec: dict, reason: str, rows: int = 0) -> dict:
    """A feature /drift reports without a verdict, and why."""
    return {
        "name": spec["name"],
        "kind": spec["kind"],
        "rows": rows,
        "reference": {"shares": []},
        "live": {"shares": []},
        "null": None,
        "psi": None,
        "test": None,
        "statistic": None,
        "p_value": None,
        "status": "not_computed",
        "drifted": False,
        "reason": reason,
    }


def compare(spec: dict, counts: Sequence[float], ref_rows: int) -> dict:
    """One feature's drift: PSI, the test statistic and p-value, the status, both distributions."""
    if spec["kind"] == "unsupported":
        return not_computed(spec, spec.get("reason") or "its sample values cannot be binned")
    live_rows = int(sum(counts))
    ref_shares = list(spec["shares"]) + [spec.get("null", 0.0)]
    live_shares = [c / live_rows for c in counts] if live_rows else [0.0] * len(ref_shares)
    out = {
        "name": spec["name"],
        "kind": spec["kind"],
        "rows": live_rows,
        "reference": {"shares": ref_shares},
        "live": {"shares": [_round(s) for s in live_shares]},
    }
    out["null"] = {"reference": ref_shares[-1], "live": out["live"]["shares"][-1]}
    if spec["kind"] == "numeric":
        out["reference"]["edges"] = spec["edges"]
        if spec.get("unit"):
            out["unit"] = spec["unit"]
    else:
        out["reference"]["values"] = spec["values"]
    if live_rows < MIN_ROWS:
        out.update(psi=None, test=None, statistic=None, p_value=None, status="collecting", drifted=False)
        return out
    value = psi(ref_shares, live_shares)
    if spec["kind"] == "numeric":
        ref_nn, live_nn = ref_shares[:-1], live_shares[:-1]
        rs, ls = sum(ref_nn) or 1.0, sum(live_nn) or 1.0
        cr = cl = d = 0.0
        for e, a in zip(ref_nn, live_nn):
            cr, cl = cr + e / rs, cl + a / ls
            d = max(d, abs(cr - cl))
        test, stat, p = "ks", d, _kolmogorov_p(d, ref_rows, live_rows)
    else:
        stat = 0.0
        dof = -1
        for e, c in zip(ref_shares, counts):
            if e <= 0 and c == 0:
                continue
            expected = max(e, EPS) * live_rows
            stat += (c - expected) ** 2 / expected
            dof += 1
        test, p = "chi2", _chi2_p(stat, dof)
    status = "alert" if value >= PSI_ALERT else "warn" if value >= PSI_WARN else "ok"
    out.update(
        psi=_round(value),
        test=test,
        statistic=_round(stat),
        p_value=_round(p),
        status=status,
        drifted=status == "alert",
    )
    return out
