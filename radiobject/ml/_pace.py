"""``Pace``: whether the consumer of a loader leaves time to overlap reads with."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Pace"]


class Pace:
    """Whether the consumer of a loader leaves time to overlap reads with (``RadiSampler.overlap``).

    Running averages of the time a batch takes to arrive and of the time the consumer spends before
    asking for the next one (its training step); reads ahead pay while the step is at least
    :attr:`SHARE` of the load. Measured (docs/benchmarks.md, "Prefetch"): with a step, reads ahead
    gain 1.2x; in a loop without one, they cost 17-31 % (the GIL, the cores).
    """

    SHARE = 0.25

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.load: float | None = None
        self.gap: float | None = None
        self.mark = clock()

    @staticmethod
    def _avg(old: float | None, new: float) -> float:
        return new if old is None else 0.8 * old + 0.2 * new

    def arrived(self) -> bool:
        """A batch arrived: whether reads ahead pay (until the consumer has been seen: yes)."""
        now = self.clock()
        self.load, self.mark = self._avg(self.load, now - self.mark), now
        return self.gap is None or self.gap >= self.SHARE * self.load

    def asked(self) -> None:
        """The consumer asked for the next batch."""
        now = self.clock()
        self.gap, self.mark = self._avg(self.gap, now - self.mark), now
