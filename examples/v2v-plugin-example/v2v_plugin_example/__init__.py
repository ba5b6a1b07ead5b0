"""An example third-party v2v plugin: the ``sobel`` extractor kind (Sobel gradient magnitude as an 8-bit map), and
two templates to copy: the model ``template`` (:mod:`.template_model`) and the metric ``mean_abs_error``
(:mod:`.template_metric`).

After ``pip install -e examples/v2v-plugin-example``::

    v2v plugins                                  # lists 'example' with its three registration hooks
    v2v extract sobel clip.mp4 -o data --ksize 5 --blur 1.0
    ls data/sobel/clip/                          # 000000.png, 000001.png, ... (uint8 magnitude)
    v2v train --data world --set model.name=template --set data.inputs=[seg] --run-dir runs/template
    v2v eval mean-abs-error --real world/frames --fake synthesized/

Like the built-in plugins, this module imports only light modules at import time (cv2 is imported when frames
are processed, the template modules when the registry is first asked for models or metrics) so ``v2v --help``
stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from v2vcli.errors import ConfigError
from v2vcli.extractor import Extractor
from v2vcli.hookspecs import hookimpl

__all__ = ["SobelExtractor", "SobelConfig", "v2v_register_extractors", "v2v_register_models",
           "v2v_register_metrics"]
__version__ = "0.1.0"


@dataclass(kw_only=True)
class SobelConfig:
    """Options of ``v2v extract sobel``: each field becomes ``--field-name`` on the command line."""

    ksize: int = field(default=3, metadata={"help": "Sobel aperture: 1, 3, 5 or 7."})
    blur: float = field(default=0.0, metadata={"help": "Gaussian sigma applied first (0: none)."})
    gain: float = field(default=0.25, metadata={"help": "Output = clip(gain * magnitude, 0, 255)."})
    normalize: bool = field(default=False, metadata={"help": "Scale each frame so its largest magnitude is 255."})


class SobelExtractor(Extractor):
    """Per-frame gradient magnitude of the luma; stateless, so sequences need no reset."""

    kind: ClassVar[str] = "sobel"
    backend: ClassVar[str] = "opencv"
    version: ClassVar[str] = "1"
    default: ClassVar[bool] = True
    outputs: ClassVar[tuple[str, ...]] = ("sobel",)
    description: ClassVar[str] = "Sobel gradient magnitude (OpenCV)"
    Config: ClassVar[type] = SobelConfig

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        super().__init__(config, device)
        if self.config.ksize not in (1, 3, 5, 7):
            raise ConfigError(f"--ksize must be 1, 3, 5 or 7, got {self.config.ksize}")
        if self.config.blur < 0 or self.config.gain <= 0:
            raise ConfigError("--blur must be >= 0 and --gain > 0")

    def meta(self) -> dict[str, Any]:
        return {"units": "8-bit gradient magnitude"}

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        import cv2

        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        if self.config.blur > 0:
            gray = cv2.GaussianBlur(gray, (0, 0), self.config.blur)
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=self.config.ksize)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=self.config.ksize)
        magnitude = cv2.magnitude(gx, gy)
        if self.config.normalize:
            top = float(magnitude.max())
            magnitude = magnitude * (255.0 / top) if top > 0 else magnitude
        else:
            magnitude = magnitude * self.config.gain
        return {"sobel": np.clip(magnitude + 0.5, 0, 255).astype(np.uint8)}  # (H, W) uint8 → 8-bit PNG


@hookimpl
def v2v_register_extractors(register: Any) -> None:
    register("sobel", "opencv", SobelExtractor)


@hookimpl
def v2v_register_models(register: Any) -> None:
    from v2v_plugin_example.template_model import TemplateModel

    register(TemplateModel.name, TemplateModel)


@hookimpl
def v2v_register_metrics(register: Any) -> None:
    from v2v_plugin_example.template_metric import MeanAbsError

    register(MeanAbsError.name, MeanAbsError)
