"""MONAI: samples whose ``image`` / ``label`` are ``MetaTensor`` s with the sample's real affine.

The affine is the volume's, shifted to the sample's origin (patch / slice), in MONAI's convention
(the NIfTI / nibabel RAS affine of the array axes, as ``LoadImaged`` gives it), so ``Spacingd``,
``Orientationd``, ``RandAffined``, ``SpatialPadd``, ``Resized`` act in millimetres and update it.
After the transforms, the sample's plain ``affine`` key is set to the image's updated affine.

2D slices (image ``(C, a, b)``) whose sample names the array axis the slice is normal to (a
``slice_axis`` key, or ``to_meta(..., slice_axis=)``) get MONAI's own 2D geometry: the 3x3 affine
``SqueezeDimd`` leaves after ``LoadImaged`` + a one-slice crop (the row and column of that axis
dropped), so MONAI's 2D ``Spacingd`` / ``Orientationd`` see the slice's in-plane voxel sizes, not
those of the first two array axes. The plain ``affine`` key stays the slice's 4x4 affine (the
transformed in-plane block written back into it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["slice_affine", "sync_affine", "to_meta"]

_KEYS = ("image", "label")


def slice_affine(affine: Any, axis: int) -> torch.Tensor:
    """The 3x3 affine of a 2D slice normal to array ``axis`` from its 4x4 one: row and column
    ``axis`` dropped (what MONAI's ``SqueezeDim`` does to a ``MetaTensor``'s affine)."""
    a = torch.as_tensor(affine, dtype=torch.float64)
    axis = int(axis)
    if a.shape != (4, 4) or not 0 <= axis < 3:
        raise ValueError(f"slice_affine needs a 4x4 affine and an axis in 0..2, got {tuple(a.shape)} and {axis}")
    keep = [i for i in range(4) if i != axis]
    return a[keep][:, keep].clone()


def _slice_axis(sample: dict[str, Any], given: int | None) -> int | None:
    value = sample.get("slice_axis") if given is None else given
    if value is None:
        return None
    return int(value.item() if isinstance(value, (torch.Tensor, np.ndarray)) else value)


def to_meta(sample: dict[str, Any], *, slice_axis: int | None = None) -> dict[str, Any]:
    """``sample`` with ``image`` / ``label`` as ``MetaTensor`` s (affine = ``sample["affine"]``; for
    a 2D sample with a ``slice_axis``, its 3x3 slice geometry, see :func:`slice_affine`)."""
    from monai.data import MetaTensor

    affine = torch.as_tensor(sample["affine"], dtype=torch.float64)
    axis = _slice_axis(sample, slice_axis)
    out = dict(sample)
    for key in _KEYS:
        value = sample.get(key)
        if value is None or isinstance(value, MetaTensor):
            continue
        own = slice_affine(affine, axis) if axis is not None and value.ndim == 3 else affine.clone()
        meta = {
            "filename_or_obj": f"{sample.get('subject_id', '')}/{key}",
            "subject_id": sample.get("subject_id"),
            "spatial_shape": torch.as_tensor(value.shape[1:]),
            "original_affine": affine.clone(),
            "original_channel_dim": 0,
            "space": "RAS",
        }
        out[key] = MetaTensor(value, affine=own, meta=meta)
    return out


def sync_affine(sample: Any) -> Any:
    """After transforms: the plain ``affine`` (and ``spacing``) keys follow the image's ``MetaTensor`` affine.

    A list of samples (a multi-sample transform such as ``RandCropByPosNegLabeld(num_samples=n)``)
    is synced sample by sample. A 2D slice's 3x3 affine is carried back into the sample's 4x4
    (see :func:`_embed`).
    """
    if isinstance(sample, (list, tuple)):
        return type(sample)(sync_affine(s) for s in sample)
    if not isinstance(sample, dict):
        return sample
    image = sample.get("image")
    aff = getattr(image, "affine", None)
    if not isinstance(aff, torch.Tensor):
        return sample
    a = aff.detach().to(torch.float64).clone()
    axis = _slice_axis(sample, None)
    if a.shape == (3, 3) and axis is not None and sample.get("affine") is not None:
        a = _embed(torch.as_tensor(sample["affine"], dtype=torch.float64), axis, a)
    if a.shape == (4, 4):
        sample["affine"] = a
        sample["spacing"] = torch.sqrt((a[:3, :3] ** 2).sum(dim=0))
    return sample


def _embed(full: torch.Tensor, axis: int, new: torch.Tensor) -> torch.Tensor:
    """The 4x4 affine after a 2D transform: the in-plane voxel map ``M`` the transforms applied
    (``slice_affine(full) @ M == new``) applied to the slice's 4x4 ``full`` (identity along
    ``axis``), so an oblique slice's out-of-plane components follow too."""
    keep = torch.as_tensor([i for i in range(4) if i != axis])
    m2 = torch.linalg.solve(slice_affine(full, axis), new)
    m = torch.eye(4, dtype=torch.float64)
    m[keep[:, None], keep] = m2
    return full @ m
