"""DWI b-values and gradient directions: real GE / Siemens DTI, synthetic vendors vs dcm2niix, export.

Directions are compared in patient space (each .bvec turned back through its own image's axes,
FSL rule: x negated when det > 0), so the comparison does not depend on how either side orders
its voxel axes: identical to 1e-4 against dcm2niix (sign included); against dicom2nifti's
references, identical up to the sign of each vector (the two tools pick opposite polarities for GE,
which describes the same diffusion weighting).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radiobject.formats.dicom import read_dicom_series
from radiobject.formats.dicom.dwi import fsl_text, write_fsl_gradients
from tests.conftest import data_path
from tests.formats.dicom._synth import DCM2NIIX, run_dcm2niix, write_dwi_series

needs_dcm2niix = pytest.mark.skipif(not DCM2NIIX.exists(), reason="dcm2niix wheel not installed")
REAL = ["ge/dti/001", "ge/dti/001_implicit", "siemens/dti_classic/001", "siemens/dti_classic/001_implicit"]


def to_patient(bvecs: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """FSL bvecs (n, 3) of an image -> unit directions in its world (RAS) space."""
    rot = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    b = np.asarray(bvecs, dtype=np.float64).reshape(-1, 3).copy()
    if np.linalg.det(rot) > 0:
        b[:, 0] *= -1
    return (rot @ b.T).T


def _read_fsl(stem: Path) -> tuple[np.ndarray, np.ndarray]:
    bval = np.loadtxt(str(stem) + ".bval", ndmin=1)
    bvec = np.loadtxt(str(stem) + ".bvec", ndmin=2)
    return bval, bvec.T


def _oblique() -> tuple[float, ...]:
    row = np.array([np.cos(0.3), np.sin(0.3), 0.0])
    col = np.array([-np.sin(0.3) * 0.9, np.cos(0.3) * 0.9, np.sqrt(0.19)])
    col -= row * (row @ col)
    col /= np.linalg.norm(col)
    return tuple(row) + tuple(col)


ORIENTATIONS = {
    "axial": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "oblique": _oblique(),
    "coronal": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
    "sagittal": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
}
BVALS = [0, 1000, 1000, 1000, 2000]
VECTORS = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, -0.48, 0.64]]


@pytest.mark.parametrize("case", REAL)
def test_real_dti_matches_dicom2nifti_reference(case: str) -> None:
    folder = data_path("dicom", "dicom2nifti", *case.split("/"))
    img = read_dicom_series(folder)
    diff = img.metadata["diffusion"]
    bval, bvec = _read_fsl(Path(str(folder) + "_ground_truth"))
    np.testing.assert_allclose(diff["bvals"], bval, atol=1e-6)
    # the references hold their vectors in the row-flipped frame dcm2niix writes (i, -j, k)
    flipped = img.affine @ np.diag([1.0, -1.0, 1.0, 1.0])
    ours = to_patient(np.asarray(diff["bvecs"]), img.affine)
    ref = to_patient(bvec, flipped)
    err = np.minimum(np.abs(ours - ref).max(axis=1), np.abs(ours + ref).max(axis=1))
    assert err.max() < 1e-4, (diff["bvecs"], bvec)
    assert diff["source"] == ("ge" if case.startswith("ge") else "siemens-private")


@needs_dcm2niix
@pytest.mark.parametrize("case", REAL)
def test_real_dti_matches_dcm2niix(case: str, tmp_path: Path) -> None:
    folder = data_path("dicom", "dicom2nifti", *case.split("/"))
    ref = run_dcm2niix(folder, tmp_path)[""]
    img = read_dicom_series(folder)
    diff = img.metadata["diffusion"]
    bval, bvec = _read_fsl(tmp_path / "s")
    np.testing.assert_allclose(diff["bvals"], bval, atol=1e-6)
    np.testing.assert_allclose(
        to_patient(np.asarray(diff["bvecs"]), img.affine), to_patient(bvec, ref.affine), atol=1e-4
    )
    if case.startswith("ge"):  # no (0018,1312): kept as stored, like dcm2niix, and said so
        assert any("InPlanePhaseEncodingDirection" in w for w in img.metadata["warnings"])


SYNTHETIC = [(v, o, "COL") for v in ("philips", "canon", "siemens", "ge") for o in ORIENTATIONS] + [
    ("ge", o, "ROW") for o in ORIENTATIONS
]


@needs_dcm2niix
@pytest.mark.parametrize("vendor,orientation,phase", SYNTHETIC)
def test_synthetic_vendor_matches_dcm2niix(vendor: str, orientation: str, phase: str, tmp_path: Path) -> None:
    write_dwi_series(tmp_path / "dcm", vendor, BVALS, VECTORS, iop=ORIENTATIONS[orientation], phase=phase)
    ref = run_dcm2niix(tmp_path / "dcm", tmp_path / "nii")[""]
    bval, bvec = _read_fsl(tmp_path / "nii" / "s")
    img = read_dicom_series(tmp_path / "dcm")
    diff = img.metadata["diffusion"]
    assert img.shape[3] == len(BVALS)
    np.testing.assert_allclose(diff["bvals"], bval, atol=1e-6)
    np.testing.assert_allclose(
        to_patient(np.asarray(diff["bvecs"]), img.affine), to_patient(bvec, ref.affine), atol=1e-4
    )
    assert diff["bvecs"][0] == [0.0, 0.0, 0.0]


@needs_dcm2niix
def test_uih_bvals_match_dcm2niix_and_vectors_follow_the_standard(tmp_path: Path) -> None:
    """dcm2niix writes zero vectors for UIH classic images with only the standard tags; the
    b-values agree and the directions are (0018,9089) in patient space, as the standard says."""
    write_dwi_series(tmp_path / "dcm", "uih", BVALS, VECTORS, iop=ORIENTATIONS["oblique"])
    run_dcm2niix(tmp_path / "dcm", tmp_path / "nii")
    bval, _ = _read_fsl(tmp_path / "nii" / "s")
    img = read_dicom_series(tmp_path / "dcm")
    diff = img.metadata["diffusion"]
    np.testing.assert_allclose(diff["bvals"], bval, atol=1e-6)
    lps = np.asarray(VECTORS, dtype=np.float64)
    ras = lps * [-1, -1, 1]
    np.testing.assert_allclose(to_patient(np.asarray(diff["bvecs"]), img.affine), ras, atol=1e-6)


def test_ge_scaled_vector_rescaled_like_dcm2niix(tmp_path: Path) -> None:
    write_dwi_series(tmp_path, "ge", [0, 1000], [[0, 0, 0], [0.5, 0, 0]])  # |g| = 0.5: b scaled
    diff = read_dicom_series(tmp_path).metadata["diffusion"]
    assert diff["bvals"] == [0.0, 250.0]
    assert np.linalg.norm(diff["bvecs"][1]) == pytest.approx(1.0)


def test_non_dwi_has_no_diffusion(tmp_path: Path) -> None:
    write_dwi_series(tmp_path, "philips", [0, 0], [[0, 0, 0], [0, 0, 0]])
    assert "diffusion" not in read_dicom_series(tmp_path).metadata


def test_fsl_files_written_next_to_the_nifti(tmp_path: Path) -> None:
    write_dwi_series(tmp_path / "dcm", "siemens", BVALS, VECTORS, iop=ORIENTATIONS["oblique"])
    md = read_dicom_series(tmp_path / "dcm").metadata
    (tmp_path / "out").mkdir()
    paths = write_fsl_gradients(md, tmp_path / "out" / "sub-01.nii.gz")
    assert [Path(p).name for p in paths] == ["sub-01.bval", "sub-01.bvec"]
    bval, bvec = _read_fsl(tmp_path / "out" / "sub-01")
    np.testing.assert_allclose(bval, md["diffusion"]["bvals"])
    np.testing.assert_allclose(bvec, md["diffusion"]["bvecs"], atol=1e-6)
    assert fsl_text(md["diffusion"])[0] == "0 1000 1000 1000 2000\n"
    assert write_fsl_gradients({"format": "dicom"}, tmp_path / "out" / "x.nii") == []


def test_export_cli_writes_bval_bvec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radiobject import RadiObject
    from radiobject.cli.main import main

    write_dwi_series(tmp_path / "dcm" / "sub-01", "philips", BVALS, VECTORS, iop=ORIENTATIONS["oblique"])
    store = str(tmp_path / "store")
    rc = main(["ingest", store, "--images", f"dwi={tmp_path / 'dcm' / '*'}", "--no-progress"])
    assert rc == 0, capsys.readouterr().out
    rc = main(["export", store, str(tmp_path / "nii")])
    assert rc == 0, capsys.readouterr().err
    out = sorted(p.name for p in (tmp_path / "nii" / "dwi").iterdir())
    assert out == ["sub-01.bval", "sub-01.bvec", "sub-01.nii.gz"]
    bval, _ = _read_fsl(tmp_path / "nii" / "dwi" / "sub-01")
    np.testing.assert_allclose(bval, BVALS)
    obs = RadiObject(store)["dwi"].obs  # the gradients reach the obs row (metadata column)
    assert '"bvals": [0.0, 1000.0, 1000.0, 1000.0, 2000.0]' in obs["metadata"].iloc[0]


def test_enhanced_mr_diffusion_sequence_equals_classic(tmp_path: Path) -> None:
    """Per-frame MR Diffusion Sequence of an enhanced file (classic series converted by highdicom,
    the diffusion attributes moved into MRDiffusionSequence as scanners write them)."""
    hd = pytest.importorskip("highdicom")
    import logging
    import warnings

    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    write_dwi_series(tmp_path / "dcm", "philips", BVALS, VECTORS, iop=ORIENTATIONS["oblique"])
    classic = read_dicom_series(tmp_path / "dcm").metadata["diffusion"]
    datasets = [pydicom.dcmread(f) for f in sorted((tmp_path / "dcm").iterdir())]
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enh = hd.legacy.LegacyConvertedEnhancedMRImage(
                legacy_datasets=datasets,
                series_instance_uid=hd.UID(),
                series_number=1,
                sop_instance_uid=hd.UID(),
                instance_number=1,
            )
    finally:
        logging.disable(logging.NOTSET)
    for frame in enh.PerFrameFunctionalGroupsSequence:
        unassigned = frame.UnassignedPerFrameConvertedAttributesSequence[0]
        item = Dataset()
        item.DiffusionBValue = unassigned.DiffusionBValue
        del unassigned.DiffusionBValue
        if "DiffusionGradientOrientation" in unassigned:
            g = Dataset()
            g.DiffusionGradientOrientation = unassigned.DiffusionGradientOrientation
            item.DiffusionGradientDirectionSequence = Sequence([g])
            del unassigned.DiffusionGradientOrientation
        frame.MRDiffusionSequence = Sequence([item])
    enh.save_as(tmp_path / "enhanced.dcm")
    img = read_dicom_series(tmp_path / "enhanced.dcm")
    assert img.metadata["n_files"] == 1 and img.shape[3] == len(BVALS)
    assert img.metadata["diffusion"]["bvals"] == classic["bvals"]
    np.testing.assert_allclose(img.metadata["diffusion"]["bvecs"], classic["bvecs"], atol=1e-8)
