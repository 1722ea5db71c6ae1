"""napari reader on a TileDB store: TileDB's own group folders are not offered as volumes."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_tiledb_internals_not_volumes(tmp_path: Path) -> None:
    pytest.importorskip("tiledb")
    from radiobject.cli.main import main
    from radiobject.napari import get_reader

    assert main(["sample-cohort", str(tmp_path / "c"), "--subjects", "2"]) == 0
    store = tmp_path / "s.radi"
    assert main(["ingest", str(store), "--manifest", str(tmp_path / "c" / "manifest.csv"), "--backend", "tiledb"]) == 0
    volumes = store / "collections" / "T1w" / "volumes"
    internals = [p for p in volumes.iterdir() if p.name.startswith("__")]
    assert internals, "expected TileDB group entries in the volumes folder"
    for p in internals:
        assert get_reader(str(p)) is None, p.name
    reader = get_reader(str(volumes / "sub-01"))
    assert reader is not None
    [(data, kwargs, kind)] = reader(str(volumes / "sub-01"))
    assert kind == "image" and data.ndim == 3 and len(kwargs["scale"]) == 3
