"""Small PNG charts for the demo report (line charts of losses, grouped bar charts of metrics), drawn with OpenCV.

Written here rather than with matplotlib because matplotlib is not a dependency of v2v (it only arrives with the
mediapipe extra), and the report needs two simple chart types: axes, ticks, a legend, lines or bars.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["COLORS", "line_chart", "bar_chart", "nice_ticks"]

#: RGB colours of the series, in order (colour-blind-safe Okabe-Ito palette)
COLORS = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233),
          (240, 228, 66), (0, 0, 0)]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 0.5:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.1e}"
    return f"{v:.3g}"


class _Canvas:
    def __init__(self, size: tuple[int, int], title: str, xlabel: str, ylabel: str) -> None:
        import numpy as np

        self.w, self.h = size
        self.img = np.full((self.h, self.w, 3), 255, np.uint8)
        self.left, self.right, self.top, self.bottom = 70, 20, 40, 50
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel

    def text(self, s: str, xy: tuple[int, int], scale: float = 0.45, color: tuple[int, int, int] = (0, 0, 0),
             anchor: str = "left") -> None:
        import cv2

        (tw, th), _ = cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        x, y = xy
        if anchor == "center":
            x -= tw // 2
        elif anchor == "right":
            x -= tw
        cv2.putText(self.img, s, (int(x), int(y + th // 2)), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)

    def frame(self, yticks: list[float], ylo: float, yhi: float) -> None:
        import cv2

        x0, x1, y0, y1 = self.left, self.w - self.right, self.top, self.h - self.bottom
        for t in yticks:
            y = self.y(t, ylo, yhi)
            if y0 - 1 <= y <= y1 + 1:
                cv2.line(self.img, (x0, y), (x1, y), (225, 225, 225), 1)
                self.text(_fmt(t), (x0 - 6, y), anchor="right")
        cv2.rectangle(self.img, (x0, y0), (x1, y1), (0, 0, 0), 1)
        self.text(self.title, (self.w // 2, 16), 0.55, anchor="center")
        self.text(self.xlabel, ((x0 + x1) // 2, self.h - 12), anchor="center")
        self.text(self.ylabel, (6, 24), 0.4)

    def y(self, v: float, lo: float, hi: float) -> int:
        y0, y1 = self.top, self.h - self.bottom
        return int(round(y1 - (v - lo) / (hi - lo) * (y1 - y0)))

    def x(self, v: float, lo: float, hi: float) -> int:
        x0, x1 = self.left, self.w - self.right
        return int(round(x0 + (v - lo) / (hi - lo) * (x1 - x0)))

    def legend(self, names: Sequence[str]) -> None:
        import cv2

        x, y = self.left + 10, self.top + 12
        for i, name in enumerate(names):
            c = COLORS[i % len(COLORS)]
            cv2.line(self.img, (x, y), (x + 18, y), c[::-1], 2)
            self.text(name, (x + 24, y))
            y += 16

    def rgb(self) -> Any:
        return self.img[..., ::-1].copy()  # drawn in BGR (OpenCV), returned as RGB


def line_chart(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str, xlabel: str = "step",
               ylabel: str = "", size: tuple[int, int] = (640, 360), log_y: bool = False) -> Any:
    """An RGB uint8 image of one line per ``name → (xs, ys)``; non-finite points are skipped."""
    import cv2

    c = _Canvas(size, title, xlabel, ylabel + (" (log)" if log_y else ""))
    pts = {k: [(float(x), float(y)) for x, y in zip(*v) if math.isfinite(float(y)) and (not log_y or float(y) > 0)]
           for k, v in series.items()}
    allp = [p for v in pts.values() for p in v]
    if not allp:
        c.frame([0.0], 0.0, 1.0)
        c.text("no data", (size[0] // 2, size[1] // 2), anchor="center")
        return c.rgb()
    tf = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    xs, ys = [p[0] for p in allp], [tf(p[1]) for p in allp]
    xlo, xhi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    ylo, yhi = min(ys), max(ys)
    pad = (yhi - ylo) * 0.05 or 0.5
    ylo, yhi = ylo - pad, yhi + pad
    ticks = nice_ticks(ylo, yhi)
    c.frame(ticks, ylo, yhi)
    if log_y:  # tick labels show the values, not their logarithms
        c.img[:, : c.left - 2] = 255
        for t in ticks:
            y = c.y(t, ylo, yhi)
            if c.top - 1 <= y <= c.h - c.bottom + 1:
                c.text(_fmt(10**t), (c.left - 6, y), anchor="right")
    for t in nice_ticks(xlo, xhi):
        if xlo <= t <= xhi:
            c.text(_fmt(t), (c.x(t, xlo, xhi), c.h - c.bottom + 12), anchor="center")
    for i, (name, p) in enumerate(pts.items()):
        color = COLORS[i % len(COLORS)][::-1]
        poly = [(c.x(x, xlo, xhi), c.y(tf(y), ylo, yhi)) for x, y in p]
        for a, b in zip(poly, poly[1:]):
            cv2.line(c.img, a, b, color, 2, cv2.LINE_AA)
        if len(poly) == 1:
            cv2.circle(c.img, poly[0], 3, color, -1)
    c.legend(list(pts))
    return c.rgb()


def bar_chart(groups: Mapping[str, Mapping[str, float]], *, title: str, ylabel: str = "",
              size: tuple[int, int] = (640, 360)) -> Any:
    """Grouped bars: ``group (x axis) → series → value``, values written above the bars."""
    import cv2

    c = _Canvas(size, title, "", ylabel)
    names = list(dict.fromkeys(k for g in groups.values() for k in g))
    vals = [v for g in groups.values() for v in g.values() if math.isfinite(v)]
    lo = min(0.0, min(vals, default=0.0))
    hi = max(vals, default=1.0)
    hi = hi * 1.15 if hi > 0 else 1.0
    ticks = nice_ticks(lo, hi)
    c.frame(ticks, lo, hi)
    n_groups = max(1, len(groups))
    span = (c.w - c.left - c.right) / n_groups
    bar = span * 0.7 / max(1, len(names))
    for gi, (group, values) in enumerate(groups.items()):
        gx = c.left + span * gi + span * 0.15
        for si, name in enumerate(names):
            v = values.get(name)
            if v is None or not math.isfinite(v):
                continue
            xa, xb = int(gx + bar * si), int(gx + bar * (si + 1)) - 2
            ya, yb = c.y(max(v, 0.0), lo, hi), c.y(min(v, 0.0), lo, hi)
            cv2.rectangle(c.img, (xa, ya), (xb, yb), COLORS[si % len(COLORS)][::-1], -1)
            c.text(_fmt(v), ((xa + xb) // 2, ya - 8), 0.38, anchor="center")
        c.text(group, (int(c.left + span * (gi + 0.5)), c.h - c.bottom + 14), anchor="center")
    c.legend(names)
    return c.rgb()
