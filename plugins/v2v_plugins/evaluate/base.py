"""The metric contract of ``v2v eval`` and the helpers every metric shares.

A metric is a class registered with ``register(name, cls)`` from ``v2v_register_metrics``. It declares a fixed
snake_case ``name`` (dashes on the CLI), a keyword-only ``Config`` dataclass whose fields become command options,
and implements ``compute(real, fake) -> MetricResult`` on input PATHs (a video, a frame folder, a dataset
sequence folder or a dataset root; see :mod:`v2v_plugins.evaluate.inputs`)::

    metric = get_registry().get_metric("fid")(FID.Config(dims=2048), device="cpu",
                                              weights={"inception_fid": "/path/pt_inception.pth"})
    result = metric.compute("data/frames/seq", "out/seq.mp4")
    result.value, result.to_dict()

:func:`compute_metric` does the same from a name and a mapping of options. This module stays free of torch and
numpy at import time because the plugin imports it to build ``v2v --help``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from v2vcli.errors import ConfigError, DeviceError, PluginError
from v2vcli.weights import resolve_weights, sha256_file

__all__ = [
    "NoMetricOptions",
    "MetricResult",
    "Metric",
    "compute_metric",
    "resolve_device",
    "library_versions",
    "progress",
    "json_safe",
]

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class NoMetricOptions:
    """Config of a metric without options."""


def json_safe(value: Any) -> Any:
    """Plain JSON data: non-finite floats become the strings "inf", "-inf", "nan" (strict JSON has no Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


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


def resolve_device(device: str | None) -> str:
    """``auto`` (or None) → ``cuda`` when available else ``cpu``; an unavailable CUDA device is an error."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if str(device).split(":")[0] not in ("cpu", "cuda", "mps", "xpu"):
        raise DeviceError(f"--device '{device}' is not a device; use auto, cpu, cuda or cuda:N")
    return str(device)


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions of v2v and of the given distributions (those not installed are left out)."""
    import v2vcli

    out: dict[str, str] = {"v2v": v2vcli.__version__}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@contextlib.contextmanager
def progress(total: int | None, description: str) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``: a rich progress bar on stderr when it is a terminal, nothing otherwise."""
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


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
        from v2vcli.config import to_dict

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
    from v2vcli.config import from_dict
    from v2vcli.registry import get_registry

    cls = get_registry().get_metric(name)
    if not callable(getattr(cls, "compute", None)):
        raise PluginError(f"metric '{name}' does not follow the metric contract (no compute method)")
    config = from_dict(getattr(cls, "Config", NoMetricOptions), dict(options or {}), where=name)
    if real is None and getattr(cls, "needs_real", True):
        raise ConfigError(f"metric '{name}' needs --real PATH")
    metric = cls(config, resolve_device(device), weights, verify_weights=verify_weights)
    result = metric.compute(real, fake)
    result.details = {"real": None if real is None else str(real), "fake": str(fake), **result.details}
    return result
