"""Small matplotlib figures of an instance's traffic and drift, as PNG bytes with a description, for the panel.

``traffic``: request rate, p50/p99 latency and error rate over time (points from ``monitoring.series``).
``drift``: for each feature, the share of the registration sample and of the live window in each bin, bins
labelled by their values (dates as dates, categories by name), the live bars coloured by the feature's status
(green ok, amber warn, red alert, grey still collecting). Every axis says what it measures and in which unit;
a plot with nothing to show yet says so instead of drawing empty axes. Each figure comes back as a ``Plot``:
the PNG, and a description made from the figure's own titles, axis labels and legends (the panel's alt text),
so what the text says is what was drawn. matplotlib runs headless (the Agg canvas); nothing here touches
pyplot's global state.
"""

from __future__ import annotations

import datetime
import io
from dataclasses import dataclass, field

STATUS_COLOURS = {
    "ok": "#2e7d32",
    "warn": "#f9a825",
    "alert": "#c62828",
    "collecting": "#5c6bc0",  # live rows still too few to judge: not the sample's grey
    "not_computed": "#9e9e9e",
}
REFERENCE_COLOUR = "#90a4ae"
LINE_COLOUR = "#1976d2"
P99_COLOUR = "#7b1fa2"
ERROR_COLOUR = "#c62828"
QUIET_COLOUR = "#757575"  # a line that only says "nothing went wrong"
DATE_UNIT = "days since 1970-01-01"  # drift bins of dates (server/drift.py)


@dataclass
class Plot:
    png: bytes
    description: str  # titles, axis labels and legends, read back from the figure
    axes: list[dict] = field(default_factory=list)  # per drawn axes: title, xlabel, ylabel, legend, note

    def __bool__(self) -> bool:
        return bool(self.png)


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig, what: str) -> Plot:
    """The PNG of ``fig`` and what it shows, read from the figure itself (titles, labels, legends, notes)."""
    axes = []
    shared = [t.get_text() for legend in fig.legends for t in legend.get_texts()]  # one legend for all
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        legend = ax.get_legend()
        axes.append(
            {
                "title": ax.get_title(loc="left") or ax.get_title(),
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
                "note": " ".join(t.get_text() for t in ax.texts),
            }
        )
    parts = [what + (f" (legend: {' / '.join(shared)})" if shared else "")]
    for a in axes:
        text = f"{a['title']}: x {a['xlabel'] or '-'}, y {a['ylabel'] or '-'}"
        if a["legend"]:
            text += f", legend {' / '.join(a['legend'])}"
        if a["note"]:
            text += f" ({a['note']})"
        parts.append(text)
    description = "; ".join(parts)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Description": description})
    return Plot(buf.getvalue(), description, axes)


def _style(ax, title, xlabel="", ylabel=""):
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_xlabel(xlabel, fontsize=7)
    ax.set_ylabel(ylabel, fontsize=7)
    ax.tick_params(labelsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(alpha=0.3, linewidth=0.5)


def _note(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, color=QUIET_COLOUR, transform=ax.transAxes)


def traffic(points: list[dict]) -> Plot:
    """Three small time series: requests/s, p50 and p99 latency (ms), error rate (%). The error line is red
    only where errors happened; with no points yet each plot says it waits for traffic."""
    from matplotlib.dates import DateFormatter
    from matplotlib.ticker import MaxNLocator

    fig = _figure(7.5, 2.1)
    axes = fig.subplots(1, 3)
    times = [datetime.datetime.fromtimestamp(p["time"]) for p in points]

    def line(ax, key, colour, label=None, scale=1.0):
        xs = [t for t, p in zip(times, points) if p.get(key) is not None]
        ys = [p[key] * scale for p in points if p.get(key) is not None]
        ax.plot(xs, ys, color=colour, linewidth=1.4, marker="o", markersize=2, label=label)
        return ys

    line(axes[0], "rate", LINE_COLOUR)
    _style(axes[0], "requests", "time", "requests / s")
    line(axes[1], "p50_ms", LINE_COLOUR, "p50")
    line(axes[1], "p99_ms", P99_COLOUR, "p99")
    _style(axes[1], "latency", "time", "ms")
    if points:
        axes[1].legend(fontsize=7, frameon=False, loc="upper left")
    errors = any(p.get("error_rate") for p in points)
    line(axes[2], "error_rate", ERROR_COLOUR if errors else QUIET_COLOUR, scale=100.0)
    _style(axes[2], "errors" if errors else "errors (none)", "time", "% of requests")
    span = (times[0] - datetime.timedelta(seconds=1), times[-1] + datetime.timedelta(seconds=1)) if times else None
    for ax in axes:
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))
        ax.xaxis.set_major_locator(MaxNLocator(3))
        if span:
            ax.set_xlim(*span)  # every plot over the same minutes, also one with no line to draw
        else:
            ax.set_xticks([])
            _note(ax, "no requests yet")
    if points and not any(p.get("p50_ms") is not None for p in points):
        _note(axes[1], "no requests in these minutes")
    if not errors:
        axes[2].set_ylim(0, 1)
    return _finish(fig, "traffic of the instance")


def bin_labels(feature: dict) -> list[str]:
    """What each bin of a drift feature holds: value ranges by the reference's edges (dates as dates),
    category names, 'other' and 'null'."""
    ref = feature.get("reference", {})
    n = len(ref.get("shares", []))
    if "values" in ref:
        labels = [str(v) for v in ref["values"]] + ["other"]
    else:
        edges = [_edge(e, feature.get("unit")) for e in ref.get("edges", [])]
        if not edges:
            labels = ["all"]
        else:
            labels = [f"< {edges[0]}"] + [f"{a}–{b}" for a, b in zip(edges, edges[1:])] + [f"≥ {edges[-1]}"]
    labels = labels[: max(n - 1, 0)]
    return labels + ["null"] if n else []


def _edge(value: float, unit: str | None) -> str:
    if unit == DATE_UNIT:
        day = datetime.datetime(1970, 1, 1) + datetime.timedelta(days=float(value))
        return day.strftime("%Y-%m-%d")  # quantile edges fall mid-day: the day is what a reader wants
    if unit == "seconds":
        return f"{value:g} s"
    return f"{value:.3g}"


def drift(report: dict, max_features: int = 12, columns: int = 3) -> Plot:
    """Reference against live shares per bin for each feature (inputs first), coloured by status; a method
    with no live rows yet shows its reference with a note saying so."""
    feats = sorted(report.get("features", []), key=lambda f: (f["role"] != "input", f["method"] or ""))[:max_features]
    rows = max(1, -(-len(feats) // columns))
    fig = _figure(7.5, 1.9 * rows + 0.4)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, f in zip(axes, feats):
        ref = [100 * s for s in f["reference"]["shares"]]
        live = [100 * s for s in f["live"]["shares"]]
        name = f["name"] if f["role"] == "input" else f"{f['method']} → {f['name']}"
        psi = "" if f["psi"] is None else f" · PSI {f['psi']:.2f}"
        unit = " (date)" if f.get("unit") == DATE_UNIT else f" ({f['unit']})" if f.get("unit") else ""
        _style(ax, f"{name}{psi}", f"bins of {f['name']}{unit}", "% of rows")
        ax.title.set_color(STATUS_COLOURS.get(f["status"], "black") if f["status"] not in ("ok",) else "black")
        if f["status"] == "not_computed":
            ax.set_xticks([])
            _note(ax, f"not computed: {f.get('reason', '')[:60]}")
            continue
        xs = range(len(ref))
        ax.bar([x - 0.2 for x in xs], ref, width=0.4, color=REFERENCE_COLOUR, label="sample")
        if f.get("rows"):
            ax.bar([x + 0.2 for x in xs], live, width=0.4, color=STATUS_COLOURS[f["status"]], label="live")
        else:
            _note(ax, "no live rows yet" if f["role"] == "input" else f"{f['method']} not called yet")
        labels = bin_labels(f)
        ax.set_xticks(list(xs)[: len(labels)])
        ax.set_xticklabels(labels, rotation=40, ha="right", fontsize=6)
    for ax in axes[len(feats) :]:
        ax.set_visible(False)
    if not feats:
        axes[0].set_visible(True)
        axes[0].axis("off")
        axes[0].text(0, 0.5, report.get("reason", "no features"), fontsize=8, wrap=True)
    else:
        from matplotlib.patches import Patch

        fig.legend(
            handles=[Patch(color=REFERENCE_COLOUR), Patch(color=STATUS_COLOURS["ok"])],
            labels=["registration sample", "live requests (coloured by status: ok, warn, alert, collecting)"],
            loc="outside upper left",
            ncols=2,
            fontsize=7,
            frameon=False,
        )
    return _finish(fig, "drift of each feature: share of rows per bin, registration sample against live requests")


AGREE_COLOUR = "#2e7d32"
DIFFER_COLOUR = "#c62828"
CANDIDATE_COLOUR = "#ef6c00"


def comparison(frame, live: str, candidate: str) -> Plot:
    """A shadow's comparison (``Instance.comparison()``): the candidate's answer against the live one's for
    each compared row (green where they agree, red where not, the diagonal where they would be equal), and the
    latency of each side per request. Non-numeric answers are drawn as agreeing or not per row."""
    fig = _figure(7.5, 2.4)
    ax_answers, ax_latency = fig.subplots(1, 2)
    answers = [c for c in frame.columns if c == "live" or str(c).startswith(("live[", "live."))]
    first = answers[0] if answers else None
    other = ("candidate" + first[len("live") :]) if first else None
    title = f"answers: {candidate} against {live}"
    if first is not None and len(frame):
        import pandas as pd

        x = pd.to_numeric(frame[first], errors="coerce")
        y = pd.to_numeric(frame[other], errors="coerce") if other in frame else x * float("nan")
        agree = frame["agree"].astype(bool)
        if x.notna().any() and y.notna().any():
            for mask, colour, label in ((agree, AGREE_COLOUR, "agree"), (~agree, DIFFER_COLOUR, "differ")):
                if mask.any():
                    ax_answers.scatter(x[mask], y[mask], s=8, color=colour, label=label, alpha=0.7)
            low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
            ax_answers.plot([low, high], [low, high], color=QUIET_COLOUR, linewidth=0.8, linestyle="--")
            ax_answers.legend(fontsize=7, frameon=False, loc="upper left")
        else:
            counts = [int(agree.sum()), int((~agree).sum())]
            ax_answers.bar(["agree", "differ"], counts, color=[AGREE_COLOUR, DIFFER_COLOUR])
    else:
        _note(ax_answers, "no copied requests yet")
    _style(ax_answers, title, f"{live} ({first or 'answer'})", f"{candidate}")
    if len(frame):
        requests = frame.drop_duplicates("_request")
        bins = 20
        for col, colour, label in (("_live_ms", LINE_COLOUR, live), ("_candidate_ms", CANDIDATE_COLOUR, candidate)):
            values = requests[col].dropna()
            if len(values):
                ax_latency.hist(values, bins=bins, color=colour, alpha=0.55, label=label)
        ax_latency.legend(fontsize=7, frameon=False, loc="upper right")
    else:
        _note(ax_latency, "no copied requests yet")
    _style(ax_latency, "latency per request", "ms (the app's time)", "requests")
    return _finish(fig, f"shadow comparison of {candidate} with {live}")
