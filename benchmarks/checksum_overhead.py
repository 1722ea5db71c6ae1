"""Checksum overhead on patch reads: the same volume stored with and without checksums, same run.

For each backend and data kind (``--data``: ``mri``, a BraTS-like float32 brain with exact-zero
background from ``radiobject.bench.synthetic.mri_like``; ``int16``, smooth signal plus noise with no
background, the least compressible and so the most bytes to check), one volume is written twice
through the store's backend, once with the engine checksums (Zarr: ``crc32c`` on every inner
chunk; TileDB: SHA-256 filter on every tile) and once without.
Random unaligned cubic patches are then read from both, alternating the two in every round so that
load drifts hit both alike. The chunk cache is off (every read decodes, so every read verifies):
the worst case for checksums. Prints patches/s and MB/s (decoded voxel bytes; best round of each),
the CPU time per patch (all threads of the process: the cost, stabler than wall time under load),
and the median over rounds of the paired throughput ratio with / without (both read the same
patches in the same round) as the overhead, with the date, machine and load average.

Last, the crc32c rate itself: tensorstore's (an uncompressed array read with and without the
``crc32c`` codec, one decode thread, CPU time) against ``google_crc32c`` (hardware CRC32C) on the
same bytes; the difference is why the cost is what it is.

The integrity record checks on *open* (file sizes, small-file hashes) are not in the loop: a
loader opens each volume once per process. Their cost is printed separately (median open time).

    .venv/bin/python benchmarks/checksum_overhead.py [--shape 160,160,160] [--patch 64]
                                                     [--patches 200] [--rounds 5] [--backends zarr,tiledb]
                                                     [--data mri,int16] [--codec blosc-lz4hc:5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime

import numpy as np

from radiobject.model.options import WriteOptions
from radiobject.storage import zarr_backend
from radiobject.storage.base import ArrayHandle, ArraySpec, Codec, default_chunks, default_shards
from radiobject.storage.registry import get_backend


def synthetic(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Smooth blobs plus noise, int16, roughly MR-like compressibility."""
    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1.0, 1.0, n).astype(np.float32) for n in shape]
    grid = np.meshgrid(*axes, indexing="ij")
    r2 = np.zeros(shape, np.float32)
    for g in grid:
        r2 += g * g
    img = 800 * np.exp(-3 * r2) + 200 * np.sin(6 * grid[0]) * np.cos(5 * grid[1])
    return (img + rng.normal(0, 20, shape)).clip(0, 4000).astype(np.int16)


def volume(kind: str, shape: tuple[int, ...]) -> np.ndarray:
    """The benchmark volume of ``kind`` (``mri`` or ``int16``)."""
    if kind == "mri":
        from radiobject.bench.synthetic import mri_like

        return mri_like(shape)  # type: ignore[arg-type]
    if kind == "int16":
        return synthetic(shape)
    raise SystemExit(f"--data: unknown kind {kind!r} (mri, int16)")


def write(uri: str, backend_name: str, data: np.ndarray, checksums: bool, codec: Codec) -> None:
    backend = get_backend(backend_name)
    backend.checksums = checksums
    chunks = default_chunks(data.shape)
    shards = default_shards(data.shape, chunks) if backend_name == "zarr" else None
    handle = backend.create_array(uri, ArraySpec(data.shape, data.dtype.name, chunks, codec, shards), {})
    handle.write(tuple(slice(0, n) for n in data.shape), data)
    handle.seal()


def patch_regions(shape: tuple[int, ...], edge: int, n: int, seed: int) -> list[tuple[slice, ...]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        start = [int(rng.integers(0, s - edge + 1)) for s in shape]
        out.append(tuple(slice(a, a + edge) for a in start))
    return out


def timed_reads(
    handle: ArrayHandle, regions: list[tuple[slice, ...]], edge: int, dtype: np.dtype
) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process, all threads) for reading ``regions``."""
    buf = np.empty((edge,) * len(regions[0]), dtype)
    t0, c0 = time.perf_counter(), time.process_time()
    for r in regions:
        handle.read(r, buf)
    return time.perf_counter() - t0, time.process_time() - c0


def compare(
    args: argparse.Namespace, shape: tuple[int, ...], data: np.ndarray, codec: Codec
) -> list[tuple[str, float]]:
    """Per backend: write ``data`` with and without checksums, time interleaved patch reads, print rows."""
    patch_mb = args.patch**3 * data.dtype.itemsize / 1e6
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backends.split(","):
            uris = {c: os.path.join(tmp, f"{name}-{'crc' if c else 'plain'}") for c in (True, False)}
            for checks, uri in uris.items():
                write(uri, name, data, checks, codec)
            backend = get_backend(name)
            opens: dict[bool, list[float]] = {c: [] for c in uris}
            handles = {}
            for c, uri in uris.items():
                for _ in range(5):
                    t0 = time.perf_counter()
                    handles[c] = backend.open_array(uri)
                    opens[c].append(time.perf_counter() - t0)
                np.testing.assert_array_equal(handles[c].read(tuple(slice(0, n) for n in shape)), data)
            secs: dict[bool, list[float]] = {True: [], False: []}
            cpu: dict[bool, list[float]] = {True: [], False: []}
            for rnd in range(args.rounds):
                regions = patch_regions(shape, args.patch, args.patches, seed=rnd)
                order = (True, False) if rnd % 2 == 0 else (False, True)
                for c in order:
                    wall, used = timed_reads(handles[c], regions, args.patch, data.dtype)
                    secs[c].append(wall)
                    cpu[c].append(used)
            rate = {c: args.patches / min(v) for c, v in secs.items()}  # best round: least disturbed by load
            # paired per-round ratios (both variants read the same patches in the same round): medians
            ratio = statistics.median([b / a for a, b in zip(secs[True], secs[False], strict=True)])
            cpu_ratio = statistics.median([a / b for a, b in zip(cpu[True], cpu[False], strict=True)])
            for c, label in ((False, "no checksums"), (True, "checksums")):
                print(
                    f"{name:<8} {label:<16} {rate[c]:>10.1f} {rate[c] * patch_mb:>8.1f} "
                    f"{1e3 * statistics.median(opens[c]):>8.2f} {1e3 * statistics.median(cpu[c]) / args.patches:>12.3f}"
                )
            out.append((name, ratio))
            print(
                f"{name:<8} throughput with/without {ratio:.3f} (median of paired rounds) -> overhead "
                f"{100 * (1 - ratio):+.1f}% (target < 5%); CPU per patch with/without {cpu_ratio:.3f}"
            )
    return out


def crc_rates(mib: int = 64) -> tuple[float, float]:
    """GB/s of tensorstore's crc32c codec (one thread) and of ``google_crc32c`` on ``mib`` MiB."""
    import google_crc32c
    import tensorstore as ts

    data = np.random.default_rng(0).integers(0, 2**31, (mib, 512, 512), dtype=np.int32)
    cpu = []
    with tempfile.TemporaryDirectory() as tmp:
        for crc in (False, True):
            codecs = [{"name": "bytes", "configuration": {"endian": "little"}}] + ([{"name": "crc32c"}] if crc else [])
            meta = {
                "shape": list(data.shape),
                "data_type": "int32",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [16, 512, 512]}},
                "codecs": codecs,
                "fill_value": 0,
            }
            ctx = ts.Context({"data_copy_concurrency": {"limit": 1}, "cache_pool": {"total_bytes_limit": 0}})
            spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{tmp}/{crc}"}, "metadata": meta}
            arr = ts.open(spec, create=True, context=ctx).result()
            arr.write(data).result()
            times = []
            for _ in range(5):
                c0 = time.process_time()
                arr.read().result()
                times.append(time.process_time() - c0)
            cpu.append(min(times))
        raw = data.tobytes()
        hw = []
        for _ in range(5):
            c0 = time.process_time()
            google_crc32c.value(raw)
            hw.append(time.process_time() - c0)
    return data.nbytes / max(cpu[1] - cpu[0], 1e-9) / 1e9, data.nbytes / max(min(hw), 1e-9) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="160,160,160")
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--patches", type=int, default=200, help="patches per round and variant")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--backends", default="zarr,tiledb")
    ap.add_argument("--codec", default="blosc-lz4hc:5", help="the shipped default")
    ap.add_argument("--data", default="mri,int16", help="data kinds: mri (float32, zero background), int16 (noise)")
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    codec = Codec.parse(args.codec)
    zarr_backend.CHUNK_CACHE_BYTES = 0  # no decoded-chunk cache: every read decodes and verifies
    print(
        f"date {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; machine {platform.machine()} {os.cpu_count()} CPUs "
        f"{platform.system()} {platform.release()}; python {platform.python_version()}; "
        f"load avg {os.getloadavg()[0]:.2f} (start)"
    )
    summary = []
    for kind in args.data.split(","):
        data = volume(kind, shape)
        print(
            f"\n[{kind}] volume {'x'.join(map(str, shape))} {data.dtype} ({data.nbytes / 1e6:.1f} MB), "
            f"codec {args.codec}, {args.patches} random {args.patch}^3 patches x {args.rounds} rounds per variant, "
            "chunk cache off\n"
        )
        print(f"{'backend':<8} {'variant':<16} {'patches/s':>10} {'MB/s':>8} {'open ms':>8} {'CPU ms/patch':>12}")
        summary += [(f"{kind}/{n}", r) for n, r in compare(args, shape, data, codec)]
    engine, hardware = crc_rates()
    print(f"\ncrc32c rate: tensorstore codec {engine:.1f} GB/s (one thread), google_crc32c {hardware:.1f} GB/s")
    print(
        "\nsummary: "
        + "; ".join(f"{n} overhead {100 * (1 - r):+.1f}%" for n, r in summary)
        + f"; load avg {os.getloadavg()[0]:.2f} (end)"
    )


if __name__ == "__main__":
    WriteOptions()  # the package imports cleanly before timing starts
    main()
