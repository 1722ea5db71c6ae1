"""One ingest path: the Python file constructors run through ``radiobject.ingest`` (same checks,
reader, fingerprints, write path and marker as ``radiobject ingest``), and the model does not import
the ingest layer at import time (imports flow ingest -> model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radiobject import RadiObject, VolumeCollection
from radiobject.errors import DuplicateIdError, ImageReadError, StoreExistsError
from radiobject.ingest.cohort import MARKER, run_ingest
from radiobject.ingest.manifest import plan_from_globs
from radiobject.ingest.sample import SampleCohort
from tests.ingest._compare import assert_same_store

ROOT = Path(__file__).resolve().parents[2]


def test_model_constructors_run_on_the_registered_engine() -> None:
    """The model names no ingest module (tests/test_layers.py checks the imports); the engine
    registers itself, and importing the root package is enough for that."""
    code = (
        "import radiobject.model.radi_object as r, radiobject.model.engine as e, radiobject.ingest.entry_points as p; "
        "print(e._ENGINE['store'] is p.store_from_files, e._ENGINE['collection'] is p.collection_from_files)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True, timeout=120
    )
    assert out.stdout.strip() == "True True", out.stdout
    model_sources = (ROOT / "radiobject" / "model").rglob("*.py")
    assert not [
        p.name
        for p in model_sources
        if any(
            line.strip().startswith(("import radiobject.ingest", "from radiobject.ingest"))
            for line in p.read_text().splitlines()
        )
    ]


def test_from_niftis_equals_the_cli_engine(cohort: SampleCohort, tmp_path: Path, backend: str) -> None:
    from radiobject import WriteOptions

    specs = {"T1w": str(cohort.folder / "*/anat/*_T1w.nii.gz"), "seg": str(cohort.folder / "*/anat/*_seg.nii.gz")}
    pattern = r"(sub-\d+)_"
    a = RadiObject.from_niftis(
        str(tmp_path / "api"), specs, subject_pattern=pattern, options=WriteOptions(backend=backend)
    )
    run_ingest(
        str(tmp_path / "cli"), plan_from_globs(specs, subject_pattern=pattern), options=WriteOptions(backend=backend)
    )
    assert_same_store(str(tmp_path / "api"), str(tmp_path / "cli"))
    assert a.T1w.loc["sub-01"].info.sources is not None  # fingerprints, as for the CLI
    assert json.loads(Path(tmp_path / "api", MARKER).read_text())["complete"] is True
    with pytest.raises(StoreExistsError):
        RadiObject.from_niftis(str(tmp_path / "api"), specs, subject_pattern=pattern)


def test_collection_constructors_fingerprint_and_check(cohort: SampleCohort, tmp_path: Path) -> None:
    t1 = str(cohort.folder / "*/anat/*_T1w.nii.gz")
    coll = VolumeCollection.from_niftis(str(tmp_path / "c"), t1, subject_pattern=r"(sub-\d+)_")
    assert coll.obs_ids == list(cohort.subjects)
    rec = coll.loc["sub-02"].info.sources
    assert rec is not None and rec["files"][0]["path"].endswith("sub-02_T1w.nii.gz")
    with pytest.raises(DuplicateIdError):
        VolumeCollection.from_files(str(tmp_path / "d"), [str(cohort.folder / "sub-01/anat/sub-01_T1w.nii.gz")] * 2)
    bad = cohort.folder / "sub-03/anat/sub-03_T1w.nii.gz"
    bad.write_text("not an image")
    with pytest.raises(ImageReadError, match="sub-03_T1w"):
        VolumeCollection.from_files(str(tmp_path / "e"), t1, subject_pattern=r"(sub-\d+)_")
    assert not (tmp_path / "e").exists()  # checked before anything is created


def test_obs_meta_subjects_without_volumes_kept(cohort: SampleCohort, tmp_path: Path) -> None:
    meta = pd.DataFrame({"subject_id": [*cohort.subjects, "sub-99"], "age": np.arange(len(cohort.subjects) + 1)})
    radi = RadiObject.from_files(
        str(tmp_path / "s"),
        {"T1w": str(cohort.folder / "*/anat/*_T1w.nii.gz")},
        subject_pattern=r"(sub-\d+)_",
        obs_meta=meta,
    )
    assert sorted(radi.obs_subject_ids) == sorted([*cohort.subjects, "sub-99"])
    assert radi.obs_meta.set_index("obs_subject_id").loc["sub-99", "age"] == len(cohort.subjects)


def test_file_lists_that_never_pair_are_refused_and_mappings_pair(cohort: SampleCohort, tmp_path: Path) -> None:
    from radiobject.errors import AlignmentError

    t1 = sorted(str(p) for p in cohort.folder.glob("*/anat/*_T1w.nii.gz"))
    seg = sorted(str(p) for p in cohort.folder.glob("*/anat/*_seg.nii.gz"))
    with pytest.raises(AlignmentError, match="never pair"):  # IDs sub-01_T1w vs sub-01_seg
        RadiObject.from_niftis(tmp_path / "lists", {"T1w": t1, "seg": seg})
    assert not (tmp_path / "lists").exists()
    radi = RadiObject.from_niftis(
        tmp_path / "maps",
        {"T1w": {Path(p).name.split("_")[0]: p for p in t1}, "seg": {Path(p).name.split("_")[0]: Path(p) for p in seg}},
    )
    assert radi.obs_subject_ids == list(cohort.subjects) and radi.collection_names == ["T1w", "seg"]
    assert radi.seg.obs_subject_ids == list(cohort.subjects)
    with pytest.raises(ValueError, match="subject ID"):
        RadiObject.from_niftis(tmp_path / "bad", {"T1w": {"../up": t1[0]}})
    paired = RadiObject.from_niftis(tmp_path / "pattern", {"T1w": t1, "seg": seg}, subject_pattern=r"(sub-[^_/]+)")
    assert paired.seg.obs_subject_ids == list(cohort.subjects)
