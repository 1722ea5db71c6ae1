"""Limit library thread pools inside DataLoader worker processes, where they fight for cores.

With ``W`` workers each running torch / OpenMP / BLAS / blosc / zarr pools sized for the whole
machine, a 2-core node runs dozens of threads and every worker slows down. Inside a worker,
:func:`limit_threads` (or :func:`worker_init_fn`) sets each pool to ``n`` (default 1):

* environment: ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
  ``BLIS_NUM_THREADS``, ``VECLIB_MAXIMUM_THREADS``, ``NUMEXPR_NUM_THREADS``, ``BLOSC_NTHREADS``
  (read by libraries that initialise later in this process);
* already imported libraries: ``torch.set_num_threads`` (and inter-op threads when still
  allowed), ``threadpoolctl`` for loaded BLAS / OpenMP runtimes when it is installed,
  ``numcodecs.blosc.set_nthreads``, zarr's ``threading.max_workers``, OpenCV's ``setNumThreads``,
  and the decode threads of tensorstore contexts the Zarr backend opens from then on.

The training loader gives each of its W worker processes ``worker_share(W)`` threads (the cores
divided among the workers). TileDB sizes its pools per context: see :func:`tiledb_config`.
In a forked worker (``fork`` start method) OpenMP and torch's intra-op pool stay at 1 thread
whatever ``n`` is: libgomp cannot start a team in a child of a process that ran one (it hangs).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

from radiobject._os import forks

__all__ = [
    "THREAD_ENV_VARS",
    "cores",
    "limit_threads",
    "local_ranks",
    "make_worker_init_fn",
    "tensorstore_context_spec",
    "tiledb_config",
    "worker_init_fn",
    "worker_share",
]

#: Environment variables that size native thread pools, set by :func:`limit_threads`.
THREAD_ENV_VARS: tuple[str, ...] = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "BLOSC_NTHREADS",
)


def limit_threads(n: int = 1) -> dict[str, object]:
    """Set every known thread pool of this process to ``n`` threads; returns what was applied.

    Safe to call more than once. Only libraries already imported are touched (nothing is
    imported here except through ``threadpoolctl`` when present); the environment variables
    cover the ones imported later.
    """
    if n < 1:
        raise ValueError(f"limit_threads: n must be >= 1, got {n}")
    applied: dict[str, object] = {}
    # libgomp is not fork-safe: a forked child that runs an OpenMP team of 2+ threads after its
    # parent ran one waits in the team barrier forever; so OpenMP (torch's intra-op pool) stays at
    # 1 thread in a forked child, and only the fork-safe pools get n
    omp = 1 if forks.forked() else n
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(omp if var == "OMP_NUM_THREADS" else n)
    applied["env"] = list(THREAD_ENV_VARS)

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(omp)
        applied["torch"] = torch.get_num_threads()
        try:  # allowed only before any inter-op work in this process
            torch.set_num_interop_threads(n)
            applied["torch_interop"] = n
        except RuntimeError:
            pass

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(limits={"blas": n, "openmp": omp})
        applied["threadpoolctl"] = {"blas": n, "openmp": omp}

    blosc = sys.modules.get("numcodecs.blosc")
    if blosc is not None:
        blosc.set_nthreads(n)
        applied["numcodecs.blosc"] = n

    zarr = sys.modules.get("zarr")
    if zarr is not None and hasattr(zarr, "config"):
        zarr.config.set({"threading.max_workers": n})
        applied["zarr"] = n

    cv2 = sys.modules.get("cv2")
    if cv2 is not None and hasattr(cv2, "setNumThreads"):
        cv2.setNumThreads(n)
        applied["cv2"] = n

    zarr_backend = sys.modules.get("radiobject.storage.zarr_backend")
    if zarr_backend is not None:  # tensorstore contexts opened from now on in this process
        zarr_backend.set_decode_threads(n)
        applied["tensorstore"] = n
    return applied


def cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def local_ranks() -> int:
    """Training processes on this node: torchrun's ``LOCAL_WORLD_SIZE`` (1 outside torchrun or when
    unset / not a positive integer)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def worker_share(num_workers: int) -> int:
    """Threads per library for each of ``num_workers`` worker processes: the cores divided among
    them and among the node's ranks (``local_ranks()``; at least 1), so the W workers of each of
    R ranks together use the machine once rather than W x R times."""
    return max(1, cores() // (max(1, int(num_workers)) * local_ranks()))


def tensorstore_context_spec(n: int = 1, *, io_concurrency: int = 8) -> dict[str, dict[str, int]]:
    """A ``tensorstore.Context`` spec: ``n`` threads decode/copy, ``io_concurrency`` I/O requests.

    I/O concurrency stays above 1 because file or network requests wait rather than compute.
    """
    return {
        "data_copy_concurrency": {"limit": int(n)},
        "file_io_concurrency": {"limit": int(io_concurrency)},
    }


def tiledb_config(n: int = 1, *, io_concurrency: int = 8) -> dict[str, str]:
    """TileDB config entries for ``n`` compute threads and ``io_concurrency`` I/O threads."""
    return {
        "sm.compute_concurrency_level": str(int(n)),
        "sm.io_concurrency_level": str(int(io_concurrency)),
    }


def _init(worker_id: int, *, threads: int, then: Callable[[int], None] | None) -> None:
    limit_threads(threads)
    if then is not None:
        then(worker_id)


def worker_init_fn(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)``: limit every library to 1 thread in the worker."""
    _init(worker_id, threads=1, then=None)


def make_worker_init_fn(threads: int = 1, then: Callable[[int], None] | None = None) -> Callable[[int], None]:
    """A picklable ``worker_init_fn`` limiting threads to ``threads``, then calling ``then(worker_id)``."""
    if threads < 1:
        raise ValueError(f"make_worker_init_fn: threads must be >= 1, got {threads}")
    return functools.partial(_init, threads=threads, then=then)
