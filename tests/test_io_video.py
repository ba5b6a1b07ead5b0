"""Streaming video I/O: ffmpeg and frame-folder readers, resampling, rotation, errors, the atomic writer."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import moving_pattern, write_video

from v2vcli.errors import VideoError
from v2vcli.hookspecs import hookimpl
from v2vcli.io.files import write_json
from v2vcli.io.video import (
    FFmpegReader,
    FrameFolderReader,
    VideoReader,
    VideoWriter,
    ffmpeg_exe,
    open_video,
    parse_size,
    probe_video,
    write_frames_folder,
)


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args], check=True)


def make_testsrc(path: Path, seconds: float, size: str = "64x48", rate: int = 30, *extra: str) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}", "-t", str(seconds), *extra, "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(path))
    return path


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute error of the luma-like channel mean (H.264 4:2:0 smears the colour of fine texture)."""
    return float(np.abs(a.astype(np.float32).mean(2) - b.astype(np.float32).mean(2)).mean())


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_reader_properties_and_frames(tiny_video: Path) -> None:
    with open_video(tiny_video) as reader:
        assert isinstance(reader, FFmpegReader)
        assert reader.fps == 10.0 and reader.size == (64, 48) and reader.count == 8
        frames = list(reader)
    assert len(frames) == 8 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    for got, want in zip(frames, moving_pattern(), strict=True):
        assert _mae(got, want) < 8
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(tiny_video))
    next(gen)  # metadata
    reference = [np.frombuffer(buf, np.uint8).reshape(48, 64, 3) for buf in gen]
    assert all(np.array_equal(a, b) for a, b in zip(frames, reference, strict=True))  # same decode as imageio


def test_writer_round_trip_and_atomicity(tmp_path: Path) -> None:
    frames = moving_pattern(t=6)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 12.5) as w:
        for f in frames:
            w.write(f)
    info = probe_video(out)
    assert info.codec == "h264" and info.source_size == (64, 48) and float(info.fps) == 12.5
    back = list(open_video(out))
    assert len(back) == 6 and all(_mae(a, b) < 8 for a, b in zip(back, frames, strict=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no temp file left

    failed = tmp_path / "failed.mp4"
    with pytest.raises(RuntimeError), VideoWriter(failed, 10) as w:
        w.write(frames[0])
        raise RuntimeError("boom")
    assert not failed.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
    with pytest.raises(VideoError, match="no frames"), VideoWriter(tmp_path / "empty.mp4", 10):
        pass
    assert not (tmp_path / "empty.mp4").exists()
    with pytest.raises(VideoError, match="one size"), VideoWriter(tmp_path / "sizes.mp4", 10) as w:
        w.write(frames[0])
        w.write(frames[0][:40])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_writer_odd_size_is_padded(tmp_path: Path) -> None:
    frames = moving_pattern(t=4, h=47, w=63)
    with VideoWriter(tmp_path / "odd.mp4", 10) as w:
        for f in frames:
            w.write(f)
    reader = open_video(tmp_path / "odd.mp4")
    assert reader.size == (64, 48)  # yuv420p needs even sizes: one replicated row and column
    back = list(reader)
    assert _mae(back[2][:47, :63], frames[2]) < 8
    # reading an odd-size source works too (frame folders and odd resizes)
    small = list(open_video(tmp_path / "odd.mp4", resize=(31, 23)))
    assert small[0].shape == (23, 31, 3)


def test_writer_carries_audio(tmp_path: Path) -> None:
    src = tmp_path / "with_audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
           "-t", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(src))
    out = tmp_path / "dub.mp4"
    with VideoWriter(out, 10, audio_from=src) as w:
        for f in moving_pattern(t=15):
            w.write(f)
    info = probe_video(out)
    assert info.has_audio and info.duration is not None and abs(info.duration - 1.5) < 0.1
    assert not probe_video(tmp_path / "dub.mp4").rotation
    with pytest.raises(VideoError, match="does not exist"):
        VideoWriter(tmp_path / "x.mp4", 10, audio_from=tmp_path / "none.mp4")


def test_three_minute_video_streams_with_flat_memory(tmp_path: Path) -> None:
    video = make_testsrc(tmp_path / "long.mp4", 180)
    reader = open_video(video)
    assert reader.estimated_count == 5400
    n, baseline = 0, 0
    checksum = 0
    for frame in reader:
        n += 1
        checksum += int(frame[0, 0, 0])
        if n == 300:
            baseline = _rss_bytes()
    growth = _rss_bytes() - baseline
    assert n == 5400 == reader.count
    assert growth < 8 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB while streaming"


def test_vfr_input_is_normalised_to_constant_fps(tmp_path: Path) -> None:
    video = tmp_path / "vfr.mp4"
    # frames 0..9, then every 4th: timestamps keep their gaps (variable frame rate)
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "4", "-vf", r"select='lt(n\,10)+not(mod(n\,4))'",
           "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video))
    frames = list(open_video(video))
    assert len(frames) == 40  # 4 s at the nominal 10 fps, gaps filled by holding the last frame
    assert not np.array_equal(frames[8], frames[9])
    np.testing.assert_array_equal(frames[9], frames[10])
    np.testing.assert_array_equal(frames[9], frames[11])
    assert not np.array_equal(frames[11], frames[12])
    assert open_video(video, fps=5).count == len(list(open_video(video, fps=5))) == 20


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    plain = make_testsrc(tmp_path / "plain.mp4", 1, "64x48", 10)
    rotated = tmp_path / "rotated.mp4"
    try:  # ffmpeg >= 6 writes the display matrix with -display_rotation (the old `rotate` tag is ignored)
        ffmpeg("-display_rotation:v:0", "90", "-i", str(plain), "-c", "copy", str(rotated))
    except subprocess.CalledProcessError:
        pytest.skip("this ffmpeg cannot set rotation metadata (-display_rotation)")
    info = probe_video(rotated)
    assert info.rotation == 270 and info.size == (48, 64)
    upright = list(open_video(plain))
    turned = list(open_video(rotated))
    assert turned[0].shape == (64, 48, 3) and len(turned) == len(upright) == 10
    # 90° counter-clockwise for display, exactly what a player shows
    np.testing.assert_array_equal(turned[3], np.rot90(upright[3], k=1))
    assert open_video(rotated, resize=(24, -1)).size == (24, 32)


def test_trim_resample_resize(tmp_path: Path) -> None:
    video = make_testsrc(tmp_path / "t.mp4", 4, "64x48", 30)
    reader = open_video(video, fps=10, start=1.0, end=3.0, resize=(32, -1))
    assert reader.size == (32, 24) and reader.fps == 10.0
    frames = list(reader)
    assert len(frames) == 20 == reader.count and frames[0].shape == (24, 32, 3)
    full = list(open_video(video))
    ref = list(open_video(video, start=1.0, end=3.0))
    assert len(full) == 120 and len(ref) == 60
    np.testing.assert_array_equal(ref[0], full[30])  # accurate seek to the frame at 1.0 s
    with pytest.raises(Exception, match="after --start"):
        open_video(video, start=2, end=1)
    with pytest.raises(VideoError, match="no frames"):
        list(open_video(video, start=10, end=11))


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "truncated", "truncated_faststart", "unsupported"])
def test_broken_videos_raise_one_line_video_errors(tmp_path: Path, case: str) -> None:
    good = make_testsrc(tmp_path / "good.mp4", 5)
    path = tmp_path / f"{case}.mp4"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "corrupt":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif case == "truncated":  # moov atom at the end: cut before it
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "truncated_faststart":  # moov first: decodes without errors, but stops early
        fast = make_testsrc(tmp_path / "fast.mp4", 5, "64x48", 30, "-movflags", "+faststart")
        path.write_bytes(fast.read_bytes()[: int(fast.stat().st_size * 0.6)])
    elif case == "unsupported":
        path = tmp_path / "notes.txt"
        path.write_text("hello")
    with pytest.raises(VideoError) as err:
        with open_video(path) as reader:
            list(reader)
    message = str(err.value)
    assert "\n" not in message and str(path.name) in message


def test_frame_folder_reader(tmp_path: Path) -> None:
    frames = moving_pattern(t=5)
    folder = tmp_path / "seq"
    assert write_frames_folder(frames, folder, ext="png") == 5
    assert sorted(p.name for p in folder.iterdir())[0] == "000000.png"
    reader = open_video(folder)
    assert isinstance(reader, FrameFolderReader) and reader.fps == 30.0 and reader.count == 5
    np.testing.assert_array_equal(np.stack(list(reader)), frames)
    assert open_video(folder, fps=12).fps == 12.0 and open_video(folder, fps=12).count == 5  # names the rate

    natural = tmp_path / "natural"
    natural.mkdir()
    for i in (10, 2, 1):
        (natural / f"frame{i}.png").write_bytes((folder / f"{i % 5:06d}.png").read_bytes())
    got = list(open_video(natural))
    np.testing.assert_array_equal(got[1], frames[2])  # frame2 before frame10

    (natural / "notes.txt").write_text("x")
    with pytest.raises(VideoError, match="non-image"):
        open_video(natural)
    (natural / "notes.txt").unlink()
    write_frames_folder(moving_pattern(t=1, h=20, w=20), natural, ext="png", start_index=50)
    with pytest.raises(VideoError, match="one size"):
        list(open_video(natural))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(VideoError, match="no images"):
        open_video(tmp_path / "empty_dir")


def test_dataset_sequence_folder_takes_fps_from_meta_and_resamples(tmp_path: Path) -> None:
    folder = tmp_path / "ds" / "frames" / "clip"
    write_frames_folder(moving_pattern(t=8), folder, ext="jpg")
    write_json(tmp_path / "ds" / "meta" / "frames.json",
               {"format": "jpg", "sequences": {"clip": {"fps": 8.0, "size": [64, 48], "count": 8}}})
    reader = open_video(folder)
    assert reader.fps == 8.0 and reader.count == 8
    half = open_video(folder, fps=4)  # a known rate is resampled, like a video
    frames = list(half)
    assert half.count == len(frames) == 4
    np.testing.assert_array_equal(frames[1], list(open_video(folder))[2])
    trimmed = open_video(folder, start=0.5)
    assert trimmed.count == len(list(trimmed)) == 4


class _CountingReader(VideoReader):
    """A plugin's reader of ``.counting`` files: N gray frames, frame i has value i (10 fps)."""

    def __init__(self, path: str, n: int) -> None:
        super().__init__(path, 10.0, (8, 6), n)

    def _source_frames(self, first: int) -> Iterator[np.ndarray]:
        for i in range(first, self.source_count or 0):
            yield np.full((6, 8, 3), i, dtype=np.uint8)


class _CountingPlugin:
    @hookimpl
    def v2v_open_video(self, path: str) -> Any:
        return _CountingReader(path, int(Path(path).stem)) if path.endswith(".counting") else None


def test_plugin_reader_claims_a_format_and_gets_python_resampling(register_plugin: Any, tmp_path: Path) -> None:
    register_plugin(_CountingPlugin())
    reader = open_video(tmp_path / "20.counting")  # need not exist: the plugin decides
    assert isinstance(reader, _CountingReader) and reader.count == 20
    values = [int(f[0, 0, 0]) for f in open_video(tmp_path / "20.counting", fps=4, start=0.5, resize=(4, 3))]
    assert values == [5, 7, 10, 12, 15, 17]  # frame shown at 0.5, 0.75, 1.0, ... s
    assert open_video(tmp_path / "20.counting", fps=4, start=0.5).count == 6
    assert list(open_video(tmp_path / "20.counting", resize=(4, 3)))[0].shape == (3, 4, 3)
    # the built-in reader still handles everything else
    assert isinstance(open_video(write_video(tmp_path / "v.mp4", moving_pattern(t=2))), FFmpegReader)


def test_parse_size() -> None:
    assert parse_size("512x256") == (512, 256) and parse_size("64X-1") == (64, -1) and parse_size(None) is None
    for bad in ("512", "0x10", "-1x-1", "axb"):
        with pytest.raises(Exception, match="size"):
            parse_size(bad)
