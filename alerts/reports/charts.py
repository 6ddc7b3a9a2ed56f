"""The report's charts as PNG bytes, drawn server-side with matplotlib's Agg backend."""

from __future__ import annotations

import io
from datetime import datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

# Chinese titles and account names fall back to a CJK font when one is installed (.ci/run's apt list).
matplotlib.rcParams["font.sans-serif"] = ["DejaVu Sans", "WenQuanYi Micro Hei", "Noto Sans CJK SC"]
SIZE_IN = (8, 3)
DPI = 90


def _png(fig) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return out.getvalue()


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


def lines(
    series: dict[str, list[tuple[str, str]]],
    *,
    title: str,
    no_data: str,
    span: tuple[str, str] | None = None,
    percent: bool = False,
) -> bytes:
    """One line per account over the period `span` (iso start, end): series maps a name to
    [(iso time, value)]; a value holds until the next (steps), a lone point shows as a dot."""
    fig, ax = plt.subplots(figsize=SIZE_IN)
    ax.set_title(title, fontsize=10, loc="left")
    drawn = False
    for name, points in series.items():
        if not points:
            continue
        xs = [datetime.fromisoformat(t) for t, _ in points]
        ys = [float(v) * (100 if percent else 1) for _, v in points]
        ax.plot(xs, ys, label=name, linewidth=1.2, drawstyle="steps-post", marker="o" if len(xs) < 3 else None)
        drawn = True
    if drawn:
        if span is not None:
            ax.set_xlim(datetime.fromisoformat(span[0]), datetime.fromisoformat(span[1]))
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(mdates.AutoDateLocator()))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    else:
        _empty(ax, no_data)
    return _png(fig)


def bars(values: dict[str, str], *, title: str, no_data: str) -> bytes:
    """Net notional per symbol: long up, short down."""
    fig, ax = plt.subplots(figsize=SIZE_IN)
    ax.set_title(title, fontsize=10, loc="left")
    if values:
        names = list(values)
        ys = [float(values[n]) for n in names]
        ax.bar(names, ys, color=["#2e7d32" if y >= 0 else "#c62828" for y in ys])
        ax.axhline(0, color="#333", linewidth=0.8)
        ax.grid(axis="y", alpha=0.3)
    else:
        _empty(ax, no_data)
    return _png(fig)
