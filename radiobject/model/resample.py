"""Resampling to a target voxel spacing, as a derived collection of the same store.

The new grid covers the same field of view (the outer voxel edges stay where they were): along
each axis ``n' = floor(n * s / t + 0.5)`` voxels of size ``t``, and the affine is
``A @ [[diag(t / s), 0.5 * (t / s - 1)], [0, 1]]``, so world coordinates stay exact and the
orientation is unchanged. Images are interpolated (linear by default, float32 out); label
collections use nearest neighbour and keep their dtype, label map and class counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from radiobject.errors import GeometryError, OutputTooLargeError
from radiobject.formats.image import ImageData
from radiobject.formats.inputs import max_image_bytes
from radiobject.geometry import spacing as affine_spacing
from radiobject.model.bulk import IngestItem
from radiobject.model.collection import VolumeCollection
from radiobject.model.labels import get_label_map, is_label_collection, record_class_counts, set_label_map
from radiobject.model.options import WriteOptions
from radiobject.model.volume import Volume

__all__ = ["resample_collection", "resample_image", "resampled_grid"]


def resampled_grid(
    shape: Sequence[int], affine: np.ndarray, target: Sequence[float]
) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """(new spatial shape, new affine, per-axis step in old voxels) for ``target`` spacing (mm)."""
    tgt = np.asarray([float(t) for t in target], dtype=np.float64)
    if tgt.shape != (3,) or not np.all(np.isfinite(tgt) & (tgt > 0)):
        raise GeometryError(f"target spacing must be three positive finite numbers, got {tuple(target)}")
    old = np.asarray(affine_spacing(affine), dtype=np.float64)
    step = tgt / old
    n = np.asarray(shape[:3], dtype=np.float64)
    new_shape = tuple(int(max(1, np.floor(v + 0.5))) for v in n / step)  # halves round up
    m = np.eye(4)
    m[:3, :3] = np.diag(step)
    m[:3, 3] = 0.5 * (step - 1.0)
    return new_shape, np.asarray(affine, dtype=np.float64) @ m, step


def resample_image(image: ImageData, target: Sequence[float], *, order: int = 1) -> ImageData:
    """``image`` on a grid of ``target`` spacing (``order`` 0: nearest, dtype kept; 1: linear;
    3: cubic; orders > 0 give float32). Extra axes (channels, time) are resampled one by one."""
    from scipy import ndimage

    data = np.asarray(image.array)
    new_shape, new_affine, step = resampled_grid(data.shape, image.affine, target)
    _check_budget(image.source or "image", new_shape, data.shape, data.dtype if order == 0 else np.dtype(np.float32))
    offset = 0.5 * (step - 1.0)
    flat: np.ndarray = data.reshape(tuple(data.shape[:3]) + (-1,))
    out_dtype = data.dtype if order == 0 else np.dtype(np.float32)
    out = np.empty(new_shape + (flat.shape[-1],), dtype=out_dtype)
    for c in range(flat.shape[-1]):
        src = flat[..., c] if order == 0 else flat[..., c].astype(np.float32)
        out[..., c] = ndimage.affine_transform(
            src, step, offset=offset, output_shape=new_shape, order=order, mode="nearest"
        )
    out = out.reshape(new_shape + data.shape[3:])
    meta = {
        **image.metadata,
        "resampled_from": {
            "spacing": list(affine_spacing(image.affine)),
            "shape": [int(s) for s in data.shape],
            "order": int(order),
        },
    }
    if isinstance(meta.get("zooms"), list) and len(meta["zooms"]) >= 3:  # a NIfTI's pixdim: the new grid's
        meta["zooms"] = [*affine_spacing(new_affine), *meta["zooms"][3:]]
    if order:  # interpolated values are already scaled
        meta.pop("scl_slope", None)
        meta.pop("scl_inter", None)
    return ImageData(out, new_affine, meta, image.source)


def _check_budget(where: str, new_shape: Sequence[int], shape: Sequence[int], dtype: np.dtype) -> None:
    """``OutputTooLargeError`` when the resampled array would exceed the memory budget of one image."""
    nbytes = float(np.prod([float(n) for n in new_shape])) * float(np.prod([float(n) for n in shape[3:]]))
    nbytes *= np.dtype(dtype).itemsize
    budget = max_image_bytes()
    if nbytes > budget:
        raise OutputTooLargeError(
            where,
            f"resampled to shape {tuple(int(n) for n in new_shape)} it would need {nbytes / 2**30:.1f} GiB "
            f"(limit {budget / 2**30:.1f} GiB, RADIOBJECT_MAX_IMAGE_BYTES); choose a coarser spacing",
        )


def _check_resumable(dest: VolumeCollection, vols: dict[str, Volume], target: tuple[float, ...], order: int) -> None:
    """``GeometryError`` unless every volume of ``dest`` is the resampling of its source volume in ``vols``.

    A resumed run keeps the volumes already written; one written at another spacing, with another
    interpolation order (dtype) or from another source would leave a collection of mixed grids.
    """
    for row in dest.obs.to_dict("records"):
        oid = row["obs_id"]
        have = dest.volume(oid)
        vol = vols.get(oid)
        if vol is None:
            raise GeometryError(
                f"resample: collection {dest.name!r} of {dest.uri} already holds volume {oid!r}, which is not in "
                "the source collection; name another output (--out) or delete that collection"
            )
        shape, affine, _ = resampled_grid(vol.shape, vol.affine, target)
        dtype = vol.dtype if order == 0 else np.dtype(np.float32)
        found = (tuple(have.shape[:3]), np.asarray(have.affine, dtype=np.float64), np.dtype(have.dtype))
        made = have.metadata.get("resampled_from")
        other_order = isinstance(made, dict) and made.get("order", order) != order
        if (
            found[0] != shape
            or found[2] != dtype
            or other_order
            or not np.allclose(found[1], affine, rtol=0, atol=1e-9)
        ):
            spacing = tuple(round(x, 6) for x in affine_spacing(found[1]))
            was = made.get("order", "?") if isinstance(made, dict) else "?"
            raise GeometryError(
                f"resample: collection {dest.name!r} of {dest.uri} already holds volume {oid!r} on another grid "
                f"(shape {found[0]}, spacing {spacing}, dtype {found[2]}, order {was}) than {target} mm with "
                f"order {order} gives (shape {shape}, dtype {dtype}); name another output (--out) or delete "
                "that collection"
            )


def _load_resampled(volume: Volume, target: tuple[float, float, float], order: int) -> ImageData:
    img = volume.to_image()
    if order:
        img = ImageData(volume.to_numpy(scaled=True), img.affine, img.metadata, img.source)
    return resample_image(img, target, order=order)


def resample_collection(
    radi: Any,
    name: str,
    spacing: Sequence[float],
    *,
    out: str | None = None,
    order: int | None = None,
    options: WriteOptions | None = None,
    progress: bool = False,
) -> VolumeCollection:
    """Writes collection ``name`` resampled to ``spacing`` (mm) as collection ``out`` (default
    ``{name}_{x}x{y}x{z}mm``) of the same store and returns it. ``order``: default 0 for label
    collections (nearest; label map and class counts carried over), else 1 (linear). A call that
    fails (or is interrupted) removes the collection it created; an existing ``out`` is resumed."""
    src = radi[name]
    label = is_label_collection(src)
    order = (0 if label else 1) if order is None else int(order)
    target = tuple(float(s) for s in spacing)
    if len(target) != 3:
        raise ValueError(f"spacing must be three numbers (mm), got {spacing}")
    out = out or f"{name}_{'x'.join(f'{s:g}' for s in target)}mm".replace(".", "p")
    if out == name:
        raise ValueError(f"resample: the output collection {out!r} is the source collection; name another (--out)")
    vols = {r["obs_id"]: src.volume(r["obs_id"]) for r in src.obs.to_dict("records")}
    for oid, vol in vols.items():  # every output fits the memory budget, checked before anything is written
        new_shape = resampled_grid(vol.shape, vol.affine, target)[0]
        _check_budget(f"{src.uri}/{oid}", new_shape, vol.shape, vol.dtype if order == 0 else np.dtype(np.float32))
    if out in radi.collection_names:  # resumed: what is there must be this resampling, else a mixed collection
        _check_resumable(radi[out], vols, target, order)
    items = [
        IngestItem(
            r["obs_id"],
            r["obs_subject_id"],
            partial(_load_resampled, vols[r["obs_id"]], target, order),
            {},
            f"{name}/{r['obs_id']} resampled to {target} mm",
        )
        for r in src.obs.to_dict("records")
    ]
    # a collection this call creates is removed again when the call fails (or is interrupted);
    # one that existed (a run killed outright) is resumed: its volumes are kept, the rest written
    with radi.creating_collection(out, options=options):
        radi.add_collection(out, items, options=options, skip_existing=True, progress=out if progress else False)
        dest = radi[out]
        if label:
            lm = get_label_map(src)
            if lm is not None:
                set_label_map(dest, lm)
            record_class_counts(dest, progress=progress)
    return dest
