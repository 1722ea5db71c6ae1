"""Helpers shared by the command modules: argument types and number formatting."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def int_in(lo: int, hi: int | None = None, what: str = "value") -> Callable[[str], int]:
    """An argparse type accepting integers in ``[lo, hi]`` (no upper bound when ``hi`` is None)."""

    def parse(text: str) -> int:
        n = int(text)
        if n < lo or (hi is not None and n > hi):
            bound = f"{lo}-{hi}" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"{what} must be {bound}, got {n}")
        return n

    return parse


positive_int = int_in(1, what="count")


def human_bytes(n: float) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
