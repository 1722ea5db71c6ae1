"""Fixtures of the ingest tests: a tiny synthetic cohort on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from radiobject.ingest.sample import SampleCohort, make_sample_cohort

SHAPE = (16, 18, 12)


@pytest.fixture
def cohort(tmp_path: Path) -> SampleCohort:
    """4 subjects x (T1w, FLAIR, seg), 16x18x12 voxels."""
    return make_sample_cohort(tmp_path / "cohort", 4, SHAPE)
