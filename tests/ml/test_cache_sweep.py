"""Shared-memory cache directories of killed processes are removed; live or foreign ones never."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from radiobject._os import owners
from radiobject.ml.cache import SharedMemoryCache, sweep_stale

_CHILD = """
import os, sys, signal
from radiobject.ml.cache import SharedMemoryCache
c = SharedMemoryCache(1 << 20, root=sys.argv[1])
print(c.path, flush=True)
os.kill(os.getpid(), getattr(signal, sys.argv[2]))
"""


def _killed_cache(root: Path, sig: str = "SIGKILL") -> Path:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(root), sig], capture_output=True, text=True, timeout=60)
    assert out.returncode == -getattr(signal, sig), out.stderr
    path = Path(out.stdout.strip())
    assert path.is_dir() and (path / ".owner").is_file()  # no exit handler ran: left behind
    return path


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_a_killed_creators_directory_is_removed_by_the_next_cache(tmp_path: Path, sig: str) -> None:
    stale = _killed_cache(tmp_path, sig)
    fresh = SharedMemoryCache(1 << 20, root=tmp_path)
    assert not stale.exists() and fresh.path.is_dir()
    fresh.close()


def test_live_named_foreign_and_unmarked_directories_stay(tmp_path: Path) -> None:
    live = SharedMemoryCache(1 << 20, root=tmp_path)  # this process: alive
    named = SharedMemoryCache(1 << 20, "radiobject-cache-" + "ab" * 16, root=tmp_path, cleanup=True)  # no .owner
    other_ns = tmp_path / ("radiobject-cache-" + "cd" * 16)
    other_ns.mkdir(mode=0o700)
    (other_ns / ".owner").write_text(f"{owners._boot_id()} pid:[1] 999999999 1")  # another pid namespace
    public = tmp_path / ("radiobject-cache-" + "ef" * 16)
    public.mkdir(mode=0o755)
    os.chmod(public, 0o755)
    (public / ".owner").write_text(f"{owners._boot_id()} {owners._pid_namespace()} 999999999 1")
    assert sweep_stale(tmp_path) == []
    for p in (live.path, named.path, other_ns, public):
        assert p.is_dir()
    live.close()
    named.close()


def test_a_reused_pid_or_an_earlier_boot_is_stale(tmp_path: Path) -> None:
    me = owners.identity(os.getpid())
    assert me is not None
    boot, ns, pid, start = me.split()
    reused = tmp_path / ("radiobject-cache-" + "01" * 16)  # our pid, but another start time
    earlier = tmp_path / ("radiobject-cache-" + "02" * 16)  # a process of a boot before this one
    for path, owner in ((reused, f"{boot} {ns} {pid} {int(start) + 1}"), (earlier, f"not-{boot} {ns} {pid} {start}")):
        path.mkdir(mode=0o700)
        (path / ".owner").write_text(owner)
    assert sorted(sweep_stale(tmp_path)) == sorted([reused, earlier])
    assert not reused.exists() and not earlier.exists()
