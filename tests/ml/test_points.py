"""Progress of scattered point reads: a tqdm bar on a terminal for long fetches, off otherwise."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from radiobject import ImageData, Volume, WriteOptions
from radiobject.ml import points as points_mod
from radiobject.ml.points import scattered_points


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> tuple[Volume, np.ndarray]:
    data = np.random.default_rng(4).integers(0, 1000, (40, 40, 40)).astype(np.int16)
    vol = Volume.from_image(
        str(tmp_path_factory.mktemp("pts") / "v"), ImageData(data, np.eye(4)), options=WriteOptions(chunks=(8, 8, 8))
    )
    return vol, data


def _points(n: int) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 40, (n, 3))


@pytest.mark.parametrize("threads", [1, 4])
def test_bar_on_a_terminal_for_long_fetches(
    volume: tuple[Volume, np.ndarray], monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    vol, data = volume
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    pts = _points(2000)  # touches all 125 chunks
    got = scattered_points(vol, pts, threads=threads)
    np.testing.assert_array_equal(got, data[pts[:, 0], pts[:, 1], pts[:, 2]])
    text = tty.getvalue()
    assert "chunk" in text and "/125" in text


def test_no_bar_when_not_a_terminal_or_short(
    volume: tuple[Volume, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    vol, data = volume
    pipe = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", pipe)
    scattered_points(vol, _points(2000))
    assert pipe.getvalue() == ""
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    few = np.array([[1, 1, 1], [2, 2, 2]])  # one chunk: below PROGRESS_MIN_CHUNKS
    assert scattered_points(vol, few).tolist() == [data[1, 1, 1], data[2, 2, 2]]
    assert tty.getvalue() == ""
    scattered_points(vol, _points(2000), progress=False)
    assert tty.getvalue() == ""
    monkeypatch.setattr(sys, "stderr", pipe)
    scattered_points(vol, few, progress=True)  # forced on
    assert "/1 " in pipe.getvalue()
    assert points_mod.PROGRESS_MIN_CHUNKS > 1
