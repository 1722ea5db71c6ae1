"""TIFF physical sizes -> millimetre affine: exact unit conversion (divide by 1000, never * 0.001)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from radiobject.formats.tiff import read_tiff, tiff_info
from radiobject.formats.tiff_meta import affine_from_info, mm_from_unit, unit_from_mm

#: sizes whose ``* 0.001`` differs from ``/ 1000`` in binary (0.65) next to ones that agree.
SIZES_UM = (0.65, 0.1, 0.3, 0.325, 0.2456, 1.1)


def _ome(path: Path, sx: float, sy: float, sz: float, unit: str = "µm") -> Path:
    data = np.zeros((2, 16, 16), dtype=np.uint8)
    meta = {
        "axes": "ZYX",
        "PhysicalSizeX": sx,
        "PhysicalSizeY": sy,
        "PhysicalSizeZ": sz,
        "PhysicalSizeXUnit": unit,
        "PhysicalSizeYUnit": unit,
        "PhysicalSizeZUnit": unit,
    }
    tifffile.imwrite(path, data, ome=True, metadata=meta)
    return path


def test_binary_inexact_case_is_in_the_set() -> None:
    # guards the test below: 0.65 is a size where the old ``* 0.001`` gave another float
    assert 0.65 * 0.001 != 0.65 / 1000


@pytest.mark.parametrize("size", SIZES_UM)
def test_micrometre_affine_is_size_over_1000_exactly(tmp_path: Path, size: float) -> None:
    path = _ome(tmp_path / "um.ome.tif", size, size * 2, size * 3)
    info = tiff_info(path)
    assert info.units == {"x": "micrometer", "y": "micrometer", "z": "micrometer"}
    aff = read_tiff(path).affine
    assert aff[0, 0] == size / 1000
    assert aff[1, 1] == (size * 2) / 1000
    assert aff[2, 2] == (size * 3) / 1000
    np.testing.assert_array_equal(affine_from_info(info), aff)
    # the native sizes stay in the metadata bit for bit
    assert read_tiff(path).metadata["physical_size"] == {"x": size, "y": size * 2, "z": size * 3}


def test_nanometre_and_larger_units(tmp_path: Path) -> None:
    info = tiff_info(_ome(tmp_path / "nm.ome.tif", 650.0, 650.0, 300.0, unit="nm"))
    aff = affine_from_info(info)
    assert aff[0, 0] == 650.0 / 1e6 and aff[2, 2] == 300.0 / 1e6
    info = tiff_info(_ome(tmp_path / "cm.ome.tif", 0.05, 0.05, 0.1, unit="cm"))
    assert affine_from_info(info)[0, 0] == 0.05 * 10.0


def test_pyramid_level_scales_before_the_unit_division(tmp_path: Path) -> None:
    path = tmp_path / "pyr.ome.tif"
    base = np.zeros((64, 64), dtype=np.uint8)
    meta = {"axes": "YX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65}
    with tifffile.TiffWriter(path) as tw:
        tw.write(base, subifds=1, metadata=meta)
        tw.write(base[::2, ::2], subfiletype=1)
    info = tiff_info(path)
    assert len(info.levels) == 2
    assert affine_from_info(info, 1)[0, 0] == (0.65 * 2.0) / 1000


@pytest.mark.parametrize("size", SIZES_UM)
def test_mm_and_unit_conversions_are_inverse(size: float) -> None:
    mm = mm_from_unit(size, "micrometer")
    assert mm == size / 1000
    assert unit_from_mm(mm, "micrometer") == size  # * 1000 back
    assert unit_from_mm(mm_from_unit(size, "inch"), "inch") == pytest.approx(size, rel=1e-15)
    assert mm_from_unit(size, None) == size and unit_from_mm(size, None) == size
