"""Persistent worker processes run ahead into the next epoch while the current one drains.

PyTorch's persistent workers idle at every epoch boundary: the next epoch's first indices reach them
only when the next ``iter(loader)`` begins, so each epoch starts with the training loop waiting while
every worker builds its first batch. On short epochs (small cohorts, many ranks, one patch per
subject) that bubble is a large share of the epoch (docs/benchmarks.md, "Workers across epochs").

Every epoch's order is a pure function of ``(seed, epoch)`` (:mod:`radiobject.ml.partition`), so
the loader can hand the workers the batches of the pass it expects next before that pass begins:
:class:`EpochStream` is the index sampler of the loader's worker iterator; it yields the batches of
the current pass, then those of the passes it predicts (the epoch advanced by the step between the
last two passes; :meth:`RadiSampler.fresh_pass <radiobject.ml.sampler.RadiSampler.fresh_pass>`).
When the next pass begins, the loader compares what the sampler then yields with the prediction
(:meth:`EpochStream.follows`): equal, the batches already in flight are that pass's; otherwise
(another epoch, a resume point, a pass left mid-way, a changed sampler) PyTorch's reset discards
them (at most ``prefetch_factor x num_workers`` batches) and the pass starts afresh. What is
delivered is the same with and without running ahead: only when it is built changes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

import numpy as np

__all__ = ["EpochStream"]


class EpochStream:
    """Batches of ``(epoch, index)`` for the current pass, then for the passes predicted to follow.

    Args:
        batch_size / drop_last: the loader's batching (as ``torch.utils.data.BatchSampler``).
        fresh_pass: ``epoch -> indices`` of a pass of that epoch from its start (pure).
        length: ``len()`` of the loader's batch sampler (the current pass's batches).
    """

    def __init__(
        self,
        batch_size: int,
        drop_last: bool,
        fresh_pass: Callable[[int], np.ndarray],
        length: Callable[[], int],
    ) -> None:
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self._fresh_pass = fresh_pass
        self._length = length
        self._passes: deque[tuple[int, np.ndarray]] = deque()  # the current pass, then predicted ones
        self._base = 0  # the number (counted since the last restart) of the pass at self._passes[0]
        self._step = 1  # the epoch step between the last two passes: the prediction
        self._end: int | None = None  # the number of the empty predicted pass that ended the stream
        self.delivered = False  # the loader delivered every batch of the current pass

    def __len__(self) -> int:
        return self._length()

    def batches(self, n: int) -> int:
        """How many batches a pass of ``n`` samples makes."""
        full, rest = divmod(int(n), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def restart(self, epoch: int, indices: np.ndarray) -> None:
        """A new stream beginning with the pass ``(epoch, indices)`` (the iterator is reset with it)."""
        if self._passes:  # a step back (an earlier epoch run again) predicts the usual step forward
            step = int(epoch) - self._passes[0][0]
            self._step = step if step >= 0 else 1
        self._passes = deque([(int(epoch), np.asarray(indices))])
        self._base, self._end, self.delivered = 0, None, False

    def follows(self, epoch: int, indices: np.ndarray) -> bool:
        """Whether the pass ``(epoch, indices)`` is the one the stream runs into next; if so, it becomes current.

        Only after the current pass was delivered whole (a pass left mid-way leaves its own batches
        in flight), and only while the stream still reaches that pass.
        """
        if not self._passes or not self.delivered or (self._end is not None and self._base + 1 > self._end):
            return False
        upcoming = self._pass(1)
        if upcoming is None or upcoming[0] != int(epoch) or not np.array_equal(upcoming[1], indices):
            return False
        self._passes.popleft()
        self._base += 1
        self.delivered = False
        return True

    def _pass(self, k: int) -> tuple[int, np.ndarray] | None:
        """The ``k``-th pass after the current one (predicted when not yet known; ``None``: cannot be)."""
        while len(self._passes) <= k:
            epoch = self._passes[-1][0] + self._step
            try:
                self._passes.append((epoch, np.asarray(self._fresh_pass(epoch))))
            except Exception:  # noqa: BLE001 - a prediction never fails the pass being delivered
                return None
        return self._passes[k]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        number = self._base
        while True:
            known = self._pass(number - self._base)
            if known is None or (number > self._base and not len(known[1])):  # nothing to run ahead to
                self._end = number
                return
            epoch, indices = known
            stream = indices.tolist()
            for start in range(0, self.batches(len(stream)) * self.batch_size, self.batch_size):
                yield [(epoch, i) for i in stream[start : start + self.batch_size]]
            number += 1
