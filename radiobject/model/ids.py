"""Validation of the names that become path components: subject IDs, obs IDs, collection names."""

from __future__ import annotations

import re

from radiobject.errors import InvalidIdError

MAX_ID_LENGTH = 200
_SAFE = re.compile(r"^[A-Za-z0-9._+\-=@,][A-Za-z0-9._+\-=@, ]*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def validate_id(value: object, kind: str = "obs_id") -> str:
    """Returns ``value`` as a string when it is safe as one path component, else ``InvalidIdError``.

    Allowed: letters, digits and ``. _ + - = @ ,`` and inner spaces; not empty, not ``.`` / ``..``,
    no ``/`` or ``\\``, no NUL or control characters, at most ``MAX_ID_LENGTH`` characters.
    """
    if not isinstance(value, str):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        else:
            raise InvalidIdError(kind, value, f"must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidIdError(kind, value, "is empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidIdError(kind, value, f"is {len(value)} characters long (at most {MAX_ID_LENGTH})")
    if "\x00" in value:
        raise InvalidIdError(kind, value, "contains a NUL character")
    if "/" in value or "\\" in value:
        raise InvalidIdError(kind, value, "contains a path separator")
    if value in (".", "..") or ".." in value:
        raise InvalidIdError(kind, value, "contains '..'")
    if value != value.strip():
        raise InvalidIdError(kind, value, "has leading or trailing white space")
    if not _SAFE.match(value):
        raise InvalidIdError(kind, value, "contains characters other than letters, digits and . _ + - = @ ,")
    return value


def validate_collection_name(value: object) -> str:
    """A collection name must also be a Python identifier-like token (``radi.T1w`` works)."""
    name = validate_id(value, "collection name")
    if not _IDENTIFIER.match(name):
        raise InvalidIdError(
            "collection name", name, "must start with a letter or '_' and hold only letters, digits, '_' and '-'"
        )
    return name
