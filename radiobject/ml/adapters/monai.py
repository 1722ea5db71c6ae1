"""MONAI: samples whose ``image`` / ``label`` are ``MetaTensor`` s with the sample's real affine.

The affine is the volume's, shifted to the sample's origin (patch / slice), in MONAI's convention
(the NIfTI / nibabel RAS affine of the array axes, as ``LoadImaged`` gives it), so ``Spacingd``,
``Orientationd``, ``RandAffined``, ``SpatialPadd``, ``Resized`` act in millimetres and update it.
After the transforms, the sample's plain ``affine`` key is set to the image's updated affine.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["sync_affine", "to_meta"]

_KEYS = ("image", "label")


def to_meta(sample: dict[str, Any]) -> dict[str, Any]:
    """``sample`` with ``image`` / ``label`` as ``MetaTensor`` s (affine = ``sample["affine"]``)."""
    from monai.data import MetaTensor

    affine = torch.as_tensor(sample["affine"], dtype=torch.float64)
    out = dict(sample)
    for key in _KEYS:
        value = sample.get(key)
        if value is None or isinstance(value, MetaTensor):
            continue
        meta = {
            "filename_or_obj": f"{sample.get('subject_id', '')}/{key}",
            "subject_id": sample.get("subject_id"),
            "spatial_shape": torch.as_tensor(value.shape[1:]),
            "original_affine": affine.clone(),
            "original_channel_dim": 0,
            "space": "RAS",
        }
        out[key] = MetaTensor(value, affine=affine.clone(), meta=meta)
    return out


def sync_affine(sample: Any) -> Any:
    """After transforms: the plain ``affine`` (and ``spacing``) keys follow the image's ``MetaTensor`` affine.

    A list of samples (a multi-sample transform such as ``RandCropByPosNegLabeld(num_samples=n)``)
    is synced sample by sample.
    """
    if isinstance(sample, (list, tuple)):
        return type(sample)(sync_affine(s) for s in sample)
    if not isinstance(sample, dict):
        return sample
    image = sample.get("image")
    aff = getattr(image, "affine", None)
    if isinstance(aff, torch.Tensor) and aff.shape == (4, 4):
        a = aff.detach().to(torch.float64).clone()
        sample["affine"] = a
        sample["spacing"] = torch.sqrt((a[:3, :3] ** 2).sum(dim=0))
    return sample
