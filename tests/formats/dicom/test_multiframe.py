"""Enhanced multi-frame: classic series converted to Legacy Converted Enhanced MR by highdicom."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from radiobject.formats.dicom import read_dicom_series
from tests.conftest import data_path
from tests.formats.dicom._util import assert_matches_reference

CASES = [
    "siemens/fmri_classic/001",
    "ge/dti/002",
    "philips/fmri/001",
    "ge/anatomical/001",
]


@pytest.mark.parametrize("case", CASES)
def test_enhanced_conversion_matches_ground_truth(case: str, tmp_path: Path) -> None:
    hd = pytest.importorskip("highdicom")
    folder = data_path("dicom", "dicom2nifti", *case.split("/"))
    datasets = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    logging.disable(logging.WARNING)  # highdicom logs every attribute the legacy files lack
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
                legacy_datasets=datasets,
                series_instance_uid=hd.UID(),
                series_number=1,
                sop_instance_uid=hd.UID(),
                instance_number=1,
            )
    finally:
        logging.disable(logging.NOTSET)
    enhanced.save_as(tmp_path / "enhanced.dcm")
    img = read_dicom_series(tmp_path / "enhanced.dcm")
    assert img.metadata["n_files"] == 1
    assert_matches_reference(img, Path(str(folder) + "_ground_truth.nii.gz"))
    classic = read_dicom_series(folder)
    np.testing.assert_array_equal(np.asarray(img.array), np.asarray(classic.array))
