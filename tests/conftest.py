"""Shared fixtures: the backend parameter and the location of the real third-party test data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Real third-party DICOM / TIFF data; override with RADIOBJECT_TEST_DATA.
SHARED_DATA = Path(os.environ.get("RADIOBJECT_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))

BACKENDS = ("zarr", "tiledb")

# every process a test starts prints its Python stacks on a native crash (SIGSEGV, SIGABRT), so a
# rare crash in CI names where it happened
os.environ.setdefault("PYTHONFAULTHANDLER", "1")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Runs a test once per storage backend."""
    return request.param


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set RADIOBJECT_TEST_DATA)")
    return SHARED_DATA


def data_path(*parts: str) -> Path:
    """A path inside the shared data folder, or a skip naming what is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not found: {path} (set RADIOBJECT_TEST_DATA)")
    return path
