"""Optical flow: estimators ``dis``, ``farneback``, ``raft_large``, ``raft_small`` and ``v2v extract flow``.

Convention (fixed, :mod:`v2vcli.flow`): ``backward(cur, prev)`` is the backward flow t→t-1 in pixels, (H, W, 2)
float32 (dx, dy), such that ``v2vcli.warp.warp_numpy(prev, flow) ≈ cur``. OpenCV's ``calc(I0, I1)`` (DIS and
Farnebäck) returns the flow defined on I0's grid with ``I0(p) ≈ I1(p + flow(p))``, so the backward flow is
``calc(cur, prev)``. torchvision's RAFT ``model(img1, img2)`` follows the same convention: ``model(cur, prev)``.

The estimators register through ``v2v_register_flow_estimators`` (training computes flow on the fly with
``data.flow: dis``; metrics use them too) and back the extractors of ``v2v extract flow --backend dis|farneback|raft``,
which write ``flow/<seq>/NNNNNN.npz``: backward flow float16 + forward-backward confidence uint8. Frame 0 has no
previous frame: zero flow with zero confidence, so every modality has the same frame count.

Speed (benchmarks/bench_extract_seg_flow.py): DIS ``medium`` with confidence (two flows, computed at the same time
in two threads, + the check) runs at about 11 frames/s at 1024×512 on a 2-core CPU; ``--scale 0.5`` computes both
flows and the check at half size and upsamples them, about 3× faster; ``fast`` runs at about 40 frames/s.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from v2vcli.errors import ConfigError, WeightsError
from v2vcli.extractor import Extractor, FlowField
from v2vcli.flow import FlowEstimator, forward_backward_confidence
from v2vcli.hookspecs import hookimpl

__all__ = ["DISFlow", "DISOptions", "FarnebackFlow", "FarnebackOptions", "RAFTFlow", "RAFTLargeFlow",
           "RAFTSmallFlow", "RAFTOptions", "FlowExtractor", "DISFlowExtractor", "FarnebackFlowExtractor",
           "RAFTFlowExtractor", "RAFTExtractOptions", "DIS_PRESETS"]

log = logging.getLogger(__name__)

DIS_PRESETS = ("ultrafast", "fast", "medium")


def _gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _check_pair(cur: np.ndarray, prev: np.ndarray) -> None:
    if cur.shape != prev.shape or cur.ndim != 3 or cur.shape[2] != 3:
        raise ValueError(f"flow needs two RGB frames of one size, got {cur.shape} and {prev.shape}")


class _ScaledOpenCVFlow(FlowEstimator):
    """An OpenCV flow on grayscale frames, optionally computed at ``config.scale`` of the size and upsampled."""

    _pool: Any = None  # one helper thread for the forward flow of with_confidence (made on first use)

    @abstractmethod
    def _calc(self, first: np.ndarray, second: np.ndarray, slot: int = 0) -> np.ndarray:
        """OpenCV flow on first's grid towards second (uint8 grayscale, same size). Calls with different ``slot``
        (0 or 1) may run at the same time in two threads."""

    def _scaled(self, gray: np.ndarray) -> np.ndarray:
        import cv2

        scale = float(getattr(self.config, "scale", 1.0))
        if scale == 1.0:
            return gray
        h, w = gray.shape
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)

    @staticmethod
    def _upsample(flow: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        import cv2

        h, w = shape
        if flow.shape[:2] == (h, w):
            return np.asarray(flow, np.float32)
        up = np.asarray(cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)
        # flow is in pixels of the size it was computed at
        up[..., 0] *= w / flow.shape[1]
        up[..., 1] *= h / flow.shape[0]
        return up

    def backward(self, cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
        _check_pair(cur, prev)
        flow = self._calc(self._scaled(_gray(cur)), self._scaled(_gray(prev)))
        return self._upsample(flow, (cur.shape[0], cur.shape[1]))

    def with_confidence(self, cur: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        _check_pair(cur, prev)
        g_cur, g_prev = self._scaled(_gray(cur)), self._scaled(_gray(prev))
        # The two directions are independent and OpenCV releases the GIL: computing the forward flow in a helper
        # thread while this one computes the backward flow uses both cores even where OpenCV's own parallel loops
        # leave one idle (DIS medium at 1024x512 on 2 cores: 1.75x from OpenCV's threads alone).
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="v2v-flow")
        forward = self._pool.submit(self._calc, g_prev, g_cur, 1)
        try:
            bw = self._calc(g_cur, g_prev, 0)
        finally:
            fw = forward.result()
        # The check runs at the size the flows were computed at: same test, a fraction of the cost.
        conf = forward_backward_confidence(bw, fw)
        h, w = cur.shape[:2]
        if conf.shape != (h, w):
            conf = cv2.resize(conf, (w, h), interpolation=cv2.INTER_NEAREST)
        return self._upsample(bw, (h, w)), conf


@dataclass(kw_only=True)
class DISOptions:
    """Options of the ``dis`` flow estimator (OpenCV's Dense Inverse Search)."""

    preset: str = field(default="medium", metadata={"help": "DIS preset: ultrafast, fast or medium (most accurate)."})
    scale: float = field(default=1.0, metadata={
        "help": "Compute flow at this fraction of the frame size and upsample (0.5 is about 3x faster)."})

    def check(self) -> None:
        if self.preset not in DIS_PRESETS:
            raise ConfigError(f"flow preset '{self.preset}' is not a DIS preset (valid: {', '.join(DIS_PRESETS)})")
        if not 0.0 < self.scale <= 1.0:
            raise ConfigError(f"flow scale must be in (0, 1], got {self.scale}")


class DISFlow(_ScaledOpenCVFlow):
    """OpenCV DIS optical flow (Kroeger et al. 2016) on grayscale frames."""

    name: ClassVar[str] = "dis"
    Config: ClassVar[type] = DISOptions

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        import cv2

        super().__init__(config, device)
        self.config.check()
        preset = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                  "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[self.config.preset]
        # one DIS object per slot: an instance keeps buffers between calls, so two threads cannot share one
        self._dis = [cv2.DISOpticalFlow_create(preset) for _ in range(2)]  # type: ignore[attr-defined]

    def _calc(self, first: np.ndarray, second: np.ndarray, slot: int = 0) -> np.ndarray:
        return self._dis[slot].calc(first, second, None)  # type: ignore[no-any-return]


@dataclass(kw_only=True)
class FarnebackOptions:
    """Options of the ``farneback`` flow estimator (cv2.calcOpticalFlowFarneback's parameters)."""

    levels: int = field(default=5, metadata={"help": "Pyramid levels (more follow larger motion)."})
    pyr_scale: float = field(default=0.5, metadata={"help": "Scale between pyramid levels (< 1)."})
    winsize: int = field(default=9, metadata={"help": "Averaging window: larger = smoother, blurs motion edges."})
    iterations: int = field(default=5, metadata={"help": "Iterations per pyramid level."})
    poly_n: int = field(default=7, metadata={"help": "Pixel neighbourhood of the polynomial expansion (5 or 7)."})
    poly_sigma: float = field(default=1.5, metadata={"help": "Gaussian sigma of the expansion (1.1 for 5, 1.5 for 7)."})
    gaussian: bool = field(default=True, metadata={
        "help": "Gaussian instead of box window: sharper motion edges, so occlusions fail the confidence check."})
    scale: float = field(default=1.0, metadata={"help": "Compute flow at this fraction of the frame size."})

    def check(self) -> None:
        if self.levels < 1 or self.iterations < 1 or self.winsize < 3:
            raise ConfigError(f"farneback needs levels >= 1, iterations >= 1, winsize >= 3; got {self.levels}, "
                              f"{self.iterations}, {self.winsize}")
        if not 0.0 < self.pyr_scale < 1.0:
            raise ConfigError(f"farneback pyr-scale must be in (0, 1), got {self.pyr_scale}")
        if self.poly_n not in (5, 7):
            raise ConfigError(f"farneback poly-n must be 5 or 7, got {self.poly_n}")
        if not 0.0 < self.scale <= 1.0:
            raise ConfigError(f"flow scale must be in (0, 1], got {self.scale}")


class FarnebackFlow(_ScaledOpenCVFlow):
    """OpenCV Farnebäck polynomial-expansion flow on grayscale frames."""

    name: ClassVar[str] = "farneback"
    Config: ClassVar[type] = FarnebackOptions

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        super().__init__(config, device)
        self.config.check()

    def _calc(self, first: np.ndarray, second: np.ndarray, slot: int = 0) -> np.ndarray:
        import cv2

        c = self.config
        flags = cv2.OPTFLOW_FARNEBACK_GAUSSIAN if c.gaussian else 0
        return cv2.calcOpticalFlowFarneback(first, second, None, c.pyr_scale, c.levels, c.winsize,  # type: ignore[call-overload,no-any-return]
                                            c.iterations, c.poly_n, c.poly_sigma, flags)


@dataclass(kw_only=True)
class RAFTOptions:
    """Options of the ``raft_large`` / ``raft_small`` estimators (torchvision RAFT)."""

    weights: str = field(default="", metadata={
        "help": "RAFT weights file; default: looked up by name (raft_large/raft_small) in the v2v cache."})
    iters: int = field(default=12, metadata={"help": "RAFT refinement iterations (torchvision's default 12)."})

    def check(self) -> None:
        if self.iters < 1:
            raise ConfigError(f"raft iters must be >= 1, got {self.iters}")


class RAFTFlow(FlowEstimator):
    """torchvision RAFT with weights from the v2v registry; frames are padded to multiples of 8 and cropped back."""

    name: ClassVar[str] = ""
    variant: ClassVar[str] = ""  # "large" or "small"
    Config: ClassVar[type] = RAFTOptions

    def __init__(self, config: Any = None, device: str = "cpu", *, model: Any = None) -> None:
        """``model``: a ready torchvision RAFT module (e.g. with random weights in tests) instead of loading one."""
        super().__init__(config, device)
        self.config.check()
        self.model = model if model is not None else self.load_model(self.variant, self.config.weights, device)
        self.model.eval().to(device)

    @staticmethod
    def load_model(variant: str, weights: str = "", device: str = "cpu") -> Any:
        """torchvision's raft_{variant} architecture with the registry's verified weights file."""
        import pickle

        import torch
        from torchvision.models.optical_flow import raft_large, raft_small

        from v2vcli.weights import resolve_weights

        name = f"raft_{variant}"
        path = resolve_weights(name, weights or None)
        model = (raft_large if variant == "large" else raft_small)(weights=None, progress=False)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except (RuntimeError, OSError, EOFError, KeyError, ValueError, TypeError, AttributeError,
                pickle.UnpicklingError) as exc:
            raise WeightsError(f"'{path}' is not a torchvision {name} state dict ({str(exc).splitlines()[0]}); "
                               f"`v2v weights list` shows where to get it") from exc
        return model

    def _prepare(self, frames: list[np.ndarray]) -> tuple[Any, tuple[int, int]]:
        """RGB uint8 frames → (N, 3, H8, W8) in [-1, 1], padded (replicate) to what RAFT accepts, and (H, W)."""
        import torch
        import torch.nn.functional as F

        h, w = frames[0].shape[:2]
        x = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 3, 1, 2).float()
        x = x / 127.5 - 1.0  # torchvision's OpticalFlow preset: [0, 1] then normalise by 0.5 / 0.5
        # RAFT needs sides divisible by 8 and, for its correlation pyramid of L levels, feature maps of at least
        # 2 * 2^(L-1) cells, i.e. 128 px for the usual 4 levels.
        levels = int(getattr(getattr(self.model, "corr_block", None), "num_levels", 4))
        least = 16 * 2 ** (levels - 1)
        pad_h, pad_w = max((-h) % 8, least - h), max((-w) % 8, least - w)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return x, (h, w)

    def _flows(self, first: list[np.ndarray], second: list[np.ndarray]) -> np.ndarray:
        """Flows on first's grids towards second, (N, H, W, 2) float32, in one batch."""
        import torch

        a, (h, w) = self._prepare(first)
        b, _ = self._prepare(second)
        with torch.inference_mode():
            flow = self.model(a, b, num_flow_updates=self.config.iters)[-1]  # (N, 2, H8, W8)
        return flow[:, :, :h, :w].permute(0, 2, 3, 1).float().cpu().numpy()  # type: ignore[no-any-return]

    def backward(self, cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
        _check_pair(cur, prev)
        return self._flows([cur], [prev])[0]

    def with_confidence(self, cur: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _check_pair(cur, prev)
        bw, fw = self._flows([cur, prev], [prev, cur])  # both directions in one batch of 2
        return bw, forward_backward_confidence(bw, fw)


class RAFTLargeFlow(RAFTFlow):
    """RAFT large (torchvision Raft_Large_Weights.C_T_SKHT_V2)."""

    name: ClassVar[str] = "raft_large"
    variant: ClassVar[str] = "large"


class RAFTSmallFlow(RAFTFlow):
    """RAFT small (torchvision Raft_Small_Weights.C_T_V2)."""

    name: ClassVar[str] = "raft_small"
    variant: ClassVar[str] = "small"


# -- extractors ---------------------------------------------------------------------------------------------------------

class FlowExtractor(Extractor):
    """Backward flow t→t-1 + forward-backward confidence of each frame; frame 0 gets zero flow, zero confidence."""

    kind: ClassVar[str] = "flow"
    version: ClassVar[str] = "1"
    outputs: ClassVar[tuple[str, ...]] = ("flow",)

    def __init__(self, config: Any = None, device: str = "cpu", *, estimator: FlowEstimator | None = None) -> None:
        super().__init__(config, device)
        self.estimator = estimator if estimator is not None else self.make_estimator()
        self._prev: np.ndarray | None = None

    @abstractmethod
    def make_estimator(self) -> FlowEstimator:
        """The estimator for this backend, built from ``self.config``."""

    def meta(self) -> dict[str, Any]:
        return {"estimator": self.estimator.name, "direction": "backward t->t-1 in pixels (dx, dy)",
                "confidence": "forward-backward consistency (Sundaram et al. 2010), 255 = consistent; frame 0: 0",
                "storage": "npz: flow float16 (H, W, 2), conf uint8 (H, W)"}

    def start_sequence(self, seq: str, fps: float, size: tuple[int, int]) -> None:
        self._prev = None

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        # A copy: a reader may reuse its frame buffer for the next frame.
        prev, self._prev = self._prev, frame.copy()
        if prev is None or index == 0:
            h, w = frame.shape[:2]
            return {"flow": FlowField(np.zeros((h, w, 2), np.float32), np.zeros((h, w), np.uint8))}
        flow, conf = self.estimator.with_confidence(frame, prev)
        return {"flow": FlowField(flow, conf)}

    def close(self) -> None:
        self._prev = None


class DISFlowExtractor(FlowExtractor):
    backend: ClassVar[str] = "dis"
    default: ClassVar[bool] = True
    description: ClassVar[str] = "OpenCV DIS flow (presets ultrafast/fast/medium) + forward-backward confidence"
    Config: ClassVar[type] = DISOptions

    def make_estimator(self) -> FlowEstimator:
        return DISFlow(self.config, self.device)


class FarnebackFlowExtractor(FlowExtractor):
    backend: ClassVar[str] = "farneback"
    description: ClassVar[str] = "OpenCV Farneback flow + forward-backward confidence"
    Config: ClassVar[type] = FarnebackOptions

    def make_estimator(self) -> FlowEstimator:
        return FarnebackFlow(self.config, self.device)


@dataclass(kw_only=True)
class RAFTExtractOptions(RAFTOptions):
    """Options of ``v2v extract flow --backend raft``."""

    variant: str = field(default="large", metadata={"help": "RAFT variant: large (accurate) or small (fast)."})

    def check(self) -> None:
        super().check()
        if self.variant not in ("large", "small"):
            raise ConfigError(f"raft variant '{self.variant}' is not one of: large, small")


class RAFTFlowExtractor(FlowExtractor):
    backend: ClassVar[str] = "raft"
    description: ClassVar[str] = "torchvision RAFT large/small (weights raft_large/raft_small) + confidence"
    Config: ClassVar[type] = RAFTExtractOptions

    def make_estimator(self) -> FlowEstimator:
        self.config.check()
        cls = RAFTLargeFlow if self.config.variant == "large" else RAFTSmallFlow
        return cls(RAFTOptions(weights=self.config.weights, iters=self.config.iters), self.device)


@hookimpl
def v2v_register_flow_estimators(register: Any) -> None:
    register("dis", DISFlow)
    register("farneback", FarnebackFlow)
    register("raft_large", RAFTLargeFlow)
    register("raft_small", RAFTSmallFlow)


@hookimpl
def v2v_register_extractors(register: Any) -> None:
    register("flow", "dis", DISFlowExtractor)
    register("flow", "farneback", FarnebackFlowExtractor)
    register("flow", "raft", RAFTFlowExtractor)
