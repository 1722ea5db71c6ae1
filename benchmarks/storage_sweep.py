"""Storage sweep (issue 7): backend x codec x shuffle x level x chunk shape x sharding, with plots.

The script behind ``radiobject bench storage``; same arguments::

    .venv/bin/python benchmarks/storage_sweep.py --out /tmp/storage-bench            # quick, synthetic
    .venv/bin/python benchmarks/storage_sweep.py --full --out /tmp/storage-bench-full
    .venv/bin/python benchmarks/storage_sweep.py scan.nii.gz --out /tmp/my-scan-bench

Writes results.csv, lossy.csv, pareto_size_vs_speed.png, heatmap_codec_level.png,
heatmap_chunk_shape.png, lossy_ratio_vs_psnr.png and summary.md into --out.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from radiobject.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "storage", *sys.argv[1:]]))
