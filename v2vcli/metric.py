"""The metric contract, :func:`compute_metric`, and the scoring math every stage shares.

A metric is a class registered with ``register(name, cls)`` from ``v2v_register_metrics``. It subclasses
:class:`Metric`, declares a fixed snake_case ``name`` (dashes on the CLI), a keyword-only ``Config`` dataclass whose
fields become command options, and implements ``compute(real, fake) -> MetricResult`` on input PATHs (a video, a
frame folder, a dataset sequence folder or a dataset root; see :mod:`v2vcli.io.inputs`)::

    metric = get_registry().get_metric("fid")(FID.Config(dims=2048), device="cpu",
                                              weights={"inception_fid": "/path/pt_inception.pth"})
    result = metric.compute("data/frames/seq", "out/seq.mp4")
    result.value, result.to_dict()

:func:`compute_metric` does the same from a name and a mapping of options.

The shared math takes the reference first: :func:`confusion` (rows = reference label, columns = prediction),
:func:`iou_from_confusion`, :func:`miou`, :func:`psnr` and :func:`ssim`. This module stays free of torch at import time because
the plugins import it to build ``v2v --help``.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from v2vcli.config import from_dict, to_dict
from v2vcli.errors import ConfigError, PluginError, VideoError
from v2vcli.registry import get_registry
from v2vcli.runtime import device_name, json_safe, library_versions
from v2vcli.weights import resolve_weights, sha256_file

__all__ = [
    "NoMetricOptions",
    "MetricResult",
    "Metric",
    "compute_metric",
    "confusion",
    "iou_from_confusion",
    "miou",
    "psnr",
    "ssim",
    "gaussian_window",
    "SSIM_SIGMA",
    "SSIM_TRUNCATE",
    "SSIM_K1",
    "SSIM_K2",
]

log = logging.getLogger(__name__)

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


@dataclass(kw_only=True)
class NoMetricOptions:
    """Config of a metric without options."""


@dataclass
class MetricResult:
    """What a metric computed. ``value`` is the headline number; the rest documents how it was obtained."""

    name: str
    value: float
    higher_is_better: bool = False
    per_sequence: dict[str, float] = field(default_factory=dict)  # sequence → value
    per_frame: dict[str, list[float]] = field(default_factory=dict)  # sequence → one value per frame (pair)
    protocol: dict[str, Any] = field(default_factory=dict)  # the settings that make the number comparable
    details: dict[str, Any] = field(default_factory=dict)  # counts, inputs, pairing
    weights: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → {path, sha256, verified}
    versions: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "metric": self.name, "value": self.value, "higher_is_better": self.higher_is_better,
            "per_sequence": self.per_sequence, "per_frame": self.per_frame, "protocol": self.protocol,
            "details": self.details, "weights": self.weights, "versions": self.versions, "warnings": self.warnings,
        })


class Metric(ABC):
    """Base class of metrics. Subclasses set ``name`` and usually ``Config``, and implement :meth:`compute`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = False
    needs_real: ClassVar[bool] = True  # False: ``real`` may be None (e.g. warp error against the fake's own flow)
    weight_names: ClassVar[tuple[str, ...]] = ()  # registry names of the weights it may load
    Config: ClassVar[type] = NoMetricOptions

    def __init__(self, config: Any = None, device: str = "cpu", weights: Mapping[str, str] | None = None, *,
                 verify_weights: bool = True) -> None:
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise ConfigError(f"metric '{self.name}' expects a {self.Config.__name__}, got "
                              f"{type(self.config).__name__}")
        self.device = device
        self.weights: dict[str, str] = dict(weights or {})
        self.verify_weights = verify_weights
        self.weights_used: dict[str, dict[str, Any]] = {}

    @abstractmethod
    def compute(self, real: str | Path | None, fake: str | Path) -> MetricResult:
        """Compare ``fake`` with ``real`` (input PATHs) and return the result."""

    def options(self) -> dict[str, Any]:
        return to_dict(self.config) if is_dataclass(self.config) else {}  # type: ignore[no-any-return]

    def weights_path(self, name: str) -> Path:
        """Local path of weights ``name`` (``--weights`` override first); records its sha256 for the report.

        With ``verify_weights=False`` an explicitly given file is not checked against the registry's hash: for
        tests and for one's own retrained weights only, since the numbers are then not comparable.
        """
        explicit = self.weights.get(name)
        path = resolve_weights(name, explicit, verify=self.verify_weights or explicit is None)
        digest = sha256_file(path)
        self.weights_used[name] = {"path": str(path), "sha256": digest,
                                   "verified": self.verify_weights or explicit is None}
        if explicit is not None and not self.verify_weights:
            log.warning("weights '%s' from %s are not hash-verified (--no-verify-weights): numbers are not "
                        "comparable with published ones", name, path)
        return path

    def result(self, value: float, **kwargs: Any) -> MetricResult:
        """A :class:`MetricResult` of this metric with its options, weights and library versions filled in."""
        protocol = {"options": self.options(), **kwargs.pop("protocol", {})}
        return MetricResult(name=self.name, value=float(value), higher_is_better=self.higher_is_better,
                            protocol=protocol, weights=dict(self.weights_used),
                            versions=library_versions("torch", "torchvision", "numpy", "scipy",
                                                      "opencv-contrib-python", "pillow"), **kwargs)


def compute_metric(name: str, real: str | Path | None, fake: str | Path, options: Mapping[str, Any] | None = None,
                   *, device: str = "auto", weights: Mapping[str, str] | None = None,
                   verify_weights: bool = True) -> MetricResult:
    """Library entry point: run the registered metric ``name`` (dashes allowed) with ``options`` (Config fields)."""
    cls = get_registry().get_metric(name)
    if not callable(getattr(cls, "compute", None)):
        raise PluginError(f"metric '{name}' does not follow the metric contract (no compute method)")
    config = from_dict(getattr(cls, "Config", NoMetricOptions), dict(options or {}), where=name)
    if real is None and getattr(cls, "needs_real", True):
        raise ConfigError(f"metric '{name}' needs --real PATH")
    metric = cls(config, device_name(device), weights, verify_weights=verify_weights)
    result = metric.compute(real, fake)
    result.details = {"real": None if real is None else str(real), "fake": str(fake), **result.details}
    return result


# -- the shared scoring math (reference first) ---------------------------------------------------------------------
def confusion(ref: Any, pred: Any, num_classes: int, ignore_id: int | None = None) -> np.ndarray:
    """(C, C) int64 counts, rows = reference label, columns = predicted label; pixels whose reference is
    ``ignore_id``, or where either id is negative or ≥ C, are not counted."""
    r = np.asarray(ref, np.int64).ravel()
    p = np.asarray(pred, np.int64).ravel()
    keep = (r >= 0) & (r < num_classes) & (p >= 0) & (p < num_classes)
    if ignore_id is not None:
        keep &= r != ignore_id
    return np.bincount(r[keep] * num_classes + p[keep], minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_from_confusion(conf: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU = TP / (TP + FP + FN) (NaN where the class is in neither) and the mask of classes present."""
    conf = np.asarray(conf)
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    present = union > 0
    iou = np.full(len(tp), np.nan)
    iou[present] = tp[present] / union[present]
    return iou, present


def miou(conf: Any) -> float:
    """Mean IoU over the classes in the reference or the prediction (NaN when none is)."""
    iou, present = iou_from_confusion(conf)
    return float(iou[present].mean()) if present.any() else math.nan


def psnr(real: Any, fake: Any, data_range: float = 255.0) -> float:
    """PSNR in dB of two images or stacks of one shape; +inf when they are identical. ``data_range`` is the
    peak-to-peak range: 255 for uint8, 2 for [-1, 1]. Arrays are compared in float64 (as scikit-image), torch
    tensors in float32 on their device."""
    if hasattr(real, "detach"):
        if real.shape != fake.shape:
            raise ValueError(f"psnr needs images of one shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
        mse = float(((real.detach().float() - fake.detach().float()) ** 2).mean())
    else:
        a, b = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"psnr needs images of one shape, got {a.shape} and {b.shape}")
        mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def gaussian_window(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE) -> np.ndarray:
    """SSIM's normalised 1-D Gaussian window, as scipy.ndimage truncates it."""
    radius = int(truncate * sigma + 0.5)  # scipy.ndimage's kernel radius
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * x**2 / sigma**2)
    return k / k.sum()


def ssim(real: Any, fake: Any, data_range: float = 255.0) -> float:
    """Mean SSIM of two (H, W) or (H, W, C) images as scikit-image's ``structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1)``: an 11×11 Gaussian window,
    K1 0.01, K2 0.03, the SSIM map over the pixels at least 5 from the border, then the mean over channels.
    Computed in torch float64 with valid convolutions (exact: skimage crops exactly the border its padding
    touches)."""
    import torch
    import torch.nn.functional as F

    a, b = np.asarray(real), np.asarray(fake)
    if a.shape != b.shape:
        raise ValueError(f"ssim needs images of one shape, got {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    k1 = gaussian_window()
    win = len(k1)
    h, w, c = a.shape
    if h < win or w < win:
        raise VideoError(f"SSIM needs frames of at least {win}x{win} pixels, got {w}x{h}")
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).to(torch.float64)  # (C, H, W)
    y = torch.from_numpy(np.ascontiguousarray(b.transpose(2, 0, 1))).to(torch.float64)
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=0)[None]  # (1, 5C, H, W)
    kern = torch.from_numpy(k1)
    groups = maps.shape[1]
    maps = F.conv2d(maps, kern.view(1, 1, win, 1).expand(groups, 1, win, 1).contiguous(), groups=groups)
    maps = F.conv2d(maps, kern.view(1, 1, 1, win).expand(groups, 1, 1, win).contiguous(), groups=groups)
    ux, uy, uxx, uyy, uxy = maps[0].split(c, dim=0)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean(dim=(1, 2)).mean())
