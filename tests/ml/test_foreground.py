"""The in-process memo of foreground indices is bounded by bytes (``MEMO_BYTES``), least recently
used first out, so the indices of large many-class label maps cannot pile up."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from radiobject.ml import foreground
from radiobject.ml.foreground import MEMO_BYTES, foreground_index
from radiobject.ml.reader import VolumeReader
from radiobject.ml.sampling import ForegroundIndex
from tests.ml._stores import make_store


@pytest.fixture(autouse=True)
def empty_memo() -> Iterator[None]:
    with foreground._LOCK:
        foreground._MEMO.clear()
        foreground._MEMO_SIZE[0] = 0
    yield
    with foreground._LOCK:
        foreground._MEMO.clear()
        foreground._MEMO_SIZE[0] = 0


def _held() -> int:
    """Bytes of the index arrays the memo holds, counted here from the arrays themselves."""
    return sum(int(a.nbytes) for fg, _ in foreground._MEMO.values() for a in fg.indices)


def _many_classes(n_labels: int = 40, per_class: int = 12_000) -> ForegroundIndex:
    flat = np.repeat(np.arange(1, n_labels + 1, dtype=np.uint16), per_class)
    return ForegroundIndex.from_label(flat.reshape(n_labels * 10, per_class // 10, 1))  # keeps 10,000 per class


def test_large_many_class_indices_do_not_pile_up() -> None:
    fg = _many_classes()
    arrays = sum(int(a.nbytes) for a in fg.indices)
    assert arrays >= 40 * 10_000 * 4  # ~1.6 MB each
    for i in range(3 * MEMO_BYTES // arrays):  # three times what fits, each under its own key
        with foreground._LOCK:
            foreground._remember((0, f"s3://b/store/fg/{i}.npz#10000"), fg)
    assert foreground._MEMO_SIZE[0] <= MEMO_BYTES
    assert arrays * len(foreground._MEMO) <= _held() <= MEMO_BYTES
    assert len(foreground._MEMO) == MEMO_BYTES // foreground._nbytes(fg)  # as many as fit, no more
    last = (0, f"s3://b/store/fg/{3 * MEMO_BYTES // arrays - 1}.npz#10000")
    assert last in foreground._MEMO and (0, "s3://b/store/fg/0.npz#10000") not in foreground._MEMO


def test_an_index_larger_than_the_cap_is_used_but_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    fg = _many_classes(4)
    monkeypatch.setattr(foreground, "MEMO_BYTES", foreground._nbytes(fg) - 1)
    with foreground._LOCK:
        foreground._remember((0, "k"), fg)
    assert len(foreground._MEMO) == 0 and foreground._MEMO_SIZE[0] == 0


def test_foreground_index_keeps_the_most_recent_within_the_cap(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    radi = make_store(tmp_path / "store", "zarr", n=3, shape=(20, 24, 16))
    reader = VolumeReader.from_radi(radi, ["T1w"], "seg")
    first = foreground_index(reader, 0)
    one = foreground._nbytes(first)
    monkeypatch.setattr(foreground, "MEMO_BYTES", 2 * one + one // 2)  # two of these indices fit
    second, third = foreground_index(reader, 1), foreground_index(reader, 2)
    assert len(foreground._MEMO) == 2 and foreground._MEMO_SIZE[0] <= foreground.MEMO_BYTES
    assert foreground_index(reader, 2) is third and foreground_index(reader, 1) is second  # memo hits
    again = foreground_index(reader, 0)  # dropped (least recently used): read back from its file
    assert again is not first and again.labels == first.labels and again.counts == first.counts
    assert all(np.array_equal(a, b) for a, b in zip(again.indices, first.indices, strict=True))
    assert foreground_index(reader, 1) is second and foreground_index(reader, 2) is not third  # 2 went out
    assert foreground._MEMO_SIZE[0] == sum(size for _, size in foreground._MEMO.values())
