"""Small matplotlib figures of an instance's metrics and drift, as PNG bytes, for the notebook panel.

``traffic_png``: request rate, p50/p99 latency and error rate over time (points from
``monitoring.series``). ``drift_png``: for each feature, the reference and live shares per bin side by
side, the live bars coloured by the feature's status (green ok, amber warn, red alert, grey collecting).
matplotlib runs headless (the Agg canvas); nothing here touches pyplot's global state.
"""

from __future__ import annotations

import io

STATUS_COLOURS = {
    "ok": "#2e7d32",
    "warn": "#f9a825",
    "alert": "#c62828",
    "collecting": "#9e9e9e",
    "not_computed": "#9e9e9e",
}
REFERENCE_COLOUR = "#90a4ae"


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _style(ax, title):
    ax.set_title(title, fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(alpha=0.3, linewidth=0.5)


def traffic_png(points: list[dict], title: str = "") -> bytes:
    """Three small time series: requests/s, p50 and p99 latency (ms), error rate (%)."""
    import datetime

    fig = _figure(7.5, 1.9)
    axes = fig.subplots(1, 3)
    times = [datetime.datetime.fromtimestamp(p["time"]) for p in points]

    def line(ax, key, colour, label=None, scale=1.0):
        xs = [t for t, p in zip(times, points) if p.get(key) is not None]
        ys = [p[key] * scale for p in points if p.get(key) is not None]
        ax.plot(xs, ys, color=colour, linewidth=1.4, marker="o", markersize=2, label=label)

    line(axes[0], "rate", "#1976d2")
    _style(axes[0], "requests / s")
    line(axes[1], "p50_ms", "#1976d2", "p50")
    line(axes[1], "p99_ms", "#7b1fa2", "p99")
    _style(axes[1], "latency (ms)")
    axes[1].legend(fontsize=7, frameon=False, loc="upper left")
    line(axes[2], "error_rate", "#c62828", scale=100.0)
    _style(axes[2], "errors (%)")
    for ax in axes:
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_formatter(_time_format())
        ax.xaxis.set_major_locator(__import__("matplotlib.ticker", fromlist=["MaxNLocator"]).MaxNLocator(3))
        if not points:
            ax.text(0.5, 0.5, "waiting for traffic", ha="center", va="center", fontsize=8, transform=ax.transAxes)
    if title:
        fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    return _png(fig)


def _time_format():
    from matplotlib.dates import DateFormatter

    return DateFormatter("%H:%M:%S")


def drift_png(report: dict, max_features: int = 12, columns: int = 4) -> bytes:
    """Reference against live shares per bin for each feature (inputs first), coloured by status."""
    feats = sorted(report.get("features", []), key=lambda f: (f["role"] != "input", f["method"] or ""))[:max_features]
    rows = max(1, -(-len(feats) // columns))
    fig = _figure(7.5, 1.45 * rows + 0.3)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, f in zip(axes, feats):
        ref = f["reference"]["shares"]
        live = f["live"]["shares"]
        xs = range(len(ref))
        ax.bar([x - 0.2 for x in xs], ref, width=0.4, color=REFERENCE_COLOUR, label="reference")
        ax.bar([x + 0.2 for x in xs], live, width=0.4, color=STATUS_COLOURS[f["status"]], label="live")
        name = f["name"] if f["role"] == "input" else f"→ {f['name']}"
        psi = "" if f["psi"] is None else f" PSI {f['psi']:.2f}"
        _style(ax, f"{name}{psi}")
        ax.title.set_color(STATUS_COLOURS[f["status"]] if f["status"] != "ok" else "black")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(feats) :]:
        ax.set_visible(False)
    if not feats:
        axes[0].set_visible(True)
        axes[0].axis("off")
        axes[0].text(0, 0.5, report.get("reason", "no features"), fontsize=8, wrap=True)
    window = report.get("window", {})
    flag = "DRIFT" if report.get("drift") else "no overall drift"
    fig.suptitle(
        f"drift: {flag} · live window {window.get('rows', 0)} rows · grey = reference",
        fontsize=9,
        x=0.01,
        ha="left",
    )
    fig.tight_layout()
    return _png(fig)
