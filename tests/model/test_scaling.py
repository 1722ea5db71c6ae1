"""The one intensity-scaling rule (radiobject.model.scaling), and Volume.read(scaled=True) on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radiobject.model.scaling import apply_scaling, intensity_scaling, scaled
from radiobject.model.volume import Volume


@pytest.mark.parametrize(
    ("meta", "want"),
    [
        ({}, None),
        ({"scl_slope": None}, None),
        ({"scl_slope": 0.0, "scl_inter": 5.0}, None),  # NIfTI: slope 0 = no scaling
        ({"scl_slope": float("nan")}, None),
        ({"scl_slope": 1.0, "scl_inter": 0.0}, None),
        ({"scl_slope": 1.0}, None),
        ({"scl_slope": 2.0}, (2.0, 0.0)),
        ({"scl_slope": 1.0, "scl_inter": -1024.0}, (1.0, -1024.0)),
        ({"scl_slope": 0.5, "scl_inter": float("nan")}, (0.5, 0.0)),
        ({"scl_slope": "not a number"}, None),
    ],
)
def test_intensity_scaling_rule(meta: dict[str, object], want: tuple[float, float] | None) -> None:
    assert intensity_scaling(meta) == want


def test_apply_and_scaled() -> None:
    raw = np.array([0, 1, 2, 1000], dtype=np.int16)
    out = scaled(raw, {"scl_slope": 0.5, "scl_inter": -10.0})
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([-10.0, -9.5, -9.0, 490.0], dtype=np.float32))
    assert raw.tolist() == [0, 1, 2, 1000]  # the input is never modified
    with pytest.raises(TypeError):
        apply_scaling(raw.copy(), {"scl_slope": 2.0})  # an integer buffer cannot hold scaled values
    ident = scaled(raw, {})
    assert ident.dtype == np.float32 and ident.tolist() == [0.0, 1.0, 2.0, 1000.0]


def test_volume_read_scaled_is_float32_always(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    plain = Volume.from_numpy(str(tmp_path / "plain"), data, np.eye(4))
    assert plain.read(scaled=True).dtype == np.float32  # identity scaling: still float32, as documented
    ct = Volume.from_numpy(str(tmp_path / "ct"), data, np.eye(4), metadata={"scl_slope": 2.0, "scl_inter": -1.0})
    np.testing.assert_array_equal(ct.read(scaled=True), data.astype(np.float32) * 2 - 1)
    np.testing.assert_array_equal(ct.read(), data)  # stored raw, as ingested
