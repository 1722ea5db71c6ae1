"""PNG plots of a sweep (matplotlib, Agg): size vs read speed with the Pareto front, and heat maps
over codec x level and over chunk shape x access pattern."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

ENGINE_COLORS = {"zarr": "tab:blue", "tiledb": "tab:orange", "zarr-python-v2": "tab:green", "zarr-python-v3": "tab:red"}


def pareto_front(df: pd.DataFrame, cost: str, gain: str = "ratio") -> pd.DataFrame:
    """Rows not dominated: no other row has lower-or-equal ``cost`` and higher-or-equal ``gain``
    (one of them strictly). Sorted by ``cost``."""
    d = df.sort_values([cost, gain], ascending=[True, False])
    keep, best = [], -np.inf
    for idx, g in zip(d.index, d[gain], strict=True):
        if g > best:
            keep.append(idx)
            best = g
    return d.loc[keep]


def plot_pareto(ok: pd.DataFrame, path: str) -> str:
    """Compressed ratio against full-read, patch and worst-slice time, one row of panels per volume."""
    vols = list(ok["volume"].unique())
    metrics = [
        ("full_ms", "full volume read (ms)"),
        ("patch_ms", "random unaligned patch (ms)"),
        ("slice_max_ms", "slowest plane, one slice (ms)"),
    ]
    fig, axes = plt.subplots(len(vols), 3, figsize=(15, 4.2 * len(vols)), squeeze=False)
    for r, vol in enumerate(vols):
        d = ok[ok["volume"] == vol]
        for c, (col, title) in enumerate(metrics):
            ax = axes[r][c]
            for eng, g in d.groupby("engine"):
                ax.scatter(g[col], g["ratio"], s=18, alpha=0.7, label=eng, color=ENGINE_COLORS.get(str(eng)))
            front = pareto_front(d, col)
            ax.plot(front[col], front["ratio"], "k--", lw=1, label="Pareto front")
            for _, row in front.iterrows():
                ax.annotate(
                    f"{row['codec']}:{row['level']} {row['chunks']}{' sh' if row['sharded'] else ''}",
                    (row[col], row["ratio"]),
                    fontsize=6,
                    xytext=(3, 2),
                    textcoords="offset points",
                )
            ax.set_xscale("log")
            ax.set_xlabel(title)
            ax.set_ylabel("compression ratio (raw / stored)")
            ax.set_title(f"{vol}: size vs {col.replace('_ms', '')} speed")
            ax.grid(alpha=0.3)
        axes[r][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _heat(ax: plt.Axes, table: pd.DataFrame, title: str, fmt: str, cmap: str) -> None:
    vals = table.to_numpy(dtype=float)
    im = ax.imshow(vals, cmap=cmap, aspect="auto")
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(table.shape[0]), [str(i) for i in table.index], fontsize=8)
    for (i, j), v in np.ndenumerate(vals):
        if np.isfinite(v):
            r, g, b, _ = im.cmap(im.norm(v))
            ax.text(
                j,
                i,
                format(v, fmt),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black",
            )
    ax.set_title(title, fontsize=9)


def plot_codec_level(ok: pd.DataFrame, path: str, chunks: str | None = None) -> str | None:
    """Heat maps codec(+shuffle) x level of ratio, full read and patch time: zarr engine, sharded,
    at one chunk shape (the most common one among codec rows when ``chunks`` is None)."""
    d = ok[(ok["engine"] == "zarr") & ok["sharded"]]
    if d.empty:
        return None
    vols = list(d["volume"].unique())
    fig, axes = plt.subplots(len(vols), 3, figsize=(15, 3.6 * len(vols)), squeeze=False)
    for r, vol in enumerate(vols):
        dv = d[d["volume"] == vol]
        ch = chunks or dv.groupby("chunks").size().idxmax()
        dv = dv[dv["chunks"] == ch].assign(codec_shuffle=lambda x: x["codec"] + "/" + x["shuffle"])
        for c, (col, title, fmt, cmap) in enumerate(
            [
                ("ratio", "compression ratio", ".2f", "viridis"),
                ("full_ms", "full read ms", ".0f", "magma_r"),
                ("patch_ms", "patch ms", ".2f", "magma_r"),
            ]
        ):
            table = dv.pivot_table(index="codec_shuffle", columns="level", values=col, aggfunc="median")
            _heat(axes[r][c], table, f"{vol}, chunks {ch}, sharded: {title}", fmt, cmap)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_chunks(ok: pd.DataFrame, path: str, codec: str = "blosc-lz4", level: int = 5) -> str | None:
    """Heat map chunk shape (x sharding) x access pattern (ms, files), zarr and tiledb, one codec."""
    d = ok[
        (ok["codec"] == codec)
        & (ok["level"] == level)
        & (ok["shuffle"] == "byte")
        & ok["engine"].isin(["zarr", "tiledb"])
    ]
    if d.empty:
        return None
    vols = list(d["volume"].unique())
    fig, axes = plt.subplots(
        1, len(vols), figsize=(8 * len(vols), 0.45 * d.groupby("volume").size().max() + 2), squeeze=False
    )
    cols = ["patch_ms", "axial_ms", "coronal_ms", "sagittal_ms", "full_ms", "write_s", "n_files", "ratio"]
    for c, vol in enumerate(vols):
        dv = d[d["volume"] == vol].copy()
        dv["config"] = dv["engine"] + " " + dv["chunks"] + np.where(dv["sharded"], " sharded", "")
        dv = dv.sort_values(["engine", "chunk_kib", "chunks", "sharded"])
        table = dv.set_index("config")[cols]
        norm = table / table.max().replace(0, 1)  # colour per column, annotate raw values
        ax = axes[0][c]
        ax.imshow(norm.to_numpy(dtype=float), cmap="magma_r", aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(table)), list(table.index), fontsize=8)
        shade = norm.to_numpy(dtype=float)
        for (i, j), v in np.ndenumerate(table.to_numpy(dtype=float)):
            ax.text(
                j,
                i,
                f"{v:.0f}" if v >= 100 else f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if shade[i, j] > 0.6 else "black",
            )
        ax.set_title(f"{vol}: chunk shape x access ({codec}:{level}/byte); darker = slower / more", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lossy(lossy: pd.DataFrame, path: str) -> str | None:
    """Compression ratio against PSNR for the lossy codecs."""
    d = lossy[lossy.get("error", pd.Series(index=lossy.index, dtype=object)).isna()] if "error" in lossy else lossy
    d = d[np.isfinite(d["psnr_db"])] if not d.empty else d
    if d.empty:
        return None
    vols = list(d["volume"].unique())
    fig, axes = plt.subplots(1, len(vols), figsize=(6 * len(vols), 4), squeeze=False)
    for c, vol in enumerate(vols):
        ax = axes[0][c]
        for codec, g in d[d["volume"] == vol].groupby("codec"):
            ax.plot(g["psnr_db"], g["ratio"], "o-", label=codec)
        ax.set_xlabel("PSNR (dB)")
        ax.set_ylabel("compression ratio")
        ax.set_title(f"{vol}: lossy codecs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(ok: pd.DataFrame, lossy: pd.DataFrame | None, out_dir: str) -> list[str]:
    """All plots into ``out_dir``; returns the paths written."""
    paths = [
        plot_pareto(ok, os.path.join(out_dir, "pareto_size_vs_speed.png")),
        plot_codec_level(ok, os.path.join(out_dir, "heatmap_codec_level.png")),
        plot_chunks(ok, os.path.join(out_dir, "heatmap_chunk_shape.png")),
    ]
    if lossy is not None and not lossy.empty:
        paths.append(plot_lossy(lossy, os.path.join(out_dir, "lossy_ratio_vs_psnr.png")))
    return [p for p in paths if p]
