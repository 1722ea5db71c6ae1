"""The out-of-core region conversion: TIFF regions -> OME-Zarr images, shard by shard.

Each region is written level by level. Level 0 is read from the TIFF tiles a block touches
(tifffile's Zarr store) and written one whole shard (0.5) / block of chunks (0.4) at a time;
level k+1 is computed from level k in the output, block by block. Workers (threads or processes)
each hold one block at a time, so peak memory is bounded by ``workers x block_bytes`` whatever
the image size. A failing region is reported and removed; the other regions still convert.
Outputs go to a local folder or an ``s3://`` prefix and are published only when complete
(:mod:`radiobject.convert.output`). The work blocks and their writers are in
``radiobject.convert._blocks``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from radiobject.convert._blocks import omero_windows, work_blocks, write_downsampled, write_level0
from radiobject.convert.executor import make_executor, run_bounded
from radiobject.convert.options import ConvertOptions, auto_chunk_size, block_size, level_count
from radiobject.convert.output import OutputTarget, output_target
from radiobject.convert.source import Region, RegionSource, find_regions
from radiobject.convert.writer import ImageLayout, create_image, finalize_image, plan_levels
from radiobject.formats.tiff import affine_from_info
from radiobject.storage import files
from radiobject.storage.options import StorageOptions, is_remote

__all__ = ["ConversionPlan", "RegionResult", "convert_regions", "convert_tiff", "plan_region"]


class Progress(Protocol):
    """What the pipeline needs of a progress bar (``tqdm`` fits)."""

    total: Any

    def update(self, n: int = 1) -> Any: ...

    def refresh(self) -> Any: ...


@dataclass
class ConversionPlan:
    """A region opened and laid out, not yet written."""

    region: Region
    source: RegionSource
    target: OutputTarget
    chunk: int
    chunk_auto: bool
    block: int
    levels: tuple  # tuple[LevelLayout, ...]
    fuse_level1: bool = False
    full_width: bool = False

    @property
    def output(self) -> str:
        """The final address of the image (local path or ``s3://`` URI)."""
        return self.target.final

    @property
    def level0_edges(self) -> tuple[int, ...]:
        """Block edges at level 0: one shard, or whole rows of shards for a stripped source."""
        lv0 = self.levels[0]
        if not self.full_width:
            return lv0.shards
        return tuple(n if a == "x" else e for a, n, e in zip(self.source.axes, lv0.shape, lv0.shards, strict=True))

    @property
    def n_tasks(self) -> int:
        """Number of work blocks over all levels (level 1 rides along level 0 when fused)."""
        n = sum(1 for _ in work_blocks(self.source.axes, self.levels[0].shape, self.level0_edges, self.c_group))
        for i, lv in enumerate(self.levels[1:], start=1):
            if not (i == 1 and self.fuse_level1):
                n += sum(1 for _ in work_blocks(self.source.axes, lv.shape, lv.shards, 1))
        return n

    @property
    def c_group(self) -> int:
        """Channels per level-0 block: all of an interleaved (RGB) source, else one."""
        if "c" not in self.source.axes:
            return 1
        return self.source.shape[self.source.axes.index("c")] if self.source.channel_chunk > 1 else 1


@dataclass
class RegionResult:
    """Outcome of one region: timing, sizes and the error if it failed."""

    name: str
    inputs: list[str]
    output: str
    ok: bool
    error: str | None = None
    seconds: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    shape: tuple[int, ...] = ()
    axes: str = ""
    n_levels: int = 0
    chunk: int = 0
    level_shapes: list[tuple[int, ...]] = field(default_factory=list)
    present: bool = False

    @property
    def mb_per_s(self) -> float:
        """Uncompressed input megabytes (1e6) converted per second."""
        return self.bytes_in / 1e6 / self.seconds if self.seconds > 0 else 0.0

    @property
    def ratio(self) -> float:
        """Uncompressed level-0 bytes over bytes on disk (all levels)."""
        return self.bytes_in / self.bytes_out if self.bytes_out else 0.0


def plan_region(
    region: Region,
    out_dir: str | os.PathLike[str],
    options: ConvertOptions,
    output: str | os.PathLike[str] | None = None,
    storage: StorageOptions | None = None,
) -> ConversionPlan:
    """Opens the region's files (tags only) and decides chunk, shard and level shapes.

    The output is ``out_dir/<region>.ome.zarr`` (``out_dir`` a folder or an ``s3://`` prefix,
    reached with ``storage``), or exactly ``output`` when given.
    """
    target = output_target(out_dir, region.name, storage, output)
    source = RegionSource.open(region, options.series)
    axes, shape = source.axes, source.shape
    h, w = shape[axes.index("y")], shape[axes.index("x")]
    n_c = shape[axes.index("c")] if "c" in axes else 1
    item = source.dtype.itemsize
    chunk = options.chunk_size or auto_chunk_size(h, w, n_c, item)
    c_group = n_c if "c" in axes and source.channel_chunk > 1 else 1
    block = block_size(chunk, c_group, item, options.block_bytes)
    n_levels = level_count((h, w), options.min_size, options.pyramid_levels)
    fuse = n_levels > 1 and not options.downsample_z and block >= 2 * chunk
    levels = plan_levels(axes, shape, n_levels, chunk, block, options.downsample_z, fuse)
    # A compressed, stripped (untiled) source decodes whole-width strips: read whole rows of
    # shards at once (if that fits 4 blocks) instead of decoding every strip once per block column.
    stripped = source.parts[0].chunks[axes.index("x")] >= w > block and source.info.compression != "NONE"
    full_width = stripped and block * w * c_group * item <= 4 * options.block_bytes
    return ConversionPlan(region, source, target, chunk, options.chunk_size is None, block, levels, fuse, full_width)


def execute_plan(
    plan: ConversionPlan, options: ConvertOptions, pool: Executor, progress: Progress | None = None
) -> RegionResult:
    """Writes one planned region and publishes it; on error (or interrupt) removes what it wrote
    and reports it (an interrupt is re-raised)."""
    src = plan.source
    result = RegionResult(
        plan.region.name,
        [str(p) for p in plan.region.inputs],
        plan.output,
        False,
        bytes_in=src.nbytes,
        shape=src.shape,
        axes=src.axes,
        n_levels=len(plan.levels),
        chunk=plan.chunk,
        level_shapes=[lv.shape for lv in plan.levels],
    )
    t0 = time.perf_counter()
    done = 0
    n_c = src.shape[src.axes.index("c")] if "c" in src.axes else 1
    lo = np.full(n_c, np.inf)
    hi = np.full(n_c, -np.inf)

    def tick(res: Any) -> None:
        nonlocal done
        channels, mins, maxs = res
        for ch, a, b in zip(channels, mins, maxs, strict=True):
            lo[ch] = min(lo[ch], float(a))
            hi[ch] = max(hi[ch], float(b))
        done += 1
        if progress is not None:
            progress.update(1)

    limit = 2 * options.n_workers
    if options.skip_existing and not options.overwrite and plan.target.is_complete():
        result.ok = result.present = True
        result.bytes_out = plan.target.stored_bytes()
        if progress is not None:
            progress.update(plan.n_tasks)
        return result
    try:
        layout: ImageLayout = create_image(plan.target, src.axes, src.dtype, plan.levels, options)
        path = plan.target
        lv0 = plan.levels[0]
        blocks0 = work_blocks(src.axes, lv0.shape, plan.level0_edges, plan.c_group)
        run_bounded(
            pool, write_level0, ((src, path, k, plan.fuse_level1, options.labels) for k in blocks0), limit, tick
        )
        for level in range(2 if plan.fuse_level1 else 1, len(plan.levels)):
            lv = plan.levels[level]
            sub = max(lv.chunks[src.axes.index("y")], layout.block_edge(level) // 2)
            args = (
                (src.axes, path, level, k, options.labels, options.downsample_z, sub)
                for k in work_blocks(src.axes, lv.shape, lv.shards, 1)
            )
            run_bounded(pool, write_downsampled, args, limit, tick)
        names = src.channel_names or [plan.region.name]
        extra = {
            "source": [str(p) for p in plan.region.inputs],
            "labels": options.labels,
            "physical_size": src.info.physical_size,
            "units": src.info.units,
            "tiff_kind": src.info.kind,
            "tiff_series": src.info.series,
        }
        finalize_image(
            layout,
            physical_size=src.info.physical_size,
            units=src.info.units,
            channel_names=names,
            channel_colors=src.channel_colors or ["FFFFFF"] * len(names),
            windows=omero_windows(src.dtype, lo, hi),
            affine=affine_from_info(src.info),
            options=options,
            name=plan.region.name,
            extra=extra,
        )
        plan.target.publish()
        result.ok = True
    except Exception as exc:  # noqa: BLE001 - one region's failure must not stop the others
        result.error = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, FileExistsError):  # an existing finished image is never removed
            plan.target.abort()
        if progress is not None:
            progress.update(max(plan.n_tasks - done, 0))
    except BaseException:  # Ctrl-C / SystemExit: nothing half-written stays behind
        plan.target.abort()
        raise
    result.seconds = time.perf_counter() - t0
    if result.ok:
        result.bytes_out = plan.target.stored_bytes()
    return result


def convert_regions(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    options: ConvertOptions | None = None,
    regions: Sequence[str] | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[list[ConversionPlan | RegionResult]], None] | None = None,
    storage: StorageOptions | None = None,
) -> list[RegionResult]:
    """Converts every region found in ``inputs`` to ``out_dir/<region>.ome.zarr``.

    ``out_dir`` is a local folder or an ``s3://bucket/prefix`` reached with ``storage``
    (endpoint, credentials; ``None`` fields resolve from the ``AWS_*`` environment). Regions that
    cannot be opened or written come back with ``ok=False`` and the reason; the rest still
    convert. ``progress.total`` is set to the number of work blocks.
    """
    options = options or ConvertOptions()
    storage = storage or StorageOptions()
    root = os.fspath(out_dir)
    files.makedirs(root, storage)
    plans: list[ConversionPlan | RegionResult] = []
    for region in find_regions(inputs, regions):
        try:
            plans.append(plan_region(region, root, options, storage=storage))
        except Exception as exc:
            plans.append(
                RegionResult(
                    region.name,
                    [str(p) for p in region.inputs],
                    files.join(root, f"{region.name}.ome.zarr"),
                    False,
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
    if on_plan is not None:
        on_plan(plans)
    if progress is not None:
        progress.total = sum(p.n_tasks for p in plans if isinstance(p, ConversionPlan))
        progress.refresh()
    results: list[RegionResult] = []
    with make_executor(options) as pool:
        for plan in plans:
            results.append(plan if isinstance(plan, RegionResult) else execute_plan(plan, options, pool, progress))
    return results


def convert_tiff(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    options: ConvertOptions | None = None,
    progress: Progress | None = None,
    storage: StorageOptions | None = None,
) -> RegionResult:
    """Converts one TIFF file to the OME-Zarr image at ``output`` (a local path or an ``s3://``
    URI reached with ``storage``); returns the result (check ``ok``)."""
    options = options or ConvertOptions()
    region = Region(Path(path).name, (Path(path),))
    out = os.fspath(output)
    parent = out.rstrip("/").rsplit("/", 1)[0] if is_remote(out) else str(Path(out).parent)
    try:
        plan = plan_region(region, parent, options, out, storage)
    except Exception as exc:
        return RegionResult(region.name, [str(path)], str(output), False, error=f"{type(exc).__name__}: {exc}")
    if progress is not None:
        progress.total = plan.n_tasks
    with make_executor(options) as pool:
        return execute_plan(plan, options, pool, progress)
