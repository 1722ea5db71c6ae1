"""A store location may be a ``pathlib.Path`` wherever a ``str`` path is accepted; other types are a
``TypeError`` naming what is accepted."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from radiobject import RadiObject, Volume, VolumeCollection
from radiobject.storage.options import as_location, is_remote, strip_file_scheme


def _nifti(path: Path, seed: int) -> Path:
    data = np.random.default_rng(seed).integers(0, 100, (6, 5, 4)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 2.0, 3.0, 1.0])), path)
    return path


def test_paths_are_accepted_and_stored_as_str(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        _nifti(src / f"sub-{i}_T1w.nii.gz", i)
    radi = RadiObject.from_niftis(tmp_path / "s.radi", images={"T1w": str(src / "*_T1w.nii.gz")})
    again = RadiObject(tmp_path / "s.radi")
    assert isinstance(again.uri, str) and again.uri == str(tmp_path / "s.radi")
    assert again.T1w.obs_ids == radi.T1w.obs_ids and len(again.T1w) == 2
    coll = VolumeCollection.from_niftis(tmp_path / "c", [str(p) for p in sorted(src.glob("*.nii.gz"))])
    assert isinstance(coll.uri, str) and len(VolumeCollection(tmp_path / "c")) == 2
    vol = Volume.from_numpy(tmp_path / "v", np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    np.testing.assert_array_equal(Volume(tmp_path / "v").to_numpy(), np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    assert isinstance(vol.uri, str)
    copy = again.to_radi_object(tmp_path / "copy.radi")
    assert isinstance(copy.uri, str) and len(RadiObject(tmp_path / "copy.radi").T1w) == 2


@pytest.mark.parametrize("bad", [b"s.radi", None, 3, ["s.radi"]])
def test_other_location_types_are_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="store location"):
        as_location(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="store location"):
        RadiObject(bad)  # type: ignore[arg-type]


def test_helpers_take_paths() -> None:
    assert as_location(Path("/a/b")) == "/a/b" and not is_remote(Path("/a")) and is_remote("s3://b/k")
    assert strip_file_scheme("file:///a/b") == "/a/b" and strip_file_scheme(Path("/a")) == "/a"
