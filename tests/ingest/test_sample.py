"""The sample cohort: what the manifest says agrees with the files it names."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from radiobject.ingest.manifest import plan_from_manifest
from radiobject.ingest.sample import COLLECTIONS, make_sample_cohort


def test_manifest_names_no_session_the_files_do_not_carry(tmp_path: Path) -> None:
    c = make_sample_cohort(tmp_path, 2, (8, 8, 6))
    m = pd.read_csv(c.manifest, dtype=str)
    assert list(m.columns) == ["subject_id", "collection", "path"]
    for row in m.itertuples():
        name = Path(row.path).name
        assert name == f"{row.subject_id}_{row.collection}.nii.gz" and "_ses-" not in row.path
        assert (c.folder / row.path).is_file()
    assert sorted(set(m["collection"])) == sorted(COLLECTIONS)
    plan = plan_from_manifest(c.manifest, subjects=c.participants)
    assert "session" not in plan.obs_meta.columns and not plan.problems
