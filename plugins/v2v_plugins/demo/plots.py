"""Charts of the demo report (loss curves, metric bars) drawn with matplotlib (Agg) and returned as RGB arrays."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["line_chart", "bar_chart"]

#: colour-blind-safe Okabe-Ito palette, one colour per series in order
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def _figure(size: tuple[int, int]) -> tuple[Any, Any]:
    fig = Figure(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    FigureCanvasAgg(fig)  # a figure of its own, off pyplot's global state
    return fig, fig.add_subplot()


def _rgb(fig: Any) -> Any:
    fig.tight_layout()
    fig.canvas.draw()
    return np.ascontiguousarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])


def line_chart(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str, xlabel: str = "step",
               ylabel: str = "", size: tuple[int, int] = (640, 360), log_y: bool = False) -> Any:
    """An RGB uint8 image with one line per ``name → (xs, ys)``; non-finite points are left out."""
    fig, ax = _figure(size)
    drawn = 0
    for i, (name, (xs, ys)) in enumerate(series.items()):
        pts = [(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(float(y)) and (not log_y or y > 0)]
        if pts:
            ax.plot(*zip(*pts), label=name, color=COLORS[i % len(COLORS)], linewidth=1.6,
                    marker="o" if len(pts) < 20 else None, markersize=3)
            drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    if log_y and drawn:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    return _rgb(fig)


def bar_chart(values: Mapping[str, float], *, title: str, ylabel: str = "",
              size: tuple[int, int] = (640, 360)) -> Any:
    """One bar per ``name → value`` (non-finite values shown as n/a), the values written above the bars."""
    fig, ax = _figure(size)
    names = list(values)
    heights = [values[n] if math.isfinite(values[n]) else 0.0 for n in names]
    bars = ax.bar(range(len(names)), heights, color=[COLORS[i % len(COLORS)] for i in range(len(names))])
    for bar, name in zip(bars, names):
        v = values[name]
        ax.annotate(f"{v:.4g}" if math.isfinite(v) else "n/a", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=9, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(names)), names)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    return _rgb(fig)
