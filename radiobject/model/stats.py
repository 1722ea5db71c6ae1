"""Cohort summaries and intensity statistics (for normalisation), from a store.

``cohort_summary`` reads only the tables: per collection the shapes, spacings, orientations and
dtypes found (with counts), and, for label collections, the label map and the total voxels per
class. ``intensity_stats`` reads the pixels: per collection and channel the mean, std, min,
max and percentiles of the foreground voxels (a label collection's ``> 0`` voxels, or the
non-zero voxels), pooled over the cohort (mean / std exact; percentiles from a fixed-seed sample
of at most ``sample_per_volume`` voxels per volume).
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from radiobject.errors import AlignmentError
from radiobject.model.collection import VolumeCollection
from radiobject.model.labels import COUNTS_COLUMN, get_label_map, is_label_collection

__all__ = ["PERCENTILES", "cohort_summary", "intensity_stats"]

#: Default percentiles of ``intensity_stats`` (nnU-Net clips CT at 0.5 / 99.5).
PERCENTILES: tuple[float, ...] = (0.5, 1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0, 99.5)


def _counter(values: Any) -> dict[str, int]:
    return dict(Counter(values).most_common())


def cohort_summary(radi: Any) -> dict[str, Any]:
    """Subjects, and per collection: volumes, shapes, spacings (mm, rounded to 1e-3),
    orientations, dtypes and for label collections the label map and voxels per class."""
    out: dict[str, Any] = {"uri": radi.uri, "subjects": len(radi.obs_subject_ids), "collections": {}}
    for name in radi.collection_names:
        coll = radi[name]
        obs = coll.obs
        c: dict[str, Any] = {
            "volumes": len(obs),
            "subjects": int(obs["obs_subject_id"].nunique()) if len(obs) else 0,
            "shapes": _counter("x".join(str(int(v)) for v in s) for s in obs["shape"]) if len(obs) else {},
            "spacings": _counter("x".join(f"{float(v):.3g}" for v in s) for s in obs["spacing"]) if len(obs) else {},
            "orientations": _counter(obs["orientation"]) if len(obs) else {},
            "dtypes": _counter(obs["dtype"]) if len(obs) else {},
        }
        if len(obs):
            sp = np.array([[float(v) for v in s] for s in obs["spacing"]])
            c["spacing_median"] = [round(float(v), 4) for v in np.median(sp, axis=0)]
        if is_label_collection(coll):
            lm = get_label_map(coll)
            c["labels"] = {str(k): v for k, v in lm.names.items()} if lm else {}
            if COUNTS_COLUMN in obs.columns:
                total: Counter[int] = Counter()
                present: Counter[int] = Counter()
                for text in obs[COUNTS_COLUMN].dropna():
                    counts = {int(k): int(v) for k, v in json.loads(text).items()}
                    total.update(counts)
                    present.update(k for k, v in counts.items() if v > 0)
                c["class_voxels"] = {str(k): total[k] for k in sorted(total)}
                c["class_volumes"] = {str(k): present[k] for k in sorted(present)}
        out["collections"][name] = c
    return out


class _Pool:
    """Streaming sums (exact mean / std) plus a bounded sample for percentiles, per channel."""

    def __init__(self) -> None:
        self.n, self.s, self.s2 = 0, 0.0, 0.0
        self.lo, self.hi = np.inf, -np.inf
        self.samples: list[np.ndarray] = []

    def add(self, values: np.ndarray, rng: np.random.Generator, cap: int) -> None:
        if values.size == 0:
            return
        v = values.astype(np.float64, copy=False)
        self.n += v.size
        self.s += float(v.sum())
        self.s2 += float(np.square(v).sum())
        self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))
        self.samples.append(v if v.size <= cap else rng.choice(v, cap, replace=False))

    def row(self, percentiles: Sequence[float]) -> dict[str, float]:
        if self.n == 0:
            return {"voxels": 0}
        mean = self.s / self.n
        var = max(self.s2 / self.n - mean * mean, 0.0)
        allv = np.concatenate(self.samples)
        row: dict[str, float] = {
            "voxels": self.n,
            "mean": mean,
            "std": float(np.sqrt(var)),
            "min": self.lo,
            "max": self.hi,
        }
        for p, q in zip(percentiles, np.percentile(allv, list(percentiles)), strict=True):
            row[f"p{p:g}"] = float(q)
        return row


def intensity_stats(
    radi: Any,
    collections: Sequence[str] | None = None,
    *,
    mask: str | None = "auto",
    percentiles: Sequence[float] = PERCENTILES,
    sample_per_volume: int = 100_000,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Foreground intensity statistics per collection and channel (one row each).

    Args:
        collections: image collections (default: every non-label collection).
        mask: a label collection whose ``> 0`` voxels are the foreground of the same subject;
            ``"auto"``: the store's label collection if it has exactly one, else non-zero voxels;
            ``None``: non-zero voxels.
        sample_per_volume: voxels kept per volume and channel for the percentiles.
    """
    labels = [n for n in radi.collection_names if is_label_collection(radi[n])]
    implicit = mask == "auto"
    if mask == "auto":
        mask = labels[0] if len(labels) == 1 else None
    names = list(collections) if collections is not None else [n for n in radi.collection_names if n not in labels]
    rng = np.random.default_rng(seed)
    rows = []
    mask_coll: VolumeCollection | None = radi[mask] if mask else None
    mask_of = dict(zip(mask_coll.obs_subject_ids, mask_coll.obs_ids, strict=True)) if mask_coll is not None else {}
    for name in names:
        coll = radi[name]
        pools: dict[int, _Pool] = {}
        masked = mask_coll
        if masked is not None and implicit and not _same_grid(coll, masked, mask_of):
            warnings.warn(
                f"intensity_stats: {name} is not on the grid of the label collection {mask!r} (resampled?); "
                "its foreground is its non-zero voxels",
                RuntimeWarning,
                stacklevel=2,
            )
            masked = None
        for vol, sid in tqdm(
            zip(coll, coll.obs_subject_ids, strict=True),
            total=len(coll),
            desc=f"{name}: intensities",
            disable=not progress,
            leave=False,
        ):
            data = vol.to_numpy(scaled=True)
            chans = data.reshape(data.shape[:3] + (-1,))
            if masked is not None:
                if sid not in mask_of:
                    continue
                m = masked.volume(mask_of[sid]).to_numpy()
                fg = m.reshape(m.shape[:3] + (-1,))[..., 0] > 0
                if fg.shape != chans.shape[:3]:
                    raise AlignmentError(
                        sid, f"{name}/{vol.obs_id}: shape {chans.shape[:3]} differs from mask {mask}'s {fg.shape}"
                    )
            for c in range(chans.shape[-1]):
                ch = chans[..., c]
                sel = ch[fg] if masked is not None else ch[ch != 0]
                pools.setdefault(c, _Pool()).add(sel, rng, sample_per_volume)
        for c, pool in sorted(pools.items()):
            where = mask if masked is not None else "nonzero"
            rows.append({"collection": name, "channel": c, "foreground": where, **pool.row(percentiles)})
    return pd.DataFrame(rows)


def _same_grid(coll: VolumeCollection, mask: VolumeCollection, mask_of: dict[str, str]) -> bool:
    """Whether ``coll``'s volumes share the spatial shape of their subject's mask (headers only)."""
    for vol, sid in zip(coll, coll.obs_subject_ids, strict=True):
        if sid in mask_of:
            return tuple(vol.shape[:3]) == tuple(mask.volume(mask_of[sid]).shape[:3])
    return True
