"""Per-frame files of the dataset layout: RGB images, uint8 labels, uint16 instances, flow npz, JSON.

Every write is atomic (temp file in the same folder, then ``os.replace``) so an interrupted run never leaves a
half-written file that a resume would take as finished. ``tempfile`` makes its files 0600 and folders 0700; every
published file and folder is given the mode a plain ``open``/``mkdir`` would have had (0666/0777 less the umask:
0644/0755 under the usual umask 022) by :func:`publish_mode` before it is renamed into place.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from v2vcli.errors import DatasetError

__all__ = [
    "swap_rb",
    "current_umask",
    "publish_mode",
    "make_temp_dir",
    "atomic_path",
    "atomic_open",
    "write_bytes_atomic",
    "write_json",
    "read_json",
    "write_image",
    "read_image",
    "write_label",
    "read_label",
    "write_instance",
    "read_instance",
    "write_flow",
    "read_flow",
    "write_float_maps",
    "read_float_maps",
    "encode_image",
    "decode_image",
]


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the system says it (Linux ``/proc``); elsewhere set and
    restored under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def publish_mode(path: str | Path, recursive: bool = False) -> None:
    """Give ``path`` (and with ``recursive`` everything under a folder) the umask-based mode of a normally created
    file (0666 & ~umask) or folder (0777 & ~umask), replacing ``tempfile``'s private 0600/0700."""
    umask = current_umask()
    root = Path(path)
    items = [root]
    if recursive and root.is_dir():
        items += list(root.rglob("*"))
    for item in items:
        try:
            if item.is_symlink():
                continue
            os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~umask)
        except OSError:  # not ours to change (e.g. another user's file): leave it
            continue


def make_temp_dir(parent: str | Path, prefix: str) -> Path:
    """``tempfile.mkdtemp`` in ``parent`` with the mode of a normal folder (so it can be published by a rename)."""
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    publish_mode(tmp)
    return tmp


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or ".tmp" + path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        publish_mode(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f
        f.flush()


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_json(path: str | Path, data: Any) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(f"missing file '{path}'") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"'{path}' is not valid JSON ({exc}); delete it and re-run the step that wrote it") from exc


def _encode(img: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, img, params or [])
    if not ok:  # pragma: no cover - cv2 only fails on impossible arrays
        raise DatasetError(f"could not encode image as {ext}")
    return bytes(buf.tobytes())


def _decode(path: str | Path, flags: int) -> np.ndarray:
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        raise DatasetError(f"missing file '{path}'")
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise DatasetError(f"'{path}' is not a readable image (corrupt or truncated); re-extract it")
    return img


def swap_rb(img: np.ndarray) -> np.ndarray:
    """RGB ↔ BGR of a uint8 (H, W, 3) image as a new contiguous array (cv2.cvtColor: ~80× faster than a numpy
    reversed-stride copy at 1280×720, which dominated frame I/O)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2RGB)


def encode_image(rgb: np.ndarray, ext: str = ".jpg", quality: int = 95) -> bytes:
    """The bytes of RGB uint8 (H, W, 3) encoded as ``ext`` (".jpg"/".jpeg" with ``quality``, or ".png")."""
    import cv2

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"encode_image expects uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    ext = ext.lower() if ext.startswith(".") else "." + ext.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext in (".jpg", ".jpeg") else []
    return _encode(swap_rb(rgb), ext, params)


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """RGB uint8 (H, W, 3) from encoded image bytes (what a reader of the written file gets)."""
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise DatasetError(f"'{name}' is not a readable image (corrupt or truncated)")
    return swap_rb(img)


def write_image(path: str | Path, rgb: np.ndarray, quality: int = 95) -> None:
    """RGB uint8 (H, W, 3) as JPEG (quality ``quality``) or PNG, chosen by the suffix."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"write_image expects uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    write_bytes_atomic(path, encode_image(rgb, Path(path).suffix, quality))


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 (H, W, 3)."""
    import cv2

    img = _decode(path, cv2.IMREAD_COLOR)
    return swap_rb(img)


def write_label(path: str | Path, labels: np.ndarray) -> None:
    """uint8 (H, W) label ids (or an 8-bit single-channel map such as edges) as PNG."""
    if labels.dtype != np.uint8 or labels.ndim != 2:
        raise ValueError(f"write_label expects uint8 (H, W), got {labels.dtype} {labels.shape}")
    write_bytes_atomic(path, _encode(labels, ".png"))


def read_label(path: str | Path) -> np.ndarray:
    import cv2

    img = _decode(path, cv2.IMREAD_UNCHANGED)
    if img.ndim != 2 or img.dtype != np.uint8:
        raise DatasetError(f"'{path}' should be a single-channel 8-bit PNG, got {img.dtype} {img.shape}")
    return img


def write_instance(path: str | Path, inst: np.ndarray) -> None:
    """uint16 (H, W) instance ids as 16-bit PNG."""
    if inst.dtype != np.uint16 or inst.ndim != 2:
        raise ValueError(f"write_instance expects uint16 (H, W), got {inst.dtype} {inst.shape}")
    write_bytes_atomic(path, _encode(inst, ".png"))


def read_instance(path: str | Path) -> np.ndarray:
    import cv2

    img = _decode(path, cv2.IMREAD_UNCHANGED)
    if img.ndim != 2:
        raise DatasetError(f"'{path}' should be a single-channel PNG, got shape {img.shape}")
    return img.astype(np.uint16, copy=False)


def write_flow(path: str | Path, flow: np.ndarray, conf: np.ndarray) -> None:
    """Backward flow t→t-1 in pixels (H, W, 2) stored float16 + confidence uint8 (H, W), uncompressed npz."""
    if flow.ndim != 3 or flow.shape[2] != 2 or conf.shape != flow.shape[:2]:
        raise ValueError(f"write_flow expects flow (H, W, 2) and conf (H, W), got {flow.shape} {conf.shape}")
    buf = io.BytesIO()
    np.savez(buf, flow=flow.astype(np.float16), conf=conf.astype(np.uint8))
    write_bytes_atomic(path, buf.getvalue())


def read_flow(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (flow float32 (H, W, 2), conf uint8 (H, W))."""
    try:
        with np.load(str(path), allow_pickle=False) as data:
            return data["flow"].astype(np.float32), data["conf"]
    except FileNotFoundError as exc:
        raise DatasetError(f"missing file '{path}'") from exc
    except (ValueError, KeyError, OSError, EOFError) as exc:
        raise DatasetError(f"'{path}' is not a v2v flow file (npz with flow and conf): {exc}") from exc


def write_float_maps(path: str | Path, data: np.ndarray) -> None:
    """Multi-channel float maps (H, W, C) stored float16 in an uncompressed npz under the key ``data``.

    ``np.savez`` stamps every member with the same fixed date, so equal arrays give equal bytes (resume and
    multi-worker runs are compared byte for byte).
    """
    if data.ndim != 3:
        raise ValueError(f"write_float_maps expects (H, W, C), got {data.shape}")
    buf = io.BytesIO()
    np.savez(buf, data=data.astype(np.float16))
    write_bytes_atomic(path, buf.getvalue())


def read_float_maps(path: str | Path) -> np.ndarray:
    """Return the (H, W, C) float32 maps written by :func:`write_float_maps`."""
    try:
        with np.load(str(path), allow_pickle=False) as data:
            return data["data"].astype(np.float32)
    except FileNotFoundError as exc:
        raise DatasetError(f"missing file '{path}'") from exc
    except (ValueError, KeyError, OSError, EOFError) as exc:
        raise DatasetError(f"'{path}' is not a v2v float-map file (npz with data): {exc}") from exc
