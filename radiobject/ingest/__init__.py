"""Cohort ingest: manifests / globs / DICOM trees -> a store, validated, parallel, resumable.

``plan_from_manifest`` / ``plan_from_globs`` / ``plan_from_dicom_root`` describe a cohort as
tasks; ``run_ingest`` writes them (threads, processes, or Dask via ``radiobject.ingest.dask``)
through the store's bulk write path and returns a ``CohortReport``. ``make_sample_cohort``
writes a small synthetic cohort for demos and tests.
"""

from radiobject.ingest.cohort import CohortReport, run_ingest
from radiobject.ingest.manifest import (
    CohortPlan,
    plan_from_dicom_root,
    plan_from_globs,
    plan_from_manifest,
)
from radiobject.ingest.sample import SampleCohort, make_sample_cohort
from radiobject.ingest.tasks import (
    Problem,
    VolumeTask,
    detect_format,
    find_problems,
    load_image,
)

__all__ = [
    "CohortPlan",
    "CohortReport",
    "Problem",
    "SampleCohort",
    "VolumeTask",
    "detect_format",
    "find_problems",
    "load_image",
    "make_sample_cohort",
    "plan_from_dicom_root",
    "plan_from_globs",
    "plan_from_manifest",
    "run_ingest",
]
