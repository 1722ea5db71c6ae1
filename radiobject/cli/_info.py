"""``radiobject info``: the summary of a store or standalone collection from its tables (no pixel reads)."""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import numpy as np

from radiobject.errors import RadiObjectError

__all__ = ["lossy_summary", "store_info"]


def _stored_bytes(uri: str, storage: Any) -> int | None:
    from radiobject.storage import files
    from radiobject.storage.options import is_remote, strip_file_scheme

    try:
        if is_remote(uri):
            return int(files.remote_fs(storage).du(uri.split("://", 1)[1]))
        total = 0
        for dirpath, _, names in os.walk(strip_file_scheme(uri)):
            total += sum(os.path.getsize(os.path.join(dirpath, n)) for n in names)
        return total
    except (OSError, ValueError):
        return None


def store_info(radi: Any) -> dict[str, Any]:
    """Summary of a store (or of a standalone collection) from its tables only (no pixel reads);
    a collection that cannot be opened (e.g. left unfinished by a killed writer) is listed with
    the reason (``"unreadable"``)."""
    from radiobject.model.collection import VolumeCollection

    if isinstance(radi, VolumeCollection):
        return {
            "uri": radi.uri,
            "backend": radi.backend_name,
            "kind": "collection",
            "subjects": radi.obs["obs_subject_id"].nunique() if len(radi) else 0,
            "obs_meta_columns": [],
            "collections": {radi.name: _collection_info(radi, radi.location.storage)},
        }
    out: dict[str, Any] = {
        "uri": radi.uri,
        "backend": radi.backend_name,
        "kind": "store",
        "subjects": len(radi.obs_subject_ids),
        "obs_meta_columns": [c for c in radi.obs_meta.columns if c != "obs_subject_id"],
        "collections": {},
    }
    ingest = _ingest_state(radi)
    if ingest is not None:
        out["ingest"] = ingest
    for name in radi.collection_names:
        try:
            coll = radi[name]
        except RadiObjectError as exc:
            out["collections"][name] = {"unreadable": str(exc)}
            continue
        out["collections"][name] = _collection_info(coll, radi.location.storage)
    return out


def _ingest_state(radi: Any) -> dict[str, Any] | None:
    """``complete`` and ``counts`` of the store's last cohort ingest (``ingest.json``), if any."""
    from radiobject.model.checks import INGEST_MARKER
    from radiobject.storage import files

    uri = files.join(radi.uri, INGEST_MARKER)
    try:
        if not files.exists(uri, radi.location.storage):
            return None
        marker = files.read_json(uri, radi.location.storage)
    except (RadiObjectError, OSError, ValueError) as exc:
        return {"complete": None, "unreadable": str(exc)}
    if not isinstance(marker, dict):
        return {"complete": None, "unreadable": "not a JSON object"}
    return {"complete": marker.get("complete"), "counts": marker.get("counts", {})}


def _collection_info(coll: Any, storage: Any) -> dict[str, Any]:
    obs = coll.obs
    shapes = Counter(tuple(int(v) for v in s) for s in obs["shape"]) if len(obs) else Counter()
    dtypes = Counter(obs["dtype"]) if len(obs) else Counter()
    raw = (
        sum(
            int(np.prod([int(v) for v in s])) * np.dtype(d).itemsize
            for s, d in zip(obs["shape"], obs["dtype"], strict=True)
        )
        if len(obs)
        else 0
    )
    stored = _stored_bytes(coll.uri, storage)
    out = {
        "volumes": len(obs),
        "subjects": obs["obs_subject_id"].nunique() if len(obs) else 0,
        "shapes": {"x".join(map(str, k)): v for k, v in shapes.most_common()},
        "dtypes": dict(dtypes),
        "codecs": dict(Counter(obs["codec"])) if len(obs) else {},
        "orientations": dict(Counter(obs["orientation"])) if len(obs) else {},
        "spacings": dict(Counter("x".join(f"{float(v):.3g}" for v in sp) for sp in obs["spacing"])) if len(obs) else {},
        **_label_info(coll),
        "raw_bytes": raw,
        "stored_bytes": stored,
        "ratio": round(raw / stored, 2) if stored else None,
    }
    lossy = lossy_summary(obs) if len(obs) else None
    if lossy:
        out["lossy"] = lossy
    return out


def lossy_summary(obs: Any) -> dict[str, Any] | None:
    """Quality recorded at write by lossy storage (``metadata["lossy"]``), over a collection's
    volumes: settings, count, worst / mean PSNR and SSIM, largest error; ``None`` when lossless."""
    entries = []
    for text in obs["metadata"] if "metadata" in obs else []:
        meta = json.loads(text) if isinstance(text, str) and text else (text or {})
        if isinstance(meta, dict) and isinstance(meta.get("lossy"), dict):
            entries.append(meta["lossy"])
    if not entries:
        return None
    psnr = [e["psnr_db"] for e in entries if e.get("psnr_db") is not None]
    ssim = [e["ssim"] for e in entries if e.get("ssim") is not None]
    return {
        "volumes": len(entries),
        "settings": sorted({str(e.get("setting")) for e in entries}),
        "psnr_db_min": min(psnr) if psnr else None,
        "psnr_db_mean": round(sum(psnr) / len(psnr), 3) if psnr else None,
        "ssim_min": min(ssim) if ssim else None,
        "ssim_mean": round(sum(ssim) / len(ssim), 6) if ssim else None,
        "max_abs_error": max(float(e.get("max_abs_error") or 0.0) for e in entries),
    }


def _label_info(coll: Any) -> dict[str, Any]:
    """``channel_names`` when recorded (MSD / nnU-Net), and ``labels`` (value -> name) and
    ``label_values`` of a label collection."""
    from radiobject.model.labels import get_label_map, is_label_collection, label_values, read_collection_meta

    out: dict[str, Any] = {}
    channels = read_collection_meta(coll).get("channel_names")
    if channels:
        out["channel_names"] = list(channels)
    if not is_label_collection(coll):
        return out
    lm = get_label_map(coll)
    return {**out, "labels": {str(k): v for k, v in lm.names.items()} if lm else {}, "label_values": label_values(coll)}
