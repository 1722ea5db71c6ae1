"""Small synthetic dataset trees in the layouts users ingest (MSD, nnU-Net, BIDS), written with nibabel."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

#: Anisotropic (0.8 x 0.8 x 2.0 mm) affine with an origin, as scanners write them.
AFFINE = np.array([[0.8, 0, 0, -10.0], [0, 0.8, 0, -12.0], [0, 0, 2.0, -20.0], [0, 0, 0, 1]])


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    """Write ``data`` as NIfTI with sform / qform code 1 and mm / s units."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    nib.save(img, str(path))
    return path


def label(shape: tuple[int, int, int]) -> np.ndarray:
    """A label volume with classes 1 (a box) and 2 (a smaller box inside it)."""
    out = np.zeros(shape, np.uint8)
    out[8:16, 8:16, 4:8] = 1
    out[10:13, 10:13, 5:7] = 2
    return out


def make_msd(root: Path, cases: int = 3, seed: int = 0) -> Path:
    """An MSD ``TaskXX`` folder: 4D two-channel images (T2, ADC), labels, ``dataset.json``."""
    rng = np.random.default_rng(seed)
    names = [f"prostate_{i:02d}" for i in range(cases)]
    for c in names:
        save(root / "imagesTr" / f"{c}.nii.gz", rng.normal(size=(24, 24, 12, 2)).astype(np.float32))
        save(root / "labelsTr" / f"{c}.nii.gz", label((24, 24, 12)))
    ds = {
        "name": "Prostate",
        "modality": {"0": "T2", "1": "ADC"},
        "labels": {"0": "background", "1": "PZ", "2": "TZ"},
        "numTraining": cases,
        "numTest": 0,
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in names],
        "test": [],
    }
    (root / "dataset.json").write_text(json.dumps(ds))
    return root


def make_nnunet(root: Path, cases: int = 3, seed: int = 0) -> Path:
    """An nnU-Net v2 raw dataset: channels T1 (0000) and FLAIR (0001), labels, ``dataset.json``."""
    rng = np.random.default_rng(seed)
    for i in range(cases):
        c = f"case_{i:03d}"
        for ch in range(2):
            save(root / "imagesTr" / f"{c}_{ch:04d}.nii.gz", rng.normal(size=(24, 24, 12)).astype(np.float32))
        save(root / "labelsTr" / f"{c}.nii.gz", label((24, 24, 12)))
    ds = {
        "channel_names": {"0": "T1", "1": "FLAIR"},
        "labels": {"background": 0, "edema": 1, "tumour": 2},
        "numTraining": cases,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(ds))
    return root


def make_bids(root: Path, seed: int = 0) -> Path:
    """A BIDS dataset: 3 subjects x 2 sessions, T1w with sidecars, DWI with .bval/.bvec, n/a cells."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.8.0"}))
    (root / "participants.tsv").write_text(
        "participant_id\tage\tsex\tgroup\nsub-01\t34\tM\tpatient\nsub-02\tn/a\tF\tcontrol\nsub-03\t51\tn/a\tpatient\n"
    )
    (root / "T1w.json").write_text(json.dumps({"RepetitionTime": 2.3, "EchoTime": 0.003}))
    for s in ("01", "02", "03"):
        for ses in ("pre", "post"):
            d = root / f"sub-{s}" / f"ses-{ses}"
            stem = f"sub-{s}_ses-{ses}"
            save(d / "anat" / f"{stem}_T1w.nii.gz", rng.normal(size=(24, 24, 12)).astype(np.float32))
            (d / "anat" / f"{stem}_T1w.json").write_text(json.dumps({"EchoTime": 0.004, "FlipAngle": 9}))
            save(
                d / "dwi" / f"{stem}_dwi.nii.gz",
                rng.normal(size=(12, 12, 6, 4)).astype(np.float32),
                np.diag([2.0, 2.0, 2.0, 1.0]),
            )
            (d / "dwi" / f"{stem}_dwi.bval").write_text("0 1000 1000 2000\n")
            (d / "dwi" / f"{stem}_dwi.bvec").write_text("0 1 0 0\n0 0 1 0\n0 0 0 1\n")
        (root / f"sub-{s}" / f"sub-{s}_sessions.tsv").write_text("session_id\tscanner\nses-pre\tA\nses-post\tn/a\n")
    return root
