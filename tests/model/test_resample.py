"""Resampling to a target spacing: exact world geometry, derived collections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radiobject import ImageData
from radiobject.model.labels import get_label_map, set_label_map
from radiobject.model.radi_object import RadiObject
from radiobject.model.resample import resample_collection, resample_image, resampled_grid


def _ramp(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """Voxel value = world x coordinate (mm) of its centre: linear, so linear resampling is exact."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = idx @ affine[:3, :3].T + affine[:3, 3]
    return world[:, 0].reshape(shape).astype(np.float32)


def test_grid_keeps_field_of_view() -> None:
    aff = np.array([[0.0, 0, 2.0, 10], [0.5, 0, 0, -4], [0, 1.0, 0, 3], [0, 0, 0, 1]])
    shape, new, step = resampled_grid((40, 20, 10), aff, (1.0, 1.0, 1.0))
    assert shape == (20, 20, 20) and np.allclose(step, [2.0, 1.0, 0.5])
    # outer edge of voxel 0 (index -0.5) is at the same world place on both grids
    assert np.allclose(aff @ [-0.5, -0.5, -0.5, 1], new @ [-0.5, -0.5, -0.5, 1])
    assert np.allclose(aff @ [39.5, 19.5, 9.5, 1], new @ [19.5, 19.5, 19.5, 1])


def test_linear_is_exact_on_a_ramp() -> None:
    aff = np.diag([0.8, 1.0, 2.5, 1.0])
    aff[:3, 3] = [5, -3, 2]
    img = ImageData(_ramp((30, 8, 6), aff), aff)
    out = resample_image(img, (1.6, 1.0, 1.25))
    assert out.shape == (15, 8, 12) and out.dtype == np.float32
    want = _ramp(out.shape, out.affine)
    assert np.allclose(out.array[1:-1], want[1:-1], atol=1e-4)  # interior (edges clamp)


def test_label_collection(tmp_path: Path) -> None:
    seg = np.zeros((8, 8, 4), np.uint8)
    seg[2:6, 2:6, :] = 2
    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    rng = np.random.default_rng(0)
    radi = RadiObject.from_images(
        str(tmp_path / "st"),
        {
            "img": {"a": ImageData(rng.normal(size=(8, 8, 4)).astype(np.float32), aff)},
            "seg": {"a": ImageData(seg, aff)},
        },
    )
    set_label_map(radi.seg, {2: "organ"})
    out = resample_collection(radi, "seg", (1.0, 1.0, 1.0))
    assert out.name == "seg_1x1x1mm"
    vol = RadiObject(radi.uri)["seg_1x1x1mm"].volume("a")
    data = vol.to_numpy()
    assert data.dtype == np.uint8 and data.shape == (8, 8, 8) and set(np.unique(data)) == {0, 2}
    assert vol.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert np.array_equal(data[..., ::2], seg) and get_label_map(out).names == {2: "organ"}
    img = resample_collection(radi, "img", (2.0, 2.0, 2.0), out="img2")
    assert img.volume("a").shape == (4, 4, 4) and img.volume("a").dtype == np.float32


def test_resuming_into_an_output_of_another_grid_is_refused(tmp_path: Path) -> None:
    """An existing output written at another spacing or order is never topped up into a mixed collection."""
    from radiobject.errors import GeometryError

    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    rng = np.random.default_rng(1)
    imgs = {s: ImageData(rng.normal(size=(8, 8, 4)).astype(np.float32), aff) for s in ("a", "b")}
    radi = RadiObject.from_images(str(tmp_path / "st"), {"img": imgs})
    first = resample_collection(radi, "img", (2.0, 2.0, 2.0), out="out")
    before = {oid: first.volume(oid).to_numpy() for oid in ("a", "b")}
    for spacing, order in (((1.0, 1.0, 1.0), 1), ((2.0, 2.0, 2.0), 0)):
        with pytest.raises(GeometryError, match="another grid"):
            resample_collection(radi, "img", spacing, out="out", order=order)
    again = resample_collection(RadiObject(radi.uri), "img", (2.0, 2.0, 2.0), out="out")  # the same: resumed
    for oid, data in before.items():
        assert np.array_equal(again.volume(oid).to_numpy(), data)
    from radiobject.model.bulk import IngestItem

    with pytest.raises(TypeError, match="not a dict"):
        radi.add_collection("other", {"z": ImageData(np.zeros((4, 4, 4), np.float32), aff)})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes IngestItem entries, got str"):
        radi.add_collection("other", ["z"])  # type: ignore[list-item]
    assert "other" not in RadiObject(radi.uri).collection_names  # a wrong argument created nothing
    radi.add_collection("other", [IngestItem("z", "z", ImageData(np.zeros((4, 4, 4), np.float32), aff))])
    with pytest.raises(GeometryError, match="not in the source"):
        resample_collection(RadiObject(radi.uri), "img", (2.0, 2.0, 2.0), out="other")
