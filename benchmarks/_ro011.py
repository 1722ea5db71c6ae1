"""PyPI radiobject 0.1.1, the peer of ``benchmarks/io.py``: the same operations measured in its own
venv (a subprocess running :data:`RO011_SCRIPT`), so the two packages of one name never meet."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

__all__ = ["RO011_SCRIPT", "run_ro011"]

RO011_SCRIPT = r"""
import json, sys, time, os, numpy as np
from radiobject import Volume
cfg = json.load(open(sys.argv[1]))
def best(fn, n):
    t = []
    for _ in range(n):
        a = time.perf_counter(); fn(); t.append((time.perf_counter() - a) * 1e3)
    return min(t)
out = {}
for name, v in cfg["volumes"].items():
    data = np.load(v["npy"])
    uri = os.path.join(cfg["workdir"], "ro011-" + name)
    t = time.perf_counter(); Volume.from_numpy(uri, data); ingest = time.perf_counter() - t
    vol = Volume(uri)
    r = {"ingest_s": ingest}
    r["open_ms"] = best(lambda: Volume(uri)[0:1, 0:1, 0:1], 5)
    r["full_ms"] = best(lambda: vol.to_numpy(), 3)
    r["patch_ms"] = float(np.median([best(lambda p=p: vol[p[0][0]:p[0][1], p[1][0]:p[1][1], p[2][0]:p[2][1]], 2)
                                     for p in v["patches"]]))
    for plane, fn in (("axial", vol.axial), ("sagittal", vol.sagittal), ("coronal", vol.coronal)):
        r[plane + "_ms"] = float(np.median([best(lambda i=i, f=fn: f(i), 2) for i in v["slices"][plane]]))
    ok = np.array_equal(vol.to_numpy(), data)
    size = files = 0
    for root, _, names in os.walk(uri):
        for n in names:
            size += os.path.getsize(os.path.join(root, n)); files += 1
    r.update(bytes=size, n_files=files, exact=bool(ok))
    out[name] = r
json.dump(out, open(sys.argv[2], "w"))
"""


def run_ro011(python: str, volumes: dict[str, dict[str, Any]], work: str) -> dict[str, Any]:
    """PyPI radiobject 0.1.1 in its own venv (a subprocess); {} with a reason when unavailable."""
    if not os.path.exists(python):
        return {"_error": f"{python} not found (pip install radiobject==0.1.1 into a side venv)"}
    cfg_path, out_path, script = (os.path.join(work, n) for n in ("ro011.json", "ro011-out.json", "ro011.py"))
    with open(script, "w") as f:
        f.write(RO011_SCRIPT)
    cfg = {"workdir": work, "volumes": volumes}
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    proc = subprocess.run(
        [python, script, cfg_path, out_path], check=False, capture_output=True, text=True, timeout=1800, cwd=work
    )
    if proc.returncode != 0:
        return {"_error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    with open(out_path) as f:
        return json.load(f)
