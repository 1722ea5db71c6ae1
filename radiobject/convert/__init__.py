"""Out-of-core conversion of TIFF / OME-TIFF regions to OME-Zarr (NGFF 0.5 or 0.4) pyramids."""

from radiobject.convert.options import COMPRESSIONS, ConvertOptions, auto_chunk_size
from radiobject.convert.pipeline import (
    ConversionPlan,
    RegionResult,
    convert_regions,
    convert_tiff,
    plan_region,
)
from radiobject.convert.source import Region, RegionSource, find_regions

__all__ = [
    "COMPRESSIONS",
    "ConversionPlan",
    "ConvertOptions",
    "Region",
    "RegionResult",
    "RegionSource",
    "auto_chunk_size",
    "convert_regions",
    "convert_tiff",
    "find_regions",
    "plan_region",
]
