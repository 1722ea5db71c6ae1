"""The cohort ingest on a Dask cluster: workers write volumes, the client commits.

Each item becomes one Dask task running :func:`radiobject.model.bulk.write_one` (the
store's write path) on a worker, which returns the ``obs`` row; the client commits rows in input
order once their arrays are complete. The store is therefore identical to a serial ingest, and
as crash-safe / resumable. Workers must reach the store (a shared file system or ``s3://``) and
the input files under the same paths, and have ``radiobject`` installed.
"""

from __future__ import annotations

from typing import Any

from radiobject.ingest.cohort import CohortReport, run_ingest
from radiobject.ingest.manifest import CohortPlan

__all__ = ["dask_submitter", "run_ingest_dask"]


def dask_submitter(client: Any) -> tuple[Any, Any]:
    """``(submit, as_completed)`` for a ``dask.distributed.Client`` (tasks are never deduplicated)."""
    from distributed import as_completed

    def submit(fn: Any, *args: Any) -> Any:
        return client.submit(fn, *args, pure=False)

    return submit, lambda futures: as_completed(futures)


def run_ingest_dask(
    uri: str,
    plan: CohortPlan,
    *,
    scheduler: str | None = None,
    client: Any = None,
    **kwargs: Any,
) -> CohortReport:
    """``run_ingest`` with every volume written by a Dask worker.

    Args:
        scheduler: the scheduler address (``tcp://host:8786``); ignored when ``client`` is given.
        client: an existing ``distributed.Client``.
        kwargs: as for :func:`radiobject.ingest.cohort.run_ingest` (``executor`` is ignored).
    """
    from distributed import Client

    kwargs.pop("executor", None)
    if client is not None:
        return run_ingest(uri, plan, submitter=dask_submitter(client), **kwargs)
    if not scheduler:
        raise ValueError("run_ingest_dask needs a scheduler address or a client")
    with Client(scheduler, timeout="30s") as own:
        return run_ingest(uri, plan, submitter=dask_submitter(own), **kwargs)
