"""The ``qc`` montage: mid-slices per subject, collection and channel, label overlay in fixed
colours (one colour per label value everywhere, ``radiobject.model.labels.PALETTE`` or the
label map's own) with a legend of the label names, drawn in millimetre aspect."""

from __future__ import annotations

from typing import Any

import numpy as np

from radiobject.geometry import plane_axis
from radiobject.geometry import spacing as affine_spacing

__all__ = ["PLANES", "channel_count", "mm_aspect", "render_qc"]

PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")


def channel_count(shape: tuple[int, ...]) -> int:
    """Channels (product of the axes after the third) of a volume shape."""
    return int(np.prod(shape[3:])) if len(shape) > 3 else 1


def mm_aspect(affine: np.ndarray, plane: str) -> float:
    """``imshow`` aspect (height / width of a pixel) of a plane shown transposed (``img.T``)."""
    # the ignore below: plane_axis takes the Plane literal; it rejects other names itself
    _, _, rest = plane_axis(affine, plane)  # type: ignore[arg-type]
    sp = affine_spacing(affine)
    return float(sp[rest[1][0]] / sp[rest[0][0]])


def _window(img: np.ndarray) -> tuple[float, float]:
    fg = img[img != 0]
    if fg.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(fg, [1, 99])
    return float(lo), float(hi if hi > lo else lo + 1)


def _rgb(color: tuple[int, int, int]) -> tuple[float, float, float]:
    return color[0] / 255, color[1] / 255, color[2] / 255


def _overlay(seg: np.ndarray, label_map: Any) -> np.ndarray:
    """RGBA image of a label slice: each value in its fixed colour, background transparent."""
    from radiobject.model.labels import LabelMap

    lm = label_map or LabelMap({})
    rgba = np.zeros(seg.shape + (4,), dtype=np.float32)
    for v in np.unique(seg):
        if v == 0:
            continue
        rgba[seg == v] = (*_rgb(lm.color(int(v))), 0.5)
    return rgba


def render_qc(
    radi: Any, subjects: list[str], images: list[str], label: str | None, output: str, title: str
) -> tuple[int, int]:
    """Writes the montage PNG; returns (rows, columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from radiobject.model.labels import get_label_map

    lm = get_label_map(radi[label]) if label else None
    columns: list[tuple[str, int]] = []  # (collection, channel)
    for name in images:
        obs = radi[name].obs
        shapes = [tuple(int(v) for v in s) for s in obs["shape"]] if "shape" in obs.columns else []
        n = max((channel_count(s) for s in shapes), default=1)
        columns += [(name, c) for c in range(n)]
    ncols, nrows = 3 * len(columns), len(subjects)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.8 * ncols, 1.9 * nrows + 0.4), squeeze=False)
    try:  # the figure is closed also when a volume cannot be read
        seen: set[int] = set()
        for r, sid in enumerate(subjects):
            lab = None
            if label is not None and sid in set(radi[label].obs_subject_ids):
                lab = radi[label].by_subject(sid)
            for c, (name, ch) in enumerate(columns):
                vol = radi[name].by_subject(sid) if sid in set(radi[name].obs_subject_ids) else None
                for k, plane in enumerate(PLANES):
                    ax = axes[r, 3 * c + k]
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if r == 0:
                        ax.set_title(f"{name}{f'[{ch}]' if len(columns) > len(images) else ''} {plane}", fontsize=7)
                    if c == 0 and k == 0:
                        ax.set_ylabel(sid, fontsize=7)
                    if vol is None or ch >= channel_count(vol.shape):
                        ax.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=7, transform=ax.transAxes)
                        continue
                    if len(vol.shape) < 3:  # no planes to cut (a 1D / 2D array stored from Python)
                        ax.text(
                            0.5, 0.5, f"{len(vol.shape)}D", ha="center", va="center", fontsize=7, transform=ax.transAxes
                        )
                        continue
                    i = vol.n_slices(plane) // 2
                    img = vol.plane(plane, i).astype(np.float32)
                    img = img.reshape(img.shape[:2] + (-1,))[..., ch]
                    lo, hi = _window(img)
                    aspect = mm_aspect(vol.affine, plane)
                    ax.imshow(
                        img.T, cmap="gray", origin="lower", vmin=lo, vmax=hi, interpolation="nearest", aspect=aspect
                    )
                    if lab is not None and tuple(lab.shape[:3]) == tuple(vol.shape[:3]):
                        seg = lab.plane(plane, i)
                        seg = seg.reshape(seg.shape[:2] + (-1,))[..., 0]
                        seen.update(int(v) for v in np.unique(seg) if v != 0)
                        ax.imshow(_overlay(seg.T, lm), origin="lower", interpolation="nearest", aspect=aspect)
        if label is not None:
            from radiobject.model.labels import LabelMap

            shown = lm or LabelMap({})
            values = sorted(seen | {v for v in (lm.names if lm else {}) if v != 0})
            handles = [Patch(color=_rgb(shown.color(v)), label=f"{v}: {shown.name(v)}") for v in values]
            if handles:
                fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=7, frameon=False)
        fig.suptitle(title + (f"  (overlay: {label})" if label else ""), fontsize=8)
        fig.tight_layout(rect=(0, 0.05 if label else 0, 1, 1))
        _save_png(fig, output)
    finally:
        plt.close(fig)
    return nrows, ncols


def _save_png(fig: Any, output: str) -> None:
    """Writes the figure to a hidden temporary name beside ``output``, then renames it: a failed
    run leaves no half-written PNG, and a symbolic link at ``output`` is replaced, never written
    through (the file stays in the folder the user named). A folder as ``output`` is refused."""
    import os
    import uuid

    from radiobject.errors import UnsafePathError

    if os.path.isdir(output) and not os.path.islink(output):
        raise UnsafePathError(output, "is a folder; give a PNG file name (e.g. qc.png)")
    head, tail = os.path.split(os.path.abspath(output))
    tmp = os.path.join(head, f".{tail}.tmp-{uuid.uuid4().hex}")
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, os.path.abspath(output))
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)
