"""Enhanced multi-frame images (enhanced CT / MR / PET, ...): per-frame geometry and rescale.

Each frame takes its position, orientation, pixel spacing and rescale from the Per-frame
Functional Groups Sequence, falling back to the Shared Functional Groups Sequence. Frames at the
same position are ordered by TemporalPositionIndex, then DimensionIndexValues, then frame
number so that a 4D enhanced file comes out in acquisition order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from radiobject.formats.dicom.errors import SeriesGeometryError
from radiobject.formats.dicom.frames import Frame, _num, rescale_of


def is_enhanced(ds: Dataset) -> bool:
    """True when the data set carries functional groups (enhanced multi-frame IODs)."""
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def _item(groups: list[Dataset | None], seq: str) -> Dataset | None:
    for g in groups:
        if g is not None and seq in g and len(g[seq].value):
            return g[seq].value[0]
    return None


def enhanced_frames(ds: Dataset, index: int) -> list[Frame]:
    """One :class:`Frame` per frame of an enhanced multi-frame data set."""
    path = str(getattr(ds, "radiobject_path", ""))
    n = int(_num(ds.get("NumberOfFrames"), 1) or 1)
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    per = list(ds.PerFrameFunctionalGroupsSequence) if "PerFrameFunctionalGroupsSequence" in ds else []
    out: list[Frame] = []
    for f in range(n):
        groups = [per[f] if f < len(per) else None, shared]
        pos = _item(groups, "PlanePositionSequence")
        ori = _item(groups, "PlaneOrientationSequence")
        meas = _item(groups, "PixelMeasuresSequence")
        if pos is None or ori is None or meas is None or "PixelSpacing" not in meas:
            raise SeriesGeometryError(
                path,
                f"frame {f + 1}: no plane position / orientation / pixel measures in the functional groups",
            )
        trans = _item(groups, "PixelValueTransformationSequence")
        slope, inter = rescale_of(trans if trans is not None else ds, path, f"frame {f + 1}: ")
        content = _item(groups, "FrameContentSequence")
        key: tuple[Any, ...] = ()
        if content is not None:
            div = content.get("DimensionIndexValues")
            div = [] if div is None else list(div) if isinstance(div, (list, MultiValue)) else [div]
            key = (
                _num(content.get("TemporalPositionIndex")),
                tuple(int(v) for v in div),
            )
        ps = meas.PixelSpacing
        out.append(
            Frame(
                index,
                f,
                None,
                np.asarray([float(x) for x in pos.ImagePositionPatient]),
                np.asarray([float(x) for x in ori.ImageOrientationPatient]),
                (float(ps[0]), float(ps[1])),
                int(ds.Rows),
                int(ds.Columns),
                slope,
                inter,
                (*key, f),
            )
        )
    return out
