"""Stop requests (Ctrl-C, SIGTERM) that outlive a swallowed ``KeyboardInterrupt``.

A signal handler's ``KeyboardInterrupt`` is raised wherever the main thread happens to be: inside a
C extension that checks for signals and then clears the error, or in a finaliser, where Python
discards it. An ingest would then run to its end and exit 0 after the user pressed Ctrl-C. The
command line's handlers therefore also record the signal here (:func:`received`), and long loops
(the per-volume loop of every bulk write) call :func:`raise_if_stopped` at each item, so a stop
request is honoured at the next item whatever happened to the first exception. Without those
handlers (a plain Python caller) nothing is recorded and nothing changes.
"""

from __future__ import annotations

__all__ = ["Interrupted", "raise_if_stopped", "received", "reset"]

_RECEIVED: list[int] = []


class Interrupted(KeyboardInterrupt):
    """A stop signal raised as ``KeyboardInterrupt``; ``signum`` is the signal (2: SIGINT, 15: SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def received(signum: int) -> None:
    """Records that stop signal ``signum`` arrived (called by a signal handler)."""
    _RECEIVED.append(signum)


def raise_if_stopped() -> None:
    """Raises :class:`Interrupted` for the first stop signal recorded since :func:`reset`, if any."""
    if _RECEIVED:
        raise Interrupted(_RECEIVED[0])


def reset() -> None:
    """Forgets the recorded stop signals (when the handlers that record them are removed)."""
    _RECEIVED.clear()
