"""How much memory this process may still take, read from the kernel: the limits every layer respects.

A process often runs under a limit smaller than the machine: an address-space limit (``ulimit -v``,
``RLIMIT_AS``), a container's memory cgroup (v1 or v2, with its ancestors), or simply the RAM
available. :func:`memory_headroom` is the smallest of what is left under each of them (the ``ml``
caches and whole-volume reads size themselves by it, ``ml.cache.limits``);
:func:`process_memory_left` counts the hard limits only (the memory budget of one image read,
``formats.inputs.max_image_bytes``). Each is ``None`` where none of its limits can be read.
"""

from __future__ import annotations

from pathlib import Path

try:
    import resource
except ImportError:  # not POSIX (Windows): no address-space limit to read
    resource = None  # type: ignore[assignment]

__all__ = ["memory_headroom", "process_memory_left"]

_CGROUP = Path("/sys/fs/cgroup")
_UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as a number near 2**63


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _status_kib(key: str) -> int | None:
    text = _read(Path("/proc/self/status")) or ""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return None


def _address_space_left() -> int | None:
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    used = _status_kib("VmSize")
    return max(0, soft - (used or 0))


def _mem_available() -> int | None:
    text = _read(Path("/proc/meminfo")) or ""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _stat_value(text: str | None, key: str) -> int:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def _cgroup_left() -> int | None:
    """What the memory cgroups of this process (and their ancestors) leave, reclaimable page cache
    counted as free; ``None`` without a limit."""
    text = _read(Path("/proc/self/cgroup")) or ""
    best: int | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # cgroup v2
            base, limit_file, usage_file, inactive = _CGROUP, "memory.max", "memory.current", "inactive_file"
        elif "memory" in controllers.split(","):  # cgroup v1
            base, limit_file = _CGROUP / "memory", "memory.limit_in_bytes"
            usage_file, inactive = "memory.usage_in_bytes", "total_inactive_file"
        else:
            continue
        node = Path(rel.lstrip("/"))
        seen: set[Path] = set()
        while True:  # this cgroup and every ancestor visible here (a namespace shows its root)
            folder = base / node
            if folder not in seen:
                seen.add(folder)
                limit = _read(folder / limit_file)
                if limit is not None and limit.isdigit() and int(limit) < _UNLIMITED:
                    usage = _read(folder / usage_file)
                    used = int(usage) if usage and usage.isdigit() else 0
                    used -= _stat_value(_read(folder / "memory.stat"), inactive)
                    left = max(0, int(limit) - max(0, used))
                    best = left if best is None else min(best, left)
            if node == Path("."):
                break
            node = node.parent
    return best


def process_memory_left() -> int | None:
    """Bytes this process may still allocate under its hard limits only: the least of what its
    address-space limit (``RLIMIT_AS``) and its memory cgroups leave; ``None`` without either.
    The machine's available memory is not counted (the kernel grows it by reclaiming, and a
    momentary reading would make a budget change from one call to the next)."""
    known = [v for v in (_address_space_left(), _cgroup_left()) if v is not None]
    return min(known) if known else None


def memory_headroom() -> int | None:
    """Bytes this process may still allocate: the least of what its address-space limit
    (``RLIMIT_AS``), its memory cgroups and the machine's available memory leave; ``None`` where
    none of them can be read (not Linux). Read at each call (a few small ``/proc`` files)."""
    known = [v for v in (_address_space_left(), _cgroup_left(), _mem_available()) if v is not None]
    return min(known) if known else None
