"""Checkpoints: network weights in safetensors with JSON metadata, training state in a tensors-only torch file.

A run directory holds ``checkpoints/step_<8 digits>/`` folders, each with

- ``weights.safetensors``: every network's parameters and buffers under ``<network>.`` prefixes (``G.``,
  ``G_ema.``, ``D.``, ``D_T0.`` ...). Its metadata (str → str) carries ``format``, ``model``, ``step``, ``config``
  (the resolved config as JSON), ``label_set`` (the dataset's label set as JSON), ``provenance`` (the extractors
  that made the dataset, from ``meta/*.json``) and ``networks``. Synthesis needs nothing else.
- ``training_state.pt``: optimizers, schedulers, EMA bookkeeping, RNG states, schedule and loader position. It is
  read with ``torch.load(weights_only=True)`` so a file that carries code is refused without running it.
- ``config.yaml``: the same resolved config, for people.

Saves are atomic: the folder is written under a temporary name and renamed into place, so a run killed mid-save
leaves the previous checkpoint intact. Only the last ``keep_last`` checkpoints are kept.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import pickletools
import re
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from v2vcli.errors import CheckpointError
from v2vcli.io.files import make_temp_dir, publish_mode

__all__ = [
    "CHECKPOINTS_DIR",
    "WEIGHTS_FILE",
    "STATE_FILE",
    "FORMAT",
    "CheckpointMeta",
    "checkpoint_dir_name",
    "list_checkpoints",
    "latest_checkpoint",
    "resolve_weights_file",
    "save_checkpoint",
    "load_weights",
    "read_meta",
    "load_training_state",
    "safe_torch_load",
    "prune_checkpoints",
    "split_networks",
    "dataset_provenance",
]

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
WEIGHTS_FILE = "weights.safetensors"
STATE_FILE = "training_state.pt"
FORMAT = "v2v-checkpoint/1"
_STEP_DIR = re.compile(r"^step_(\d+)$")


@dataclass
class CheckpointMeta:
    """What a weights file says about itself (all JSON-able)."""

    model: str = ""
    step: int = 0
    config: dict[str, Any] = field(default_factory=dict)  # v2vcli.config.to_dict of the resolved config
    label_set: dict[str, Any] | None = None  # LabelSet.to_dict()
    provenance: dict[str, Any] = field(default_factory=dict)
    networks: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # model-specific facts (e.g. number of spatial scales)

    def to_metadata(self) -> dict[str, str]:
        return {
            "format": FORMAT,
            "model": self.model,
            "step": str(int(self.step)),
            "config": json.dumps(self.config, sort_keys=False),
            "label_set": json.dumps(self.label_set),
            "provenance": json.dumps(self.provenance),
            "networks": json.dumps(self.networks),
            "extra": json.dumps(self.extra),
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str] | None, where: str) -> CheckpointMeta:
        meta = meta or {}
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"'{where}' is a safetensors file without v2v metadata (format "
                                  f"{meta.get('format')!r}, expected {FORMAT!r}); pass a checkpoint written by "
                                  f"`v2v train`")
        try:
            return cls(model=meta.get("model", ""), step=int(meta.get("step", "0")),
                       config=json.loads(meta.get("config", "{}")),
                       label_set=json.loads(meta.get("label_set", "null")),
                       provenance=json.loads(meta.get("provenance", "{}")),
                       networks=list(json.loads(meta.get("networks", "[]"))),
                       extra=json.loads(meta.get("extra", "{}")))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"'{where}' has corrupt v2v metadata ({exc}); use another checkpoint") from exc


def checkpoint_dir_name(step: int) -> str:
    return f"step_{int(step):08d}"


def _is_complete(path: Path) -> bool:
    return (path / WEIGHTS_FILE).is_file() and (path / STATE_FILE).is_file()


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first, as (step, folder)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = _STEP_DIR.match(child.name)
        if m and child.is_dir() and _is_complete(child):
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of ``run_dir``, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def resolve_weights_file(path: str | Path) -> Path:
    """A weights file from a run folder (its latest checkpoint), a checkpoint folder, or the file itself."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        if (p / WEIGHTS_FILE).is_file():
            return p / WEIGHTS_FILE
        latest = latest_checkpoint(p)
        if latest is not None:
            return latest / WEIGHTS_FILE
        raise CheckpointError(f"'{p}' holds no checkpoint (no {CHECKPOINTS_DIR}/step_*/{WEIGHTS_FILE}); pass a run "
                              f"folder written by `v2v train`, a checkpoint folder or a .safetensors file")
    raise CheckpointError(f"checkpoint '{p}' does not exist; pass a run folder, a checkpoint folder or a "
                          f".safetensors file")


# -- saving ---------------------------------------------------------------------------------------------------------
def _cpu_tensors(weights: dict[str, Any]) -> dict[str, Any]:
    """Detached, contiguous CPU copies; tensors that share storage (tied weights) are cloned apart."""
    out: dict[str, Any] = {}
    seen: set[tuple[int, int]] = set()
    for key, value in weights.items():
        t = value.detach().to("cpu").contiguous()
        ptr = (t.untyped_storage().data_ptr(), t.storage_offset())
        if ptr in seen:
            t = t.clone()
        seen.add(ptr)
        out[key] = t
    return out


def save_checkpoint(run_dir: str | Path, step: int, weights: dict[str, Any], meta: CheckpointMeta,
                    training_state: dict[str, Any], *, config_text: str = "", keep_last: int = 0) -> Path:
    """Write ``checkpoints/step_<step>/`` atomically and prune to the last ``keep_last`` (0 keeps all)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_dir_name(step)

    tmp = make_temp_dir(root, f".{final.name}.tmp-")
    try:
        meta.step = int(step)
        save_file(_cpu_tensors(weights), str(tmp / WEIGHTS_FILE), metadata=meta.to_metadata())
        with open(tmp / STATE_FILE, "wb") as f:
            torch.save(training_state, f)
            f.flush()
            os.fsync(f.fileno())
        if config_text:
            (tmp / "config.yaml").write_text(config_text, encoding="utf-8")
        publish_mode(tmp, recursive=True)
        if final.exists():  # the same step saved again (e.g. end of run right after a periodic save)
            trash = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}.old-"))
            os.replace(final, trash / final.name)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    prune_checkpoints(run_dir, keep_last)
    return final


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (and stale temporary folders); return what was deleted."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for child in root.iterdir():  # leftovers of a save that was killed
        if child.name.startswith(".step_") and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
    if keep_last > 0:
        for _, path in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


# -- loading --------------------------------------------------------------------------------------------------------
def _is_safetensors(path: Path) -> bool:
    """safetensors files start with an 8-byte little-endian header length, then a JSON object."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint '{path}': {exc}") from exc
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 32)


def safe_torch_load(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with one-line errors; a pickle that would run code is refused unrun."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint file '{p}' does not exist")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        names = _pickle_globals(p)
        if names:
            why = "it imports " + ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        else:
            text = str(exc)
            m = re.search(r"Unsupported (?:global|operand)[^\n.]*", text)
            why = m.group(0).strip() if m else text.splitlines()[0] if text else "not a tensors-only file"
        raise CheckpointError(f"refused to load '{p}': it is a pickle that would import or run code ({why}); v2v "
                              f"loads only tensors (safetensors, or torch files that load with "
                              f"weights_only=True)") from exc
    except Exception as exc:  # noqa: BLE001 - torch (and safetensors, for *.safetensors names) raise many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"'{p}' is not a readable checkpoint ({first}): it is corrupt, truncated or not a "
                              f"safetensors/torch file; use another checkpoint") from exc


_SAFE_GLOBAL_PREFIXES = ("torch.", "collections.OrderedDict", "builtins.", "_codecs.encode", "numpy.")


def _pickle_globals(path: Path) -> list[str]:
    """Names a pickle would import that torch's safe loader does not allow, read with pickletools (nothing runs).

    Only used to say *why* a file was refused; an unparsable file gives an empty list.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                if member is None:
                    return []
                data = zf.read(member)
        else:
            data = path.read_bytes()
        names: list[str] = []
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(io.BytesIO(data)):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING",
                           "BINSTRING", "STRING"):
                strings.append(str(arg))
            elif op.name == "GLOBAL":
                names.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
        unsafe = [n for n in dict.fromkeys(names) if not n.startswith(_SAFE_GLOBAL_PREFIXES)]
        return unsafe
    except Exception:  # noqa: BLE001 - diagnostics only
        return []


def read_meta(path: str | Path) -> CheckpointMeta:
    """The v2v metadata of a weights file (or of a run/checkpoint folder's latest weights)."""
    p = resolve_weights_file(path)
    if not _is_safetensors(p):
        raise CheckpointError(f"'{p}' is not a readable safetensors file (corrupt, or not a v2v checkpoint); "
                              f"pass a run folder or another checkpoint's {WEIGHTS_FILE}")
    try:
        with safe_open(str(p), framework="pt") as f:
            return CheckpointMeta.from_metadata(f.metadata(), str(p))
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"'{p}' is a corrupt safetensors file ({exc}); use another checkpoint") from exc


def load_weights(path: str | Path, *, networks: list[str] | None = None,
                 device: Any = "cpu") -> tuple[dict[str, Any], CheckpointMeta]:
    """Tensors and metadata of a checkpoint (run folder, checkpoint folder or file).

    ``networks`` restricts loading to those prefixes (e.g. ``["G_ema"]`` for synthesis). A torch file holding a
    plain ``{name: tensor}`` mapping is accepted too (read with weights_only=True, empty metadata); any pickle that
    carries code is refused without running it.
    """
    p = resolve_weights_file(path)
    if not _is_safetensors(p):
        data = safe_torch_load(p, map_location=device)
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise CheckpointError(f"'{p}' is not a v2v checkpoint: expected {WEIGHTS_FILE} or a torch file with a "
                                  f"name→tensor mapping")

        tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
        if networks is not None:
            tensors = {k: v for k, v in tensors.items() if k.split(".", 1)[0] in networks}
        return tensors, CheckpointMeta()
    meta = read_meta(p)
    out: dict[str, Any] = {}
    try:
        with safe_open(str(p), framework="pt", device=str(device)) as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                if networks is None or key.split(".", 1)[0] in networks:
                    out[key] = f.get_tensor(key)
    except Exception as exc:
        raise CheckpointError(f"cannot read tensors from '{p}' ({exc}); the file is corrupt, use another "
                              f"checkpoint") from exc
    if networks is not None:
        missing = [n for n in networks if not any(k.startswith(n + ".") for k in out)]
        if missing:
            raise CheckpointError(f"checkpoint '{p}' has no network(s) {', '.join(missing)} "
                                  f"(it holds {', '.join(meta.networks) or 'none'})")
    return out, meta


def load_training_state(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The training state of a checkpoint folder (or a ``training_state.pt`` path), tensors only."""
    p = Path(path)
    if p.is_dir():
        p = p / STATE_FILE
    state = safe_torch_load(p, map_location=map_location)
    if not isinstance(state, dict):
        raise CheckpointError(f"'{p}' is not a v2v training state (expected a mapping)")
    return state


def split_networks(weights: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"G.enc.w": t}`` → ``{"G": {"enc.w": t}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in weights.items():
        net, _, rest = key.partition(".")
        out.setdefault(net, {})[rest] = value
    return out


def dataset_provenance(root: str | Path) -> dict[str, Any]:
    """What made a dataset: each ``meta/<kind>.json`` (label sets left out, they are stored apart) and frame options."""
    meta_dir = Path(root) / "meta"
    out: dict[str, Any] = {}
    if not meta_dir.is_dir():
        return out
    for path in sorted(meta_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        if path.stem == "frames":
            seqs = data.get("sequences", {})
            options = sorted({json.dumps(s.get("options", {}), sort_keys=True) for s in seqs.values()
                              if isinstance(s, dict)})
            out["frames"] = {k: v for k, v in data.items() if k != "sequences"}
            out["frames"].update({"sequences": len(seqs), "options": [json.loads(o) for o in options]})
        else:
            out[path.stem] = {k: v for k, v in data.items() if k != "label_set"}
    return out
