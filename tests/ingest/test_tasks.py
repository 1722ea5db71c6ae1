"""Format detection, loading and per-item validation."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from radiobject.errors import ImageReadError
from radiobject.formats.image import ImageData
from radiobject.ingest.tasks import VolumeTask, canonicalize, detect_format, find_problems, load_image


def _nifti(path: Path, shape=(6, 7, 5), affine=None, dtype=np.int16) -> Path:
    nib.save(
        nib.Nifti1Image(np.arange(np.prod(shape), dtype=dtype).reshape(shape), np.eye(4) if affine is None else affine),
        str(path),
    )
    return path


def test_detect_format_by_content(tmp_path: Path) -> None:
    assert detect_format(str(_nifti(tmp_path / "a.nii.gz"))) == "nifti"
    assert detect_format(str(_nifti(tmp_path / "a.nii"))) == "nifti"
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((3, 8, 9), np.uint8), photometric="minisblack")
    assert detect_format(str(tmp_path / "a.tif")) == "tiff"
    assert detect_format(str(tmp_path)) == "dicom"  # a folder is a DICOM series


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("t.nii.gz", b"\x89PNG\r\n\x1a\n" + b"\0" * 200, "not a NIfTI, DICOM or TIFF"),
        ("t.nii", b"", "empty file"),
        ("t.nii.gz", b"\x1f\x8b\x08\x00garbage", "cannot be decompressed"),
    ],
)
def test_detect_format_rejects(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason):
        detect_format(str(p))


def test_detect_format_wrong_suffix_and_missing(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((3, 8, 9), np.uint8), photometric="minisblack")
    (tmp_path / "x.nii.gz").write_bytes(gzip.compress((tmp_path / "x.tif").read_bytes()))
    with pytest.raises(ImageReadError, match="name says nifti but the content is tiff"):
        detect_format(str(tmp_path / "x.nii.gz"))
    with pytest.raises(ImageReadError, match="does not exist"):
        detect_format(str(tmp_path / "nope.nii.gz"))


def test_load_image_nifti_and_tiff(tmp_path: Path) -> None:
    img = load_image(str(_nifti(tmp_path / "a.nii.gz")))
    assert img.shape == (6, 7, 5) and img.dtype == np.int16
    data = np.random.default_rng(0).integers(0, 255, (3, 8, 9), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", data, photometric="minisblack")
    t = load_image(str(tmp_path / "a.tif"))
    assert t.shape == (9, 8, 3)  # x, y, z order
    assert np.array_equal(np.asarray(t.array[:]), data.transpose(2, 1, 0))


def test_canonicalize_flips_to_ras() -> None:
    aff = np.diag([-2.0, 1.0, 3.0, 1.0])
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    out = canonicalize(ImageData(arr, aff))
    assert np.array_equal(out.array, arr[::-1])

    def world(a, ijk):
        return (a @ [*ijk, 1])[:3]

    # the same voxel value sits at the same world position
    assert np.allclose(world(aff, (0, 1, 2)), world(out.affine, (1, 1, 2)))
    assert out.metadata["original_orientation"] == "LAS"


def test_find_problems(tmp_path: Path) -> None:
    a = _nifti(tmp_path / "a.nii.gz")
    b = _nifti(tmp_path / "b.nii.gz", shape=(6, 7, 4))
    c = _nifti(tmp_path / "c.nii.gz")
    tasks = [
        VolumeTask("img", "s1", "s1", str(a)),
        VolumeTask("seg", "s1", "s1", str(b)),  # shape differs from s1's image
        VolumeTask("img", "s2", "s2", str(c)),
        VolumeTask("seg", "s2", "s2", str(c)),
        VolumeTask("img", "s3", "s3", str(tmp_path / "missing.nii.gz")),
        VolumeTask("img", "s4", "s4", str(a)),
        VolumeTask("img", "s4", "s4", str(c)),  # duplicate subject / collection
        VolumeTask("img", "bad/id", "bad/id", str(a)),
    ]
    ok, problems = find_problems(tasks)
    assert {(t.collection, t.subject_id) for t in ok} == {("img", "s1"), ("seg", "s1"), ("img", "s2"), ("seg", "s2")}
    reasons = {(p.collection, p.subject_id): p.reason for p in problems}
    assert "does not exist" in reasons[("img", "s3")]
    assert "duplicate" in reasons[("img", "s4")]
    assert "path separator" in reasons[("img", "bad/id")]
    ok, problems = find_problems(tasks, validate_alignment=True)
    assert {(t.collection, t.subject_id) for t in ok} == {("img", "s2"), ("seg", "s2")}
    mis = [p for p in problems if p.subject_id == "s1"]
    assert len(mis) == 2 and all("misaligned: shape (6, 7, 4)" in p.reason for p in mis)


def test_alignment_affine_mismatch(tmp_path: Path) -> None:
    a = _nifti(tmp_path / "a.nii.gz")
    shifted = np.eye(4)
    shifted[0, 3] = 2.0
    b = _nifti(tmp_path / "b.nii.gz", affine=shifted)
    ok, problems = find_problems(
        [VolumeTask("img", "s", "s", str(a)), VolumeTask("seg", "s", "s", str(b))], validate_alignment=True
    )
    assert not ok and "affine" in problems[0].reason


def test_geometry_canonical_without_pixels(tmp_path: Path) -> None:
    from radiobject.ingest.tasks import image_geometry

    aff = np.array([[0, 0, 2.0, 0], [-1.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 0, 1]])
    p = _nifti(tmp_path / "o.nii.gz", shape=(6, 7, 5), affine=aff)
    shape, affine = image_geometry(VolumeTask("c", "s", "s", str(p)), canonical=True)
    ref = canonicalize(load_image(str(p)))
    assert shape == ref.shape[:3] and np.allclose(affine, ref.affine)
    from radiobject.ingest.tasks import _canonical_geometry

    s2, a2 = _canonical_geometry((6, 7, 5), aff)
    assert s2 == ref.shape[:3] and np.allclose(a2, ref.affine)


def test_an_item_timeout_of_zero_means_no_limit(tmp_path: Path) -> None:
    tasks = [VolumeTask("T1w", f"s{i}", f"s{i}", str(_nifti(tmp_path / f"s{i}.nii"))) for i in range(3)]
    ok, problems = find_problems(tasks, item_timeout_s=0)
    assert problems == [] and len(ok) == 3


@pytest.mark.timeout(60)
def test_a_stuck_check_is_a_typed_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from radiobject.errors import SourceTimeoutError
    from radiobject.ingest import tasks as tasks_mod

    release = threading.Event()
    real = tasks_mod.detect_format

    def stuck(path: str) -> str:
        if path.endswith("s1.nii"):
            release.wait(30)
        return real(path)

    monkeypatch.setattr(tasks_mod, "detect_format", stuck)
    tasks = [VolumeTask("T1w", f"s{i}", f"s{i}", str(_nifti(tmp_path / f"s{i}.nii"))) for i in range(3)]
    try:
        ok, problems = find_problems(tasks, item_timeout_s=0.5)
    finally:
        release.set()
    assert [t.subject_id for t in ok] == ["s0", "s2"] and len(problems) == 1
    (p,) = problems
    assert p.timed_out_s == 0.5 and p.source.endswith("s1.nii") and "s1.nii" in p.reason
    err = p.as_error()
    assert isinstance(err, SourceTimeoutError) and isinstance(err, TimeoutError) and err.path == p.source
    assert str(err).count("s1.nii") == 1  # the typed error names the file once
