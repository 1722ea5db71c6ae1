"""Reorienting a NIfTI volume to RAS+ at read time, its metadata following the axes.

:func:`reorient_to_ras` is what ``read_nifti(reorient=True)`` does: the voxels are permuted /
flipped to the closest canonical (RAS+) axis order, the affine updated, the source orientation
recorded in ``metadata["original_orientation"]``, and the NIfTI ``zooms`` (``pixdim[1:]``) of
the three spatial axes permuted with them, so ``zooms[i]`` stays the spacing of array axis ``i``;
trailing zooms (``pixdim[4]`` = TR, ...) are unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from nibabel.orientations import apply_orientation

from radiobject.geometry import orientation, spacing, to_canonical

__all__ = ["permute_zooms", "reorient_to_ras"]


def permute_zooms(zooms: list[float], ornt: np.ndarray, affine: np.ndarray) -> list[float]:
    """``zooms`` reordered by a nibabel orientation ``ornt`` (row ``i``: the new index of array
    axis ``i``, and a flip that leaves a spacing unchanged). A header of fewer than three dims
    (a 1D / 2D NIfTI read as 3D) has its missing spatial zooms taken from ``affine``'s columns."""
    spatial = [float(z) for z in zooms[:3]]
    spatial += [spacing(affine)[i] for i in range(len(spatial), 3)]
    out = [0.0, 0.0, 0.0]
    for i, (axis, _) in enumerate(np.asarray(ornt)[:3]):
        out[int(axis)] = spatial[i]
    return out + [float(z) for z in zooms[3:]]


def reorient_to_ras(raw: np.ndarray, affine: np.ndarray, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(voxels, affine)`` in RAS+ axis order (nibabel ``as_closest_canonical``); ``meta`` is
    updated in place: ``original_orientation`` and the permuted ``zooms`` (see the module doc)."""
    meta["original_orientation"] = orientation(affine)
    ornt, new_affine, _ = to_canonical(affine, raw.shape)
    if isinstance(meta.get("zooms"), list):
        meta["zooms"] = permute_zooms(meta["zooms"], ornt, affine)
    return apply_orientation(raw, ornt), new_affine
