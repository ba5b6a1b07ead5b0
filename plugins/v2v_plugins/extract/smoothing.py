"""One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) for keypoint tracks, vectorised over all coordinates.

The filter is a first-order low-pass whose cutoff rises with the signal's speed: still keypoints are smoothed
hard (little jitter), fast ones barely (little lag). ``min_cutoff`` (Hz) sets the smoothing at rest, ``beta`` how
fast the cutoff grows with speed (in the signal's units per second), ``d_cutoff`` (Hz) smooths the speed estimate.

Coordinates can disappear (a keypoint not detected in a frame): :meth:`OneEuroFilter.__call__` takes a ``valid``
mask; an invalid coordinate passes through and its state restarts on its next valid sample, so a person leaving
and re-entering the frame does not drag a trail from the old position.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["OneEuroFilter"]


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, np.float64))
    return 1.0 / (1.0 + tau / dt)  # type: ignore[no-any-return]


class OneEuroFilter:
    """Stateful One-Euro filter over an array of any fixed shape; call it once per sample, in time order."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"One-Euro filter needs min_cutoff > 0, d_cutoff > 0 and beta >= 0, got "
                             f"{min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._live: np.ndarray | None = None  # which coordinates have a state
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float, valid: np.ndarray | None = None) -> np.ndarray:
        """Filter sample ``x`` taken at time ``t`` (seconds); coordinates where ``valid`` is False pass through."""
        x = np.asarray(x, np.float64)
        ok = np.ones(x.shape, bool) if valid is None else np.broadcast_to(np.asarray(valid, bool), x.shape)
        if (self._x is None or self._dx is None or self._live is None or self._t is None
                or self._x.shape != x.shape or t <= self._t):
            # First sample (or a time that does not advance): start over.
            self._x, self._dx, self._live, self._t = x.copy(), np.zeros_like(x), ok.copy(), t
            return x.copy()
        dt = t - self._t
        self._t = t
        fresh = ok & ~self._live  # coordinates that (re)appear restart from their value
        track = ok & self._live
        dx = (x - self._x) / dt
        dx_hat = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(dx_hat)
        x_hat = self._x + _alpha(cutoff, dt) * (x - self._x)
        out = np.where(track, x_hat, x)
        self._x = np.where(ok, out, self._x)
        self._dx = np.where(track, dx_hat, 0.0)
        self._dx[fresh] = 0.0
        self._live = ok.copy()
        return out  # type: ignore[no-any-return]
