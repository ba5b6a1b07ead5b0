"""Where synthesized videos go: output paths, and writers that never leave a partial result at the final path.

* mp4: :class:`v2vcli.io.video.VideoWriter` (H.264, yuv420p) writes ``.<stem>.*.tmp.mp4`` beside the output and
  renames it into place when the sequence is complete; the audio of a raw-video input is muxed in before.
* png: frames go to a hidden ``.<name>.tmp-*`` folder beside the output folder, renamed into place at the end (a
  previous output folder is swapped out and deleted only then).

After Ctrl-C or an error the temporary file is deleted. After ``kill -9`` nothing can run, so the temporary file
stays (the final path is untouched); the next ``synthesize`` writing the same output deletes such leftovers once
they have not been modified for :data:`STALE_SECONDS`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from v2vcli.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["FORMATS", "STALE_SECONDS", "FrameSink", "Mp4Sink", "PngSink", "open_sink", "output_paths",
           "preview_path", "remove_stale_temps"]

log = logging.getLogger(__name__)

FORMATS = ("mp4", "png")
STALE_SECONDS = 120.0
Format = Literal["mp4", "png"]


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
        from v2vcli.io.video import VideoWriter

        self.path = path
        self._writer = VideoWriter(path, fps, audio_from=audio_from, quality=quality)

    @property
    def frames(self) -> int:  # type: ignore[override]
        return self._writer.frames

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(frame)

    def close(self) -> None:
        self._writer.close()
        _publish_mode(self.path)

    def abort(self) -> None:
        self._writer.abort()


class PngSink(FrameSink):
    """A folder ``000000.png``, ... written under a temporary name and renamed into place by :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp: Path | None = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))

    def write(self, frame: np.ndarray) -> None:
        from v2vcli.data.layout import frame_name
        from v2vcli.io.files import encode_image

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
            if self.path.exists():
                trash = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.old-"))
                os.replace(self.path, trash / self.path.name)
                os.replace(tmp, self.path)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def abort(self) -> None:
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _publish_mode(path: Path) -> None:
    """Temporary files are private (0600/0700); a published output gets the usual umask-based mode."""
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
    except OSError:
        pass


def open_sink(path: Path, fmt: Format, fps: float, audio_from: Path | None = None, quality: int = 8) -> FrameSink:
    remove_stale_temps(path)
    if fmt == "mp4":
        return Mp4Sink(path, fps, audio_from, quality)
    return PngSink(path)


def remove_stale_temps(path: Path, older_than: float = STALE_SECONDS) -> list[Path]:
    """Delete temporary files/folders of ``path`` left by a killed run (untouched for ``older_than`` seconds)."""
    parent = path.parent
    if not parent.is_dir():
        return []
    patterns = [f".{path.stem}.*.tmp.mp4", f".{path.stem}.*.tmp.a.mp4", f".{path.name}.tmp-*", f".{path.name}.old-*"]
    now = time.time()
    removed = []
    for pattern in patterns:
        for p in parent.glob(pattern):
            try:
                if now - p.stat().st_mtime < older_than:
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


def output_paths(names: list[str], out: str | Path | None, fmt: Format) -> dict[str, Path]:
    """Output path of each sequence: ``out`` itself for one sequence, ``out/<name>[.mp4]`` for several.

    Default ``out``: ``synthesized/``. For one sequence, ``out`` naming an existing folder (or ending in a path
    separator) also means ``out/<name>[.mp4]``. mp4 files get the ``.mp4`` suffix if ``out`` has none.
    """
    suffix = ".mp4" if fmt == "mp4" else ""
    if out is None:
        root = Path("synthesized")
        return {n: root / f"{n}{suffix}" for n in names}
    raw = str(out)
    path = Path(out)
    if len(names) > 1 or raw.endswith(("/", os.sep)) or (path.is_dir() and fmt == "mp4"):
        if path.is_file():
            raise ConfigError(f"-o '{path}' is a file, but the input has {len(names)} sequences: pass a folder")
        return {n: path / f"{n}{suffix}" for n in names}
    if fmt == "mp4" and path.suffix.lower() != ".mp4":
        if path.suffix:
            raise ConfigError(f"-o '{path}': mp4 output needs a .mp4 file name (or use --format png for a folder)")
        path = path.with_suffix(".mp4")
    return {names[0]: path}


def preview_path(path: Path, fmt: Format) -> Path:
    """The side-by-side preview beside an output: ``x.mp4`` → ``x_preview.mp4``, ``x/`` → ``x_preview/``."""
    if fmt == "mp4":
        return path.with_name(f"{path.stem}_preview{path.suffix}")
    return path.with_name(f"{path.name}_preview")
