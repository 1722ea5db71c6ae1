"""Checksums of stored bytes: file entries (size + CRC-32C / SHA-256), sealed JSON documents
(a ``radiobject_checksum`` member) and table fragment names that carry a digest of their bytes.

Pure functions of bytes and objects: no storage access (``files`` and the integrity records in
:mod:`radiobject.storage.integrity` build on them).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from radiobject.errors import CorruptDataError

#: The member of a sealed JSON document holding its checksum.
CHECKSUM_KEY = "radiobject_checksum"
_DIGEST_RE = re.compile(r"-h([0-9a-f]{16})\.parquet$")


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 hex digits."""
    return hashlib.sha256(data).hexdigest()


def crc32c_hex(data: bytes) -> str:
    """The CRC-32C of ``data`` as 8 hex digits (hardware-accelerated; the file checksum of records)."""
    import google_crc32c

    return f"{google_crc32c.value(data):08x}"


def file_entry(data: bytes) -> dict[str, Any]:
    """A record entry for one file: its size and CRC-32C."""
    return {"size": len(data), "crc32c": crc32c_hex(data)}


def entry_matches(data: bytes, want: Mapping[str, Any]) -> bool:
    """True when ``data`` matches a record entry (CRC-32C, or SHA-256 in older records)."""
    if "crc32c" in want:
        return crc32c_hex(data) == want["crc32c"]
    return sha256_hex(data) == want.get("sha256")


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def json_digest(obj: Mapping[str, Any]) -> str:
    """The checksum of a JSON document, ignoring its own ``radiobject_checksum`` member(s)."""
    body = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
    attrs = body.get("attributes")
    if isinstance(attrs, Mapping) and CHECKSUM_KEY in attrs:
        body["attributes"] = {k: v for k, v in attrs.items() if k != CHECKSUM_KEY}
    return sha256_hex(_canonical(body))[:32]


def seal_json(obj: Mapping[str, Any], *, in_attributes: bool = False) -> dict[str, Any]:
    """A copy of ``obj`` carrying its checksum (inside ``attributes`` for Zarr ``zarr.json``
    documents, whose top level admits no unknown member)."""
    out = json.loads(json.dumps(dict(obj)))
    out.pop(CHECKSUM_KEY, None)
    if in_attributes:
        out.setdefault("attributes", {}).pop(CHECKSUM_KEY, None)
        out["attributes"][CHECKSUM_KEY] = json_digest(out)
    else:
        out[CHECKSUM_KEY] = json_digest(out)
    return out


def json_checksum_state(obj: Any) -> str:
    """``"ok"``, ``"bad"`` or ``"absent"``: whether a parsed JSON document matches its checksum."""
    if not isinstance(obj, Mapping):
        return "absent"
    attrs = obj.get("attributes")
    stored = obj.get(CHECKSUM_KEY)
    if stored is None and isinstance(attrs, Mapping):
        stored = attrs.get(CHECKSUM_KEY)
    if stored is None:
        near = [k for k in (*obj, *(attrs if isinstance(attrs, Mapping) else ())) if _one_byte_off(k)]
        return "bad" if near else "absent"  # a checksum member whose name took a flipped byte
    return "ok" if stored == json_digest(obj) else "bad"


def _one_byte_off(key: object) -> bool:
    if not isinstance(key, str) or len(key) != len(CHECKSUM_KEY):
        return False
    return sum(a != b for a, b in zip(key, CHECKSUM_KEY, strict=True)) == 1


def parse_checked_json(data: bytes, uri: str) -> Any:
    """Parses a JSON document and checks its checksum when it has one (``CorruptDataError``)."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptDataError(uri, f"not valid JSON ({exc})", part=uri.rsplit("/", 1)[-1]) from None
    if json_checksum_state(obj) == "bad":
        raise CorruptDataError(uri, "JSON document does not match its checksum", part=uri.rsplit("/", 1)[-1])
    return obj


# ------------------------------------------------------------------ table fragment names
def fragment_name_digest(data: bytes) -> str:
    """The suffix put into a table fragment's name: ``-h<16 hex of SHA-256>`` (before ``.parquet``)."""
    return f"-h{sha256_hex(data)[:16]}"


def check_fragment(name: str, data: bytes, uri: str) -> bool:
    """Checks a fragment's bytes against the digest in its name; False when the name has none
    (a fragment written before digests). ``CorruptDataError`` on a mismatch."""
    m = _DIGEST_RE.search(name)
    if m is None:
        return False
    if sha256_hex(data)[:16] != m.group(1):
        raise CorruptDataError(uri, "table fragment does not match the checksum in its name", part=name)
    return True
