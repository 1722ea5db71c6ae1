"""What receiving one batch from a DataLoader worker process costs the training process.

    .venv/bin/python benchmarks/handover.py [--batches 4000] [--workers 2]

Workers build trivial batches (a dict with one tensor, batch 2), so the training process's CPU time
per batch is almost all hand-over: queues, unpickling and the shared memory of large tensors.
Rows (same run, same workers):

* ``inline``: a 4-element tensor, which ``ml.collate`` sends inside the pickle (the floor);
* ``torch descriptor, small`` / ``, 1 MiB``: ``default_collate``; torch sends each tensor's shared
  memory as a file descriptor (a socket round trip through its resource sharer) in new pages;
* ``ml slot, 1 MiB``: ``ml.collate``, the tensor in a reused slot (``radiobject.ml._slots``),
  opened by the training process as ``/proc/<pid>/fd/<n>`` after its first hand-over and then
  kept mapped;
* ``..., 7 MiB, read``: batch 2 of 96^3 float32, and the training process reads every value (as a
  copy to the GPU or a model would): new shared memory costs a page fault per 4 KiB page there.

Prints date, machine and load, CPU ms / wall ms per batch of the training process, and each row's
CPU as a ratio against torch's descriptor hand-over of 1 MiB measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.codec_default import header
from radiobject.ml.collate import collate


class _Trivial(Dataset):
    def __init__(self, numel: int, n: int) -> None:
        self.numel, self.n = numel, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"x": torch.zeros(self.numel)}


def measure(numel: int, collate_fn, batches: int, workers: int, read: bool = False) -> tuple[float, float]:
    """(main CPU ms, wall ms) per batch over the second pass of a persistent loader; ``read``: the
    training process reads every value of each batch (as a copy to the GPU or a model does)."""
    loader = DataLoader(
        _Trivial(numel, 2 * batches),
        batch_size=2,
        num_workers=workers,
        collate_fn=collate_fn,
        persistent_workers=True,
        multiprocessing_context="fork",
    )
    for _ in loader:  # the first pass starts the workers
        pass
    c0, t0, k = time.process_time(), time.perf_counter(), 0
    for batch in loader:
        if read:
            batch["x"].sum()
        k += 1
    return 1e3 * (time.process_time() - c0) / k, 1e3 * (time.perf_counter() - t0) / k


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    print(header())
    print(f"{args.workers} fork workers, batch 2, {args.batches} batches per pass")
    print(f"{'batch':28s} {'main CPU ms/batch':>18s} {'wall ms/batch':>14s} {'CPU vs torch 1 MiB':>19s}")
    rows = [
        ("inline (4 floats)", 4, collate),
        ("torch descriptor, small", 4, default_collate),
        ("torch descriptor, 1 MiB", 1 << 17, default_collate),
        ("ml slot, 1 MiB", 1 << 17, collate),
        ("torch descriptor, 7 MiB, read", 96**3, default_collate, True),
        ("ml slot, 7 MiB, read", 96**3, collate, True),
    ]
    measured = [(row[0], *measure(row[1], row[2], args.batches, args.workers, *row[3:])) for row in rows]
    base = measured[2][1]  # torch's descriptor hand-over of 1 MiB: the baseline of this run
    for name, cpu, wall in measured:
        print(f"{name:28s} {cpu:18.3f} {wall:14.3f} {cpu / base:19.2f}", flush=True)
    print(header())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
