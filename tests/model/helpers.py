"""Small synthetic cohorts for model tests."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from radiobject import ImageData


def image(seed: int, shape=(12, 14, 10), dtype="int16", affine=None) -> ImageData:
    """A distinct image per seed (so a mix-up of volumes is detected)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 1000, shape).astype(dtype)
    aff = np.diag([1.0, 1.5, 2.0, 1.0]) if affine is None else affine
    return ImageData(data, aff, {"seed": seed}, f"synthetic-{seed}")


def write_nifti_cohort(root, subjects, shape=(12, 14, 10), label_shape=None) -> dict[str, dict[str, np.ndarray]]:
    """``root/<sid>/t1.nii.gz`` and ``root/<sid>/seg.nii.gz`` per subject; returns the arrays."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for k, sid in enumerate(subjects):
        d = root / sid
        d.mkdir(parents=True)
        t1 = image(k, shape).array
        seg = (np.random.default_rng(100 + k).random(label_shape or shape) > 0.7).astype(np.uint8)
        aff = np.diag([1.0, 1.5, 2.0, 1.0])
        nib.save(nib.Nifti1Image(t1, aff), d / "t1.nii.gz")
        nib.save(nib.Nifti1Image(seg, aff), d / "seg.nii.gz")
        out[sid] = {"t1": t1, "seg": seg}
    return out


class LazyArray:
    """A lazy source (``ArrayLike``) over ``data``: what TIFF and zarr readers hand the writer.
    ``largest`` is the most bytes one read took from it."""

    def __init__(self, data: np.ndarray) -> None:
        self._data, self.largest = data, 0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    def __getitem__(self, key: object) -> np.ndarray:
        out = self._data[key]
        self.largest = max(self.largest, out.nbytes)
        return out
