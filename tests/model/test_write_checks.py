"""Every write path refuses what a backend cannot hold with one ``StoreError`` text (dtype and axis
checks live in ``storage.base``: ``Backend.check_storable``), and a lossy write that cannot be done
is the same typed error on both backends, before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from radiobject import ImageData, Lossy, LossyLabelError, Volume, VolumeCollection, WriteOptions
from radiobject.errors import StoreError
from radiobject.model.lossy import LossyError, reduce_precision
from radiobject.model.writer import write_image
from radiobject.storage import ArraySpec, get_backend
from tests.model.helpers import LazyArray

SHAPE = (6, 5, 4)
SOURCE = "/data/x.nii"


def _backend_reason(backend: str, tmp_path: Path, shape: tuple[int, ...], dtype: str) -> str:
    """What ``create_array`` itself says about an unstorable shape / dtype."""
    chunks = tuple(min(4, n) for n in shape)
    with pytest.raises(StoreError) as info:
        get_backend(backend).create_array(str(tmp_path / "direct"), ArraySpec(shape, dtype, chunks), {})
    return info.value.reason


def _refused(backend: str) -> list[tuple[tuple[int, ...], str]]:
    cases = [(SHAPE, "complex64"), (SHAPE, "<U2"), (SHAPE, "datetime64[s]")]
    if backend == "tiledb":
        cases.append((SHAPE, "float16"))
    else:
        cases.append(((2,) * 6, "int16"))
    return cases


def test_every_write_path_gives_the_backends_text(backend: str, tmp_path: Path) -> None:
    for i, (shape, dtype) in enumerate(_refused(backend)):
        reason = _backend_reason(backend, tmp_path, shape, dtype)
        data = np.zeros(shape, dtype)
        opts = WriteOptions(backend=backend)
        image = ImageData(data, np.eye(4), {}, SOURCE)
        uri = str(tmp_path / "w")
        with pytest.raises(StoreError) as info:
            write_image(uri, image, get_backend(backend), opts)
        assert str(info.value) == f"{uri}: {SOURCE}: {reason}"
        with pytest.raises(StoreError) as info:
            Volume.from_numpy(str(tmp_path / "n"), data, options=opts)
        assert str(info.value) == f"{tmp_path / 'n'}: numpy: {reason}"
        with pytest.raises(StoreError) as info:  # collection ingest: the same text for its volume
            VolumeCollection.from_images(str(tmp_path / f"c{i}"), {"s1": image}, options=opts)
        assert info.value.reason == f"{SOURCE}: {reason}"
        assert not (tmp_path / "w").exists() and not (tmp_path / "n").exists()


def _data(dtype: str) -> np.ndarray:
    rng = np.random.default_rng(5)
    if dtype == "bool":
        return rng.random(SHAPE) > 0.5
    return rng.normal(300, 80, SHAPE).astype(dtype)  # > 64 distinct values: an image, not labels


#: (dtype, setting, the error both backends raise or None where the volume is written, its words).
CASES: list[tuple[str, Lossy, type[Exception] | None, str]] = [
    ("int16", Lossy(keep_bits=8), LossyError, "keep_bits applies to floating-point volumes"),
    ("bool", Lossy(max_error=2.0), LossyLabelError, "a boolean volume is a mask"),
    ("float32", Lossy(keep_bits=30), LossyError, "keeps every mantissa bit"),
    ("complex64", Lossy(max_error=2.0), StoreError, "complex voxels are not stored"),
    ("int16", Lossy(max_error=2.0), None, ""),
    ("float64", Lossy(keep_bits=12), None, ""),
    ("float16", Lossy(max_error=0.5), None, ""),
]


@pytest.mark.parametrize(("dtype", "setting", "error", "words"), CASES)
def test_lossy_writes_same_outcome_on_both_backends(
    backend: str, tmp_path: Path, dtype: str, setting: Lossy, error: type[Exception] | None, words: str
) -> None:
    uri = str(tmp_path / "v")
    data = _data(dtype)
    opts = WriteOptions(backend=backend, lossy=setting)
    if dtype == "float16" and backend == "tiledb":  # the backend's refusal, before any rounding
        error, words = StoreError, "the tiledb backend has no float16 type"
    if error is None:
        got = Volume.from_numpy(uri, data, options=opts).to_numpy()
        np.testing.assert_array_equal(got, reduce_precision(data, setting))
        return
    with pytest.raises(error, match=words) as info:
        Volume.from_numpy(uri, data, options=opts)
    assert str(info.value).startswith(f"{uri}: numpy: ")  # names the array and the source
    assert not isinstance(info.value, TypeError)
    assert not Path(uri).exists()  # nothing written


def _BigEndian(data: np.ndarray) -> LazyArray:  # noqa: N802 - reads as the source it stands for
    """A lazy big-endian source (a memory-mapped file of another machine)."""
    return LazyArray(data.astype(data.dtype.newbyteorder(">")))


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int16"])
def test_lossy_other_byte_order(backend: str, tmp_path: Path, lazy: bool, dtype: str) -> None:
    """Big-endian voxels are rounded as the native ones (was: ``LossyError ... not >f4``)."""
    data = _data(dtype)
    source: Any = _BigEndian(data) if lazy else data.astype(data.dtype.newbyteorder(">"))
    setting = Lossy(max_error=2.0)
    vol = Volume.from_image(
        str(tmp_path / "v"), ImageData(source, np.eye(4)), options=WriteOptions(backend=backend, lossy=setting)
    )
    assert vol.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(vol.to_numpy(), reduce_precision(data, setting))
    assert vol.metadata["lossy"]["max_abs_error"] <= 2.0


def test_wrong_argument_types_stay_type_errors() -> None:
    with pytest.raises(TypeError, match="lossy must be a Lossy"):
        WriteOptions(lossy="abs:2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"lossy\['T1w'\] must be a Lossy"):
        WriteOptions(lossy={"T1w": 2.0})  # type: ignore[dict-item]


@pytest.mark.parametrize("shape", [(4, 0, 4), (0,), ()])
def test_an_empty_volume_is_refused_by_every_write_path(backend: str, tmp_path: Path, shape: tuple[int, ...]) -> None:
    data = np.zeros(shape, np.float32)
    opts = WriteOptions(backend=backend)
    image = ImageData(data, np.eye(4), {}, SOURCE)
    with pytest.raises(StoreError, match=rf"{SOURCE}: shape .*: a volume needs at least one voxel along every axis"):
        write_image(str(tmp_path / "w"), image, get_backend(backend), opts)
    with pytest.raises(StoreError, match="at least one voxel"):
        Volume.from_numpy(str(tmp_path / "n"), data, options=opts)
    with pytest.raises(StoreError, match=rf"{SOURCE}: shape"):
        VolumeCollection.from_images(str(tmp_path / "c"), {"s1": image}, options=opts)
    assert not any(tmp_path.iterdir())  # nothing created
