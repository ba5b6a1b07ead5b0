"""What the detectron2 backends share (``seg``/``pose`` ``--backend detectron2``, ``densepose``): the import with an
actionable error, the config (a model-zoo name or a .yaml path), safe weight loading, the test-time resize and quiet
third-party logging.

Weights. detectron2's own ``DetectionCheckpointer`` reads a ``.pkl`` with plain :func:`pickle.load`, which runs
whatever code the file names. v2v reads it with :class:`RestrictedUnpickler` instead, which admits only numpy arrays,
numpy dtypes/scalars and plain containers (dict, list, tuple, OrderedDict): a file asking for anything else is
refused before anything runs. Other files (``.pth``) go through ``torch.load(weights_only=True)``. A checkpoint
that leaves model parameters uninitialised (names or shapes that do not fit the config) is an error, not a model
with random layers.

Quiet: detectron2, fvcore and iopath log INFO lines and raise deprecation warnings while building and running a
model; they are silenced (errors still raise), so a failing run ends with one ``Error:`` line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from abc import abstractmethod
from typing import Any

import numpy as np

from v2vcli.errors import ConfigError, PluginError, WeightsError
from v2vcli.extractor import Extractor

__all__ = ["DETECTRON2_INSTALL", "DENSEPOSE_INSTALL", "Detectron2Extractor", "RestrictedUnpickler",
           "import_detectron2", "quiet", "load_pkl_weights", "load_config", "resolve_weights", "build_predictor",
           "downloads_allowed", "detectron2_versions"]

log = logging.getLogger(__name__)

# detectron2 builds against the installed torch (hence no build isolation) with a C++ compiler, the Python headers
# and ninja; its model zoo imports pkg_resources, which setuptools 81 removed. `make detectron2` does all of it.
DETECTRON2_INSTALL = ("pip install 'setuptools<81' ninja && pip install --no-build-isolation "
                      "'git+https://github.com/facebookresearch/detectron2.git' (needs g++, the Python headers and "
                      "ninja; in a v2v checkout: make detectron2)")
DENSEPOSE_INSTALL = ("pip install av && pip install --no-build-isolation --no-deps "
                     "'git+https://github.com/facebookresearch/detectron2.git#subdirectory=projects/DensePose' "
                     "(in a v2v checkout: make detectron2)")

class Detectron2Extractor(Extractor):
    """An extractor over a detectron2 predictor: the options are checked, then :meth:`_load` builds the predictor
    (and the facts for :meth:`meta`) unless one is given, e.g. a fake in tests."""

    def __init__(self, config: Any = None, device: str = "cpu", *, predictor: Any = None) -> None:
        """``predictor`` (a callable like detectron2's DefaultPredictor) replaces the model, e.g. in tests."""
        super().__init__(config, device)
        self.config.check()
        self._info: dict[str, Any] = {}
        if predictor is None:
            predictor, self._info = self._load(device)
        self._predictor = predictor

    @abstractmethod
    def _load(self, device: str) -> tuple[Any, dict[str, Any]]:
        """(predictor, facts about the model for the meta file)."""

    def close(self) -> None:
        self._predictor = None


_NOISY_LOGGERS = ("detectron2", "fvcore", "iopath", "densepose", "d2", "torch.fx")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the warnings and INFO/WARNING logs of detectron2, fvcore, iopath and DensePose (errors still raise)."""
    saved = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _setuptools_version() -> str:
    try:
        return version("setuptools")
    except Exception:  # noqa: BLE001 - only for the message
        return "?"


def import_detectron2(what: str, *, densepose: bool = False) -> Any:
    """Import detectron2 (and DensePose) for ``what`` (e.g. "pose backend 'detectron2'"), or raise a one-line
    PluginError: not installed (with the install command), or installed but unusable with setuptools >= 81."""
    try:
        with quiet():
            import detectron2
            from detectron2 import model_zoo  # noqa: F401  (imports pkg_resources)
            from detectron2.engine import DefaultPredictor  # noqa: F401
    except ImportError as exc:
        if getattr(exc, "name", None) == "pkg_resources" or "pkg_resources" in str(exc):
            raise PluginError(f"{what} needs detectron2, which is installed but cannot be imported: its model zoo "
                              f"imports pkg_resources, which setuptools 81 removed (setuptools "
                              f"{_setuptools_version()} is installed); run pip install 'setuptools<81'") from exc
        raise PluginError(f"{what} needs detectron2, which is not on PyPI ({exc}); install it with "
                          f"{DETECTRON2_INSTALL}; see https://detectron2.readthedocs.io/en/latest/tutorials/"
                          f"install.html") from exc
    if densepose:
        try:
            with quiet():
                import densepose as _densepose  # noqa: F401
        except ImportError as exc:
            raise PluginError(f"{what} needs detectron2's DensePose project ({exc}); install it with "
                              f"{DENSEPOSE_INSTALL}") from exc
    return detectron2


def detectron2_versions() -> dict[str, str]:
    """Versions recorded in meta: detectron2 and its torch."""
    import detectron2
    import torch

    out = {"detectron2": str(getattr(detectron2, "__version__", "?")), "torch": str(torch.__version__)}
    with contextlib.suppress(Exception):
        out["densepose"] = version("detectron2-densepose")
    return out


def downloads_allowed() -> bool:
    return os.environ.get("V2V_ALLOW_DOWNLOAD", "") not in ("", "0", "false")


# -- weights ------------------------------------------------------------------------------------------------------

class _Refused(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


# (module, name) a weights pickle may name: numpy array/dtype/scalar reconstruction (numpy 1 and 2 module paths;
# _frombuffer is protocol 5's), OrderedDict, and _codecs.encode (how protocol-2 pickles written by Python 3 store
# bytes). Each builds data from data; none calls anything the file chooses.
_ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"), ("_codecs", "encode"),
})


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dtypes, scalars and plain containers; any other global is refused unloaded, so no
    code named by the file runs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise _Refused(f"{module}.{name}")


def load_pkl_weights(path: str | Path) -> dict[str, Any]:
    """A detectron2 model-zoo (or Detectron1/Caffe2) ``.pkl`` read with :class:`RestrictedUnpickler`, in the form
    ``DetectionCheckpointer`` expects: ``{"model": {name: array}, "__author__": ..., "matching_heuristics": ...}``."""
    try:
        with open(path, "rb") as handle:
            data = RestrictedUnpickler(handle, encoding="latin1").load()
    except _Refused as exc:
        raise WeightsError(f"weights file '{path}' was refused: it asks to load {exc}, which a weights file never "
                           f"needs (it may be malicious; nothing in it was run). A detectron2 .pkl holds only numpy "
                           f"arrays") from exc
    except OSError as exc:
        raise WeightsError(f"weights file '{path}' cannot be read: {exc.strerror or exc}") from exc
    except Exception as exc:  # noqa: BLE001 - truncated or not a pickle: any failure means a corrupt file
        raise WeightsError(f"weights file '{path}' is corrupt or not a detectron2 .pkl ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); download it again") from exc
    if not isinstance(data, dict):
        raise WeightsError(f"weights file '{path}' holds a {type(data).__name__}, not a detectron2 checkpoint "
                           f"(a dict of arrays)")
    if "model" in data and "__author__" in data:  # detectron2 model-zoo format
        return data
    if "blobs" in data:  # Detectron1 detection models
        data = data["blobs"]
    model = {k: v for k, v in data.items() if not str(k).endswith("_momentum")}
    return {"model": model, "__author__": "Caffe2", "matching_heuristics": True}


def _load_torch_weights(path: str) -> dict[str, Any]:
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"weights file '{path}' was refused: it holds objects other than tensors and plain "
                           f"data (torch.load weights_only; nothing in it was run)") from exc
    except Exception as exc:  # noqa: BLE001 - a truncated zip, not a torch file, ...
        raise WeightsError(f"weights file '{path}' is corrupt or not a torch checkpoint ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from exc
    if not isinstance(loaded, dict):
        raise WeightsError(f"weights file '{path}' holds a {type(loaded).__name__}, not a state dict")
    return loaded if "model" in loaded else {"model": loaded}


def _checkpointer(model: Any) -> Any:
    """detectron2's DetectionCheckpointer with v2v's safe file reading; records the keys that did not fit."""
    from detectron2.checkpoint import DetectionCheckpointer

    class SafeCheckpointer(DetectionCheckpointer):  # type: ignore[misc]
        incompatible: Any = None

        def _load_file(self, filename: str) -> dict[str, Any]:
            if filename.endswith(".pkl"):
                return load_pkl_weights(filename)
            return _load_torch_weights(filename)

        def _load_model(self, checkpoint: Any) -> Any:
            self.incompatible = super()._load_model(checkpoint)
            return self.incompatible

    return SafeCheckpointer(model)


def _names(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


# -- config and predictor ------------------------------------------------------------------------------------------

def load_config(model: str, what: str, default: str, extend: Callable[[Any], None] | None = None
                ) -> tuple[Any, str | None]:
    """detectron2 ``CfgNode`` for ``model`` (a .yaml path, else a model-zoo name) and the zoo's checkpoint URL (None
    for a file). ``extend`` adds a project's keys (e.g. ``add_densepose_config``) before the merge."""
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    cfg = get_cfg()
    if extend is not None:
        extend(cfg)
    if model.endswith(".py"):
        raise ConfigError(f"{what} --model '{model}': detectron2 LazyConfig (.py) models are not supported; use a "
                          f".yaml config")
    path = Path(model).expanduser()
    zoo_url: str | None = None
    if path.is_file():
        config_file = str(path)
    else:
        try:
            config_file = model_zoo.get_config_file(model)
            zoo_url = model_zoo.get_checkpoint_url(model)
        except RuntimeError as exc:
            raise ConfigError(f"{what} --model '{model}' is neither a config file nor a detectron2 model-zoo name "
                              f"({exc}); e.g. {default}") from exc
    try:
        with quiet():
            cfg.merge_from_file(config_file)
    except (KeyError, ValueError, AssertionError, OSError) as exc:
        # e.g. a detectron2 project's config whose keys need that project's add_*_config()
        raise ConfigError(f"{what} --model '{model}' is not a config detectron2 can read: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    return cfg, zoo_url


def resolve_weights(cfg: Any, weights: str, zoo_url: str | None, what: str, model: str) -> str:
    """The weights to load: ``--weights``, else the zoo checkpoint (downloaded only with V2V_ALLOW_DOWNLOAD=1), else
    the config's MODEL.WEIGHTS."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"{what} --weights '{weights}': no such file")
        return str(path)
    if zoo_url is not None:
        if not downloads_allowed():
            raise WeightsError(f"detectron2 weights for '{model}' are not given: download {zoo_url} and pass "
                               f"--weights PATH, or set V2V_ALLOW_DOWNLOAD=1 to let detectron2 fetch them")
        log.info("detectron2 fetches %s (cached under ~/.torch/iopath_cache)", zoo_url)
        return zoo_url
    if not cfg.MODEL.WEIGHTS:
        raise WeightsError(f"config '{model}' names no weights (MODEL.WEIGHTS); pass --weights PATH")
    if str(cfg.MODEL.WEIGHTS).startswith(("http://", "https://", "detectron2://")) and not downloads_allowed():
        raise WeightsError(f"config '{model}' names weights at {cfg.MODEL.WEIGHTS}: download them and pass "
                           f"--weights PATH, or set V2V_ALLOW_DOWNLOAD=1")
    return str(cfg.MODEL.WEIGHTS)


def build_predictor(cfg: Any, weights: str, *, what: str, model: str, device: str, min_size: int = 0) -> Any:
    """detectron2's ``DefaultPredictor`` for ``cfg`` (BGR in, outputs at the input size) with ``weights`` loaded
    safely. ``min_size`` > 0 replaces INPUT.MIN_SIZE_TEST, the shorter side frames are resized to before the model
    (the cost grows with its square)."""
    from detectron2.engine import DefaultPredictor

    if min_size < 0:
        raise ConfigError(f"{what} option min-size must be >= 0 (0: the config's {cfg.INPUT.MIN_SIZE_TEST}), got "
                          f"{min_size}")
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = device
    cfg.MODEL.WEIGHTS = ""  # loaded below, safely
    if min_size:
        cfg.INPUT.MIN_SIZE_TEST = int(min_size)
        cfg.INPUT.MAX_SIZE_TEST = max(int(cfg.INPUT.MAX_SIZE_TEST), int(min_size))
    cfg.freeze()
    try:
        with quiet():
            predictor = DefaultPredictor(cfg)
    except (RuntimeError, OSError, KeyError, ValueError, TypeError, AssertionError) as exc:
        raise PluginError(f"detectron2 could not build '{model}': {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    checkpointer = _checkpointer(predictor.model)
    try:
        with quiet():
            checkpointer.load(weights)
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - a download or file failure inside detectron2/fvcore/iopath
        raise WeightsError(f"weights '{weights}' cannot be loaded into '{model}': {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    bad = checkpointer.incompatible
    if bad is not None:
        missing = list(getattr(bad, "missing_keys", []))
        shapes = [k for k, *_ in getattr(bad, "incorrect_shapes", [])]
        if missing or shapes:
            parts = []
            if missing:
                parts.append(f"{len(missing)} model parameters are not in it ({_names(missing)})")
            if shapes:
                parts.append(f"{len(shapes)} have other shapes ({_names(shapes)})")
            raise WeightsError(f"weights '{weights}' do not fit --model '{model}': {'; '.join(parts)}; they would "
                               f"stay random. Pass the weights trained with this config, or the config they were "
                               f"trained with")
        unexpected = list(getattr(bad, "unexpected_keys", []))
        if unexpected:
            log.debug("weights '%s' hold %d entries '%s' does not use: %s", weights, len(unexpected), model,
                      _names(unexpected))
    return predictor


def run_predictor(predictor: Any, frame_rgb: Any) -> Any:
    """``predictor`` on one RGB frame (DefaultPredictor takes BGR and converts to the model's INPUT.FORMAT)."""
    with quiet():
        return predictor(np.ascontiguousarray(frame_rgb[..., ::-1]))
