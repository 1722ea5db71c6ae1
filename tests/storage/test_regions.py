"""``normalize_region``: what a ``Volume[...]`` index may be, and the typed refusal of the rest."""

from __future__ import annotations

import numpy as np
import pytest

from radiobject.storage.base import normalize_region

SHAPE = (16, 12, 8)


def test_ints_slices_and_ellipsis_become_full_slices() -> None:
    assert normalize_region((1, slice(2, 5)), SHAPE) == ((slice(1, 2), slice(2, 5), slice(0, 8)), (0,))
    assert normalize_region((..., -1), SHAPE) == ((slice(0, 16), slice(0, 12), slice(7, 8)), (2,))
    assert normalize_region(np.int64(3), SHAPE) == ((slice(3, 4), slice(0, 12), slice(0, 8)), (0,))
    assert normalize_region(slice(10, 99), SHAPE)[0][0] == slice(10, 16)  # clipped like numpy
    assert normalize_region(slice(12, 4), SHAPE)[0][0] == slice(12, 12)  # empty, never negative


@pytest.mark.parametrize(
    ("index", "match"),
    [
        (True, "a bool"),
        ((0, np.bool_(False)), "a bool"),
        (None, "unsupported index None"),
        (1.5, "unsupported index 1.5"),
        ([1, 2], r"unsupported index \[1, 2\]"),
        (slice(0, 8, 2), "only step-1 slices"),
        ((0, 0, 0, 0), "too many indices"),
        (16, "index 16 out of range for axis 0"),
        ((0, -13), "index -13 out of range for axis 1"),
    ],
)
def test_other_indices_are_refused(index: object, match: str) -> None:
    with pytest.raises(IndexError, match=match):
        normalize_region(index, SHAPE)
