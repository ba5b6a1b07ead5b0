"""Video and per-frame file I/O: streaming readers/writers (:mod:`.video`), atomic dataset files (:mod:`.files`),
preview colours (:mod:`.preview`)."""

__all__ = ["files", "preview", "video"]
