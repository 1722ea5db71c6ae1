"""Selected DICOM header fields kept with a volume (``metadata["dicom"]``, then ``obs``).

Only series-level, non-identifying fields are kept by default; patient-identifying fields
(names, IDs, birth date, dates, institution, accession number) are added only when asked for.
Every value is converted to plain JSON types.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

#: kept for every series (when present)
SERIES_FIELDS: tuple[str, ...] = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "SeriesDescription",
    "ProtocolName",
    "SeriesNumber",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "SOPClassUID",
    "ImageType",
    "BodyPartExamined",
    "PatientPosition",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "MagneticFieldStrength",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "FlipAngle",
    "EchoTrainLength",
    "SequenceName",
    "ScanningSequence",
    "SequenceVariant",
    "ScanOptions",
    "MRAcquisitionType",
    "ReceiveCoilName",
    "PixelBandwidth",
    "KVP",
    "XRayTubeCurrent",
    "Exposure",
    "ConvolutionKernel",
    "ReconstructionDiameter",
    "GantryDetectorTilt",
    "ContrastBolusAgent",
    "Units",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
)
#: added only with ``include_patient=True``
PATIENT_FIELDS: tuple[str, ...] = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientWeight",
    "StudyDate",
    "StudyTime",
    "SeriesDate",
    "AcquisitionDate",
    "AccessionNumber",
    "StudyID",
    "InstitutionName",
    "ReferringPhysicianName",
)


def to_json(value: Any) -> Any:
    """A DICOM element value as plain JSON (numbers, strings, lists)."""
    if isinstance(value, (MultiValue, list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip("\x00 ")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    try:  # DSfloat / IS / decimal
        f = float(value)
        return int(f) if type(value).__name__ == "IS" else f
    except (TypeError, ValueError):
        return str(value)


def header_fields(ds: Dataset, *, include_patient: bool = False) -> dict[str, Any]:
    """Selected header fields of one data set as a JSON-serialisable dict.

    Args:
        ds: any data set of the series (the first one is used by the reader).
        include_patient: also keep patient-identifying fields (see ``PATIENT_FIELDS``).
    """
    names = SERIES_FIELDS + (PATIENT_FIELDS if include_patient else ())
    out: dict[str, Any] = {}
    for name in names:
        if name in ds:
            v = ds.get(name)
            if v is not None and v != "":
                out[name] = to_json(v)
    if "ImageOrientationPatient" not in out and "SharedFunctionalGroupsSequence" in ds:
        try:
            iop = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
            out["ImageOrientationPatient"] = to_json(iop)
        except (AttributeError, IndexError):
            pass
    return out
