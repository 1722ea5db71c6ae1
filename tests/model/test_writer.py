"""The single write path: lazy sources are copied block by block, bounded in memory."""

from __future__ import annotations

import numpy as np

import radiobject.model.writer as writer
from radiobject import ImageData, Volume, WriteOptions
from radiobject.model.writer import blocks


class CountingArray:
    """A lazy array that records the largest region read from it."""

    def __init__(self, data: np.ndarray) -> None:
        self._data, self.largest = data, 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    def __getitem__(self, key):
        out = self._data[key]
        self.largest = max(self.largest, out.nbytes)
        return out


def test_lazy_source_written_in_bounded_blocks(backend: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(writer, "BLOCK_BYTES", 64 * 64 * 64 * 2)
    data = np.random.default_rng(3).integers(0, 4000, (150, 130, 70)).astype(np.uint16)
    lazy = CountingArray(data)
    vol = Volume.from_image(str(tmp_path / "v"), ImageData(lazy, np.eye(4)), options=WriteOptions(backend=backend))
    np.testing.assert_array_equal(vol.to_numpy(), data)
    assert 0 < lazy.largest <= data.nbytes // 4  # never the whole image at once


def test_blocks_tile_exactly() -> None:
    shape = (10, 7, 5)
    seen = np.zeros(shape, int)
    for region in blocks(shape, (4, 3, 5)):
        seen[region] += 1
    assert (seen == 1).all()
