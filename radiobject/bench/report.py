"""Turns sweep rows into a CSV, PNG plots and a markdown summary with use-case recommendations.

Every recommendation is a row of the measurements (the best by a stated criterion), quoted with its
numbers; nothing here is a fixed table.
"""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from radiobject.bench.plots import write_plots

#: The lead's current default, for comparison in the summary.
DEFAULT_QUERY = {"engine": "zarr", "codec": "blosc-lz4", "level": 5, "shuffle": "byte", "sharded": True}


def machine_info() -> dict[str, str]:
    """Date, host CPU count, platform and library versions (for the report header)."""
    from importlib.metadata import version

    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "load_avg_1m": f"{os.getloadavg()[0]:.1f}",
        "python": platform.python_version(),
        **{name: version(name) for name in ("numpy", "zarr", "tensorstore", "tiledb", "imagecodecs")},
    }


def lossless_ok(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that ran and round-tripped bit-exactly."""
    if "error" in df:
        df = df[df["error"].isna()]
    return df[df["exact"].astype(bool)].copy()


def default_row(df: pd.DataFrame, volume: str, chunks: str | None = None) -> pd.Series | None:
    """The lead's default configuration (32^3 clipped, blosc-lz4:5/byte, sharded) for ``volume``."""
    d = df[df["volume"] == volume]
    for k, v in DEFAULT_QUERY.items():
        d = d[d[k] == v]
    if chunks:
        d = d[d["chunks"] == chunks]
    else:
        d = (
            d[
                d["chunks"].map(
                    lambda s: all(
                        int(x) == min(32, int(n))
                        for x, n in zip(s.split("x"), d["shape"].iloc[0].split("x"), strict=True)
                    )
                )
            ]
            if not d.empty
            else d
        )
    return None if d.empty else d.iloc[0]


#: Patch + worst slice + stored size, equally weighted (a 2x bigger store is not free).
SCORE_WEIGHTS = {"patch_ms": 1.0, "slice_max_ms": 1.0, "bytes": 1.0}


def balanced_score(d: pd.DataFrame, weights: dict[str, float] | None = None) -> pd.Series:
    """Sum of each metric divided by its best value in ``d``, weighted (ideal = sum of weights)."""
    weights = weights or SCORE_WEIGHTS
    return sum(w * d[c] / d[c].min() for c, w in weights.items())


def pick(d: pd.DataFrame, use: str) -> tuple[pd.Series, str]:
    """The measured best row for a use case and the criterion used (``d``: one volume, lossless ok)."""
    if use == "viewing":
        return d.assign(s=balanced_score(d, {"slice_max_ms": 1.0, "bytes": 1.0})).sort_values("s").iloc[
            0
        ], "lowest worst-plane slice time/best + size/best"
    if use == "training":
        return d.assign(s=balanced_score(d)).sort_values("s").iloc[
            0
        ], "lowest patch/best + worst-slice/best + size/best"
    if use == "patch":
        return d.assign(s=balanced_score(d, {"patch_ms": 1.0, "bytes": 1.0})).sort_values("s").iloc[
            0
        ], "lowest unaligned-patch time/best + size/best"
    if use == "full":
        return d.assign(s=balanced_score(d, {"full_ms": 1.0, "bytes": 1.0})).sort_values("s").iloc[
            0
        ], "lowest full-volume read time/best + size/best"
    if use == "cloud":
        few = d[d["n_files"] <= d["n_files"].min() + 2]
        return few.assign(s=balanced_score(few)).sort_values("s").iloc[0], (
            f"fewest objects ({int(few['n_files'].min())}-{int(few['n_files'].max())} files), "
            "then patch + slice + size score"
        )
    if use == "archive":
        return d.sort_values(["ratio", "full_ms"], ascending=[False, True]).iloc[0], "highest lossless ratio"
    raise ValueError(f"unknown use case {use!r}")


def describe(r: pd.Series) -> str:
    """One-line numbers of a row."""
    extra = "".join(
        f", {c[5:-3]}^3 {r[c]:.2f} ms"
        for c in ("patch96_ms", "patch128_ms")
        if c in r and pd.notna(r[c]) and int(c[5:-3]) != int(r["patch_edge"])
    )
    return (
        f"`{r['label']}`: x{r['ratio']:.2f}, {int(r['n_files'])} files, patch {r['patch_ms']:.2f} ms{extra}, "
        f"slices ax/co/sa {r['axial_ms']:.2f}/{r['coronal_ms']:.2f}/{r['sagittal_ms']:.2f} ms, "
        f"full {r['full_ms']:.1f} ms, write {r['write_s']:.2f} s"
    )


def md_table(df: pd.DataFrame, cols: list[str], floatfmt: str = ".2f") -> str:
    """A GitHub markdown table of ``cols`` (no tabulate dependency)."""

    def fmt(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return format(float(v), floatfmt) if np.isfinite(v) else "inf"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df[cols].itertuples(index=False)]
    return "\n".join(lines)


USE_CASES = [
    ("viewing", "Viewing (slices in every plane)"),
    ("training", "Analysis / training (random patches + slices)"),
    ("full", "Whole-volume reads"),
    ("cloud", "Cloud / object storage (few objects)"),
    ("archive", "Archive (smallest lossless)"),
]
COLS = ["label", "ratio", "n_files", "write_s", "full_ms", "patch_ms", "axial_ms", "coronal_ms", "sagittal_ms"]


def summary_markdown(df: pd.DataFrame, lossy: pd.DataFrame | None, meta: dict[str, str]) -> str:
    """The markdown summary: recommendations per use case per volume, sharding, v2 vs v3, engines, lossy."""
    ok = lossless_ok(df)
    bad = df[~df.index.isin(ok.index)]
    cols = COLS[:6] + [c for c in ("patch96_ms", "patch128_ms") if c in df] + COLS[6:]
    out = [
        f"# Storage benchmark ({meta.get('date_utc', '')})",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in meta.items() if k != "date_utc"),
        "",
        (
            "Times: all stores written first, then read in interleaved rounds; "
            "each probe region keeps its best time over "
            "rounds, rows report the median over regions (full volume: the best); "
            "page cache warm, tensorstore's chunk cache off (decode cost, not cache hits). "
            "Patch = random cubic patch at unaligned offsets; slice = one full plane; ratio = raw / stored bytes."
        ),
        "",
    ]
    out.append(f"Configurations: {len(df)}; lossless bit-exact: {len(ok)}; failed or not exact: {len(bad)}.")
    for _, r in bad.iterrows():
        out.append(
            f"- NOT OK: {r['volume']} `{r['label']}` "
            f"{r.get('error') if isinstance(r.get('error'), str) else 'not bit-exact'}"
        )
    for vol in ok["volume"].unique():
        d = ok[ok["volume"] == vol]
        out += [
            "",
            (
                f"## {vol} ({d['shape'].iloc[0]} {d['dtype'].iloc[0]}, {d['raw_mb'].iloc[0]:.1f} MB raw; "
                f"patch edge {int(d['patch_edge'].iloc[0])})"
            ),
            "",
            "### Recommendations (measured)",
            "",
        ]
        for use, title in USE_CASES:
            r, why = pick(d, use)
            out.append(f"- **{title}** ({why}): {describe(r)}")
        dflt = default_row(d, vol)
        if dflt is not None:
            best, _ = pick(d, "training")
            out.append(
                f"- Current default {describe(dflt)}; patch+slice+size score "
                f"{balanced_score(d).loc[dflt.name]:.2f} vs best {balanced_score(d).loc[best.name]:.2f}."
            )
        z = d[(d["engine"] == "zarr") & (d["codec"] == "blosc-lz4") & (d["level"] == 5) & (d["shuffle"] == "byte")]
        if z["sharded"].nunique() == 2:
            out += [
                "",
                "### Sharding (zarr, blosc-lz4:5/byte)",
                "",
                md_table(
                    z.sort_values(["chunks", "sharded"]),
                    ["chunks", "sharded", "n_files", "ratio", "write_s", "patch_ms", "slice_max_ms", "full_ms"],
                ),
            ]
        zp = d[d["engine"].str.startswith("zarr")]
        zp = zp[(zp["codec"] == "blosc-lz4") & (zp["level"] == 5) & (zp["shuffle"] == "byte")]
        if zp["engine"].nunique() > 1:
            out += [
                "",
                "### Zarr v2 vs v3 (zarr-python 3 writing format 2 / 3; `zarr` = tensorstore, format 3)",
                "",
                md_table(
                    zp.sort_values(["chunks", "engine", "sharded"]),
                    [
                        "engine",
                        "chunks",
                        "sharded",
                        "n_files",
                        "ratio",
                        "write_s",
                        "full_ms",
                        "patch_ms",
                        "slice_max_ms",
                    ],
                ),
            ]
        best_per_engine = d.assign(s=balanced_score(d)).sort_values("s").groupby("engine").head(1)
        out += ["", "### Best per engine (patch + slice + size score)", "", md_table(best_per_engine, cols)]
        top = d.sort_values("ratio", ascending=False).head(8)
        out += ["", "### Smallest lossless", "", md_table(top, cols)]
    if lossy is not None and not lossy.empty:
        l_ok = lossy[lossy["error"].isna()] if "error" in lossy else lossy
        out += [
            "",
            "## Lossy codecs (imagecodecs; not a radiobject storage option today)",
            "",
            md_table(
                l_ok,
                [
                    "volume",
                    "codec",
                    "param",
                    "unit",
                    "ratio",
                    "psnr_db",
                    "ssim",
                    "mse",
                    "max_abs_err",
                    "encode_s",
                    "decode_ms",
                    "exact",
                ],
            )
            if not l_ok.empty
            else "(none ran)",
        ]
        for _, r in l_ok[l_ok["param"] == "lossless"].iterrows():
            out.append(f"- {r['volume']} {r['codec']} lossless bit-exact: {bool(r['exact'])}")
    out += [
        "",
        "## Files",
        "",
        "- `results.csv`, `lossy.csv`: every measurement",
        "- `pareto_size_vs_speed.png`, `heatmap_codec_level.png`, `heatmap_chunk_shape.png`, `lossy_ratio_vs_psnr.png`",
    ]
    return "\n".join(out) + "\n"


def write_report(
    rows: list[dict[str, Any]],
    lossy_rows: list[dict[str, Any]] | None,
    out_dir: str,
    meta: dict[str, str] | None = None,
) -> dict[str, str]:
    """Writes ``results.csv``, ``lossy.csv``, the plots and ``summary.md`` into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    meta = meta or machine_info()
    df = pd.DataFrame(rows)
    if "error" not in df:
        df["error"] = None
    if "exact" not in df:
        df["exact"] = False
    df["exact"] = df["exact"].fillna(False).astype(bool)
    paths = {"csv": os.path.join(out_dir, "results.csv"), "summary": os.path.join(out_dir, "summary.md")}
    df.to_csv(paths["csv"], index=False)
    lossy = pd.DataFrame(lossy_rows) if lossy_rows else None
    if lossy is not None:
        if "error" not in lossy:
            lossy["error"] = None
        paths["lossy_csv"] = os.path.join(out_dir, "lossy.csv")
        lossy.to_csv(paths["lossy_csv"], index=False)
    ok = lossless_ok(df)
    for i, p in enumerate(write_plots(ok, lossy, out_dir) if not ok.empty else []):
        paths[f"plot{i}"] = p
    with open(paths["summary"], "w") as f:
        f.write(summary_markdown(df, lossy, meta))
    return paths
