"""A small synthetic cohort on disk (NIfTI T1w + FLAIR + seg per subject) for demos and tests.

Layout (BIDS-like)::

    folder/participants.csv                 participant_id, age, sex, site
    folder/manifest.csv                     subject_id, collection, path (relative)
    folder/sub-01/anat/sub-01_T1w.nii.gz    float32 "brain" (ellipsoid, tissue classes, noise)
    folder/sub-01/anat/sub-01_FLAIR.nii.gz  int16, same grid
    folder/sub-01/anat/sub-01_seg.nii.gz    uint8 labels 0 / 1 (lesion) / 2 (edema), same grid

One session per subject, so neither the file names nor the manifest name one (a session column
would be a constant that the names do not carry). Everything is deterministic in ``seed``: the
same call writes byte-identical voxels.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["SampleCohort", "make_sample_cohort", "synthetic_subject"]

COLLECTIONS: tuple[str, ...] = ("T1w", "FLAIR", "seg")
#: Grid-sized float32 arrays :func:`synthetic_subject` holds at once (bounds its memory up front).
_WORK_ARRAYS = 12


@dataclass(frozen=True)
class SampleCohort:
    """What :func:`make_sample_cohort` wrote."""

    folder: Path
    subjects: tuple[str, ...]
    participants: Path
    manifest: Path

    def glob(self, collection: str) -> str:
        """The glob matching every file of a collection (one wildcard: the subject ID)."""
        return str(self.folder / "*" / "anat" / f"*_{collection}.nii.gz")


def _affine(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    aff = np.diag([*spacing, 1.0])
    aff[:3, 3] = [-(n - 1) * s / 2 for n, s in zip(shape, spacing, strict=True)]
    return aff


def synthetic_subject(
    shape: tuple[int, int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One subject's (T1w float32, FLAIR int16, seg uint8) on the same grid."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij"))
    radii = rng.uniform(0.7, 0.9, 3).astype(np.float32)
    r = np.sqrt(((grid / radii[:, None, None, None]) ** 2).sum(0))
    t1 = np.where(r < 1.0, 400.0, 0.0) + np.where(r < 0.75, 300.0, 0.0) - np.where(r < 0.25, 500.0, 0.0)
    centre = rng.uniform(-0.35, 0.35, 3).astype(np.float32)
    d = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0))
    size = float(rng.uniform(0.1, 0.2))
    seg = np.zeros(shape, np.uint8)
    seg[(d < size * 1.8) & (r < 1.0)] = 2
    seg[d < size] = 1
    t1 = np.clip(t1 - 150.0 * (seg > 0), 0, None)
    t1 = (t1 + rng.normal(0, 15.0, shape) * (r < 1.05)).astype(np.float32)
    flair = np.clip(t1 * 0.6 + 500.0 * (seg > 0) + rng.normal(0, 10.0, shape), 0, 32000).astype(np.int16)
    return t1, flair, seg


def make_sample_cohort(
    folder: str | os.PathLike[str],
    n_subjects: int = 8,
    shape: tuple[int, int, int] = (48, 56, 40),
    *,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.2),
    seed: int = 0,
) -> SampleCohort:
    """Writes ``n_subjects`` synthetic subjects under ``folder`` (created) and returns the layout.

    Args:
        folder: output folder; existing files of the same names are overwritten.
        n_subjects: subjects ``sub-01`` ... (zero-padded to at least 2 digits).
        shape: voxel grid of every image.
        spacing: voxel size in mm (the affine is diagonal, centred on the volume).
        seed: random seed (same seed, same voxels).
    """
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
    from radiobject.errors import OutputTooLargeError
    from radiobject.formats.inputs import max_image_bytes

    # the synthetic subject holds about a dozen float32 arrays of the grid at once
    need = int(np.prod([int(s) for s in shape], dtype=np.float64)) * 4 * _WORK_ARRAYS
    if need > max_image_bytes():
        raise OutputTooLargeError(
            str(folder),
            f"shape {tuple(shape)} would need about {need / 2**30:.1f} GiB of memory to synthesise "
            f"(limit {max_image_bytes() / 2**30:.1f} GiB, RADIOBJECT_MAX_IMAGE_BYTES); choose a smaller shape",
        )
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width = max(2, len(str(n_subjects)))
    # the ignore below: shape has 3 entries; tuple() of a generator is variable-length
    affine = _affine(tuple(int(s) for s in shape), spacing)  # type: ignore[arg-type]
    subjects: list[str] = []
    rows: list[dict[str, object]] = []
    manifest: list[dict[str, object]] = []
    for i in range(1, n_subjects + 1):
        sid = f"sub-{i:0{width}d}"
        subjects.append(sid)
        anat = root / sid / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        # the ignore below: shape has 3 entries; tuple() is variable-length
        for name, arr in zip(COLLECTIONS, synthetic_subject(tuple(shape), rng), strict=True):  # type: ignore[arg-type]
            img = nib.Nifti1Image(arr, affine)
            img.header.set_data_dtype(arr.dtype)
            img.header.set_xyzt_units("mm")
            path = anat / f"{sid}_{name}.nii.gz"
            nib.save(img, str(path))
            manifest.append({"subject_id": sid, "collection": name, "path": str(path.relative_to(root))})
        rows.append(
            {"participant_id": sid, "age": int(rng.integers(20, 80)), "sex": "FM"[i % 2], "site": "AB"[(i // 2) % 2]}
        )
    participants = root / "participants.csv"
    with open(participants, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    manifest_path = root / "manifest.csv"
    with open(manifest_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(manifest[0]))
        w.writeheader()
        w.writerows(manifest)
    return SampleCohort(root, tuple(subjects), participants, manifest_path)
