"""Registry of weight files users bring: lookup, cache, sha256 verification, optional download.

Lookup order for a name: an explicit path (``--weights NAME=PATH``), the v2v cache dir
(``$V2V_HOME/weights``, default ``~/.cache/v2v/weights``), torch hub's checkpoint cache, then a download when
allowed (``allow_download=True`` or ``V2V_ALLOW_DOWNLOAD=1``). Every file is sha256-checked (full hash, or the
8-hex prefix torchvision puts in its file names). Otherwise a :class:`WeightsError` says which file, where to get
it and where to put it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from v2vcli.errors import WeightsError, did_you_mean

__all__ = ["WeightsEntry", "BUILTIN_WEIGHTS", "v2v_home", "cache_dir", "torch_hub_dir", "sha256_file",
           "verify_file", "resolve_weights", "parse_weights_overrides", "weights_entries"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsEntry:
    """A weights file v2v knows by name."""

    name: str
    filename: str
    sha256: str | None = None  # full hex digest, when known
    sha256_prefix: str | None = None  # torchvision-style short prefix, when that is all that is published
    url: str | None = None
    used_by: str = ""
    source: str = ""  # where the file comes from, in words

    def check(self, digest: str) -> bool:
        if self.sha256:
            return digest == self.sha256.lower()
        if self.sha256_prefix:
            return digest.startswith(self.sha256_prefix.lower())
        return True


_TV = "https://download.pytorch.org/models/"
BUILTIN_WEIGHTS: tuple[WeightsEntry, ...] = (
    WeightsEntry("inception_fid", "pt_inception-2015-12-05-6726825d.pth",
                 sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
                 url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                     "pt_inception-2015-12-05-6726825d.pth",
                 used_by="fid", source="pytorch-fid release 'fid_weights' (TF FID Inception ported to PyTorch)"),
    WeightsEntry("vgg19", "vgg19-dcbb9e9d.pth", sha256_prefix="dcbb9e9d", url=_TV + "vgg19-dcbb9e9d.pth",
                 used_by="perceptual loss", source="torchvision VGG19_Weights.IMAGENET1K_V1"),
    WeightsEntry("vgg16", "vgg16-397923af.pth", sha256_prefix="397923af", url=_TV + "vgg16-397923af.pth",
                 used_by="lpips backbone", source="torchvision VGG16_Weights.IMAGENET1K_V1"),
    WeightsEntry("raft_large", "raft_large_C_T_SKHT_V2-ff5fadd5.pth", sha256_prefix="ff5fadd5",
                 url=_TV + "raft_large_C_T_SKHT_V2-ff5fadd5.pth", used_by="flow",
                 source="torchvision Raft_Large_Weights.C_T_SKHT_V2"),
    WeightsEntry("raft_small", "raft_small_C_T_V2-01064c6d.pth", sha256_prefix="01064c6d",
                 url=_TV + "raft_small_C_T_V2-01064c6d.pth", used_by="flow",
                 source="torchvision Raft_Small_Weights.C_T_V2"),
)


def v2v_home() -> Path:
    return Path(os.environ.get("V2V_HOME") or Path.home() / ".cache" / "v2v")


def cache_dir() -> Path:
    return v2v_home() / "weights"


def torch_hub_dir() -> Path:
    """torch hub's checkpoint folder, computed as torch does but without importing torch."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"), "torch")
    return Path(torch_home) / "hub" / "checkpoints"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_entries() -> dict[str, WeightsEntry]:
    from v2vcli.registry import get_registry

    return {name: reg.obj for name, reg in get_registry().weights().items()}


def _entry(name: str) -> WeightsEntry:
    entries = weights_entries()
    if name not in entries:
        raise WeightsError(f"unknown weights '{name}'{did_you_mean(name, entries)}; `v2v weights list` shows all")
    return entries[name]


def verify_file(entry: WeightsEntry, path: Path) -> str:
    """Check ``path`` against ``entry``'s hash; return the digest or raise :class:`WeightsError`."""
    if not path.is_file():
        raise WeightsError(f"weights file for '{entry.name}' not found at '{path}'")
    digest = sha256_file(path)
    if not entry.check(digest):
        expected = entry.sha256 or f"{entry.sha256_prefix}..."
        raise WeightsError(f"weights file '{path}' for '{entry.name}' has sha256 {digest[:16]}..., expected "
                           f"{expected[:16]}...; the file is truncated or a different file: download "
                           f"{entry.filename} again" + (f" from {entry.url}" if entry.url else ""))
    return digest


def _candidates(entry: WeightsEntry) -> list[Path]:
    return [cache_dir() / entry.filename, torch_hub_dir() / entry.filename]


def _download(entry: WeightsEntry) -> Path:
    if not entry.url:
        raise WeightsError(f"weights '{entry.name}' have no download address; place {entry.filename} in "
                           f"{cache_dir()}")
    dest = cache_dir() / entry.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from %s", entry.filename, entry.url)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".download-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=60) as resp:  # noqa: S310
            shutil.copyfileobj(resp, out)
        verify_file(entry, Path(tmp))
        os.replace(tmp, dest)
    except OSError as exc:
        raise WeightsError(f"could not download '{entry.name}' from {entry.url}: {exc}; download it by hand and "
                           f"place {entry.filename} in {cache_dir()}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def resolve_weights(name: str, explicit: str | Path | None = None, *, allow_download: bool | None = None,
                    verify: bool = True) -> Path:
    """Return a verified local path for weights ``name`` (lookup order in the module docstring)."""
    entry = _entry(name)
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError(f"--weights {name}={explicit}: no such file")
        if verify:
            verify_file(entry, path)
        return path
    for path in _candidates(entry):
        if path.is_file():
            if verify:
                verify_file(entry, path)
            return path
    if allow_download is None:
        allow_download = os.environ.get("V2V_ALLOW_DOWNLOAD", "") not in ("", "0", "false")
    if allow_download:
        return _download(entry)
    where = f" from {entry.url}" if entry.url else ""
    raise WeightsError(f"weights '{name}' ({entry.filename}) not found; download it{where} and put it in "
                       f"{cache_dir()} (or pass --weights {name}=PATH, or set V2V_ALLOW_DOWNLOAD=1)")


def parse_weights_overrides(items: list[str] | None) -> dict[str, str]:
    """``["inception_fid=/x.pth"]`` → ``{"inception_fid": "/x.pth"}``."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise WeightsError(f"--weights expects NAME=PATH, got '{item}'")
        out[name.strip()] = path.strip()
    return out
