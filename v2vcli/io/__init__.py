"""Video and per-frame file I/O: streaming readers/writers (:mod:`.video`), atomic dataset files (:mod:`.files`),
preview colours (:mod:`.preview`), what an input PATH holds (:mod:`.inputs`)."""

__all__ = ["files", "inputs", "preview", "video"]
