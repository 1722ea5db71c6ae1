"""What ``worker_mode="auto"`` picks: worker threads or worker processes (:func:`auto_worker_mode`).

Measured on 2 cores (docs/benchmarks.md, "Workers with reused batch slots"; 64³ patches, batch 2,
2 workers against 0):

* the cohort is served from memory (its decoded bytes fit the reader's cache, or the
  ``PatchDataset`` volume buffer): a patch is a copy, and threads share the one cache —
  threads 1.06-1.11x, processes 0.75-0.79x (each process fills a cache of its own);
* the cohort is larger than the cache (out of core, the case this library is for): a patch is a
  decode — processes 1.9-3.2x, threads 0.86-0.95x (the GIL: Python per chunk);
* per-sample Python transforms hold the GIL: processes.

Processes also need shared memory (``/dev/shm``) for the batches in flight (``prefetch_factor`` per
worker, plus the slots of ``radiobject.ml._slots``); where there is too little (a container's
default 64 MB), threads are used, as they need none. Cohorts under :data:`PROCESS_COHORT_BYTES`
use threads too: they are quick either way, and threads start at once.
"""

from __future__ import annotations

import math
import shutil
from typing import Any

__all__ = ["PROCESS_COHORT_BYTES", "auto_worker_mode", "batch_bytes"]

#: Smaller decoded cohorts use threads (worker processes take a start-up; the data is small).
PROCESS_COHORT_BYTES = 64 << 20
_SHM = "/dev/shm"


def batch_bytes(dataset: Any, batch_size: int) -> int:
    """About the bytes of one batch of ``dataset`` (float32 images, the label, the patch or largest volume)."""
    reader = dataset.reader
    patch = getattr(dataset, "patch_size", None)
    voxels = math.prod(patch) if patch else max((math.prod(s) for s in reader.shapes), default=0)
    channels = reader.num_channels(0) + (1 if reader.label else 0)
    return int(batch_size) * channels * int(voxels) * 4


def auto_worker_mode(dataset: Any, num_workers: int, batch_size: int, prefetch_factor: int | None) -> str:
    """``"threads"`` or ``"processes"`` for ``dataset`` with ``num_workers`` workers (see the module doc)."""
    if getattr(dataset, "transforms", None) is not None:
        return "processes"
    reader = getattr(dataset, "reader", None)
    if reader is None or num_workers <= 0:
        return "threads"
    try:
        cohort, _ = reader.cohort_bytes()
    except Exception:  # noqa: BLE001 - a store that cannot be sized now fails on its first read instead
        return "threads"
    budget = int(getattr(reader.cache, "max_bytes", 0) or 0)
    if cohort <= max(budget, PROCESS_COHORT_BYTES):
        return "threads"
    try:
        free = shutil.disk_usage(_SHM).free
    except OSError:
        return "processes"  # no /dev/shm (not Linux): torch shares memory its own way
    in_flight = num_workers * ((prefetch_factor or 2) + 2) * batch_bytes(dataset, batch_size)
    return "processes" if free >= 2 * in_flight else "threads"
