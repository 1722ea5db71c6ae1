"""The quick-start example runs as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_runs(tmp_path) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "train subjects ['sub-07', 'sub-05'] -> T1w volumes ['sub-07', 'sub-05']" in res.stdout
    assert (tmp_path / "sub-01_T1w.nii.gz").exists()
