"""The generic extraction runner every extractor plugin uses (``v2v extract KIND INPUT...``).

For each input sequence the runner decodes the video once (or reads the dataset's stored frames), writes
``frames/<seq>/`` (JPEG q95 by default), feeds every frame to the extractor in order (per-sequence state is reset
by ``start_sequence``), writes what ``process`` returns under ``DATASET/<output>/<seq>/`` (see
:mod:`v2vcli.extractor`) and records the sequence in meta/frames.json and meta/<kind>.json.

* The extractor always sees the frame as stored (a JPEG is decoded from the bytes just written), so a run that
  reuses stored frames, a resumed run and an uninterrupted run compute from identical pixels.
* Within a sequence three threads form a pipeline (:mod:`.pipeline`): decode + write frames/ + read back, the
  extractor (in frame order, in the calling thread), and the writer of its outputs. Results do not depend on it.
* Resume: a sequence is finished once its entry is in meta/<kind>.json, written after all its files. Finished
  sequences are skipped; an unfinished one is deleted and recomputed from frame 0 (trackers carry state).
* ``workers=N``: N spawned processes take sequences from a queue, each with its own extractor instance; results
  are identical to one worker (meta files list sequences sorted, per-frame files do not depend on scheduling).
  A worker dies with the process that started it (Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; elsewhere it
  polls its parent), so a killed ``v2v extract`` leaves no worker finishing the job behind a rerun.
* Signals: SIGTERM is handled like SIGINT (Ctrl-C): the unfinished sequence's files are removed, workers are
  stopped, and the command ends with one ``Error: interrupted`` line. Finished sequences are kept.
* A sequence already in the dataset whose recorded source (a video or frame folder) differs from this run's is an
  error naming ``--overwrite``, which replaces its frames and every kind's outputs.
* torchrun: with ``RANK``/``WORLD_SIZE`` set, rank r takes input sequences i with i % WORLD_SIZE == r (launch with
  ``torchrun --nnodes N --nproc-per-node P --no-python v2v extract ...``, or set the variables yourself). Meta
  files are updated under an exclusive ``flock`` on meta/.lock, so ranks and workers never lose each other's
  entries (the dataset must be on a file system with working flock, e.g. local disk or NFSv4).

Modules: :mod:`.inputs` (INPUT arguments → sequences), :mod:`.options` (an extractor's ``Config`` from options),
:mod:`.sequence` (one sequence: frames, extractor, outputs, meta), :mod:`.pipeline` (the three threads within a
sequence), :mod:`.workers` (the process pool, signals), :mod:`.runner` (:func:`run_extraction`: checks, resume,
reports).
"""

from __future__ import annotations

from v2vcli.distributed import dist_env, shard
from v2vcli.extract.inputs import InputSource, resolve_inputs
from v2vcli.extract.options import build_config, config_fields
from v2vcli.extract.runner import FRAME_FORMATS, ExtractionReport, run_extraction
from v2vcli.extract.sequence import SequenceReport

__all__ = [
    "InputSource",
    "SequenceReport",
    "ExtractionReport",
    "FRAME_FORMATS",
    "resolve_inputs",
    "build_config",
    "config_fields",
    "dist_env",
    "shard",
    "run_extraction",
]
