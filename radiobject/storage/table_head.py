"""The head record and fragment chain of a fragment table: a fragment that is gone is an error.

Every commit of a table (an append or a compaction, under the table's lock) writes one Parquet
fragment whose key-value metadata (``radiobject.chain``) is its *link*: the name of its
predecessor (the newest fragment listed when it was written), the number of fragments and of rows
since the latest base (a base is fragment 1 of its chain). Then it replaces the table's *head*
record (``_head.json``, a sealed JSON document) naming the new fragment, its base and those counts.

A reader reads the head first, then lists. Every fragment named by the head or by a link of a
fragment it reads must be listed, unless the listing holds a base newer than that fragment
(a compaction publishes its base before it removes what it folded, so anything older than a
listed base may have gone). A missing one is a :class:`~radiobject.errors.CorruptDataError`
naming the table and the fragment: a deleted newest fragment (named by the head), a deleted middle
one (named by its successor), a deleted base (named by the head or the first fragment after it).

Tables written before heads existed (no head, no links) read as before; ``verify`` notes them.
A head that is missing while fragments carry links (a writer stopped between its first fragment
and its first head, or a deleted head) loses no rows: the newest linked fragment stands in for it,
the next commit writes the head again, and ``verify`` notes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from radiobject.errors import CorruptDataError, FormatVersionError
from radiobject.storage import files
from radiobject.storage.options import StorageOptions
from radiobject.storage.parquet_bytes import parquet_file

PREFIX, SUFFIX = "part-", ".parquet"
BASE = "-base"  # in the name of a compacted fragment, before the digest
#: The head record's file name inside a table folder (not a fragment name: listings skip it).
HEAD_NAME = "_head.json"
#: The Parquet key-value metadata key holding a fragment's link.
META_KEY = b"radiobject.chain"
HEAD_FORMAT, HEAD_VERSION = "radiobject-table-head", 1


def is_fragment(name: str) -> bool:
    """True for a table fragment's file name."""
    return name.startswith(PREFIX) and name.endswith(SUFFIX)


def is_base(name: str) -> bool:
    """True for the name of a base (compacted) fragment."""
    return BASE + "-h" in name or name.endswith(BASE + SUFFIX)


def visible(names: list[str]) -> list[str]:
    """The fragments a reader uses: from the latest base on (it holds everything older)."""
    bases = [i for i, n in enumerate(names) if is_base(n)]
    return names[bases[-1] :] if bases else names


@dataclass(frozen=True)
class Link:
    """A fragment's place in its chain: ``prev`` its predecessor (None for the first fragment of
    a table), ``seq`` / ``rows`` fragments / rows since the latest base (itself included),
    ``base`` the base its chain starts from (None when there is none or it is the base)."""

    prev: str | None
    seq: int
    rows: int
    base: str | None

    def metadata(self) -> dict[bytes, bytes]:
        """The Parquet key-value metadata entry carrying this link."""
        body = {"prev": self.prev, "seq": self.seq, "rows": self.rows, "base": self.base}
        return {META_KEY: json.dumps(body, sort_keys=True).encode()}

    def after(self, name: str, rows: int) -> Link:
        """The link of a fragment of ``rows`` rows committed right after this one's ``name``."""
        return Link(name, self.seq + 1, self.rows + rows, name if is_base(name) else self.base)


def first_link(prev: str | None, rows: int, *, base: bool) -> Link:
    """The link of a base, of a table's first fragment, or of one that follows an unlinked one."""
    return Link(prev, 1, rows, prev if prev is not None and is_base(prev) and not base else None)


def read_link(metadata: dict[bytes, bytes] | None, uri: str, name: str) -> Link | None:
    """The link in a fragment's Parquet metadata; None for a fragment written before links."""
    raw = (metadata or {}).get(META_KEY)
    if raw is None:
        return None
    try:
        body = json.loads(raw)
        return Link(body["prev"], int(body["seq"]), int(body["rows"]), body["base"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptDataError(uri, f"unreadable chain record in table fragment ({exc})", part=name) from None


@dataclass(frozen=True)
class Head:
    """A table's head record: its newest fragment, that fragment's base, fragments and rows since it."""

    latest: str
    seq: int
    rows: int
    base: str | None

    @staticmethod
    def of(name: str, link: Link) -> Head:
        """The head naming fragment ``name`` with ``link``."""
        return Head(name, link.seq, link.rows, name if is_base(name) else link.base)


def read_head(table_uri: str, storage: StorageOptions) -> Head | None:
    """The head record of the table at ``table_uri``; None when it has none (legacy or empty).
    ``CorruptDataError`` when it is damaged, ``FormatVersionError`` when newer than this code."""
    uri = files.join(table_uri, HEAD_NAME)
    try:
        obj = files.read_json(uri, storage)
    except FileNotFoundError:
        return None
    if not isinstance(obj, dict) or obj.get("format") != HEAD_FORMAT:
        raise CorruptDataError(uri, "not a table head record", part=HEAD_NAME)
    if int(obj.get("version", 0)) > HEAD_VERSION:
        raise FormatVersionError(
            uri, f"table head version {obj.get('version')}; this radiobject reads up to {HEAD_VERSION}"
        )
    try:
        return Head(str(obj["latest"]), int(obj["fragments"]), int(obj["rows"]), obj["base"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptDataError(uri, f"malformed table head record ({exc})", part=HEAD_NAME) from None


def write_head(table_uri: str, head: Head, storage: StorageOptions) -> None:
    """Replaces the head record atomically (one rename; one PUT on S3)."""
    body = {
        "format": HEAD_FORMAT,
        "version": HEAD_VERSION,
        "latest": head.latest,
        "fragments": head.seq,
        "rows": head.rows,
        "base": head.base,
    }
    files.write_json_atomic(files.join(table_uri, HEAD_NAME), body, storage)


def covered(name: str, names: list[str]) -> bool:
    """True when ``names`` holds a base newer than ``name`` (so ``name`` may have been folded and removed)."""
    return any(is_base(n) and n > name for n in names)  # names sort in commit order


def problems(
    head: Head | None, names: list[str], links: dict[str, Link | None], nrows: dict[str, int]
) -> list[tuple[str, str, str]]:
    """``(level, part, reason)`` of everything wrong with the chain of one listing.

    ``names``: the listing (commit order); ``links`` / ``nrows``: link and row count of each
    fragment of ``visible(names)`` that could be read (a fragment absent from them is skipped).
    ``level`` is ``"error"`` (a missing or inconsistent fragment) or ``"note"``.
    """
    out: list[tuple[str, str, str]] = []
    seen = visible(names)
    present = set(names)

    def gone(ref: str | None) -> bool:
        return ref is not None and ref not in present and not covered(ref, names)

    for name in seen:
        if name not in links or links[name] is None:
            continue
        link = links[name]
        assert link is not None
        if gone(link.prev) and not is_base(name):
            out.append(("error", str(link.prev), f"missing table fragment {link.prev} (the predecessor of {name})"))
        elif is_base(name) or link.prev is None:
            if link.seq != 1 or link.rows != nrows[name]:
                out.append(("error", name, "table fragment's chain record does not match its rows"))
        elif link.prev in links:
            before = links[link.prev]
            want = (1, nrows[name]) if before is None else (before.seq + 1, before.rows + nrows[name])
            if (link.seq, link.rows) != want:
                out.append(("error", name, f"table fragment's chain record does not follow {link.prev}"))
    if head is None:
        if any(links.get(n) is not None for n in seen):
            out.append(
                (
                    "note",
                    HEAD_NAME,
                    "no head record, though fragments carry chain records (a writer "
                    "stopped before writing it, or it was deleted); the next commit writes it",
                )
            )
        elif names:
            out.append(("note", HEAD_NAME, "no head record (a table written before head records)"))
        return out
    if gone(head.latest):
        out.append(
            ("error", head.latest, f"missing table fragment {head.latest} (the newest one, named by the head record)")
        )
    if gone(head.base):
        out.append(("error", str(head.base), f"missing table fragment {head.base} (the base named by the head record)"))
    if head.latest in links:
        link = links[head.latest]
        if link is None or (link.seq, link.rows) != (head.seq, head.rows):
            out.append(("error", HEAD_NAME, f"head record does not match its newest fragment {head.latest}"))
    return _once(out)


def _once(found: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The first finding on each part (a missing base is named by its successor and by the head)."""
    out: dict[tuple[str, str], tuple[str, str, str]] = {}
    for f in found:
        out.setdefault((f[0], f[1]), f)
    return list(out.values())


def scan(table_uri: str, storage: StorageOptions) -> list[tuple[str, str, str]]:
    """``problems`` of the table at ``table_uri`` as stored now (for ``verify``); fragments that
    cannot be read are skipped here (their damage is reported by their checksums)."""
    try:
        head = read_head(table_uri, storage)
    except (CorruptDataError, FormatVersionError) as exc:
        return [("error", HEAD_NAME, str(getattr(exc, "reason", exc)))]
    names = [n for n in files.listdir(table_uri, storage) if is_fragment(n)]
    links: dict[str, Link | None] = {}
    nrows: dict[str, int] = {}
    for name in visible(names):
        uri = files.join(table_uri, name)
        try:
            meta = parquet_file(files.read_bytes(uri, storage)).metadata
            links[name] = read_link(meta.metadata, uri, name)
        except (OSError, ValueError, CorruptDataError):
            continue
        nrows[name] = int(meta.num_rows)
    return problems(head, names, links, nrows)
