"""Pure geometry: affine <-> spacing / orientation codes, anatomical planes. No I/O."""

from __future__ import annotations

from typing import Literal

import numpy as np
from nibabel.orientations import aff2axcodes, io_orientation

from radiobject.errors import GeometryError

Plane = Literal["sagittal", "coronal", "axial"]
#: The world axis (RAS) normal to each anatomical plane.
PLANE_WORLD_AXIS: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}


def validate_affine(affine: object, where: str = "affine") -> np.ndarray:
    """A 4x4 float64 copy of ``affine``; ``GeometryError`` when not 4x4, not finite or singular."""
    a = np.array(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise GeometryError(f"{where}: expected a 4x4 matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise GeometryError(f"{where}: contains NaN or infinity")
    if abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise GeometryError(f"{where}: the 3x3 part is singular")
    return a


def spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along the three array axes: the column norms of the 3x3 part."""
    # the ignore below: tuple() of a generator is tuple[float, ...]; a 3x3 block has 3 columns
    return tuple(float(v) for v in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]


def orientation(affine: np.ndarray) -> str:
    """Axis codes such as ``"RAS"`` or ``"LPI"``: where each array axis points (nibabel's rule)."""
    return "".join(c or "?" for c in aff2axcodes(np.asarray(affine)))


def plane_axis(affine: np.ndarray, plane: Plane) -> tuple[int, bool, tuple[tuple[int, bool], tuple[int, bool]]]:
    """How to take an anatomical plane from an array with this affine.

    Returns ``(axis, flip, in_plane)``: the array axis normal to the plane, whether that axis runs
    against the world direction (R, A or S), and for the two remaining world axes in RAS order the
    array axis that carries each and whether it must be flipped to run toward R / A / S.
    """
    if plane not in PLANE_WORLD_AXIS:
        raise ValueError(f"unknown plane {plane!r}; use sagittal, coronal or axial")
    ornt = io_orientation(np.asarray(affine))  # row = array axis: (world axis, +1/-1)
    world_to_array = {int(w): (i, bool(s < 0)) for i, (w, s) in enumerate(ornt)}
    normal = PLANE_WORLD_AXIS[plane]
    axis, flip = world_to_array[normal]
    rest = tuple(world_to_array[w] for w in range(3) if w != normal)
    # the ignore below: rest has the 2 in-plane axes; tuple() of a generator is variable-length
    return axis, flip, rest  # type: ignore[return-value]


def to_canonical(affine: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """How to reorder an array to RAS+: ``(ornt, new_affine, new_shape)`` (no data touched).

    Apply with ``nibabel.orientations.apply_orientation(array, ornt)``; trailing axes are kept.
    """
    from nibabel.orientations import inv_ornt_aff

    ornt = io_orientation(np.asarray(affine))
    new_affine = np.asarray(affine) @ inv_ornt_aff(ornt, shape[:3])
    new_shape = tuple(int(shape[int(a)]) for a in np.argsort(ornt[:, 0])) + tuple(shape[3:])
    return ornt, new_affine, new_shape
