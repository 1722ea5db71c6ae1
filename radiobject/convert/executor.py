"""Running region tasks: the worker pool of a conversion and the bounded submit loop (at most
``limit`` tasks in flight; the first error re-raised; no task left running on the way out)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from typing import Any

from radiobject.convert.options import ConvertOptions


def make_executor(options: ConvertOptions) -> Executor:
    if options.executor == "process":
        return ProcessPoolExecutor(options.n_workers, mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(options.n_workers, thread_name_prefix="radiobject-convert")


def run_bounded(
    pool: Executor, fn: Callable[..., Any], arg_sets: Iterable[tuple], limit: int, on_result: Callable[[Any], None]
) -> None:
    """Submits with at most ``limit`` tasks in flight (bounded memory); re-raises the first error."""
    pending: set[Future] = set()
    try:
        for args in arg_sets:
            if len(pending) >= limit:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    on_result(f.result())
            pending.add(pool.submit(fn, *args))
        for f in list(pending):
            result = f.result()  # kept in ``pending`` until done: an interrupt here still waits for it
            pending.discard(f)
            on_result(result)
    finally:
        for f in pending:
            f.cancel()
        wait(pending)  # no task may still write into a work folder that the caller is about to remove
