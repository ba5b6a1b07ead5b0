"""Streaming video I/O: readers of videos and frame folders, an atomic H.264 writer, PNG/JPEG sequences.

Reading goes through :func:`open_video`, which asks the plugins' ``v2v_open_video`` hook for a reader (the
built-in plugin handles ffmpeg formats and folders of frames), then applies constant-fps resampling, trimming and
resizing. Readers stream: memory stays flat for videos of any length.

* :class:`FFmpegReader` runs the ffmpeg binary of imageio-ffmpeg as a subprocess and reads raw RGB frames from its
  stdout. Resampling (the ``fps`` filter, which also turns variable-frame-rate input into constant fps), rotation
  (display matrix or ``rotate`` tag, applied explicitly so the output size is known before the first frame),
  trimming and resizing all happen inside ffmpeg.
* :class:`FrameFolderReader` reads a sorted folder of JPEG/PNG files; a folder has no timing of its own, so its fps
  is the dataset's (for ``DATASET/frames/<seq>``), the one given, or 30.
* :class:`VideoReader` is the base a plugin's reader subclasses: implement :meth:`VideoReader._source_frames` and
  the base class does resampling, trimming and resizing in Python.

:class:`VideoWriter` writes H.264 mp4 (yuv420p) to a temporary file renamed on success, so an interrupted or failed
write never leaves a partial video; odd frame sizes are padded by one replicated row/column (yuv420p needs even
sizes); the audio of a source video can be carried over.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from v2vcli.data.layout import frame_name
from v2vcli.errors import ConfigError, DatasetError, VideoError
from v2vcli.io.files import publish_mode, read_image, read_json, write_image
from v2vcli.registry import get_registry

__all__ = [
    "VIDEO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "DEFAULT_FOLDER_FPS",
    "VideoInfo",
    "VideoReader",
    "FFmpegReader",
    "FrameFolderReader",
    "VideoWriter",
    "open_video",
    "probe_video",
    "ffmpeg_exe",
    "image_files",
    "write_frames_folder",
    "write_video",
    "parse_size",
]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv",
                            ".flv", ".gif"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
DEFAULT_FOLDER_FPS = 30.0
_EPS = 1e-9
# ffmpeg prints rates rounded to two decimals; these are the NTSC rates it rounds.
_NTSC = {"23.98": Fraction(24000, 1001), "29.97": Fraction(30000, 1001), "47.95": Fraction(48000, 1001),
         "59.94": Fraction(60000, 1001), "119.88": Fraction(120000, 1001)}


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped with imageio-ffmpeg (or ``IMAGEIO_FFMPEG_EXE``)."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def parse_size(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"512x256"`` → (512, 256). One side may be -1 to keep the aspect ratio."""
    if text is None or isinstance(text, tuple):
        return text
    m = re.fullmatch(r"\s*(-?\d+)\s*[xX×]\s*(-?\d+)\s*", str(text))
    if not m:
        raise ConfigError(f"size '{text}' is not W×H (e.g. 512x256; -1 keeps the aspect ratio: 512x-1)")
    w, h = int(m.group(1)), int(m.group(2))
    if w == 0 or h == 0 or w < -1 or h < -1 or (w == -1 and h == -1):
        raise ConfigError(f"size '{text}' must be positive (one side may be -1 to keep the aspect ratio)")
    return w, h


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def image_files(folder: Path) -> list[Path]:
    """The image files of ``folder`` in natural order (frame2 before frame10); other files are an error."""
    files: list[Path] = []
    others: list[Path] = []
    for p in folder.iterdir():
        if p.name.startswith(".") or p.is_dir():
            continue
        (files if p.suffix.lower() in IMAGE_SUFFIXES else others).append(p)
    if others:
        raise VideoError(f"frame folder '{folder}' holds non-image files such as '{others[0].name}'; it should "
                         f"hold only {'/'.join(sorted(s[1:] for s in IMAGE_SUFFIXES))} frames")
    return sorted(files, key=lambda p: _natural_key(p.name))


def _resolve_size(resize: tuple[int, int] | None, src: tuple[int, int]) -> tuple[int, int]:
    if resize is None:
        return src
    w, h = resize
    if w == -1:
        w = max(1, round(src[0] * h / src[1]))
    elif h == -1:
        h = max(1, round(src[1] * w / src[0]))
    return int(w), int(h)


def _resampled_count(n: int, src_fps: float, fps: float, start: float, end: float | None) -> int:
    """Frames of an ``n``-frame source at ``src_fps`` sampled at ``fps`` over [start, end)."""
    stop = n / src_fps if end is None else min(end, n / src_fps)
    return max(0, math.ceil((stop - start) * fps - _EPS))


# --------------------------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------------------------
class VideoReader:
    """A stream of RGB uint8 (H, W, 3) frames at constant ``fps`` (a context manager; iterate once per pass).

    ``size`` is (W, H) of the frames produced (after rotation and resizing); ``count`` the exact number produced.
    A plugin reader subclasses this, calls ``super().__init__(path, fps, size, count)`` with the source's values
    (``count`` None when unknown) and implements :meth:`_source_frames`; :meth:`configure` then resamples, trims
    and resizes in Python.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], count: int | None = None) -> None:
        if not fps or fps <= 0:
            raise VideoError(f"cannot tell the frame rate of '{path}'; pass --fps")
        self.path = Path(path)
        self.source_fps = float(fps)
        self.source_size = (int(size[0]), int(size[1]))
        self.source_count = count
        self.fps = self.source_fps
        self.size = self.source_size
        self.start: float | None = None
        self.end: float | None = None
        self.resize: tuple[int, int] | None = None
        self.requested_fps: float | None = None
        self._count: int | None = count

    # -- options ------------------------------------------------------------------------------------------------
    def configure(self, *, fps: float | None = None, start: float | None = None, end: float | None = None,
                  resize: tuple[int, int] | None = None) -> VideoReader:
        """Resample to constant ``fps``, keep [start, end) seconds, resize to (W, H); returns ``self``."""
        if fps is not None and not fps > 0:
            raise ConfigError(f"--fps must be positive, got {fps}")
        if start is not None and start < 0:
            raise ConfigError(f"--start must be >= 0 seconds, got {start}")
        if end is not None and end <= (start or 0.0):
            raise ConfigError(f"--end ({end}) must be after --start ({start or 0.0})")
        self.fps = float(fps) if fps is not None else self.source_fps
        self.requested_fps = fps
        self.start, self.end, self.resize = start, end, resize
        self.size = _resolve_size(resize, self.source_size)
        self._count = None
        if self.source_count is not None:
            self._count = _resampled_count(self.source_count, self.source_fps, self.fps, start or 0.0, end)
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The frame options given to :meth:`configure`, as recorded in meta/frames.json."""
        return {"resize": list(self.resize) if self.resize else None, "fps": self.requested_fps,
                "start": self.start, "end": self.end}

    @property
    def count(self) -> int:
        """Exact number of frames produced (may need a decoding pass when the source does not store it)."""
        if self._count is None:
            self._count = self._count_frames()
        return self._count

    @property
    def estimated_count(self) -> int | None:
        """A cheap estimate for progress bars (exact when already known)."""
        return self._count

    def _count_frames(self) -> int:
        return sum(1 for _ in self)

    # -- iteration ----------------------------------------------------------------------------------------------
    def _source_frames(self, first: int) -> Iterator[np.ndarray]:
        """Source frames from index ``first`` on, in order, at ``source_fps`` and ``source_size``."""
        raise TypeError(f"{type(self).__name__} must implement _source_frames() or __iter__()")

    def __iter__(self) -> Iterator[np.ndarray]:
        start = self.start or 0.0
        end = math.inf if self.end is None else self.end
        src, fps = self.source_fps, self.fps
        first = int(math.floor(start * src + _EPS))
        k, produced = 0, 0
        for j, frame in enumerate(self._source_frames(first), start=first):
            shown_until = (j + 1) / src  # sample-and-hold: frame j is on screen over [j/src, (j+1)/src)
            while True:
                t = start + k / fps
                if t >= end - _EPS:
                    self._finish(produced)
                    return
                if t >= shown_until - _EPS:
                    break
                yield self._resize(frame)
                produced += 1
                k += 1
        self._finish(produced)

    def _finish(self, produced: int) -> None:
        if produced == 0:
            raise VideoError(f"'{self.path}' has no frames between --start and --end" if self.start or self.end
                             else f"'{self.path}' has no frames")
        self._count = produced

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        if self.size == (frame.shape[1], frame.shape[0]):
            return frame
        import cv2

        shrink = self.size[0] * self.size[1] < frame.shape[0] * frame.shape[1]
        return cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    # -- lifetime -----------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the source (a running decoder, open files)."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.path}', fps={self.fps:g}, size={self.size[0]}x{self.size[1]})"


class FrameFolderReader(VideoReader):
    """A folder of JPEG/PNG frames in natural order; every frame must have the size of the first."""

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        import cv2

        folder = Path(path)
        self.files = image_files(folder)
        if not self.files:
            raise VideoError(f"frame folder '{folder}' has no images")
        first = cv2.imread(str(self.files[0]), cv2.IMREAD_COLOR)
        if first is None:
            raise VideoError(f"'{self.files[0]}' is not a readable image (corrupt or truncated)")
        super().__init__(folder, fps or _dataset_fps(folder) or DEFAULT_FOLDER_FPS,
                         (first.shape[1], first.shape[0]), len(self.files))

    def _source_frames(self, first: int) -> Iterator[np.ndarray]:
        for f in self.files[first:]:
            try:
                img = read_image(f)
            except DatasetError as exc:
                raise VideoError(str(exc)) from exc
            if (img.shape[1], img.shape[0]) != self.source_size:
                raise VideoError(f"'{f}' is {img.shape[1]}x{img.shape[0]} but the first frame of '{self.path}' is "
                                 f"{self.source_size[0]}x{self.source_size[1]}; all frames must have one size")
            yield img


def _dataset_fps(folder: Path) -> float | None:
    """The fps recorded for ``DATASET/frames/<seq>`` in meta/frames.json, if ``folder`` is one."""
    meta = folder.parent.parent / "meta" / "frames.json"
    if folder.parent.name != "frames" or not meta.is_file():
        return None

    try:
        entry = read_json(meta).get("sequences", {}).get(folder.name)
        return float(entry["fps"]) if entry else None
    except (DatasetError, AttributeError, KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class VideoInfo:
    """What ``ffmpeg -i`` says about a video's first video stream."""

    path: Path
    fps: Fraction  # nominal rate (tbr, else the average); the rate used when no --fps is given
    source_size: tuple[int, int]  # (W, H) as stored
    rotation: int  # clockwise degrees applied for display: 0, 90, 180 or 270
    duration: float | None  # seconds (container), None when unknown
    codec: str
    has_audio: bool

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) after rotation."""
        w, h = self.source_size
        return (h, w) if self.rotation in (90, 270) else (w, h)


class _StderrTail:
    """Drain a subprocess's stderr in a thread (so it never blocks on a full pipe), keeping the last lines."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: deque[str] = deque(maxlen=30)
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").strip()
            if line:
                self.lines.append(line)

    def text(self, timeout: float = 2.0) -> str:
        self._thread.join(timeout)
        return "\n".join(self.lines)

    def last(self, timeout: float = 2.0) -> str:
        lines = [ln for ln in self.text(timeout).splitlines() if ln.strip()]
        # ffmpeg's last line is often a generic "Conversion failed!"; the one before says why.
        useful = [ln for ln in lines if not ln.startswith(("Conversion failed", "Error opening output"))]
        return re.sub(r"^\[[^\]]*\]\s*", "", (useful or lines or ["unknown ffmpeg error"])[-1])


def _parse_rate(text: str) -> Fraction | None:
    m = re.fullmatch(r"([0-9.]+)(k?)", text)
    if not m:
        return None
    if not m.group(2) and m.group(1) in _NTSC:
        return _NTSC[m.group(1)]
    value = Fraction(m.group(1)) * (1000 if m.group(2) else 1)
    return value.limit_denominator(1001) if value > 0 else None


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's header with ``ffmpeg -i``; missing, empty, corrupt or video-less files are a VideoError."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"video '{path}' does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise VideoError(f"video '{path}' is empty (0 bytes)")
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True,
                          check=False)
    text = proc.stderr.decode("utf-8", "replace")
    video = re.search(r"Stream #\d+:\d+.*?: Video: (.*)", text)
    if "Error opening input" in text or video is None:
        reason = next((ln.strip() for ln in text.splitlines() if "Invalid data" in ln or "moov atom" in ln
                       or "No such file" in ln or "Permission denied" in ln), "")
        reason = re.sub(r"^\[[^\]]*\]\s*", "", reason) or "no video stream found"
        raise VideoError(f"cannot read video '{path}': {reason} (the file is corrupt, truncated or not a video)")
    line = video.group(1)
    size = re.search(r"(?<![0-9])(\d{1,5})x(\d{1,5})(?![0-9])", line)
    if size is None:
        raise VideoError(f"cannot read video '{path}': ffmpeg reports no frame size")
    tbr = re.search(r"([0-9.]+k?) tbr", line)
    avg = re.search(r"([0-9.]+k?) fps", line)
    fps = _parse_rate(tbr.group(1)) if tbr else None
    if fps is None or fps > 240:
        fps = _parse_rate(avg.group(1)) if avg else fps
    rotation = 0
    matrix = re.search(r"(?:displaymatrix|Display Matrix):\s*rotation of\s*(-?[0-9.]+)", text, re.IGNORECASE)
    if matrix:  # counter-clockwise degrees; ffmpeg's autorotate turns the picture back clockwise by this much
        rotation = round(-float(matrix.group(1)) / 90) * 90 % 360
    else:
        tag = re.search(r"^\s*rotate\s*:\s*(-?\d+)", text, re.MULTILINE)
        rotation = round(int(tag.group(1)) / 90) * 90 % 360 if tag else 0
    dur = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", text)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else None
    return VideoInfo(path=path, fps=fps or Fraction(0), source_size=(int(size.group(1)), int(size.group(2))),
                     rotation=rotation, duration=duration, codec=line.split()[0].rstrip(","),
                     has_audio=re.search(r"Stream #\d+:\d+.*?: Audio:", text) is not None)


class FFmpegReader(VideoReader):
    """A video file decoded by an ffmpeg subprocess; resampling, rotation, trimming and resizing run in ffmpeg."""

    def __init__(self, path: str | Path, info: VideoInfo | None = None) -> None:
        self.info = info or probe_video(path)
        super().__init__(path, float(self.info.fps), self.info.size, None)
        self._fps_exact: Fraction = self.info.fps
        self._proc: subprocess.Popen[bytes] | None = None

    def configure(self, *, fps: float | None = None, start: float | None = None, end: float | None = None,
                  resize: tuple[int, int] | None = None) -> VideoReader:
        super().configure(fps=fps, start=start, end=end, resize=resize)
        self._fps_exact = Fraction(fps).limit_denominator(1001) if fps is not None else self.info.fps
        return self

    @property
    def estimated_count(self) -> int | None:
        if self._count is not None:
            return self._count
        if self.info.duration is None:
            return None
        stop = self.info.duration if self.end is None else min(self.end, self.info.duration)
        return max(0, round((stop - (self.start or 0.0)) * self.fps))

    def _command(self, output: list[str]) -> list[str]:
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-noautorotate"]
        if self.start:
            cmd += ["-ss", f"{self.start:.6f}"]
        cmd += ["-i", str(self.path)]
        if self.end is not None:
            cmd += ["-t", f"{self.end - (self.start or 0.0):.6f}"]
        filters = [f"fps={self._fps_exact.numerator}/{self._fps_exact.denominator}"]
        filters += {90: ["transpose=clock"], 180: ["hflip", "vflip"], 270: ["transpose=cclock"]}.get(
            self.info.rotation, [])
        if self.size != self.info.size:
            filters.append(f"scale={self.size[0]}:{self.size[1]}:flags=area")
        # passthrough: the fps filter already made the stream constant-rate; the muxer must not drop or duplicate
        return cmd + ["-map", "0:v:0", "-an", "-sn", "-dn", "-vf", ",".join(filters), "-fps_mode", "passthrough",
                      *output]

    def _count_frames(self) -> int:
        proc = subprocess.run(self._command(["-f", "null", "-progress", "pipe:1", "-nostats", "-"]),
                              capture_output=True, check=False)
        frames = re.findall(rb"^frame=(\d+)", proc.stdout, re.MULTILINE)
        if proc.returncode != 0 or not frames:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise VideoError(f"cannot decode '{self.path}': {err[-1] if err else 'ffmpeg failed'}")
        count = int(frames[-1])
        self._check_complete(count)
        if count == 0:
            self._finish(0)
        return count

    def _check_complete(self, produced: int, decode_errors: bool = False) -> None:
        """A file cut short after its header (moov first) decodes without an error but with far fewer frames.

        With decoding errors reported, two missing frames already mean a truncated file; without, a 10% + 1 s slack
        leaves room for containers whose stated duration is a little off."""
        if self.info.duration is None or self.info.duration <= 0:
            return
        stop = self.info.duration if self.end is None else min(self.end, self.info.duration)
        expected = (stop - (self.start or 0.0)) * self.fps
        short = produced < expected - 2 if decode_errors else produced < 0.9 * expected - self.fps
        if expected > 0 and short:
            raise VideoError(f"video '{self.path}' is truncated: decoded {produced / self.fps:.2f} s of its "
                             f"{self.info.duration:.2f} s (re-copy the file, or pass --end to read only the "
                             f"complete part)")

    def __iter__(self) -> Iterator[np.ndarray]:
        self.close()
        w, h = self.size
        frame_bytes = w * h * 3
        proc = subprocess.Popen(self._command(["-pix_fmt", "rgb24", "-f", "rawvideo", "-"]), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self._proc = proc
        assert proc.stdout is not None and proc.stderr is not None  # noqa: S101 - Popen with PIPE guarantees it
        tail = _StderrTail(proc.stderr)
        produced = 0
        try:
            while True:
                buf = bytearray(frame_bytes)
                view, got = memoryview(buf), 0
                while got < frame_bytes:
                    n = proc.stdout.readinto(view[got:])  # type: ignore[attr-defined]  # bufsize=0: a raw FileIO
                    if not n:
                        break
                    got += n
                if got == 0:
                    break
                if got < frame_bytes:
                    raise VideoError(f"'{self.path}' ended inside a frame ({tail.last()})")
                yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
                produced += 1
            if proc.wait() != 0:
                raise VideoError(f"cannot decode '{self.path}': {tail.last()}")
            self._check_complete(produced, decode_errors=bool(tail.text()))
            if tail.text():
                log.warning("ffmpeg reported problems decoding '%s' (the frames may show artefacts): %s", self.path,
                            tail.last())
            self._finish(produced)
        finally:
            self.close()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        proc.wait()


def open_video(path: str | Path, *, fps: float | None = None, start: float | None = None, end: float | None = None,
               resize: tuple[int, int] | None = None) -> VideoReader:
    """Open a video file or frame folder through the ``v2v_open_video`` hook and apply the frame options.

    ``fps`` resamples to a constant rate (for a frame folder without known timing it is the folder's rate),
    ``start``/``end`` keep [start, end) seconds, ``resize`` is (W, H) with -1 keeping the aspect ratio.
    """
    path = Path(path)
    reader = get_registry().open_video(str(path))
    if reader is None:
        if not path.exists():
            raise VideoError(f"video '{path}' does not exist")
        supported = ", ".join(sorted(s[1:] for s in VIDEO_SUFFIXES))
        raise VideoError(f"'{path}' is not a supported video ({supported}) or frame folder; a plugin implementing "
                         f"v2v_open_video can add formats")
    if not isinstance(reader, VideoReader):
        raise VideoError(f"the v2v_open_video plugin for '{path}' returned a {type(reader).__name__}, not a "
                         f"VideoReader")
    if isinstance(reader, FrameFolderReader) and fps is not None and _dataset_fps(path) is None:
        # a plain folder has no timing: --fps names its rate rather than resampling it
        reader.source_fps = reader.fps = float(fps)
    return reader.configure(fps=fps, start=start, end=end, resize=resize)


# --------------------------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------------------------
class VideoWriter:
    """Atomic H.264 mp4 (yuv420p) writer: frames go to a hidden temp file renamed onto ``path`` by :meth:`close`.

    ``quality`` is 1..10 (10 best; CRF = 51·(1 - quality/10)). ``audio_from`` copies the first audio stream of
    that file (from ``audio_start`` seconds, cut to the video's length). Inside ``with``, an exception removes the
    temp file and leaves no output.
    """

    def __init__(self, path: str | Path, fps: float, *, audio_from: str | Path | None = None, quality: int = 8,
                 audio_start: float = 0.0) -> None:
        if not fps or fps <= 0:
            raise ConfigError(f"video fps must be positive, got {fps}")
        if not 1 <= quality <= 10:
            raise ConfigError(f"video quality must be 1..10, got {quality}")
        self.path = Path(path)
        self.fps = float(fps)
        self.quality = quality
        self.audio_from = Path(audio_from) if audio_from is not None else None
        self.audio_start = audio_start
        if self.audio_from is not None and not self.audio_from.is_file():
            raise VideoError(f"audio source '{self.audio_from}' does not exist")
        self.frames = 0
        self.size: tuple[int, int] | None = None  # (W, H) of the frames given
        self._proc: subprocess.Popen[bytes] | None = None
        self._tail: _StderrTail | None = None
        self._tmp: Path | None = None
        self._pad = (0, 0)

    def _start(self, w: int, h: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}.", suffix=".tmp.mp4")
        os.close(fd)
        self._tmp = Path(tmp)
        self._pad = (w % 2, h % 2)
        ow, oh = w + self._pad[0], h + self._pad[1]
        if any(self._pad):
            log.debug("padding %dx%d frames to %dx%d for yuv420p", w, h, ow, oh)
        rate = Fraction(self.fps).limit_denominator(1001)
        crf = int((1 - self.quality / 10.0) * 51)
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{ow}x{oh}", "-r", f"{rate.numerator}/{rate.denominator}", "-i", "-", "-an", "-c:v", "libx264",
               "-pix_fmt", "yuv420p", "-crf", str(crf), "-movflags", "+faststart", str(self._tmp)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self._proc.stderr is not None  # noqa: S101 - Popen with PIPE guarantees it
        self._tail = _StderrTail(self._proc.stderr)

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 (H, W, 3) frame; every frame must have the size of the first."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"VideoWriter.write expects uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        h, w = frame.shape[:2]
        if self.size is None:
            self.size = (w, h)
            self._start(w, h)
        elif self.size != (w, h):
            raise VideoError(f"frame {self.frames} of '{self.path}' is {w}x{h}, the first was "
                             f"{self.size[0]}x{self.size[1]}; a video has one size")
        if any(self._pad):
            frame = np.pad(frame, ((0, self._pad[1]), (0, self._pad[0]), (0, 0)), mode="edge")
        assert self._proc is not None and self._proc.stdin is not None  # noqa: S101 - set by _start
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except (BrokenPipeError, OSError) as exc:
            msg = self._tail.last() if self._tail else str(exc)
            self.abort()
            raise VideoError(f"ffmpeg failed writing '{self.path}': {msg}") from exc
        self.frames += 1

    def close(self) -> None:
        """Finish the file and rename it onto ``path``; no frames written is an error."""
        if self._proc is None:
            if self._tmp is None:
                raise VideoError(f"no frames were written to '{self.path}'")
            return
        proc, self._proc = self._proc, None
        assert proc.stdin is not None and self._tmp is not None  # noqa: S101 - set by _start
        try:
            proc.stdin.close()
            rc = proc.wait()
            if rc != 0:
                raise VideoError(f"ffmpeg failed writing '{self.path}': "
                                 f"{self._tail.last() if self._tail else rc}")
            if self.audio_from is not None:
                self._mux_audio()
            publish_mode(self._tmp)  # mkstemp's 0600 → the umask-based mode of a normal file
            os.replace(self._tmp, self.path)
        finally:
            if self._tmp.exists():
                self._tmp.unlink()

    def _mux_audio(self) -> None:
        assert self._tmp is not None  # noqa: S101 - called from close
        muxed = self._tmp.with_name(self._tmp.stem + ".a.mp4")
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", str(self._tmp)]
        if self.audio_start:
            cmd += ["-ss", f"{self.audio_start:.6f}"]
        cmd += ["-i", str(self.audio_from), "-map", "0:v:0", "-map", "1:a:0?", "-c:v", "copy", "-c:a", "aac",
                "-t", f"{self.frames / self.fps:.6f}", "-movflags", "+faststart", str(muxed)]
        proc = subprocess.run(cmd, capture_output=True, check=False)
        try:
            if proc.returncode != 0:
                err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
                raise VideoError(f"cannot copy the audio of '{self.audio_from}': {err[-1] if err else 'ffmpeg'}")
            os.replace(muxed, self._tmp)
        finally:
            if muxed.exists():
                muxed.unlink()

    def abort(self) -> None:
        """Stop ffmpeg and delete the temporary file; nothing is written to ``path``."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if self._tmp is not None and self._tmp.exists():
            self._tmp.unlink()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, **kwargs: Any) -> int:
    """Write RGB frames as an H.264 mp4 (see :class:`VideoWriter` for ``kwargs``); returns the frame count."""
    with VideoWriter(path, fps, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.frames


def write_frames_folder(frames: Iterable[np.ndarray], folder: str | Path, *, ext: str = "jpg", quality: int = 95,
                        start_index: int = 0) -> int:
    """Write RGB frames as ``folder/000000.<ext>``, ... (JPEG quality ``quality`` or PNG), each atomically."""
    ext = "." + ext.lower().lstrip(".")
    if ext not in (".jpg", ".jpeg", ".png"):
        raise ConfigError(f"frame format '{ext[1:]}' is not supported (jpg, png)")
    folder = Path(folder)
    n = 0
    for n, frame in enumerate(frames, start=1):
        write_image(folder / frame_name(start_index + n - 1, ext), frame, quality=quality)
    return n
