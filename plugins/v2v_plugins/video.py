"""Built-in ``v2v_open_video``: ffmpeg formats (mp4, avi, mov, mkv, webm, ...) and folders of JPEG/PNG frames.

It runs last (``trylast``), so a third-party plugin implementing the hook can claim any path first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from v2vcli.hookspecs import hookimpl

__all__ = ["v2v_open_video"]


@hookimpl(trylast=True)
def v2v_open_video(path: str) -> Any:
    from v2vcli.io.video import VIDEO_SUFFIXES, FFmpegReader, FrameFolderReader

    p = Path(path)
    if p.is_dir():
        return FrameFolderReader(p)
    if p.suffix.lower() in VIDEO_SUFFIXES and (p.is_file() or not p.exists()):
        if not p.exists():
            return None  # open_video reports the missing file
        return FFmpegReader(p)
    return None
