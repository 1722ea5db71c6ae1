"""Catalog lookups at 1k / 10k / 100k subjects (issue 12, figure e).

    .venv/bin/python benchmarks/catalog.py [--sizes 1000,10000,100000]

Each store has two real volumes; the other catalog rows are copies of a real row (lookups never
read pixels, so the table size is what is measured). Per call, best of 5 repeats of a 0.2 s loop,
after one warm-up call (the lookup maps are built once per open). Printed: microseconds per call
and the ratio against the smallest size. Date, machine and load are printed (shared machine).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.codec_default import header

if TYPE_CHECKING:
    from radiobject import RadiObject


def build(root: str, n: int):
    from radiobject import ImageData, RadiObject
    from radiobject.storage import files
    from radiobject.storage.tables import FragmentTable

    imgs = {f"s{i:06d}": ImageData(np.zeros((4, 4, 4), np.int16), np.eye(4), {}, "x") for i in range(2)}
    RadiObject.from_images(root, {"T1w": imgs})
    table = FragmentTable(files.join(root, "collections", "T1w", "obs"), "obs_id")
    row = table.read().iloc[0].to_dict()
    table.append(pd.DataFrame([{**row, "obs_id": f"s{i:06d}", "obs_subject_id": f"s{i:06d}"} for i in range(2, n)]))
    RadiObject(root).add_subjects(
        pd.DataFrame({"obs_subject_id": [f"s{i:06d}" for i in range(2, n)], "age": np.arange(2, n) % 90})
    )
    return RadiObject(root)


def per_call_us(fn: Callable[[], object]) -> float:
    fn()
    best = float("inf")
    for _ in range(5):
        t0, k = time.perf_counter(), 0
        while time.perf_counter() - t0 < 0.2:
            fn()
            k += 1
        best = min(best, (time.perf_counter() - t0) / k * 1e6)
    return best


def lookups(r: RadiObject, n: int) -> dict[str, Callable[[], object]]:
    """The timed calls on store ``r`` of ``n`` subjects."""
    mid = f"s{n // 2:06d}"
    return {
        "radi.loc[id]": lambda: r.loc[mid],
        "radi.iloc[i]": lambda: r.iloc[n // 2],
        "radi.loc[id].T1w (view collection)": lambda: r.loc[mid].T1w,
        "radi.loc[id].T1w.iloc[0] (volume)": lambda: r.loc[mid].T1w.iloc[0],
        "radi.T1w.loc[obs_id]": lambda: r.T1w.loc[mid],
        "radi.T1w.iloc[i]": lambda: r.T1w.iloc[n // 3],
        "view(3).filter(age > 3)": lambda: r.iloc[[1, 5, n - 1]].filter(("age", ">", 3)),
        "radi.T1w.select_subjects([id])": lambda: r.T1w.select_subjects([mid]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(header())
    table: dict[str, dict[int, float]] = {}
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            r = build(tmp + "/r", n)
            ops = lookups(r, n)
            first = time.perf_counter()
            r.obs_meta, r.T1w.obs  # noqa: B018 - the one-off open cost, reported separately
            opened = time.perf_counter() - first
            for name, fn in ops.items():
                table.setdefault(name, {})[n] = per_call_us(fn)
            print(f"n={n}: store built in {first - t0:.1f} s, catalog opened in {opened * 1e3:.0f} ms", flush=True)
    print(f"{'lookup':38s}" + "".join(f"{n:>10d}" for n in sizes) + f"   ratio {sizes[-1]}/{sizes[0]}")
    for name, row in table.items():
        print(f"{name:38s}" + "".join(f"{row[n]:9.1f}u" for n in sizes) + f"   {row[sizes[-1]] / row[sizes[0]]:5.2f}")
    print(header())
    return 0


if __name__ == "__main__":
    sys.exit(main())
