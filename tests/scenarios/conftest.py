"""A small sample-cohort store made as the README does it (``radiobject sample-cohort`` + ``ingest``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``radiobject sample-cohort cohort --subjects 4`` ingested with the README's command."""
    from radiobject.cli.main import main

    tmp = tmp_path_factory.mktemp("cohort")
    assert main(["sample-cohort", str(tmp / "cohort"), "--subjects", "4"]) == 0
    assert (
        main(
            [
                "ingest",
                str(tmp / "store.radi"),
                "--manifest",
                str(tmp / "cohort" / "manifest.csv"),
                "--subjects",
                str(tmp / "cohort" / "participants.csv"),
            ]
        )
        == 0
    )
    return tmp / "store.radi"
