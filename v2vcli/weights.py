"""Registry of weight files users bring: lookup, cache, sha256 verification, optional download.

Lookup order for a name: an explicit path (``--weights NAME=PATH``), the v2v cache dir
(``$V2V_HOME/weights``, default ``~/.cache/v2v/weights``), torch hub's checkpoint cache, a copy bundled in an
installed Python package (``WeightsEntry.bundled``: the LPIPS heads of the ``lpips`` package; used only when its
sha256 matches), then a download when allowed (``allow_download=True`` or ``V2V_ALLOW_DOWNLOAD=1``). Every file
is sha256-checked (full hash, or the 8-hex prefix torchvision puts in its file names). Otherwise a
:class:`WeightsError` says which file, where to get it and where to put it (``v2v weights download NAME``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from v2vcli.errors import WeightsError, did_you_mean
from v2vcli.io.files import publish_mode
from v2vcli.registry import get_registry

__all__ = ["WeightsEntry", "BUILTIN_WEIGHTS", "v2v_home", "cache_dir", "torch_hub_dir", "sha256_file",
           "verify_file", "resolve_weights", "parse_weights_overrides", "weights_entries", "bundled_path",
           "download_weights", "weights_status"]

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
    #: (importable package, path inside it) of a copy some installed package ships, e.g. ("lpips", "weights/v0.1/vgg.pth")
    bundled: tuple[str, str] | None = None

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


def bundled_path(entry: WeightsEntry) -> Path | None:
    """The copy of ``entry`` an installed package ships, when it exists and its sha256 matches (else None).

    The package is located without importing it; a copy with another hash (another release of the package) is
    not used."""
    if entry.bundled is None or not (entry.sha256 or entry.sha256_prefix):
        return None

    package, rel = entry.bundled
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / rel
        if path.is_file():
            if entry.check(sha256_file(path)):
                return path
            log.info("%s ships %s, but not the file v2v pins (sha256 differs); not using it", package, rel)
    return None


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover - the loop returns


def _copy_with_progress(resp: Any, out: Any, name: str, total: int | None, progress: bool) -> int:
    """Copy ``resp`` to ``out`` in 1 MiB blocks: a progress bar on a terminal, a log line every 10% otherwise."""
    done, step = 0, 0
    bar = task = None
    if progress and sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        bar = Progress(TextColumn(name), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                       console=Console(stderr=True), transient=True)
        bar.start()
        task = bar.add_task(name, total=total)
    try:
        while block := resp.read(1 << 20):
            out.write(block)
            done += len(block)
            if bar is not None and task is not None:
                bar.update(task, completed=done)
            elif progress and total and done * 10 // total > step:
                step = done * 10 // total
                log.info("%s: %s of %s (%d%%)", name, _human(done), _human(total), 100 * done // total)
    finally:
        if bar is not None:
            bar.stop()
    return done


def _download(entry: WeightsEntry, progress: bool = False) -> Path:
    if not entry.url:
        raise WeightsError(f"weights '{entry.name}' have no download address; place {entry.filename} in "
                           f"{cache_dir()}")
    dest = cache_dir() / entry.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from %s", entry.filename, entry.url)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".download-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=60) as resp:  # noqa: S310
            headers = getattr(resp, "headers", None)
            length = headers.get("Content-Length") if headers is not None else None
            total = int(length) if length and str(length).isdigit() else None
            got = _copy_with_progress(resp, out, entry.filename, total, progress)
        if total is not None and got != total:
            raise WeightsError(f"download of '{entry.name}' from {entry.url} stopped after {_human(got)} of "
                               f"{_human(total)}; run `v2v weights download {entry.name}` again")
        verify_file(entry, Path(tmp))
        publish_mode(tmp)
        os.replace(tmp, dest)
    except urllib.error.HTTPError as exc:
        raise WeightsError(f"could not download '{entry.name}': {entry.url} answered HTTP {exc.code} "
                           f"({exc.reason}); download it by hand and place {entry.filename} in {cache_dir()}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsError(f"cannot reach {urllib.parse.urlsplit(entry.url).netloc} to download '{entry.name}' "
                           f"({reason}): this machine seems offline; download {entry.url} elsewhere and place "
                           f"{entry.filename} in {cache_dir()} (or pass --weights {entry.name}=PATH)") from exc
    except OSError as exc:
        raise WeightsError(f"could not download '{entry.name}' from {entry.url}: {exc}; download it by hand and "
                           f"place {entry.filename} in {cache_dir()}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def download_weights(name: str, *, force: bool = False, progress: bool = True) -> tuple[Path, bool]:
    """``v2v weights download NAME``: (verified local path, whether it was downloaded now). A file already in the
    cache or torch hub (or bundled) that passes its sha256 check is kept unless ``force``."""
    entry = _entry(name)
    if not force:
        for path in _candidates(entry):
            if path.is_file():
                try:
                    verify_file(entry, path)
                    return path, False
                except WeightsError as exc:
                    log.warning("%s; downloading it again", exc)
        bundled = bundled_path(entry)
        if bundled is not None:
            return bundled, False
    return _download(entry, progress=progress), True


def weights_status(entry: WeightsEntry) -> tuple[str, Path | None]:
    """("verified" | "unverified" | "bad sha256" | "missing", the file found). "unverified": present, but no hash
    is pinned for it; "bad sha256": present and not the expected file."""
    path = next((p for p in _candidates(entry) if p.is_file()), None) or bundled_path(entry)
    if path is None:
        return "missing", None
    if not (entry.sha256 or entry.sha256_prefix):
        return "unverified", path
    return ("verified" if entry.check(sha256_file(path)) else "bad sha256"), path


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
    bundled = bundled_path(entry)  # sha256-checked even when verify is off: it must be the pinned file
    if bundled is not None:
        return bundled
    if allow_download is None:
        allow_download = os.environ.get("V2V_ALLOW_DOWNLOAD", "") not in ("", "0", "false")
    if allow_download:
        return _download(entry)
    where = f" from {entry.url}" if entry.url else ""
    raise WeightsError(f"weights '{name}' ({entry.filename}) not found; run `v2v weights download {name}` (or "
                       f"download it{where} and put it in {cache_dir()}, or pass --weights {name}=PATH)")


def parse_weights_overrides(items: list[str] | None) -> dict[str, str]:
    """``["inception_fid=/x.pth"]`` → ``{"inception_fid": "/x.pth"}``."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise WeightsError(f"--weights expects NAME=PATH, got '{item}'")
        out[name.strip()] = path.strip()
    return out
