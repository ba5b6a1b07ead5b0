"""Where synthesized videos go: output paths, and writers that never leave a partial result at the final path.

* mp4: :class:`v2vcli.io.video.VideoWriter` (H.264, yuv420p) writes ``.<stem>.*.tmp.mp4`` beside the output and
  renames it into place when the sequence is complete; the audio of a raw-video input is muxed in before.
* png: frames go to a hidden ``.<name>.tmp-*`` folder beside the output folder, renamed into place at the end (a
  previous output folder is swapped out and deleted only then). The folder holds a :data:`MARKER` file: an
  existing folder without it was not written by v2v and is never replaced unless ``--overwrite`` is given.

After Ctrl-C or an error the temporary file is deleted. After ``kill -9`` nothing can run, so the temporary file
stays (the final path is untouched). A writer holds an exclusive ``flock`` on its temporary file or folder for as
long as it writes, so the next ``synthesize`` writing the same output deletes every leftover whose writer is gone
(no lock held) at once; leftovers it cannot lock-test are deleted once untouched for :data:`STALE_SECONDS`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from v2vcli.data.layout import frame_name
from v2vcli.errors import CheckpointError, ConfigError
from v2vcli.io.files import encode_image, publish_mode
from v2vcli.io.video import VideoWriter

if TYPE_CHECKING:
    import numpy as np

__all__ = ["FORMATS", "MARKER", "OTHER_VIDEO_SUFFIXES", "STALE_SECONDS", "FrameSink", "Mp4Sink", "PngSink", "check_finite", "non_finite_error",
           "check_replaceable", "open_sink", "output_paths", "preview_path", "remove_stale_temps"]

log = logging.getLogger(__name__)

FORMATS = ("mp4", "png")
STALE_SECONDS = 120.0
MARKER = ".v2v-synthesize"  # in every PNG folder synthesize writes: the proof that it may replace the folder
Format = Literal["mp4", "png"]


def _hold_lock(path: Path) -> int | None:
    """Open ``path`` (a file or folder) and hold an exclusive ``flock`` on it: the fd marks a live writer (closed,
    or the process killed, the lock is gone). None where locks are not available."""
    try:
        import fcntl

        fd = os.open(path, os.O_RDONLY)
    except (ImportError, OSError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _release(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _writer_alive(path: Path) -> bool | None:
    """Whether a live writer holds ``path``'s lock (None: cannot tell, e.g. no flock on this system)."""
    try:
        import fcntl

        fd = os.open(path, os.O_RDONLY)
    except ImportError:
        return None
    except OSError:
        return True  # gone already, or unreadable: leave it alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)
    return False


def check_finite(frames: Any, what: str) -> None:
    """Refuse a generated batch (a tensor) holding NaN or Inf: written out, it would be a silent black video."""
    if not bool(torch.isfinite(frames).all()):
        raise non_finite_error(what)


def non_finite_error(what: str) -> CheckpointError:
    """The error for generated frames holding NaN or Inf."""
    return CheckpointError(f"the model produced non-finite values (NaN or Inf) for {what}; its weights are broken "
                           f"(e.g. a diverged training run): use an earlier checkpoint or retrain")


def check_replaceable(path: Path, fmt: Format, overwrite: bool = False) -> None:
    """Refuse an output that would replace something v2v did not write (unless ``overwrite``)."""
    if fmt == "png":
        if path.is_file():
            raise ConfigError(f"-o '{path}' is a file; --format png writes a folder of frames: pass a folder path")
        if path.is_dir() and not (path / MARKER).is_file() and not overwrite:
            raise ConfigError(f"'{path}' is an existing folder that v2v did not write; it would be replaced by the "
                              f"frames: pass another -o, or --overwrite to replace it and everything in it")
    elif path.is_dir():
        raise ConfigError(f"-o '{path}' is a folder; pass a .mp4 file name, or end -o with '/' to write into it")


class FrameSink(ABC):
    """Writes one sequence's RGB uint8 (H, W, 3) frames; :meth:`close` publishes them, :meth:`abort` drops them."""

    path: Path
    frames: int = 0

    @abstractmethod
    def write(self, frame: np.ndarray) -> None:
        """Append one frame."""

    @abstractmethod
    def close(self) -> None:
        """Publish the output at :attr:`path` (atomically)."""

    @abstractmethod
    def abort(self) -> None:
        """Delete everything written; :attr:`path` is left as it was."""


class Mp4Sink(FrameSink):
    """H.264 mp4 through the atomic :class:`~v2vcli.io.video.VideoWriter`."""

    def __init__(self, path: Path, fps: float, audio_from: Path | None = None, quality: int = 8) -> None:
        self.path = path
        self._writer = VideoWriter(path, fps, audio_from=audio_from, quality=quality)
        self._lock: int | None = None

    @property
    def frames(self) -> int:  # type: ignore[override]
        return self._writer.frames

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(frame)
        if self._lock is None and self._writer._tmp is not None:  # the temp file exists from the first frame on
            self._lock = _hold_lock(self._writer._tmp)

    def close(self) -> None:
        try:
            self._writer.close()
        finally:
            _release(self._lock)
            self._lock = None
        _publish_mode(self.path)

    def abort(self) -> None:
        try:
            self._writer.abort()
        finally:
            _release(self._lock)
            self._lock = None


class PngSink(FrameSink):
    """A folder ``000000.png``, ... written under a temporary name and renamed into place by :meth:`close`."""

    def __init__(self, path: Path, overwrite: bool = False) -> None:
        self.path = path
        self.frames = 0
        self.overwrite = overwrite
        check_replaceable(path, "png", overwrite)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp: Path | None = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
        except FileExistsError as exc:
            raise ConfigError(f"cannot create the output folder '{path}': '{exc.filename}' is a file") from exc
        except PermissionError as exc:
            raise ConfigError(f"cannot write to '{path.parent}': permission denied; pass a writable -o") from exc
        self._lock = _hold_lock(self._tmp)
        (self._tmp / MARKER).write_bytes(b"")

    def write(self, frame: np.ndarray) -> None:
        if self._tmp is None:
            raise ValueError(f"PngSink for '{self.path}' is closed")
        # plain writes: the whole folder is published atomically, per-file renames would only cost time
        (self._tmp / frame_name(self.frames, ".png")).write_bytes(encode_image(frame, ".png"))
        self.frames += 1

    def close(self) -> None:
        tmp, self._tmp = self._tmp, None
        if tmp is None:
            return
        _publish_mode(tmp)
        try:
            check_replaceable(self.path, "png", self.overwrite)  # again: something may have appeared meanwhile
            if self.path.exists():
                trash = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.old-"))
                os.replace(self.path, trash / self.path.name)
                os.replace(tmp, self.path)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, self.path)
        finally:
            _release(self._lock)
            self._lock = None
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def abort(self) -> None:
        tmp, self._tmp = self._tmp, None
        _release(self._lock)
        self._lock = None
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _publish_mode(path: Path) -> None:
    """Temporary files are private (0600/0700); a published output gets the usual umask-based mode (its frames
    included)."""
    publish_mode(path, recursive=True)


def open_sink(path: Path, fmt: Format, fps: float, audio_from: Path | None = None, quality: int = 8,
              overwrite: bool = False) -> FrameSink:
    remove_stale_temps(path)
    if fmt == "mp4":
        check_replaceable(path, fmt, overwrite)
        return Mp4Sink(path, fps, audio_from, quality)
    return PngSink(path, overwrite)


def remove_stale_temps(path: Path, older_than: float = STALE_SECONDS) -> list[Path]:
    """Delete temporary files/folders of ``path`` left by a killed run: at once when no live writer holds their lock
    (see the module docstring), else once untouched for ``older_than`` seconds."""
    parent = path.parent
    if not parent.is_dir():
        return []
    patterns = [f".{path.stem}.*.tmp.mp4", f".{path.stem}.*.tmp.a.mp4", f".{path.name}.tmp-*", f".{path.name}.old-*"]
    now = time.time()
    removed = []
    for pattern in patterns:
        for p in parent.glob(pattern):
            try:
                if p.name.endswith(".tmp.a.mp4"):  # the audio mux of a .tmp.mp4: its writer holds that one's lock
                    main = p.with_name(p.name[: -len(".a.mp4")] + ".mp4")
                    alive = _writer_alive(main) if main.exists() else False
                elif ".old-" in p.name:  # a moment's swap of a finished output: only by age
                    alive = None
                else:
                    alive = _writer_alive(p)
                if alive or (alive is None and now - p.stat().st_mtime < older_than):
                    continue
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
            except OSError:
                continue
            removed.append(p)
            log.info("removed '%s', left by an interrupted run", p)
    return removed


#: suffixes of video files synthesize does not write: ``-o clip.avi`` is a mistake, not a folder name
OTHER_VIDEO_SUFFIXES = (".avi", ".mov", ".mkv", ".webm", ".gif", ".m4v", ".mpg", ".mpeg", ".wmv")


def output_paths(names: list[str], out: str | Path | None, fmt: Format, overwrite: bool = False) -> dict[str, Path]:
    """Output path of each sequence (the rules of ``-o``, docs/synthesize.md):

    * no ``-o``: ``synthesized/<name>.mp4`` (``synthesized/<name>/`` for PNG);
    * a folder, holding ``<name>.mp4`` (or ``<name>/``) per sequence, when the input has several sequences, when
      ``out`` ends with ``/``, or names an existing folder (mp4), or, for mp4, has no ``.mp4`` suffix;
    * a file when ``out`` ends with ``.mp4`` and the input is one sequence;
    * for PNG and one sequence, ``out`` without a trailing ``/`` is the frames folder itself.

    Every path is checked with :func:`check_replaceable` (before anything is generated).
    """
    paths = _output_paths(names, out, fmt)
    for path in paths.values():
        check_replaceable(path, fmt, overwrite)
    return paths


def _output_paths(names: list[str], out: str | Path | None, fmt: Format) -> dict[str, Path]:
    suffix = ".mp4" if fmt == "mp4" else ""
    if out is None:
        root = Path("synthesized")
        return {n: root / f"{n}{suffix}" for n in names}
    raw = str(out)
    path = Path(out)
    trailing = raw.endswith(("/", os.sep))
    is_mp4 = path.suffix.lower() == ".mp4" and not trailing
    if fmt == "mp4" and path.suffix.lower() in OTHER_VIDEO_SUFFIXES and not trailing:
        raise ConfigError(f"-o '{path}': synthesize writes .mp4 files (or --format png); pass a .mp4 file name or a "
                          f"folder")
    if len(names) > 1:
        if path.is_file() or is_mp4:
            raise ConfigError(f"-o '{path}' is a file name, but the input has {len(names)} sequences: pass a folder "
                              f"(each sequence becomes <folder>/<name>{suffix})")
        return {n: path / f"{n}{suffix}" for n in names}
    if fmt == "mp4":
        if is_mp4 and not path.is_dir():
            return {names[0]: path}
        if path.is_file():
            raise ConfigError(f"-o '{path}' is an existing file without the .mp4 suffix; pass a .mp4 file name or a "
                              f"folder")
        return {names[0]: path / f"{names[0]}{suffix}"}
    if trailing:
        return {names[0]: path / names[0]}
    if is_mp4:
        raise ConfigError(f"-o '{path}': --format png writes a folder of frames; pass a folder name (or --format mp4)")
    return {names[0]: path}


def preview_path(path: Path, fmt: Format) -> Path:
    """The side-by-side preview beside an output: ``x.mp4`` → ``x_preview.mp4``, ``x/`` → ``x_preview/``."""
    if fmt == "mp4":
        return path.with_name(f"{path.stem}_preview{path.suffix}")
    return path.with_name(f"{path.name}_preview")
