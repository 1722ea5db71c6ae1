"""The memory budget of one image read (``formats.inputs.max_image_bytes``) counts the limits this
process runs under: with ``RLIMIT_AS`` lowered it stays below what is left, and a NIfTI whose header
declares more is refused with ``NiftiReadError`` before its voxels are allocated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from radiobject._os import memory as _memory
from radiobject.formats.inputs import max_image_bytes

REPO = Path(__file__).resolve().parents[2]

#: Run in a child: the limit is lowered there after radiobject is imported (as tests/scale/_trials.py
#: does), so the NIfTI reader must take its default budget when it reads, not at import.
CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import nibabel, numpy
    from radiobject.errors import NiftiReadError
    from radiobject.formats.inputs import max_image_bytes
    from radiobject.formats.nifti import read_nifti

    vm = next(int(x.split()[1]) * 1024 for x in open("/proc/self/status") if x.startswith("VmSize:"))
    left = 1536 << 20
    limit = vm + left
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))

    out = {"limit": limit, "left": left, "budget": max_image_bytes()}
    try:
        read_nifti(sys.argv[1])
        out["error"] = None
    except NiftiReadError as exc:
        out["error"] = str(exc)
    except MemoryError as exc:
        out["error"] = "MemoryError: " + str(exc)
    print(json.dumps(out))
    """
)


def _declared_2gib_nifti(path: Path) -> None:
    """A whole (sparse) single-file NIfTI-1 of 1024^3 int16 voxels: 2 GiB, within the RAM rule."""
    import nibabel as nib
    import numpy as np

    hdr = nib.Nifti1Header()
    hdr.set_data_shape((1024, 1024, 1024))
    hdr.set_data_dtype(np.int16)
    hdr["vox_offset"] = 352
    with open(path, "wb") as f:
        f.write(hdr.binaryblock + b"\x00" * 4)
    os.truncate(path, 352 + 2 * 1024**3)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status are Linux")
@pytest.mark.timeout(120)
def test_lowered_address_space_lowers_the_budget_and_refuses_a_larger_nifti(tmp_path: Path) -> None:
    if os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2 <= 2 << 30:
        pytest.skip("under 4 GiB of RAM: the RAM rule alone refuses the 2 GiB file")
    path = tmp_path / "big.nii"
    _declared_2gib_nifti(path)
    env = {k: v for k, v in os.environ.items() if k != "RADIOBJECT_MAX_IMAGE_BYTES"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, env=env, timeout=100, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 0 < out["budget"] <= out["left"] < out["limit"]
    assert out["error"] is not None and str(path) in out["error"]
    assert "would need 2.0 GiB" in out["error"], out["error"]  # the header check, not an allocation failure


def test_budget_is_the_least_of_the_rule_and_the_process_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RADIOBJECT_MAX_IMAGE_BYTES", raising=False)
    monkeypatch.setattr(_memory, "_address_space_left", lambda: None)
    monkeypatch.setattr(_memory, "_cgroup_left", lambda: None)
    rule = max_image_bytes()
    assert 0 < rule <= 16 << 30
    monkeypatch.setattr(_memory, "_cgroup_left", lambda: 300 << 20)  # a container with 300 MiB left
    assert max_image_bytes() == 300 << 20
    monkeypatch.setattr(_memory, "_address_space_left", lambda: 200 << 20)
    assert max_image_bytes() == 200 << 20
    monkeypatch.setattr(_memory, "_cgroup_left", lambda: rule + (1 << 30))  # a limit above the rule
    monkeypatch.setattr(_memory, "_address_space_left", lambda: None)
    assert max_image_bytes() == rule
    monkeypatch.setenv("RADIOBJECT_MAX_IMAGE_BYTES", str(5 << 30))  # the setting still wins
    assert max_image_bytes() == 5 << 30


def test_limits_module_reexports_the_shared_reading() -> None:
    from radiobject.ml.cache import limits

    assert limits.memory_headroom is _memory.memory_headroom
    assert "CacheMemoryWarning" in limits.__all__ and not hasattr(_memory, "CacheMemoryWarning")


@pytest.mark.parametrize("gz", [False, True])
def test_nifti_default_budget_is_read_at_each_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gz: bool) -> None:
    """A budget lowered after ``formats.nifti`` was imported (an environment setting here, a
    process limit in the child above) applies to the next read, plain and gzip alike."""
    import nibabel as nib
    import numpy as np

    from radiobject.errors import NiftiReadError
    from radiobject.formats.nifti import check_layout, read_nifti

    path = tmp_path / ("v.nii.gz" if gz else "v.nii")
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.int16), np.eye(4)), str(path))  # 8 KiB of voxels
    monkeypatch.delenv("RADIOBJECT_MAX_IMAGE_BYTES", raising=False)
    assert read_nifti(path).array.shape == (16, 16, 16)
    monkeypatch.setenv("RADIOBJECT_MAX_IMAGE_BYTES", str(4 << 10))
    with pytest.raises(NiftiReadError, match="would need") as info:
        read_nifti(path)
    assert str(path) in str(info.value)
    if not gz:
        with pytest.raises(NiftiReadError, match="would need"):
            check_layout(path)
    assert read_nifti(path, max_bytes=1 << 20).array.shape == (16, 16, 16)  # the argument still wins
    monkeypatch.setenv("RADIOBJECT_MAX_IMAGE_BYTES", str(1 << 20))
    assert read_nifti(path).array.shape == (16, 16, 16)
