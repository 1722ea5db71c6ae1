"""Worker processes of a loader: typed errors for torch's bare ``RuntimeError`` about a worker (died,
killed, timed out), and their prompt shutdown when the loader is freed."""

from __future__ import annotations

import re
import signal
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from radiobject.ml.errors import WorkerError, WorkerTimeoutError

__all__ = ["exit_codes", "stop_workers", "stop_workers_with", "typed_sigchld", "worker_error"]


def worker_error(
    exc: RuntimeError, where: str, exit_codes: Mapping[int, int | None] | None = None
) -> WorkerError | None:
    """The typed error for torch's ``RuntimeError`` about a worker (died, killed, timed out), else ``None``.

    ``exit_codes`` (worker pid -> exit code, :func:`exit_codes`) says why a worker ended where
    torch's message does not (its "exited unexpectedly" after a failed wait names no code).
    """
    text = str(exc)
    if "DataLoader timed out" in text:
        return WorkerTimeoutError(
            f"{where}: {text} (a worker did not deliver its batch in time: a stuck read, a hung "
            "transform or an overloaded machine; raise timeout= or check the store)"
        )
    if text.startswith("Caught ") and "DataLoader worker" in text:  # an error torch could not re-raise typed
        return WorkerError(f"{where}: {text.splitlines()[0]}; {text.strip().splitlines()[-1]}")
    if "DataLoader worker" in text and any(w in text for w in ("exited unexpectedly", "killed by signal")):
        named = re.search(r"pid(?:\(s\))? ([\d, ]+)", text)  # "(pid 12)", "(pid(s) 12, 13)"
        pids = {int(p) for p in re.findall(r"\d+", named.group(1))} if named else set()
        codes = {c for pid, c in (exit_codes or {}).items() if pid in pids and c is not None}
        started = "exit code 1." in f"{text} {exc.__cause__}" or codes == {1}  # torch's last word hides the code
        if started:
            why = (
                "it raised at start-up (its traceback is on stderr): with spawn / forkserver a script needs "
                "`if __name__ == '__main__':`, or the worker_init_fn failed"
            )
        elif codes and all(c < 0 for c in codes):
            names = sorted({signal.Signals(-c).name if -c in signal.valid_signals() else str(-c) for c in codes})
            why = f"killed by {', '.join(names)}" + (": e.g. the out-of-memory killer" if "SIGKILL" in names else "")
        elif codes:
            why = f"exit code {', '.join(map(str, sorted(codes)))}"
        else:
            why = "killed, e.g. by the out-of-memory killer, or crashed"
        return WorkerError(f"{where}: {text.splitlines()[0]} ({why}); the epoch was not completed")
    return None


def exit_codes(iterator: Any) -> dict[int, int | None]:
    """Worker pid -> exit code (``None`` while it runs; negative: the signal) of a torch worker iterator."""
    return {w.pid: w.exitcode for w in getattr(iterator, "_workers", ()) if w.pid is not None}


def typed_sigchld() -> None:
    """Wraps torch's ``SIGCHLD`` handler (which raises a bare ``RuntimeError`` wherever the main
    thread is when a worker dies) so that it raises a :class:`WorkerError` instead."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGCHLD"):
        return
    previous = signal.getsignal(signal.SIGCHLD)
    if not callable(previous) or getattr(previous, "_radiobject", False):
        return

    def handler(signum: int, frame: Any) -> None:
        try:
            previous(signum, frame)
        except RuntimeError as exc:
            error = worker_error(exc, "a radiobject DataLoader")
            if error is None:
                raise
            raise error from exc

    handler._radiobject = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGCHLD, handler)


def stop_workers(iterator: Any) -> None:
    """Stops a torch worker iterator's processes; this process forgets its mappings of their batch slots."""
    from radiobject.ml import _slots

    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    _slots.forget([w.pid for w in getattr(iterator, "_workers", ())])


def stop_workers_with(loader: Any, iterator: Any) -> None:
    """Stops ``iterator``'s worker processes as soon as ``loader`` is freed, also by the garbage collector.

    torch stops them from the iterator's ``__del__``. A loader in a reference cycle (a ``collate_fn``
    that is a method of an object holding the loader, common in training code) is freed by the
    garbage collector, which first runs the weak-reference callbacks of the whole cycle: those close
    the iterator's index queues, so the stop signal ``__del__`` then sends never reaches a worker,
    and each waits out torch's 5 s join timeout before it is killed (measured: 10 s for 2 workers).
    A finalizer of the loader that holds the iterator runs before any of that, with the queues alive.
    A finalizer for an earlier iterator of the same loader is dropped (its workers are gone).
    """
    old = getattr(loader, "_stop_workers", None)
    if old is not None:
        old.detach()
    finalizer = weakref.finalize(loader, stop_workers, iterator)
    finalizer.atexit = False  # at exit torch's own handlers stop the workers
    loader.__dict__["_stop_workers"] = finalizer
