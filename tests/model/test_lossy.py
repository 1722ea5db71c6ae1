"""Lossy storage (precision reduction before the lossless codec): error bounds, every reader decodes
it, quality recorded at write and shown by ``info``, labels refused with a typed error."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from radiobject import Codec, ImageData, Lossy, LossyLabelError, RadiObject, Volume, VolumeCollection, WriteOptions
from radiobject.cli.main import main
from radiobject.ingest import make_sample_cohort
from radiobject.model.lossy import LossyError, central_crop, reduce_precision
from tests.model.helpers import LazyArray


def _mri(shape: tuple[int, int, int] = (60, 64, 40), dtype: str = "float32") -> np.ndarray:
    rng = np.random.default_rng(7)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    body = (x**2 + y**2 + z**2) < 0.8
    return np.where(body, 400 + 200 * np.sin(4 * x) * np.cos(3 * y) + rng.normal(0, 12, shape), 0).astype(dtype)


def _ct(shape: tuple[int, int, int] = (60, 64, 40)) -> np.ndarray:
    rng = np.random.default_rng(8)
    return np.clip(rng.normal(40, 300, shape), -1024, 3071).astype(np.int16)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("bound", [0.01, 0.5, 3.0])
def test_float_error_bound_holds_everywhere(dtype: str, bound: float) -> None:
    a = _mri(dtype=dtype).ravel()
    f = np.finfo(dtype)
    a[:8] = [np.nan, np.inf, -np.inf, f.max, -f.max, f.tiny / 4, -0.0, bound]
    b = reduce_precision(a, Lossy(max_error=bound))
    assert b.dtype == a.dtype and b.shape == a.shape
    assert np.isnan(b[0]) and b[1] == np.inf and b[2] == -np.inf
    fin = np.isfinite(a)
    err = np.abs(b[fin].astype(np.float64) - a[fin].astype(np.float64))
    assert err.max() <= bound
    if dtype != "float16":
        body = fin & (a != 0)
        assert np.mean(b[body] != a[body]) > 0.5  # it does reduce precision


@pytest.mark.parametrize("keep", [3, 8, 16])
def test_keep_bits_relative_bound_and_trailing_zeros(keep: int) -> None:
    a = _mri().ravel()
    b = reduce_precision(a, Lossy(keep_bits=keep))
    nz = a != 0
    rel = np.abs(b[nz].astype(np.float64) - a[nz]) / np.abs(a[nz].astype(np.float64))
    assert rel.max() <= 2.0 ** -(keep + 1)
    assert np.all(b.view(np.uint32) & np.uint32((1 << (23 - keep)) - 1) == 0)


@pytest.mark.parametrize(
    ("dtype", "setting"),
    [(d, s) for d in ("float32", "float64") for s in (Lossy(max_error=3.0), Lossy(keep_bits=6))]
    + [("int16", Lossy(max_error=3.0))],
)
def test_any_byte_order_rounds_as_native(dtype: str, setting: Lossy) -> None:
    """``reduce_precision`` called directly on big- or little-endian voxels: the same values as on
    native ones, returned in native order (was: ``LossyError ... not >f4``)."""
    native = _mri(dtype=dtype) if dtype != "int16" else _ct()
    expected = reduce_precision(native, setting)
    for order in (">", "<"):
        swapped = native.astype(native.dtype.newbyteorder(order))
        got = reduce_precision(swapped, setting)
        assert got.dtype == np.dtype(dtype) and got.dtype.isnative
        np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(expected, native)  # it does round


@pytest.mark.parametrize("dtype", ["int16", "uint16", "int32", "uint8"])
def test_integer_rounding_to_power_of_two_steps(dtype: str) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(1)
    a = rng.integers(info.min, int(info.max) + 1, 50_000, dtype=np.int64).astype(dtype)
    a[:2] = [info.min, info.max]
    b = reduce_precision(a, Lossy(max_error=5))  # step 8, error <= 4
    err = np.abs(b.astype(np.int64) - a.astype(np.int64))
    assert err.max() <= 4 and b.dtype == a.dtype
    inside = b.astype(np.int64) != info.max
    assert np.all(b[inside].astype(np.int64) % 8 == 0)
    assert np.array_equal(reduce_precision(a, Lossy(max_error=0.9)), a)  # a bound below 1 changes nothing


def test_settings_are_validated() -> None:
    for bad in [{}, {"max_error": 1, "keep_bits": 3}, {"max_error": 0}, {"max_error": math.nan}, {"keep_bits": 0}]:
        with pytest.raises(ValueError):
            Lossy(**bad)
    with pytest.raises(LossyError, match="floating-point"):
        reduce_precision(np.zeros(4, np.int16), Lossy(keep_bits=4))
    assert Lossy.parse("abs:2") == Lossy(max_error=2.0) and Lossy.parse("bits=10") == Lossy(keep_bits=10)
    with pytest.raises(ValueError):
        Lossy.parse("jpeg:3")
    err = pickle.loads(pickle.dumps(LossyLabelError("collection 'seg'", "label")))
    assert isinstance(err, LossyLabelError) and "seg" in str(err)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return 10 * math.log10((a64.max() - a64.min()) ** 2 / np.mean((a64 - b64) ** 2))


@pytest.mark.parametrize("kind", ["mri", "ct"])
def test_collection_round_trip_every_reader_and_recorded_quality(tmp_path: Path, backend: str, kind: str) -> None:
    from skimage.metrics import structural_similarity

    data = _mri() if kind == "mri" else _ct()
    setting = Lossy(max_error=2.0) if kind == "ct" else Lossy(keep_bits=6)
    images = {f"s{i}": ImageData(data + i, np.diag([0.9, 0.9, 2.0, 1.0])) for i in range(2)}
    opts = WriteOptions(backend=backend, codec=Codec("blosc-zstd", 3), lossy=setting)
    coll = VolumeCollection.from_images(str(tmp_path / "img"), images, options=opts)
    plain = WriteOptions(backend=backend, codec=Codec("blosc-zstd", 3))
    exact = VolumeCollection.from_images(str(tmp_path / "ref"), images, options=plain)
    for oid, img in images.items():
        vol = coll.volume(oid)
        got = vol.to_numpy()
        expected = reduce_precision(np.asarray(img.array), setting)
        np.testing.assert_array_equal(got, expected)
        assert vol.dtype == data.dtype and np.array_equal(vol.affine, img.affine)
        np.testing.assert_array_equal(exact.volume(oid).to_numpy(), img.array)
        q = vol.metadata["lossy"]
        assert q["setting"] == setting.describe()
        assert q["psnr_db"] == pytest.approx(_psnr(np.asarray(img.array), got), abs=1e-3)
        crop = central_crop(got.shape)
        a64, g64 = np.asarray(img.array)[crop].astype(np.float64), got[crop].astype(np.float64)
        rng = float(np.asarray(img.array).max()) - float(np.asarray(img.array).min())
        assert q["ssim"] == pytest.approx(structural_similarity(a64, g64, data_range=rng, win_size=7), abs=1e-5)
        assert q["max_abs_error"] == pytest.approx(float(np.abs(got.astype(float) - np.asarray(img.array)).max()))
        assert 20 < q["psnr_db"] < 120 and 0.5 < q["ssim"] < 1.0
        if backend == "zarr":  # an independent reader decodes the same voxels
            import zarr

            arr = zarr.open_array(vol.uri, mode="r")
            np.testing.assert_array_equal(np.asarray(arr[...]), got)
    assert "lossy" not in exact.volume("s0").metadata


def test_lossy_stores_smaller(tmp_path: Path) -> None:
    from radiobject.cli._info import _stored_bytes

    img = {"a": ImageData(_mri((96, 96, 64)), np.eye(4))}
    codec = Codec("blosc-zstd", 3)
    VolumeCollection.from_images(str(tmp_path / "l"), img, options=WriteOptions(codec=codec, lossy=Lossy(keep_bits=7)))
    VolumeCollection.from_images(str(tmp_path / "x"), img, options=WriteOptions(codec=codec))
    lossy, exact = _stored_bytes(str(tmp_path / "l"), None), _stored_bytes(str(tmp_path / "x"), None)
    assert lossy is not None and exact is not None and lossy < 0.75 * exact


def test_lazy_source_rounded_like_an_eager_one(tmp_path: Path) -> None:
    data = _mri()
    setting = Lossy(max_error=1.5)
    lazy = Volume.from_image(
        str(tmp_path / "lazy"), ImageData(LazyArray(data), np.eye(4)), options=WriteOptions(lossy=setting)
    )
    eager = Volume.from_image(str(tmp_path / "eager"), ImageData(data, np.eye(4)), options=WriteOptions(lossy=setting))
    np.testing.assert_array_equal(lazy.to_numpy(), eager.to_numpy())
    ql, qe = lazy.metadata["lossy"], eager.metadata["lossy"]
    assert ql["psnr_db"] == pytest.approx(qe["psnr_db"]) and ql["ssim"] == pytest.approx(qe["ssim"])


def test_labels_are_refused(tmp_path: Path) -> None:
    seg = np.zeros((30, 30, 20), np.uint8)
    seg[5:15, 5:15, 5:10] = 1
    seg[15:20, 5:15, 5:10] = 2
    opts = WriteOptions(lossy=Lossy(max_error=2))
    with pytest.raises(LossyLabelError, match="distinct integer values"):
        VolumeCollection.from_images(str(tmp_path / "anatomy"), {"a": ImageData(seg, np.eye(4))}, options=opts)
    with pytest.raises(LossyLabelError, match="label collection"):
        VolumeCollection.from_images(str(tmp_path / "seg"), {"a": ImageData(_ct(), np.eye(4))}, options=opts)
    assert not (tmp_path / "seg").exists()
    with pytest.raises(LossyLabelError, match="boolean"):
        Volume.from_image(str(tmp_path / "b"), ImageData(seg > 0, np.eye(4)), options=opts)
    with pytest.raises(LossyLabelError, match="label"):
        Volume.from_image(str(tmp_path / "m"), ImageData(_ct(), np.eye(4), {"role": "label"}), options=opts)
    radi = RadiObject.create(str(tmp_path / "store"))
    from radiobject.model.bulk import IngestItem

    with pytest.raises(LossyLabelError):
        radi.add_collection("lesion_mask", [IngestItem("x", "x", ImageData(_ct(), np.eye(4)))], options=opts)
    assert "lesion_mask" not in RadiObject(str(tmp_path / "store")).collection_names


def test_per_collection_setting_leaves_labels_exact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cohort = make_sample_cohort(tmp_path / "cohort", 2, (24, 26, 20))
    out = str(tmp_path / "store")
    rc = main(
        [
            "ingest",
            out,
            "--manifest",
            str(cohort.manifest),
            "--no-progress",
            "--compression",
            "blosc-zstd",
            "--lossy",
            "T1w=bits:8",
            "FLAIR=abs:4",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    radi = RadiObject(out)
    ref = str(tmp_path / "ref")
    assert main(["ingest", ref, "--manifest", str(cohort.manifest), "--no-progress"]) == 0
    exact = RadiObject(ref)
    for oid in radi["seg"].obs_ids:
        np.testing.assert_array_equal(radi["seg"].volume(oid).to_numpy(), exact["seg"].volume(oid).to_numpy())
        assert "lossy" not in radi["seg"].volume(oid).metadata
    for oid in radi["T1w"].obs_ids:
        got, orig = radi["T1w"].volume(oid).to_numpy(), exact["T1w"].volume(oid).to_numpy()
        nz = orig != 0
        assert np.max(np.abs(got[nz].astype(np.float64) - orig[nz]) / np.abs(orig[nz])) <= 2.0**-9
        assert radi["T1w"].volume(oid).metadata["lossy"]["setting"] == "keep_bits=8"
    for oid in radi["FLAIR"].obs_ids:
        got, orig = radi["FLAIR"].volume(oid).to_numpy(), exact["FLAIR"].volume(oid).to_numpy()
        assert np.abs(got.astype(np.int64) - orig).max() <= 4 and got.dtype == orig.dtype
    capsys.readouterr()
    assert main(["info", out]) == 0
    text = capsys.readouterr().out
    assert "lossy T1w: keep_bits=8 on 2/2 volume(s); PSNR min" in text and "SSIM min" in text
    assert "lossy FLAIR: max_error=4" in text and "lossy seg" not in text
    assert main(["info", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["collections"]["T1w"]["lossy"]["psnr_db_min"] > 20 and "lossy" not in info["collections"]["seg"]
    rc = main(
        ["ingest", str(tmp_path / "bad"), "--manifest", str(cohort.manifest), "--no-progress", "--lossy", "abs:2"]
    )
    assert rc == 2 and "seg" in capsys.readouterr().err and not (tmp_path / "bad").exists()
