"""DICOM ingest: series discovery, dcm2niix-grade geometry, decoding, RTSTRUCT / SEG labels.

Public entry points::

    read_dicom_series(folder_or_files, *, series_uid=None, resample_tilt=False,
                      resample_gaps=False, include_patient=False, decoder="auto") -> ImageData
        metadata: warnings, slice gaps, tilt_correction / spacing_equalised (when resampled),
        diffusion (b-values, FSL bvecs of the stored frame) for DWI series, NIfTI-style
        zooms / xyz_units / t_units (4D: pixdim[4] = RepetitionTime in s, as dcm2niix)
    read_dicom_folder(root, ...) -> list[(SeriesInfo, ImageData | DicomError)]
    discover_series(folder_or_files) -> Discovery
    is_dicom(path) -> bool                     # file or folder, cheap (for auto-detection)
    read_rtstruct(rtstruct_path, reference) -> (ImageData, {roi_name: label})
    read_dicom_seg(seg_path, reference=None) -> (ImageData, {segment_label: value})
"""

from radiobject.formats.dicom.decode import apply_modality_lut, decode_pixels
from radiobject.formats.dicom.detect import is_dicom
from radiobject.formats.dicom.discover import Discovery, SeriesInfo, discover_series
from radiobject.formats.dicom.errors import (
    DicomError,
    InputTooLargeError,
    MissingDecoderError,
    MultipleSeriesError,
    NotDicomError,
    SeriesGeometryError,
    SkippedSeriesError,
    UnreadableInputError,
)
from radiobject.formats.dicom.header import header_fields
from radiobject.formats.dicom.rtstruct import read_rtstruct
from radiobject.formats.dicom.seg import read_dicom_seg
from radiobject.formats.dicom.series import (
    DicomFolderResult,
    iter_dicom_folder,
    read_dicom_folder,
    read_dicom_series,
)

__all__ = [
    "DicomError",
    "DicomFolderResult",
    "Discovery",
    "InputTooLargeError",
    "MissingDecoderError",
    "MultipleSeriesError",
    "NotDicomError",
    "SeriesGeometryError",
    "SeriesInfo",
    "SkippedSeriesError",
    "UnreadableInputError",
    "apply_modality_lut",
    "decode_pixels",
    "discover_series",
    "header_fields",
    "is_dicom",
    "iter_dicom_folder",
    "read_dicom_folder",
    "read_dicom_seg",
    "read_dicom_series",
    "read_rtstruct",
]
