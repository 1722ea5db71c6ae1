"""A minimal MR slice for hostile DICOM trees (tests set the pixel fields they need)."""

from __future__ import annotations

from typing import Any


def mr_slice(i: int) -> Any:
    """Slice ``i`` of one synthetic MR series: identity, position ``z = i``, axial orientation."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = "p1", "1.2.3", "1.2.3.4", "MR"
    ds.InstanceNumber, ds.ImagePositionPatient, ds.ImageOrientationPatient = i + 1, [0, 0, i], [1, 0, 0, 0, 1, 0]
    return ds
