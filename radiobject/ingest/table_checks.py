"""Checks on manifest / subject-table files before pandas reads them, and on their rows.

Every failure is a :class:`~radiobject.errors.ManifestError` (file and line) or a
:class:`~radiobject.errors.DuplicateIdError`, found early and in bounded memory: a FIFO or a device
named as a manifest is refused before it is opened, the text is checked as UTF-8 line by line
(the first bad line is named), and duplicate rows are found with one vectorised pass whose message
names only the first few rows, however many there are.
"""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Callable
from typing import Any

import pandas as pd

from radiobject.errors import DuplicateIdError, ImageReadError, ManifestError
from radiobject.formats.inputs import regular_file_size

__all__ = [
    "check_header_names",
    "check_scalar_columns",
    "check_text_file",
    "id_text",
    "parse_table",
    "reject_duplicates",
]

#: Rows named in a duplicate error (the count is always given in full).
SHOWN_ROWS = 5
#: Largest manifest / subject table read (a 100,000-row manifest is a few MB).
MAX_TABLE_BYTES = 1 << 30
_PIECE = 1 << 20


def check_text_file(path: str) -> None:
    """Raises ``ManifestError`` unless ``path`` is a regular file of UTF-8 text (a BOM is allowed)
    no larger than :data:`MAX_TABLE_BYTES`; read in pieces of at most 1 MiB, whatever its lines."""
    try:
        size = regular_file_size(path)
    except ImageReadError as exc:
        raise ManifestError(path, 0, exc.reason) from None
    if size > MAX_TABLE_BYTES:
        raise ManifestError(
            path, 0, f"{size / 2**30:.1f} GiB: a table over {MAX_TABLE_BYTES / 2**30:.0f} GiB is refused"
        )
    opener: Callable[..., Any] = gzip.open if path.lower().endswith(".gz") else open
    lineno, carry = 1, b""
    try:
        with opener(path, "rb") as f:
            while piece := f.readline(_PIECE):
                data = carry + (piece[3:] if lineno == 1 and not carry and piece.startswith(b"\xef\xbb\xbf") else piece)
                carry = b""
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    cut = not piece.endswith(b"\n") and exc.reason == "unexpected end of data"
                    if not cut:
                        raise ManifestError(
                            path,
                            lineno,
                            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at column "
                            f"{exc.start + 1}); save the table as UTF-8",
                        ) from None
                    carry = data[exc.start :]  # a character split by the piece limit: decoded with the next piece
                if piece.endswith(b"\n"):
                    lineno += 1
    except OSError as exc:
        raise ManifestError(path, 0, f"cannot read ({exc})") from exc
    if carry:
        raise ManifestError(path, lineno, "not UTF-8 text (the file ends inside a character)")


def parse_table(path: str, read: Callable[[str], pd.DataFrame]) -> pd.DataFrame:
    """``read(path)`` after the file checks, with any parser failure raised as ``ManifestError``."""
    low = path.lower()
    if low.endswith((".parquet", ".pq")):
        try:
            regular_file_size(path)
        except ImageReadError as exc:
            raise ManifestError(path, 0, exc.reason) from None
    else:
        check_text_file(path)
    try:
        with warnings.catch_warnings():  # a row longer than the header would silently lose cells
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return read(path)
    except ManifestError:
        raise
    except pd.errors.ParserWarning as exc:
        raise ManifestError(path, 0, f"a row has more fields than the header ({exc})") from None
    except (ValueError, OSError, UnicodeError) as exc:  # pandas' ParserError is a ValueError; pyarrow's too
        raise ManifestError(path, 0, f"cannot parse ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - any other parser failure, typed and naming the file
        raise ManifestError(path, 0, f"cannot parse ({type(exc).__name__}: {exc})") from exc


def reject_duplicates(df: pd.DataFrame, keys: list[str], where: str, first_line: int = 2) -> None:
    """Raises ``DuplicateIdError`` when two rows share ``keys`` (e.g. collection + obs_id).

    ``first_line``: the line of row 0 in the file (2 for a CSV with a header line).
    """
    dup = df.duplicated(keys, keep=False)
    if not bool(dup.any()):
        return
    rows = dup.to_numpy().nonzero()[0]
    first = df.iloc[int(rows[0])]
    key = tuple(str(first[k]) for k in keys)
    same = rows[(df.iloc[rows][keys].astype(str) == list(key)).all(axis=1).to_numpy()]
    shown = ", ".join(str(int(r) + first_line) for r in same[:SHOWN_ROWS])
    more = f" and {len(same) - SHOWN_ROWS} more" if len(same) > SHOWN_ROWS else ""
    raise DuplicateIdError(
        " / ".join(keys),
        key if len(key) > 1 else key[0],
        f"{where} (lines {shown}{more}; {len(rows)} duplicated rows in all; each volume may be listed once)",
    )


def check_header_names(path: str, sep: str) -> None:
    """Raises ``ManifestError`` (line 1) when two columns of a CSV / TSV header have one name:
    pandas would rename the second (``path.1``) and the first would be used without a word."""
    try:
        head = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False, index_col=False)
    except Exception:  # noqa: BLE001 - the full parse already succeeded; nothing more to say
        return
    if not len(head):
        return
    names = [str(v).strip() for v in head.iloc[0].tolist()]
    seen: set[str] = set()
    dups = []
    for n in names:
        if n and n in seen:
            dups.append(n)
        seen.add(n)
    if dups:
        raise ManifestError(path, 1, f"duplicate column name(s) {sorted(set(dups))}: each column must be named once")


def check_scalar_columns(df: pd.DataFrame, columns: list[str], where: str, line: int = 0) -> None:
    """Raises ``ManifestError`` when a metadata column holds lists, arrays or mappings (a Parquet
    list column): metadata cells must be single values (numbers, text, booleans)."""
    for c in columns:
        col = df[c]
        if col.dtype != object:
            continue
        bad = col.map(lambda v: isinstance(v, (list, tuple, dict, set, bytes)) or hasattr(v, "shape")).to_numpy()
        if bad.any():
            row = int(bad.nonzero()[0][0])
            raise ManifestError(
                where,
                line,
                f"column {c!r} holds {type(col.iloc[row]).__name__} values (first at row {row + 1}); "
                f"metadata cells must be single values (numbers or text)",
            )


def id_text(value: object) -> str:
    """An ID cell as text: missing (None, NaN, NA) is ``""``; a whole float (``1.0`` from a Parquet
    column that also holds missing values) is ``"1"``; anything else ``str(value)``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "item") and not isinstance(value, (bytes, bytearray)):
        item = value.item()
        if isinstance(item, float) and item.is_integer():
            return str(int(item))
        return str(item)
    return str(value)
