"""One set of voxel dtypes for both backends (``storage.base.VOXEL_DTYPES``): the same dtypes are
stored and the same refused, with a ``StoreError`` naming the array and the dtype, before anything
is written; TileDB lacks exactly ``float16`` (``tiledb_backend.MISSING_DTYPES``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radiobject.errors import StoreError
from radiobject.storage import ArraySpec, get_backend
from radiobject.storage.base import VOXEL_DTYPES, voxel_dtype
from radiobject.storage.tiledb_backend import MISSING_DTYPES

SHAPE = (5, 4, 3)
WHOLE = tuple(slice(0, s) for s in SHAPE)
REFUSED = [
    "complex64", "complex128", "datetime64[s]", "timedelta64[s]", "<U4", "S4", "V4", "object",
    "longdouble", "clongdouble", "i1,i2",
]  # fmt: skip
CANDIDATES = sorted(t.str for t in VOXEL_DTYPES) + [">i2", ">f4", ">u8"] + REFUSED


def _missing(backend: str) -> frozenset[np.dtype]:
    return MISSING_DTYPES if backend == "tiledb" else frozenset()


def _stores(backend: str, where: Path, dtype: str) -> bool:
    """Whether ``backend`` stores ``dtype`` voxels (written and read back exactly); ``False`` on its
    ``StoreError``, any other exception fails the test."""
    be = get_backend(backend)
    uri = str(where / f"{backend}-{np.dtype(dtype).str.replace('<', 'L').replace('>', 'B').replace('|', 'N')}")
    try:
        arr = be.create_array(uri, ArraySpec(SHAPE, dtype, (4, 4, 4)), {})
    except StoreError as exc:
        assert uri in str(exc) and str(np.dtype(dtype)) in str(exc), str(exc)
        assert not Path(uri).exists()  # refused before anything is written
        return False
    data = (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 2).astype(dtype)
    arr.write(WHOLE, data)
    again = be.open_array(uri)
    assert again.dtype == np.dtype(dtype).newbyteorder("=")
    got = again.read(WHOLE)
    assert got.dtype == again.dtype and np.array_equal(got, data)
    return True


def test_both_backends_store_the_same_set(tmp_path: Path) -> None:
    stored = {b: {d for d in CANDIDATES if _stores(b, tmp_path, d)} for b in ("zarr", "tiledb")}
    expected = {t.str for t in VOXEL_DTYPES} | {">i2", ">f4", ">u8"}
    assert stored["zarr"] == expected
    assert stored["tiledb"] == expected - {t.str for t in MISSING_DTYPES}
    assert MISSING_DTYPES == {np.dtype("float16")}


@pytest.mark.parametrize("dtype", [*REFUSED, "float16"])
def test_refused_dtypes_are_store_errors_naming_array_and_dtype(backend: str, tmp_path: Path, dtype: str) -> None:
    uri = str(tmp_path / "v")
    if dtype == "float16" and backend == "zarr":
        assert _stores(backend, tmp_path, dtype)  # Zarr v3 has float16
        return
    keep = get_backend(backend).create_array(uri, ArraySpec(SHAPE, "int16", (4, 4, 4)), {})
    keep.write(WHOLE, np.ones(SHAPE, np.int16))
    with pytest.raises(StoreError, match=r"voxel dtype|cannot be stored") as info:
        get_backend(backend).create_array(uri, ArraySpec(SHAPE, dtype, (4, 4, 4)), {})
    assert uri in str(info.value) and str(np.dtype(dtype)) in str(info.value)
    assert np.array_equal(get_backend(backend).open_array(uri).read(WHOLE), np.ones(SHAPE, np.int16))  # untouched


def test_tiledb_float16_names_the_backend_and_the_dtype(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="tiledb backend has no float16 type") as info:
        get_backend("tiledb").create_array(str(tmp_path / "h"), ArraySpec(SHAPE, "float16", (4, 4, 4)), {})
    assert str(tmp_path / "h") in str(info.value)
    assert not (tmp_path / "h").exists()


@pytest.mark.parametrize(
    ("array", "data"),
    [("int16", "float64"), ("float32", "complex64"), ("uint8", "int16"), ("float32", "float64"), ("bool", "uint8")],
)
def test_a_lossy_write_is_refused_before_writing(backend: str, tmp_path: Path, array: str, data: str) -> None:
    """A write whose voxels do not cast safely to the array's dtype is the same ``StoreError`` on
    both backends (Zarr's tensorstore raised a bare ``TypeError``; TileDB alone would truncate)."""
    uri = str(tmp_path / "w")
    arr = get_backend(backend).create_array(uri, ArraySpec(SHAPE, array, (4, 4, 4)), {})
    arr.write(WHOLE, np.ones(SHAPE, array))
    with pytest.raises(StoreError) as info:
        arr.write(WHOLE, np.full(SHAPE, 2.5, data))
    assert str(info.value) == f"{arr._uri}: cannot write {data} voxels into a {array} array without loss"
    assert uri in str(info.value)
    assert np.array_equal(get_backend(backend).open_array(uri).read(WHOLE), np.ones(SHAPE, array))


def test_safe_casts_are_written(backend: str, tmp_path: Path) -> None:
    arr = get_backend(backend).create_array(str(tmp_path / "w"), ArraySpec(SHAPE, "int32", (4, 4, 4)), {})
    arr.write(WHOLE, np.ones(SHAPE, ">i2"))  # wider, other byte order: no value changes
    arr.write((slice(0, 1), slice(0, 4), slice(0, 3)), np.zeros((1, 4, 3), bool))
    got = arr.read(WHOLE)
    assert got.dtype == np.int32 and got[0].sum() == 0 and np.all(got[1:] == 1)


@pytest.mark.parametrize("dtype", ["complex64", "object", "<U4", "datetime64[s]", "float16", "longdouble"])
def test_one_refusal_text_for_both_backends(tmp_path: Path, dtype: str) -> None:
    """``Backend.check_storable`` is the check of ``create_array``: one text, differing only in the
    backend's name and the dtypes it holds; ``source`` is named after the array."""
    texts = {}
    for name in ("zarr", "tiledb"):
        be = get_backend(name)
        if dtype == "float16" and name == "zarr":
            assert be.check_storable("/s", SHAPE, dtype) == np.dtype("float16")
            continue
        uri = str(tmp_path / name)
        with pytest.raises(StoreError) as created:
            be.create_array(uri, ArraySpec(SHAPE, dtype, (4, 4, 4)), {})
        with pytest.raises(StoreError) as checked:
            be.check_storable(uri, SHAPE, np.dtype(dtype), source="/data/x.nii")
        assert checked.value.reason == f"/data/x.nii: {created.value.reason}"
        texts[name] = created.value.reason.split(";")[0]
    if dtype != "float16":
        assert texts["zarr"] == texts["tiledb"]
        word = {"complex64": "complex", "longdouble": "not a supported voxel dtype"}.get(dtype, "not numbers")
        assert word in texts["zarr"]


def test_zarr_axis_count_refused_before_an_array_is_replaced(backend: str, tmp_path: Path) -> None:
    uri = str(tmp_path / "v")
    be = get_backend(backend)
    be.create_array(uri, ArraySpec(SHAPE, "int16", (4, 4, 4)), {}).write(WHOLE, np.ones(SHAPE, np.int16))
    six = (2,) * 6
    if backend == "tiledb":  # no axis limit of ours
        assert be.check_storable(uri, six, "int16") == np.dtype("int16")
        return
    with pytest.raises(StoreError, match=r"6 axes .*: a zarr array holds at most 5 \(x, y, z, t, c\)") as info:
        be.create_array(uri, ArraySpec(six, "int16", (1,) * 6), {})
    assert str(info.value).startswith(f"{uri}: ")
    assert np.array_equal(be.open_array(uri).read(WHOLE), np.ones(SHAPE, np.int16))  # untouched


def test_voxel_dtype_normalises_byte_order_and_refuses_nonsense() -> None:
    assert voxel_dtype("/s", ">i2", "zarr") == np.dtype("int16")
    assert voxel_dtype("/s", np.float32, "tiledb", MISSING_DTYPES) == np.dtype("float32")
    with pytest.raises(StoreError, match="/s: 'nonsense' is not a voxel dtype"):
        voxel_dtype("/s", "nonsense", "zarr")
    with pytest.raises(StoreError, match="^/s: /x.nii: 'nonsense' is not a voxel dtype"):
        voxel_dtype("/s", "nonsense", "zarr", source="/x.nii")
