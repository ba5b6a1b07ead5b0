"""Typed configuration: dataclass sections, YAML files merged in order, ``--set section.key=value`` overrides.

Precedence: dataclass defaults < YAML files (in order) < ``--set`` < explicit CLI flags. The top-level sections
are fixed: ``data``, ``model``, ``loss``, ``optim``, ``train`` plus ``run_dir`` and ``seed``. The ``model`` and
``loss`` sections belong to the model named by ``model.name``: its class declares ``Config`` and ``LossConfig``
dataclasses, so a third-party model brings its own keys. Unknown keys are errors naming the closest valid key.

Every number is checked on the way in, for every section (a plugin's too): a float must be finite (``.inf`` and
``.nan`` are errors) and an integer must lie within ±:data:`MAX_INT` (2^31 - 1; the seed: ±2^63 - 1), so a value no tensor size or
count can hold fails here with one line rather than deep inside torch.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from v2vcli.errors import ConfigError, did_you_mean
from v2vcli.registry import get_registry

log = logging.getLogger(__name__)

__all__ = [
    "DataConfig",
    "OptimConfig",
    "TrainConfig",
    "V2VConfig",
    "from_dict",
    "to_dict",
    "parse_set",
    "merge",
    "load_yaml",
    "load_config",
    "dump_config",
    "non_defaults",
]

T = TypeVar("T")

MAX_INT = 2**31 - 1  # the largest integer any config key accepts (in absolute value)
MAX_SEED = 2**63 - 1  # ... except the seed, which only has to fit torch's int64 seed



def _check_min(obj: Any, section: str, minimums: Mapping[str, float], strict: Sequence[str] = ()) -> None:
    """One-line errors for counts and rates out of range (``strict``: must be greater than the minimum)."""
    for key, lo in minimums.items():
        value = getattr(obj, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if value < lo or (key in strict and value <= lo):
            rel = "greater than" if key in strict else "at least"
            raise ConfigError(f"{section}.{key} must be {rel} {lo:g}, got {value:g}")


@dataclass(kw_only=True)
class DataConfig:
    """What the training loader reads from a dataset (layout in docs/architecture.md)."""

    root: str = ""  # dataset folder; `--data` sets it
    inputs: list[str] = field(default_factory=lambda: ["seg", "inst"])  # conditioning modalities
    size: tuple[int, int] = (256, 128)  # W×H the model sees
    split: str = "train"
    n_frames_total: int = 6  # frames generated per clip at the start; doubles every train.niter_step epochs
    max_t_step: int = 1  # random temporal stride 1..max_t_step
    batch_size: int = 1
    clips_per_sequence: int = 1  # clips drawn from each sequence per epoch (an epoch is sequences × this)
    # epoch length: "sequences" = sequences × clips_per_sequence; "frames" = one clip per frame of every sequence
    # (Σ frame counts, the official pose epoch; each clip from a sequence drawn in proportion to its length)
    epoch_items: Literal["sequences", "frames"] = "sequences"
    num_workers: int = 2
    flip: bool = True
    scale_range: tuple[float, float] = (1.0, 1.0)  # random zoom before the crop
    # crop of the zoomed frame: "random" = anywhere; "centred" = the official pose crop (x at the centre with
    # Gaussian jitter σ = a third of the zoom's horizontal slack, clipped to it; y in the top eighth)
    crop: Literal["random", "centred"] = "random"
    random_drop_prob: float = 0.0  # per frame, each DensePose part (I = 1..24) is blanked with this probability
    flow: str = "dataset"  # "dataset" (flow/ modality) or a flow estimator name computed on the fly
    foreground: list[str] = field(default_factory=list)  # foreground class names (e.g. ["car"])

    def __post_init__(self) -> None:
        _check_min(self, "data", {"n_frames_total": 1, "max_t_step": 1, "batch_size": 1,
                                  "clips_per_sequence": 1, "num_workers": 0})
        if len(self.size) != 2 or min(self.size) < 1:
            raise ConfigError(f"data.size must be [W, H] with positive sides, got {list(self.size)}")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ConfigError(f"data.scale_range must be [lo, hi] with 0 < lo <= hi, got {list(self.scale_range)}")
        if not 0.0 <= self.random_drop_prob <= 1.0:
            raise ConfigError(f"data.random_drop_prob must be 0..1, got {self.random_drop_prob:g}")
        if self.epoch_items not in ("sequences", "frames"):
            raise ConfigError(f"data.epoch_items must be sequences or frames, got '{self.epoch_items}'")
        if self.crop not in ("random", "centred"):
            raise ConfigError(f"data.crop must be random or centred, got '{self.crop}'")


@dataclass(kw_only=True)
class OptimConfig:
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    niter: int = 10  # epochs at the initial learning rate
    niter_decay: int = 10  # epochs of linear decay to zero, for every optimizer
    grad_clip: float = 0.0  # 0 disables
    ema_beta: float = 0.999

    def __post_init__(self) -> None:
        _check_min(self, "optim", {"lr": 0.0, "beta1": 0.0, "beta2": 0.0, "niter": 0, "niter_decay": 0,
                                   "grad_clip": 0.0, "ema_beta": 0.0}, strict=["lr"])
        for key in ("beta1", "beta2", "ema_beta"):
            if getattr(self, key) >= 1:
                raise ConfigError(f"optim.{key} must be below 1, got {getattr(self, key):g}")


@dataclass(kw_only=True)
class TrainConfig:
    max_steps: int = 0  # absolute global step to stop at; 0 = run the whole schedule
    niter_step: int = 5  # clip length doubles every niter_step epochs (0: never)
    # Frames generated per optimizer step (the official n_frames_load = max_frames_per_gpu × n_gpus_gen): a clip is
    # trained in chunks of this many frames, each one G step, one D step and one step per active temporal D.
    frames_per_step: int = 1
    checkpoint_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    sample_every: int = 0
    val_every: int = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    device: str = "auto"
    max_bad_steps: int = 5  # consecutive non-finite losses before training aborts
    tensorboard: bool = False

    def __post_init__(self) -> None:
        _check_min(self, "train", {"max_steps": 0, "niter_step": 0, "frames_per_step": 1, "checkpoint_every": 1,
                                   "keep_last": 0, "log_every": 1, "sample_every": 0, "val_every": 0,
                                   "max_bad_steps": 1})


@dataclass(kw_only=True)
class V2VConfig:
    """The whole resolved configuration. ``model`` and ``loss`` are the model plugin's dataclasses."""

    data: DataConfig = field(default_factory=DataConfig)
    model: Any = None
    loss: Any = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run_dir: str = "runs/v2v"
    seed: int = 0


SECTIONS = ("data", "model", "loss", "optim", "train")
TOP_SCALARS = ("run_dir", "seed")


# -- typed conversion ---------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_TEXT_BOOLS = {"1": True, "true": True, "yes": True, "on": True,
               "0": False, "false": False, "no": False, "off": False}  # booleans as text (``text=True``)


def _coerce(value: Any, tp: Any, where: str, *, text: bool = False) -> Any:
    """``value`` checked and converted to type ``tp``; ``where`` names it in errors. With ``text``, strings as typed
    on a command line are also accepted where a boolean (1/0, true/false, yes/no, on/off), an integer or a Literal
    of non-strings is expected (extractor options; config values arrive parsed by YAML)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, text=text)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is Literal:
        if value in args:
            return value
        if text and isinstance(value, str) and value in map(str, args):
            return next(a for a in args if str(a) == value)
        shown = ", ".join(map(str if text else repr, args))  # option strings bare; config values as YAML reads them
        raise ConfigError(f"{where} must be one of {shown}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, typing.cast(type, tp)):  # an annotation: a class, though is_dataclass admits instances
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping of keys, got {value!r}")
        return from_dict(tp, value, where)  # type: ignore[arg-type]
    if origin in (list, Sequence) or tp is list:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        item = args[0] if args else Any
        return [_coerce(v, item, f"{where}[{i}]", text=text) for i, v in enumerate(value)]
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list of {len(args)} values, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]", text=text) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where} must have {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]", text=text) for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{where}.{k}", text=text) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if text and isinstance(value, str) and value.strip().lower() in _TEXT_BOOLS:
            return _TEXT_BOOLS[value.strip().lower()]
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if tp is int:
        if text and isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                pass
        if isinstance(value, int) and not isinstance(value, bool):
            limit = MAX_SEED if where == "seed" else MAX_INT
            if abs(value) > limit:
                raise ConfigError(f"{where} must be between {-limit} and {limit}, got {value}")
            return value
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if tp is float:
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int beyond the float range
                number = math.inf
        elif isinstance(value, str):  # YAML 1.1 reads "5e-4" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where} must be a string, got {value!r}")
    if tp is Path:
        return Path(str(value))
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` with type checks; unknown keys are errors with a suggestion."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key '{path}'{did_you_mean(str(key), names)}")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """Plain YAML/JSON-able data (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


# -- raw dict handling ----------------------------------------------------------------------------------------------
def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's mapping; ``path`` may also name a shipped preset (``street_512``, see ``v2v presets``)."""
    from v2vcli.presets import resolve_config

    p = resolve_config(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"cannot parse config file '{p}'{at}: {problem}; fix the YAML syntax") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file '{p}' is not UTF-8 text") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{p}' must hold a mapping of sections (data, model, loss, optim, train), "
                          f"not a {type(data).__name__}")
    return data


def parse_set(expr: str) -> dict[str, Any]:
    """``"train.seed=3"`` → ``{"train": {"seed": 3}}``; the value is parsed as YAML (numbers, lists, booleans)."""
    if "=" not in expr:
        raise ConfigError(f"--set expects section.key=value, got '{expr}'")
    key, _, raw = expr.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects section.key=value, got '{expr}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value '{raw}'") from exc
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _model_classes(name: str) -> tuple[type, type]:
    model_cls = get_registry().get_model(name)
    cfg_cls = getattr(model_cls, "Config", None)
    loss_cls = getattr(model_cls, "LossConfig", None)
    if cfg_cls is None or loss_cls is None:
        raise ConfigError(f"model '{name}' does not declare Config and LossConfig dataclasses")
    return cfg_cls, loss_cls


# Keys of earlier versions' train section: model-specific ones now live in the model section (vid2vid and the
# predictors declare them; train.activation_checkpointing duplicated model.activation_checkpointing), and
# train.channels_last was never read (model.channels_last is the switch). Old configs and saved runs still load.
_TRAIN_TO_MODEL = ("niter_fix_global", "max_frames_backpropagate", "activation_checkpointing")
_TRAIN_REMOVED = ("channels_last",)


def _moved_train_keys(train_raw: dict[str, Any], model_raw: dict[str, Any], cfg_cls: type, name: str) -> None:
    """Move the old train keys into ``model_raw`` (a key the model section sets wins; activation checkpointing is
    on when either switch was), drop the removed ones, and say so in one warning line."""
    fields = {f.name for f in dataclasses.fields(cfg_cls)}  # type: ignore[arg-type]
    notes: list[str] = []
    for key in _TRAIN_TO_MODEL:
        if key not in train_raw:
            continue
        value = train_raw.pop(key)
        if key not in fields:
            notes.append(f"train.{key} is ignored (model '{name}' has no {key})")
        elif key not in model_raw or (key == "activation_checkpointing" and value is True):
            model_raw[key] = value
            notes.append(f"train.{key} is now model.{key}")
        elif model_raw[key] != value:
            notes.append(f"train.{key}={value!r} is ignored: model.{key}={model_raw[key]!r} is set")
        else:
            notes.append(f"train.{key} is now model.{key}")
    for key in _TRAIN_REMOVED:
        if key in train_raw:
            train_raw.pop(key)
            notes.append(f"train.{key} is no longer used (model.{key} is the switch)")
    if notes:
        log.warning("outdated config keys: %s", "; ".join(notes))


def build_config(raw: Mapping[str, Any]) -> V2VConfig:
    """Resolve a merged raw mapping into a typed :class:`V2VConfig`."""
    valid = list(SECTIONS) + list(TOP_SCALARS)
    for key in raw:
        if key not in valid:
            raise ConfigError(f"unknown config key '{key}'{did_you_mean(str(key), valid)}")
    for section in SECTIONS:
        if section in raw and raw[section] is not None and not isinstance(raw[section], Mapping):
            raise ConfigError(f"config section '{section}' must be a mapping, got {raw[section]!r}")
    model_raw = dict(raw.get("model") or {})
    name = model_raw.get("name", "vid2vid")
    if not isinstance(name, str):
        raise ConfigError(f"model.name must be a string, got {name!r}")
    cfg_cls, loss_cls = _model_classes(name)
    train_raw = dict(raw.get("train") or {})
    _moved_train_keys(train_raw, model_raw, cfg_cls, name)
    seed = raw.get("seed")
    if "seed" in train_raw:  # `--set train.seed=N` is what users type; the seed is one top-level key for all stages
        alias = train_raw.pop("seed")
        if seed is not None and seed != alias:
            raise ConfigError(f"seed is set twice with different values (seed={seed!r}, train.seed={alias!r}); "
                              f"keep one")
        seed = alias
    data_raw = dict(raw.get("data") or {})
    if "n_frames_start" in data_raw:  # runs written before the schedule followed the official code
        start = data_raw.pop("n_frames_start")
        if isinstance(start, int) and start > 0:
            data_raw["n_frames_total"] = start
        log.warning("data.n_frames_start is no longer used: data.n_frames_total is the starting clip length, "
                    "doubled every train.niter_step epochs (reading it as data.n_frames_total=%s)",
                    data_raw.get("n_frames_total", DataConfig.n_frames_total))
    cfg = V2VConfig(
        data=from_dict(DataConfig, data_raw, "data"),
        model=from_dict(cfg_cls, model_raw, "model"),
        loss=from_dict(loss_cls, raw.get("loss") or {}, "loss"),
        optim=from_dict(OptimConfig, raw.get("optim") or {}, "optim"),
        train=from_dict(TrainConfig, train_raw, "train"),
    )
    if "run_dir" in raw:
        cfg.run_dir = _coerce(raw["run_dir"], str, "run_dir")
    if seed is not None:
        cfg.seed = _coerce(seed, int, "seed")
    return cfg


def load_config(files: Sequence[str | Path] = (), sets: Sequence[str] = (),
                overrides: Mapping[str, Any] | None = None) -> V2VConfig:
    """Defaults < ``files`` (in order) < ``sets`` (``section.key=value``) < ``overrides`` (explicit flags)."""
    raw: dict[str, Any] = {}
    for path in files:
        raw = merge(raw, load_yaml(path))
    for expr in sets:
        raw = merge(raw, parse_set(expr))
    if overrides:
        raw = merge(raw, overrides)
    return build_config(raw)


def non_defaults(cfg: V2VConfig) -> set[str]:
    """Dotted keys whose value differs from the dataclass default (marked in dumps)."""
    out: set[str] = set()

    def walk(obj: Any, default: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value, base = getattr(obj, f.name), getattr(default, f.name)
            path = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value) and dataclasses.is_dataclass(base):
                walk(value, base, path + ".")
            elif to_dict(value) != to_dict(base):
                out.add(path)

    default = V2VConfig(model=type(cfg.model)(), loss=type(cfg.loss)())
    walk(cfg, default, "")
    return out


class _FlowListDumper(yaml.SafeDumper):
    """Block style for mappings, flow style for lists (``size: [256, 128]``) so each key is on its own line."""


_FlowListDumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))


def dump_config(cfg: V2VConfig, mark_non_defaults: bool = False) -> str:
    """YAML text of ``cfg``; with ``mark_non_defaults`` each changed key gets a ``# changed`` comment."""
    text = yaml.dump(to_dict(cfg), Dumper=_FlowListDumper, sort_keys=False, default_flow_style=False)
    if not mark_non_defaults:
        return text
    changed = non_defaults(cfg)
    lines: list[str] = []
    stack: list[str] = []
    for line in text.splitlines():
        stripped = line.lstrip()
        indent = (len(line) - len(stripped)) // 2
        key = stripped.split(":", 1)[0]
        stack = stack[:indent] + [key]
        lines.append(line + ("  # changed" if ".".join(stack) in changed else ""))
    return "\n".join(lines) + "\n"
