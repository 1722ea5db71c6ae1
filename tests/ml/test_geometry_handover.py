"""Geometry and dtype at the MONAI / TorchIO hand-over, against the libraries' own file readers.

Sources are oblique (20 degrees about z), LAS-like, anisotropic (0.8 x 1.1 x 2.5 mm) NIfTIs with an
int16 CT carrying ``scl_slope`` / ``scl_inter``, a float64 map and a uint8 label; every check runs
on both backends. The reference is always the library itself on the source file (``LoadImaged``,
``tio.ScalarImage(path)``), or the voxel index arithmetic of the affine.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

nib = pytest.importorskip("nibabel")
monai = pytest.importorskip("monai")

from radiobject import RadiObject, WriteOptions  # noqa: E402 - after the importorskip guards
from radiobject.ml.adapters.monai import slice_affine, sync_affine, to_meta  # noqa: E402
from radiobject.ml.datasets import PatchDataset, SliceDataset, VolumeDataset  # noqa: E402
from radiobject.ml.loaders import build_reader  # noqa: E402

SHAPE = (14, 12, 8)
KEYS = ["image", "label"]


def _affine() -> np.ndarray:
    t = np.deg2rad(20.0)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag([-0.8, 1.1, 2.5])
    a[:3, 3] = [40.5, -30.25, 12.125]
    return a


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("handover_src")
    rng = np.random.default_rng(0)
    for s in range(2):
        d = root / f"sub-{s}"
        d.mkdir()
        ct = nib.Nifti1Image((rng.random(SHAPE) * 1000).astype(np.int16), _affine())
        ct.header.set_slope_inter(0.5, -20.0)
        nib.save(ct, d / "ct.nii.gz")
        nib.save(nib.Nifti1Image(rng.random(SHAPE), _affine()), d / "pmap.nii.gz")  # float64
        lab = np.zeros(SHAPE, np.uint8)
        lab[3:9, 2:8, 2:6] = 1
        lab[5:7, 4:6, 3:5] = 2
        nib.save(nib.Nifti1Image(lab, _affine()), d / "seg.nii.gz")
    return root


@pytest.fixture(scope="module", params=["zarr", "tiledb"])
def radi(request: pytest.FixtureRequest, sources: Path, tmp_path_factory: pytest.TempPathFactory) -> RadiObject:
    uri = tmp_path_factory.mktemp(f"handover_{request.param}") / "store"
    images = {name: str(sources / f"*/{name}.nii.gz") for name in ("ct", "pmap", "seg")}
    return RadiObject.from_niftis(str(uri), images, options=WriteOptions(backend=request.param))


def _file_affine(sources: Path) -> np.ndarray:
    return nib.load(sources / "sub-0/ct.nii.gz").affine


# --------------------------------------------------------------------------- MONAI
def test_monai_pipeline_and_its_inverse_match_load_imaged(radi: RadiObject, sources: Path) -> None:
    from monai import transforms as mt

    def pipeline() -> mt.Compose:
        p = mt.Compose(
            [
                mt.Orientationd(keys=KEYS, axcodes="RAS"),
                mt.Spacingd(keys=KEYS, pixdim=(1.0, 1.0, 1.0), mode=("bilinear", "nearest")),
                mt.RandSpatialCropd(keys=KEYS, roi_size=(8, 8, 8), random_size=False),
            ]
        )
        p.set_random_state(7)
        return p

    ds = VolumeDataset(build_reader(radi, "ct", "seg"), transforms=pipeline())
    ds.meta_tensors = True
    ours = ds[0]
    sid = ours["subject_id"]
    load = mt.LoadImaged(keys=KEYS, image_only=True, ensure_channel_first=True)
    ref_pipe = pipeline()
    ref = ref_pipe(load({"image": str(sources / sid / "ct.nii.gz"), "label": str(sources / sid / "seg.nii.gz")}))
    for key in KEYS:
        assert tuple(ours[key].shape) == tuple(ref[key].shape)
        np.testing.assert_allclose(ours[key].affine.numpy(), ref[key].affine.numpy(), atol=1e-9)
        np.testing.assert_allclose(ours[key].numpy(), ref[key].numpy(), atol=1e-3)
    np.testing.assert_array_equal(ours["affine"].numpy(), ours["image"].affine.numpy())
    back = ds.transforms.inverse(dict(ours))
    ref_back = ref_pipe.inverse(dict(ref))
    assert tuple(back["label"].shape[1:]) == SHAPE
    np.testing.assert_allclose(back["image"].affine.numpy(), _file_affine(sources), atol=1e-9)
    np.testing.assert_array_equal(back["label"].numpy(), ref_back["label"].numpy())


@pytest.mark.parametrize("patch", [(6, 5, 4), (20, 16, 12)])  # inside, and larger than the volume
def test_patch_affine_moves_the_origin_to_the_patch_voxel(radi: RadiObject, sources: Path, patch) -> None:
    reader = build_reader(radi, "ct", "seg")
    ds = PatchDataset(reader, patch, patches_per_volume=3, seed=1)
    ds.meta_tensors = True
    full = reader.read_image(0)[0]
    a = _file_affine(sources)
    for i in range(3):
        sample = ds[i]
        origin = sample["patch_origin"].numpy()
        expect = a.copy()
        expect[:3, 3] += a[:3, :3] @ origin
        np.testing.assert_array_equal(sample["affine"].numpy(), expect)
        np.testing.assert_array_equal(sample["image"].affine.numpy(), expect)
        image = sample["image"].numpy()[0]
        for idx in [(0, 0, 0), tuple(p - 1 for p in patch), (2, 3, 1)]:  # patch voxel <-> volume voxel
            v = np.asarray(idx) + origin
            inside = all(0 <= v[k] < SHAPE[k] for k in range(3))
            assert image[idx] == (full[tuple(v)] if inside else 0.0)


@pytest.mark.parametrize("plane", ["coronal", "sagittal", "axial"])
def test_monai_2d_slices_get_monai_own_slice_geometry(radi: RadiObject, sources: Path, plane: str) -> None:
    """A slice with its ``slice_axis`` equals LoadImaged + a one-slice crop + SqueezeDimd, also
    after a 2D Spacingd (with the 4x4 affine the first two array axes would get the wrong spacing)."""
    from monai import transforms as mt

    reader = build_reader(radi, "ct", "seg")
    axis = reader.slice_region(0, plane, 0)[1]
    raw = SliceDataset(reader, plane)[3]
    assert raw["slice_axis"] == axis  # every slice sample names its normal axis
    ours = to_meta(raw)
    start, end = [0, 0, 0], list(SHAPE)
    start[axis], end[axis] = 3, 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = mt.Compose(
            [
                mt.LoadImaged(keys=KEYS, image_only=True, ensure_channel_first=True),
                mt.SpatialCropd(keys=KEYS, roi_start=start, roi_end=end),
                mt.SqueezeDimd(keys=KEYS, dim=1 + axis),
            ]
        )({"image": str(sources / "sub-0/ct.nii.gz"), "label": str(sources / "sub-0/seg.nii.gz")})
    np.testing.assert_allclose(ours["image"].affine.numpy(), ref["image"].affine.numpy(), atol=1e-12)
    spacing = mt.Spacingd(keys=KEYS, pixdim=(1.0, 1.0), mode=("bilinear", "nearest"))
    got, want = sync_affine(spacing(dict(ours))), spacing(dict(ref))
    for key in KEYS:
        assert tuple(got[key].shape) == tuple(want[key].shape)
        np.testing.assert_allclose(got[key].affine.numpy(), want[key].affine.numpy(), atol=1e-9)
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=1e-3)
    # the plain 4x4 affine carries the 2D result: its in-plane block is MONAI's, the normal axis unchanged
    full = got["affine"].numpy()
    assert full.shape == (4, 4)
    np.testing.assert_allclose(slice_affine(full, axis).numpy(), want["image"].affine.numpy(), atol=1e-9)
    np.testing.assert_allclose(full[:3, axis], raw["affine"].numpy()[:3, axis], atol=1e-12)
    np.testing.assert_allclose(got["spacing"].numpy(), np.sqrt((full[:3, :3] ** 2).sum(axis=0)), atol=1e-12)


def test_the_slice_dataset_hands_monai_its_2d_geometry(radi: RadiObject) -> None:
    """Through the dataset itself (meta tensors on, a 2D MONAI transform): the image's affine is the
    3x3 slice affine, and the plain ``affine`` stays 4x4 with the normal axis unchanged."""
    from monai import transforms as mt

    reader = build_reader(radi, "ct", "seg")
    axis = reader.slice_region(0, "axial", 0)[1]
    plain = SliceDataset(reader, "axial")[2]
    ds = SliceDataset(
        reader, "axial", transforms=mt.Spacingd(keys=KEYS, pixdim=(1.0, 1.0), mode=("bilinear", "nearest"))
    )
    ds.meta_tensors = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ds[2]
    assert tuple(got["image"].affine.shape) == (3, 3)
    full = got["affine"].numpy()
    assert full.shape == (4, 4)
    np.testing.assert_allclose(slice_affine(full, axis).numpy(), got["image"].affine.numpy(), atol=1e-9)
    np.testing.assert_allclose(full[:3, axis], plain["affine"].numpy()[:3, axis], atol=1e-12)


def test_a_2d_sample_without_slice_axis_keeps_its_4x4_affine(radi: RadiObject) -> None:
    raw = SliceDataset(build_reader(radi, "ct", None), "axial")[0]
    del raw["slice_axis"]  # a sample built elsewhere, naming no axis
    meta = to_meta(raw)
    np.testing.assert_array_equal(meta["image"].affine.numpy(), raw["affine"].numpy())


# ------------------------------------------------------------------------- TorchIO
def test_torchio_images_keep_the_file_dtype_and_affine(radi: RadiObject, sources: Path) -> None:
    tio = pytest.importorskip("torchio")
    from radiobject.ml.adapters.torchio import subjects_dataset

    ours = subjects_dataset(radi, modalities=["ct", "pmap"], label="seg")[0]
    sid = ours["subject_id"]
    for name, cls in (("ct", tio.ScalarImage), ("pmap", tio.ScalarImage), ("seg", tio.LabelMap)):
        key = "label" if name == "seg" else name
        ref = cls(sources / sid / f"{name}.nii.gz")
        assert ours[key].data.dtype == ref.data.dtype, name  # float32 (scaled int16), float64, uint8
        np.testing.assert_allclose(ours[key].data.numpy(), ref.data.numpy(), rtol=1e-6, atol=1e-4)
        # bit for bit the file's (nibabel) affine; TorchIO's ITK reader rebuilds it to ~1e-7 mm
        np.testing.assert_array_equal(ours[key].affine, nib.load(sources / sid / f"{name}.nii.gz").affine)
        np.testing.assert_allclose(ours[key].affine, ref.affine, atol=1e-6)
    assert ours["image"].data.dtype == torch.float32 and ours["image"].shape == (2, *SHAPE)


def test_torchio_a_label_collection_among_modalities_is_a_label_map(radi: RadiObject) -> None:
    tio = pytest.importorskip("torchio")
    from radiobject.ml.adapters.torchio import subjects_dataset

    subject = subjects_dataset(radi, modalities=["ct", "seg"])[0]
    assert isinstance(subject["seg"], tio.LabelMap) and isinstance(subject["ct"], tio.ScalarImage)
    assert subject["seg"].data.dtype == torch.uint8
    assert subject["image"].shape == (1, *SHAPE)  # the stacked image holds the image collection only
    moved = tio.Resample((0.7, 0.7, 0.7))(subject)  # nearest neighbour for a LabelMap: no new values
    assert set(np.unique(moved["seg"].data.numpy()).tolist()) <= {0, 1, 2}
    assert moved["seg"].data.dtype == torch.uint8
    crop = tio.Crop((1, 2, 3, 0, 2, 1))(subject)
    expect = subject["seg"].affine.copy()
    expect[:3, 3] += expect[:3, :3] @ np.array([1.0, 3.0, 2.0])
    np.testing.assert_allclose(crop["seg"].affine, expect, atol=1e-12)
