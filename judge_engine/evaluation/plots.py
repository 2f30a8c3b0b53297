"""PNG plots of a judge's quality: the reliability diagram, the cascade (cost/accuracy) curve, and plain line
curves (the calibration report's cost/accuracy curve, the analytics report's series over time), and bars (the
analytics report's quantities when the window holds a single period).

Contract: pure rendering with matplotlib's Agg backend (no display needed), one function per plot, each taking
the data ``judge_engine.evaluation.metrics`` computes and a path; the parent directory is created; returns the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def reliability_diagram(series: dict[str, Sequence[dict]], path: Path, title: str) -> Path:
    """``series``: name -> reliability bins (``metrics.reliability_bins``); bars of accuracy per confidence bin."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    for name, bins in series.items():
        xs = [b["mean_confidence"] for b in bins if b["count"]]
        ys = [b["accuracy"] for b in bins if b["count"]]
        ns = [b["count"] for b in bins if b["count"]]
        ax.plot(xs, ys, "o-", label=f"{name} (n={sum(ns)})")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def cascade_curve(points: Sequence[dict], path: Path, title: str, reference: dict[str, float] | None = None) -> Path:
    """Accuracy vs human against the fraction sent to the frontier, one point per threshold."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    xs = [p["frontier_fraction"] for p in points]
    ys = [p["accuracy_vs_human"] for p in points]
    ax.plot(xs, ys, "o-", label="inline + frontier below threshold")
    for p in points[:: max(1, len(points) // 8)]:
        ax.annotate(f"{p['threshold']:.2f}", (p["frontier_fraction"], p["accuracy_vs_human"]), fontsize=7)
    for name, value in (reference or {}).items():
        ax.axhline(value, linestyle=":", color="grey")
        ax.annotate(name, (0.01, value), fontsize=7, va="bottom")
    ax.set(xlabel="fraction routed to the frontier judge", ylabel="accuracy vs human", xlim=(0, 1), title=title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curves(series: dict[str, Sequence[tuple[float, float]]], path: Path, title: str, xlabel: str, ylabel: str,
           marks: dict[str, tuple[float, float]] | None = None, ylim: tuple[float, float] | None = (0, 1)) -> Path:
    """One line per series of (x, y) points (NaN points left out), and labelled marks (e.g. a recommendation)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, points in series.items():
        kept = [(x, y) for x, y in points if x == x and y == y]
        if kept:
            ax.plot([x for x, _ in kept], [y for _, y in kept], "o-", markersize=3, label=name)
    for name, (x, y) in (marks or {}).items():
        if x == x and y == y:
            ax.plot([x], [y], "k*", markersize=11)
            ax.annotate(name, (x, y), fontsize=7, xytext=(4, -10), textcoords="offset points")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if ylim:
        ax.set_ylim(*ylim)
    if series:
        ax.legend(loc="best", fontsize=7)
    return _save(fig, path)


def bars(values: dict[str, float], path: Path, title: str, ylabel: str,
         ylim: tuple[float, float] | None = (0, 1)) -> Path:
    """One bar per name (NaN left out): for a quantity known at a single point, where a line would be one dot."""
    kept = {name: v for name, v in values.items() if v == v}
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.45 * max(1, len(kept))))
    names = list(kept)
    ax.barh(names, [kept[n] for n in names], color="#4c78a8")
    for i, n in enumerate(names):
        ax.annotate(f"{kept[n]:.3g}", (kept[n], i), xytext=(3, 0), textcoords="offset points", va="center",
                    fontsize=8)
    ax.set(xlabel=ylabel, title=title)
    if ylim:
        ax.set_xlim(*ylim)
    ax.invert_yaxis()
    return _save(fig, path)

