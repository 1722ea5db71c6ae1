"""Cohort ingest: manifests / globs / DICOM trees -> a store, validated, parallel, resumable.

``plan_from_manifest`` / ``plan_from_globs`` / ``plan_from_dicom_root`` describe a cohort as
tasks; ``run_ingest`` writes them (threads, processes, or Dask via ``radiobject.ingest.dask``)
through the store's bulk write path and returns a ``CohortReport``. Every volume records its
source fingerprint; a re-run replaces a volume whose sources changed (``on_changed``) and
``verify_sources`` lists the stored volumes whose sources changed or vanished. The Python file
constructors (``RadiObject.from_files`` ...) run through ``radiobject.ingest.entry_points``.
``make_sample_cohort`` writes a small synthetic cohort for demos and tests.
"""

from radiobject.ingest.changes import ON_CHANGED, SourceFinding, verify_sources
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
    "ON_CHANGED",
    "CohortPlan",
    "CohortReport",
    "Problem",
    "SampleCohort",
    "SourceFinding",
    "VolumeTask",
    "detect_format",
    "find_problems",
    "load_image",
    "make_sample_cohort",
    "plan_from_dicom_root",
    "plan_from_globs",
    "plan_from_manifest",
    "run_ingest",
    "verify_sources",
]
