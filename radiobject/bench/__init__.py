"""Storage benchmarks: synthetic volumes, the codec x chunk x shard x backend sweep, lossy codecs,
reports (CSV, plots, markdown) and measured recommendations for an access pattern.

Entry points: ``radiobject bench storage`` / ``radiobject recommend`` (``radiobject.cli.bench``),
``benchmarks/storage_sweep.py`` and ``benchmarks/io.py``.
"""

from radiobject.bench.engines import Config
from radiobject.bench.recommend import Access, recommend
from radiobject.bench.report import write_report
from radiobject.bench.sweep import SweepOptions, plan, run_sweep
from radiobject.bench.synthetic import ct_like, mri_like, synthetic_volume

__all__ = [
    "Access",
    "Config",
    "SweepOptions",
    "ct_like",
    "mri_like",
    "plan",
    "recommend",
    "run_sweep",
    "synthetic_volume",
    "write_report",
]
