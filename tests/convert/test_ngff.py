"""NGFF 0.5 / 0.4 metadata builders and validator."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from radiobject.formats.ngff import (
    NgffError,
    image_attributes,
    multiscales_metadata,
    omero_metadata,
    read_image_attributes,
    validate_image_attributes,
)


def _attrs(version: str) -> dict:
    ms = multiscales_metadata(
        "tczyx",
        [[1, 1, 2, 0.5, 0.5], [1, 1, 2, 1.0, 1.0]],
        units={"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"},
        level_translations=[None, [0, 0, 0, 0.25, 0.25]],
        version=version,
    )
    om = omero_metadata(
        ["DAPI", "CD3"], ["0000ff", "00FF00"], [(0, 65535, 10, 900), (0, 65535, 5, 400)], version=version
    )
    return image_attributes(ms, omero=om, affine=np.diag([5e-4, 5e-4, 2e-3, 1]), version=version)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_builders_produce_valid_metadata(version: str) -> None:
    attrs = _attrs(version)
    validate_image_attributes(attrs, version, [(1, 2, 4, 100, 100), (1, 2, 4, 50, 50)])
    found, ome = read_image_attributes(attrs)
    assert found == version
    ms = ome["multiscales"][0]
    assert [a["type"] for a in ms["axes"]] == ["time", "channel", "space", "space", "space"]
    assert "unit" not in ms["axes"][1]
    assert ms["datasets"][0]["coordinateTransformations"] == [{"type": "scale", "scale": [1, 1, 2, 0.5, 0.5]}]
    assert ms["datasets"][1]["coordinateTransformations"][1]["type"] == "translation"
    assert ome["omero"]["channels"][0]["color"] == "0000FF"
    assert ome["omero"]["channels"][1]["window"] == {"min": 0.0, "max": 65535.0, "start": 5.0, "end": 400.0}
    assert attrs["radiobject"]["affine"][2][2] == 2e-3
    if version == "0.5":
        assert set(attrs) == {"ome", "radiobject"} and attrs["ome"]["version"] == "0.5"
    else:
        assert attrs["multiscales"][0]["version"] == "0.4" and "ome" not in attrs


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda ms: ms["axes"].reverse(), "ordered time, channel, space"),
        (lambda ms: ms["datasets"].reverse(), "smaller than the previous"),
        (lambda ms: ms["datasets"][1]["coordinateTransformations"].reverse(), "need one 'scale'"),
        (lambda ms: ms["axes"][2].update(unit="parsecs"), "invalid unit"),
        (lambda ms: ms["datasets"][0]["coordinateTransformations"][0].update(scale=[1, 1, 0, 1, 1]), "positive"),
        (lambda ms: ms.update(axes=ms["axes"][:1]), "need 2-5"),
    ],
)
def test_validator_rejects(mutate, message: str) -> None:
    attrs = copy.deepcopy(_attrs("0.5"))
    mutate(attrs["ome"]["multiscales"][0])
    with pytest.raises(NgffError, match=message):
        validate_image_attributes(attrs, "0.5")


def test_validator_checks_version_shapes_and_channels() -> None:
    with pytest.raises(NgffError, match="expected '0.4'"):
        validate_image_attributes(_attrs("0.5"), "0.4")
    with pytest.raises(NgffError, match="omero: 2 channels"):
        validate_image_attributes(_attrs("0.5"), "0.5", [(1, 3, 4, 100, 100), (1, 3, 4, 50, 50)])
    with pytest.raises(NgffError, match="larger than level above"):
        validate_image_attributes(_attrs("0.5"), "0.5", [(1, 2, 4, 100, 100), (1, 2, 4, 150, 50)])
    with pytest.raises(NgffError, match="no NGFF image metadata"):
        validate_image_attributes({"foo": 1})
    with pytest.raises(NgffError, match="unsupported NGFF version"):
        multiscales_metadata("yx", [[1, 1]], version="0.3")
    with pytest.raises(NgffError, match="4x4"):
        image_attributes(multiscales_metadata("yx", [[1, 1]]), affine=np.eye(3))
