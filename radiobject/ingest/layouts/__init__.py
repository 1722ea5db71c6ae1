"""Dataset layouts users already have: BIDS, Medical Segmentation Decathlon (MSD), nnU-Net raw.

``plan_bids`` / ``plan_msd`` / ``plan_nnunet`` read a dataset folder into a :class:`LayoutPlan`
(the cohort plan plus label maps, channel names and the incomplete subjects found up front);
``ingest_layout`` (or ``ingest_bids`` / ``ingest_msd`` / ``ingest_nnunet``) writes it through
the one cohort ingest (``run_ingest``) and then stores the label maps and class counts with the
label collections. ``export_nnunet`` writes a store back as an nnU-Net raw dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from radiobject.ingest.layouts.plan import (
    INCOMPLETE_POLICIES,
    Incomplete,
    LayoutPlan,
    apply_incomplete_policy,
    apply_subjects,
    find_incomplete,
    incomplete_report,
)

__all__ = [
    "INCOMPLETE_POLICIES",
    "Incomplete",
    "LayoutPlan",
    "apply_incomplete_policy",
    "apply_subjects",
    "apply_tiff_series",
    "find_incomplete",
    "incomplete_report",
    "ingest_bids",
    "ingest_layout",
    "ingest_msd",
    "ingest_nnunet",
]


def apply_tiff_series(lp: LayoutPlan, series: int | None, what: str = "tiff_series") -> LayoutPlan:
    """``lp`` whose every task reads TIFF series ``series`` (``None``: ``lp`` unchanged, each TIFF's
    one image series). ``ValueError`` (naming ``what``, e.g. the CLI's ``--tiff-series``) for a
    series that is not an index >= 0, or for BIDS, whose images are NIfTI only: a series is never
    accepted and then ignored."""
    if series is None:
        return lp
    if isinstance(series, bool) or not isinstance(series, int) or series < 0:
        raise ValueError(f"{what} must be >= 0, not {series!r}")
    if lp.layout == "bids":
        raise ValueError(f"{what} does not apply to a BIDS dataset: its images are NIfTI (.nii / .nii.gz), no TIFF")
    plan = replace(lp.plan, tasks=[replace(t, tiff_series=series) for t in lp.plan.tasks])
    return replace(lp, plan=plan)


def ingest_layout(
    uri: str,
    lp: LayoutPlan,
    *,
    incomplete: str = "keep",
    class_counts: bool = True,
    log: Callable[[str], None] | None = None,
    tiff_series: int | None = None,
    **run_kwargs: Any,
) -> Any:
    """Ingests a :class:`LayoutPlan` with ``run_ingest`` (``run_kwargs``: options, workers,
    validate_alignment, progress, ...), then stores each label collection's label map and
    collection facts (channel names) and records its ``class_counts``. Returns the
    ``CohortReport``. Incomplete subjects are reported through ``log`` before anything is written.
    Alignment (every volume of a subject on one grid) is checked for layouts with labels (MSD,
    nnU-Net: images and labels must align); BIDS modalities keep their own grids.

    ``tiff_series``: the series read of every TIFF holding several image series (an nnU-Net
    dataset whose ``file_ending`` is ``.tif``); ``None`` (default) = each TIFF's one image series,
    and a TIFF of several fails its item with a ``TiffError`` listing them. Checked before anything
    is written (:func:`apply_tiff_series`: >= 0, not for BIDS)."""
    from radiobject.ingest.cohort import run_ingest
    from radiobject.model.labels import record_class_counts, set_label_map, update_collection_meta
    from radiobject.model.radi_object import RadiObject

    lp = apply_tiff_series(lp, tiff_series)
    if lp.incomplete and log is not None:
        log(f"{len(lp.incomplete)} incomplete subject(s) ({incomplete}):")
        for i in lp.incomplete[:50]:
            log(f"  {i}")
    lp = apply_incomplete_policy(lp, incomplete)
    if not lp.label_maps:
        # no labels (BIDS raw data): a sample's modalities live on their own grids (T1w 1 mm, DWI
        # 2 mm), so there is no image / label alignment to check; `radiobject resample` aligns them
        run_kwargs["validate_alignment"] = False
    report = run_ingest(uri, lp.plan, log=log, **run_kwargs)
    if report.aborted:
        return report
    radi = RadiObject(uri, storage=run_kwargs.get("storage"))
    for name, meta in lp.collection_meta.items():
        if name in radi.collection_names and meta:
            update_collection_meta(radi[name], **meta)
    for name, lm in lp.label_maps.items():
        if name not in radi.collection_names:
            continue
        set_label_map(radi[name], lm)
        if class_counts:
            record_class_counts(radi[name], progress=bool(run_kwargs.get("progress")))
    return report


def _ingest(kind: str, root: Any, uri: str, plan_kwargs: dict[str, Any], **kwargs: Any) -> Any:
    from radiobject.ingest.layouts.bids import plan_bids
    from radiobject.ingest.layouts.msd import plan_msd, plan_nnunet

    planner = {"bids": plan_bids, "msd": plan_msd, "nnunet": plan_nnunet}[kind]
    # the ignore below: the 3 planners share one call shape; mypy joins them to object
    return ingest_layout(uri, planner(root, **plan_kwargs), **kwargs)  # type: ignore[operator]


def ingest_bids(
    root: Any, uri: str, *, suffixes: Sequence[str] | None = None, datatypes: Sequence[str] | None = None, **kwargs: Any
) -> Any:
    """``plan_bids(root)`` ingested into ``uri`` (``kwargs`` as for :func:`ingest_layout`)."""
    return _ingest("bids", root, uri, {"suffixes": suffixes, "datatypes": datatypes}, **kwargs)


def ingest_msd(root: Any, uri: str, *, include_test: bool = False, **kwargs: Any) -> Any:
    """``plan_msd(root)`` ingested into ``uri`` (``kwargs`` as for :func:`ingest_layout`)."""
    return _ingest("msd", root, uri, {"include_test": include_test}, **kwargs)


def ingest_nnunet(root: Any, uri: str, **kwargs: Any) -> Any:
    """``plan_nnunet(root)`` ingested into ``uri`` (``kwargs`` as for :func:`ingest_layout`)."""
    return _ingest("nnunet", root, uri, {}, **kwargs)
