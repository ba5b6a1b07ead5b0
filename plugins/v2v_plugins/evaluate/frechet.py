"""Fréchet distance between two Gaussians fitted to feature sets (the "F" of FID, FVD and friends), in float64.

d² = ‖μ₁ − μ₂‖² + tr(Σ₁) + tr(Σ₂) − 2 tr((Σ₁Σ₂)^½)

Two ways to get tr((Σ₁Σ₂)^½):

* ``"scipy"`` (default, what published FIDs use): ``scipy.linalg.sqrtm(Σ₁Σ₂)`` exactly as pytorch-fid does it;
  when the product is singular enough that the root is not finite, ε = 1e-6 is added to both diagonals and the
  root taken again; a small imaginary part from rounding is dropped. Falls back to ``"eigh"`` when scipy is not
  installed or the imaginary part is large.
* ``"eigh"``: both matrices are symmetric positive semi-definite, so with A = Σ₁^½ (from an eigendecomposition,
  negative rounding eigenvalues clipped), Σ₁Σ₂ is similar to the PSD matrix A Σ₂ A and
  tr((Σ₁Σ₂)^½) = Σᵢ √λᵢ(A Σ₂ A). Real by construction and stable for rank-deficient covariances.

Covariances of N feature vectors have rank ≤ N − 1, so with fewer vectors than dimensions the estimate is
rank-deficient: :func:`rank_deficiency_warning` says so (the FID is then biased and noisy).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Literal

import numpy as np
from scipy import linalg

from v2vcli.errors import V2VError

__all__ = ["feature_statistics", "frechet_distance", "trace_sqrt_product", "rank_deficiency_warning"]

log = logging.getLogger(__name__)

SqrtmMethod = Literal["scipy", "eigh"]


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (``np.cov``, rows are samples) of (N, D) features, in float64."""
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise V2VError(f"need at least 2 feature vectors to estimate a covariance, got {feats.shape[0]}; "
                       f"give more frames")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def rank_deficiency_warning(n: int, dims: int, what: str = "") -> str | None:
    """A warning text when ``n`` samples cannot give a full-rank ``dims``×``dims`` covariance, else None."""
    if n - 1 >= dims:
        return None
    label = f"{what} " if what else ""
    return (f"{label}covariance is rank-deficient: {n} feature vectors for {dims} dimensions (rank ≤ {n - 1}); "
            f"the Fréchet distance is biased and unstable, use more than {dims} frames or fewer dims")


def _trace_sqrt_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = root1 @ sigma2 @ root1
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


def _trace_sqrt_scipy(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float | None:
    def sqrtm(m: np.ndarray) -> np.ndarray:
        # Old scipy prints failures to stdout (it would corrupt --json); `disp` is deprecated in new ones. Its
        # warnings (LinAlgWarning "Matrix is singular ...", RuntimeWarning) would leak raw to stderr: a singular
        # product is handled below (the eps offset) and said in our own log line.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            root = np.asarray(linalg.sqrtm(m))
        for w in caught:
            log.debug("scipy sqrtm: %s", w.message)
        if caught and np.isfinite(root).all() and any("singular" in str(w.message).lower() for w in caught):
            log.info("Fréchet distance: the covariance product is singular (too few samples for the feature "
                     "dimension?); its square root may be inaccurate")
        return root

    covmean = sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        log.warning("Fréchet distance: singular covariance product; adding %g to the diagonals", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            log.warning("Fréchet distance: sqrtm has an imaginary part of %.3g; using the eigh method",
                        float(np.max(np.abs(covmean.imag))))
            return None
        covmean = covmean.real
    return float(np.trace(covmean))


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, method: SqrtmMethod = "scipy",
                       eps: float = 1e-6) -> float:
    """tr((Σ₁Σ₂)^½) by ``method`` (see the module docstring)."""
    if method not in ("scipy", "eigh"):
        raise V2VError(f"unknown matrix square root method '{method}'; use scipy or eigh")
    if method == "scipy":
        try:
            value = _trace_sqrt_scipy(sigma1, sigma2, eps)
        except ImportError:
            log.debug("scipy is not installed; Fréchet distance uses the eigh method")
            value = None
        if value is not None:
            return value
    return _trace_sqrt_eigh(sigma1, sigma2)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *,
                     method: SqrtmMethod = "scipy", eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64."""
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise V2VError(f"Fréchet distance needs statistics of the same dimension, got means {mu1.shape} and "
                       f"{mu2.shape}, covariances {sigma1.shape} and {sigma2.shape}")
    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(sigma1, sigma2, method, eps)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
