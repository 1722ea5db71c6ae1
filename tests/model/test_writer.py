"""The single write path: lazy sources are copied block by block, bounded in memory; a copy that
fails part-way leaves no array behind."""

from __future__ import annotations

import numpy as np
import pytest

import radiobject.model.writer as writer
from radiobject import ImageData, Volume, WriteOptions
from radiobject.errors import RadiObjectError
from radiobject.model.writer import blocks
from tests.model.helpers import LazyArray


def test_lazy_source_written_in_bounded_blocks(backend: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(writer, "BLOCK_BYTES", 64 * 64 * 64 * 2)
    data = np.random.default_rng(3).integers(0, 4000, (150, 130, 70)).astype(np.uint16)
    lazy = LazyArray(data)
    vol = Volume.from_image(str(tmp_path / "v"), ImageData(lazy, np.eye(4)), options=WriteOptions(backend=backend))
    np.testing.assert_array_equal(vol.to_numpy(), data)
    assert 0 < lazy.largest <= data.nbytes // 4  # never the whole image at once


def test_blocks_tile_exactly() -> None:
    shape = (10, 7, 5)
    seen = np.zeros(shape, int)
    for region in blocks(shape, (4, 3, 5)):
        seen[region] += 1
    assert (seen == 1).all()


class FailingArray(LazyArray):
    """A lazy array whose reads fail after ``good`` blocks (a source going away mid-copy)."""

    def __init__(self, data: np.ndarray, good: int, error: type[BaseException] = OSError) -> None:
        super().__init__(data)
        self.good, self.error, self.reads = good, error, 0

    def __getitem__(self, key):
        self.reads += 1
        if self.reads > self.good:
            raise self.error("the source went away")
        return super().__getitem__(key)


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_a_source_failing_mid_copy_leaves_no_array(backend: str, tmp_path, monkeypatch, error) -> None:
    monkeypatch.setattr(writer, "BLOCK_BYTES", 64 * 64 * 64 * 2)
    data = np.random.default_rng(4).integers(0, 4000, (150, 130, 70)).astype(np.uint16)
    uri = tmp_path / "v"
    lazy = FailingArray(data, good=2, error=error)
    with pytest.raises(error, match="went away"):
        Volume.from_image(str(uri), ImageData(lazy, np.eye(4)), options=WriteOptions(backend=backend))
    assert lazy.reads == 3  # two blocks were written before the failure
    assert not uri.exists() or not any(uri.iterdir()), sorted(uri.rglob("*"))
    with pytest.raises(RadiObjectError):  # nothing that opens as a volume (with fill values)
        Volume(str(uri)).to_numpy()
    vol = Volume.from_image(str(uri), ImageData(data, np.eye(4)), options=WriteOptions(backend=backend))
    np.testing.assert_array_equal(vol.to_numpy(), data)  # the retry
