"""Subject / obs IDs and collection names are safe path components."""

from __future__ import annotations

import pytest

from radiobject.errors import InvalidIdError
from radiobject.model.ids import validate_collection_name, validate_id


@pytest.mark.parametrize("good", ["sub-01", "BraTS_2021_00001", "P.1+2=3@x,y", "a b", "7"])
def test_accepted(good: str) -> None:
    assert validate_id(good) == good


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("", "empty"),
        ("a/b", "separator"),
        ("a\\b", "separator"),
        ("..", "'..'"),
        ("a..b", "'..'"),
        ("x\x00", "NUL"),
        ("x" * 201, "201 characters"),
        (" a", "white space"),
        ("a\tb", "characters"),
        ("ü", "characters"),
        (None, "must be a string"),
    ],
)
def test_rejected_with_reason(bad, reason: str) -> None:
    with pytest.raises(InvalidIdError, match=reason):
        validate_id(bad, "subject id")


def test_collection_names() -> None:
    assert validate_collection_name("T1w") == "T1w"
    for bad in ("1abc", "a.b", "a b"):
        with pytest.raises(InvalidIdError):
            validate_collection_name(bad)
