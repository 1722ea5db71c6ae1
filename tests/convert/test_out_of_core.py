"""Out of core: a 20,000 x 20,000 x 4 uint16 tiled TIFF (3.2 GB) converts with bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from radiobject.convert.synthetic import write_synthetic_tiff
from tests.conftest import REPO_ROOT

CHILD = """
import json, resource, sys, time
from radiobject.convert import ConvertOptions, convert_tiff
t0 = time.perf_counter()
res = convert_tiff(sys.argv[1], sys.argv[2], ConvertOptions(workers=2))
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"ok": res.ok, "error": res.error, "seconds": time.perf_counter() - t0,
                  "peak_rss": ru.ru_maxrss * 1024, "levels": res.level_shapes, "bytes_out": res.bytes_out}))
"""


@pytest.mark.slow
def test_20k_by_20k_by_4_converts_with_bounded_memory(tmp_path: Path) -> None:
    src = tmp_path / "big.ome.tif"
    image_bytes = write_synthetic_tiff(src, 4, 20_000, 20_000)
    assert image_bytes == 3_200_000_000
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(tmp_path / "big.ome.zarr")],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["ok"], res["error"]
    print(
        f"\n20000x20000x4 uint16 ({image_bytes / 1e9:.1f} GB): converted in {res['seconds']:.1f} s, "
        f"peak RSS {res['peak_rss'] / 1e6:.0f} MB ({res['peak_rss'] / image_bytes:.1%} of the image), "
        f"{len(res['levels'])} levels, output {res['bytes_out'] / 1e9:.2f} GB"
    )
    assert [tuple(s) for s in res["levels"]][:2] == [(4, 20_000, 20_000), (4, 10_000, 10_000)]
    assert tuple(res["levels"][-1]) == (4, 312, 312)
    assert res["peak_rss"] < image_bytes / 3  # well under the image size
