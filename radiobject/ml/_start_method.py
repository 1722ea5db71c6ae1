"""The start method of process workers (:func:`default_context`): ``fork`` unless it would cost speed.

tensorstore cannot be used in a child forked from a process that has used it (its thread pools do
not survive ``fork``); such children read through zarr-python, measured 4-8x slower. ``fork`` is
kept while this process has not used tensorstore or where the dataset's reads never use it (local
stores: the own Zarr reader, TileDB); ``forkserver`` otherwise, its server preloading
:data:`FORKSERVER_PRELOAD`.
"""

from __future__ import annotations

import pickle
import sys
import warnings
from typing import Any

__all__ = ["FORKSERVER_PRELOAD", "default_context", "reads_fork_safe"]

#: Modules the fork server imports once, so that each worker forked from it starts with them loaded
#: (not ``__main__``: a script's unguarded top-level reads would run in the server, and its children
#: would then be forked after a tensorstore use).
FORKSERVER_PRELOAD: tuple[str, ...] = ("torch", "numpy", "radiobject.ml.loaders")


def _tensorstore_used() -> bool:
    zb = sys.modules.get("radiobject.storage.zarr_backend")  # not imported: tensorstore never used here
    return bool(zb is not None and zb.tensorstore_used())


def reads_fork_safe(dataset: Any) -> bool:
    """Whether forked workers read ``dataset`` at full speed although this process has used
    tensorstore: a local store whose volumes are read by the own Zarr reader, or TileDB (one volume
    of each collection the reader reads is checked; a volume that is not is read through
    zarr-python there: correct, slower)."""
    from radiobject.storage.options import is_remote

    reader = getattr(dataset, "reader", None)
    location = getattr(reader, "location", None)
    if reader is None or location is None or is_remote(location.uri) or not len(reader):
        return False
    names = [*getattr(reader, "modalities", ()), *([reader.label] if getattr(reader, "label", None) else [])]
    try:
        return all(reader.volume(0, name).fork_safe_reads for name in names)
    except Exception:  # noqa: BLE001 - undecided: the workers start as before (forkserver)
        return False


def default_context(dataset: Any = None) -> str | None:
    """The start method for process workers: ``None`` (the default, ``fork`` on Linux) or ``"forkserver"``.

    ``"forkserver"`` once this process has used tensorstore and would fork its workers (its preload
    list set to :data:`FORKSERVER_PRELOAD` when the fork server is not running yet), since forked
    children of such a process cannot use tensorstore; but ``None`` for a ``dataset`` whose reads
    never use it (a local store read by the own Zarr reader, TileDB): forked workers start in a
    fraction of the time and take unpicklable transforms. An explicit global start method other than
    ``fork`` is kept (``None``). When ``dataset`` cannot be pickled (e.g. a lambda transform):
    ``None`` with a ``RuntimeWarning``, since its forked workers read through zarr-python (several
    times slower; make the transforms picklable, or pass ``multiprocessing_context``).
    """
    import multiprocessing

    if not _tensorstore_used() or multiprocessing.get_start_method(allow_none=True) not in (None, "fork"):
        return None
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    if dataset is not None and reads_fork_safe(dataset):
        return None
    if dataset is not None:
        try:
            pickle.dumps(dataset)
        except Exception as exc:  # noqa: BLE001 - any pickling failure: fall back to the default
            warnings.warn(
                f"process workers: the dataset cannot be pickled ({type(exc).__name__}: {exc}), so they are "
                "forked from a process that has used tensorstore and read through zarr-python (several "
                "times slower); make the transforms picklable or pass multiprocessing_context",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    if server is not None and getattr(server, "_forkserver_pid", None) is None:  # not started yet
        forkserver.set_forkserver_preload(list(FORKSERVER_PRELOAD))
    return "forkserver"
