"""Verification of a whole store, and the naming of damaged data (store, collection, subject, file).

``verify_store`` checks every stored byte it has a record for: volume files against their
integrity records (``radiobject.storage.integrity``; Zarr shards down to the damaged chunk), table
fragments against the digest in their names, JSON documents against their own checksums, and (in
full mode) decodes every volume so that each engine checksum is checked too. ``quick=True`` checks
presence and sizes only (plus the small JSON documents). Findings name the file, relative to the
store; notes (``level="note"``) are facts that are not damage, e.g. a volume written before
checksums existed ("no checksum record").
"""

from __future__ import annotations

from typing import Any

from radiobject.errors import CorruptDataError, RadiObjectError
from radiobject.model.checks import INGEST_MARKER, MARKER_VERSIONS, check_marker
from radiobject.model.verify_report import Finding, VerifyReport, iter_lines, summary
from radiobject.storage import checksums, files, integrity
from radiobject.storage.groups import GROUP_RECORD, group_files
from radiobject.storage.options import StorageOptions
from radiobject.storage.parquet_bytes import read_parquet

__all__ = ["Finding", "VerifyReport", "iter_lines", "summary", "verify_store"]


def _rel(store: str, uri: str) -> str:
    root = store.rstrip("/") + "/"
    return uri[len(root) :] if uri.startswith(root) else uri


def _check_documents(
    report: VerifyReport, store: str, storage: StorageOptions, listing: dict[str, int], arrays: set[str], full: bool
) -> None:
    """JSON documents and table fragments outside volume arrays."""
    unsealed: list[str] = []
    for rel in sorted(listing):
        if any(rel == a or rel.startswith(a + "/") for a in arrays):
            continue  # inside a volume array: covered by its integrity record
        name = rel.rsplit("/", 1)[-1]
        uri = files.join(store, rel)
        if name.endswith(".json"):
            report.files_checked += 1
            try:
                obj = checksums.parse_checked_json(files.read_bytes(uri, storage), uri)
            except CorruptDataError as exc:
                report.add("error", rel, exc.reason)
                continue
            if name == GROUP_RECORD and isinstance(obj, dict):
                _check_group(report, store, storage, rel.rpartition("/")[0], obj)
            if checksums.json_checksum_state(obj) == "absent":
                unsealed.append(rel)
            if name in MARKER_VERSIONS:
                try:
                    check_marker(uri, obj, name)
                except RadiObjectError as exc:
                    report.add("error", rel, str(exc))
        elif name.endswith(".parquet"):
            report.files_checked += 1
            try:
                data = files.read_bytes(uri, storage)
                sealed = checksums.check_fragment(name, data, uri)
            except CorruptDataError as exc:
                report.add("error", rel, exc.reason)
                continue
            if not sealed:
                unsealed.append(rel)
                if full:
                    try:
                        read_parquet(data)
                    except Exception as exc:  # noqa: BLE001 - any parse failure is damage
                        report.add("error", rel, f"unreadable table fragment ({type(exc).__name__}: {exc})")
    if unsealed:
        report.add(
            "note",
            unsealed[0],
            f"no checksum record on {len(unsealed)} JSON / table file(s) (written before checksums; only parsed)",
        )


def _check_tables(
    report: VerifyReport, store: str, storage: StorageOptions, listing: dict[str, int], arrays: set[str]
) -> None:
    """Each fragment table's head record and chain (``storage.table_head``): a fragment that is gone
    (named by the head or by its successor) is an error; a table without a head record is a note."""
    from radiobject.storage import table_head

    folders = {
        rel.rpartition("/")[0]
        for rel in listing
        if table_head.is_fragment(rel.rpartition("/")[2]) or rel.rpartition("/")[2] == table_head.HEAD_NAME
    }
    for folder in sorted(folders):
        if any(folder == a or folder.startswith(a + "/") for a in arrays):
            continue
        for level, part, reason in table_head.scan(files.join(store, folder) if folder else store, storage):
            report.add(level, f"{folder}/{part}" if folder else part, reason)


def _check_group(report: VerifyReport, store: str, storage: StorageOptions, group: str, record: dict[str, Any]) -> None:
    """A TileDB group's own files against its record (``storage.groups.write_group_record``)."""
    uri = files.join(store, group) if group else store
    prefix = f"{group}/" if group else ""
    report.files_checked += len(record.get("files", {}))
    for rel, reason in integrity.problems(uri, record, storage, hash_file=lambda r: True):
        report.add("error", prefix + rel, reason)
    try:
        extra = set(group_files(uri, storage)) - set(record.get("files", {}))
    except CorruptDataError as exc:  # a group file that is not a regular file (reported above too)
        report.add("error", prefix + _rel(uri, exc.uri), exc.reason)
        return
    if extra:
        report.add(
            "note",
            prefix + min(extra),
            f"{len(extra)} group metadata file(s) written after the group's record (unchecked)",
        )


def _check_volume(
    report: VerifyReport,
    store: str,
    storage: StorageOptions,
    uri: str,
    backend: str,
    quick: bool,
    listing: dict[str, int],
) -> bool:
    """Checks one volume's files against its record; False when it has no record (legacy)."""
    from radiobject.storage.zarr_check import diagnose_shard

    where = _rel(store, uri)
    own = {k[len(where) + 1 :]: v for k, v in listing.items() if k.startswith(where + "/")}
    if not own:
        report.add("error", where, "volume listed in the catalog but its array is missing")
        return True
    if integrity.MANIFEST not in own:
        try:
            from radiobject.storage.registry import get_backend

            get_backend(backend, storage).open_array(uri)  # refuses an array marked as sealed
        except CorruptDataError as exc:
            report.add("error", f"{where}/{exc.part}" if exc.part else where, exc.reason)
            return True
        except RadiObjectError as exc:
            report.add("error", where, str(exc))
            return True
        return False
    try:
        record = integrity.read_record(uri, storage)
    except RadiObjectError as exc:
        report.add("error", f"{where}/{integrity.MANIFEST}", str(getattr(exc, "reason", exc)))
        return True
    small = 1 << 16
    report.files_checked += len(record["files"])
    for rel, reason in integrity.problems(
        uri,
        record,
        storage,
        listing=own,
        hash_file=lambda r: not quick or int(record["files"][r]["size"]) <= small,
    ):
        detail = diagnose_shard(uri, rel, storage) if backend == "zarr" and rel.startswith("c/") else ""
        report.add("error", f"{where}/{rel}", reason + (f"; {detail}" if detail else ""))
    return True


def _open(uri: str, storage: StorageOptions) -> tuple[Any | None, dict[str, Any]]:
    """The store at ``uri`` and its collections by name (opened later, one by one);
    ``(None, {name: collection})`` for a standalone collection."""
    from radiobject.model.collection import VolumeCollection
    from radiobject.model.opening import open_store_or_collection

    opened = open_store_or_collection(uri, storage)
    if isinstance(opened, VolumeCollection):
        return None, {opened.name: opened}
    return opened, dict.fromkeys(opened.collection_names)


def verify_store(
    uri: str, storage: StorageOptions | None = None, *, quick: bool = False, progress: bool = False
) -> VerifyReport:
    """Checks the store (or standalone collection) at ``uri``; see the module docstring. Never
    raises for damage: every problem becomes a ``Finding`` (an unopenable store is one error finding)."""
    from tqdm.auto import tqdm

    storage = storage or StorageOptions()
    report = VerifyReport(uri, quick)
    listing = integrity.walk(uri, storage)
    try:
        radi, colls = _open(uri, storage)
    except RadiObjectError as exc:  # named by the marker it lacks or refuses
        where = (
            "collection.json"
            if "collection.json" in listing and "radiobject.json" not in listing
            else "radiobject.json"
        )
        report.add("error", where, str(exc))
        return report
    if radi is not None:
        _check_unmarked_collections(report, listing, list(colls))
        _check_ingest_marker(report, uri, storage, listing)
    work: list[tuple[Any, dict[str, Any]]] = []
    for name in colls:
        report.collections += 1
        try:
            coll = colls[name]
            if coll is None and radi is not None:  # a store's collections open one by one
                coll = colls[name] = radi[name]
            rows = coll.obs.to_dict("records")
        except RadiObjectError as exc:
            report.add("error", f"collections/{name}", str(exc))
            continue
        if radi is not None and coll.backend_name != radi.backend_name:
            report.add(
                "error",
                f"collections/{name}/collection.json",
                f"a {coll.backend_name} collection in a {radi.backend_name} store (a piece of another store)",
            )
        work.extend((coll, r) for r in rows)
    _check_catalog(report, radi, storage, work)
    arrays = {_rel(uri, coll._state.volume_uri(str(r["obs_id"]), str(r.get("version") or ""))) for coll, r in work}
    _check_documents(report, uri, storage, listing, arrays, not quick)
    _check_tables(report, uri, storage, listing, arrays)
    legacy: dict[str, int] = {}
    for coll, row in tqdm(work, desc="verify", unit="vol", disable=not progress):
        report.volumes += 1
        oid = str(row["obs_id"])
        vuri = coll._state.volume_uri(oid, str(row.get("version") or ""))
        before = len(report.errors)
        if not _check_volume(report, uri, storage, vuri, coll.backend_name, quick, listing):
            legacy[coll.name] = legacy.get(coll.name, 0) + 1
        if not quick and len(report.errors) == before:
            _read_back(report, uri, coll, row, _rel(uri, vuri))
    for name, n in legacy.items():
        report.add(
            "note",
            f"collections/{name}",
            f"no checksum record on {n} volume(s) (written before checksums; only decoded)",
        )
        if n < len(colls[name]):
            report.add(
                "note",
                f"collections/{name}",
                "volumes of two format generations (with and without checksum records) in one collection",
            )
    return report


def _check_ingest_marker(report: VerifyReport, uri: str, storage: StorageOptions, listing: dict[str, int]) -> None:
    """An ingest that stopped before the end leaves a consistent but incomplete store: never "OK"."""
    if INGEST_MARKER not in listing:
        return
    try:
        marker = files.read_json(files.join(uri, INGEST_MARKER), storage)
    except (CorruptDataError, ValueError, OSError) as exc:
        report.add("error", INGEST_MARKER, f"unreadable ingest marker ({exc})")
        return
    if isinstance(marker, dict) and marker.get("complete") is False:
        report.add(
            "error",
            INGEST_MARKER,
            "the last ingest did not complete (interrupted, or every item failed): "
            "re-run it to resume; committed volumes are intact",
        )


def _check_unmarked_collections(report: VerifyReport, listing: dict[str, int], names: list[str]) -> None:
    """A folder under ``collections/`` that holds a catalog or volume data but no ``collection.json``
    (a deleted or lost marker) is invisible to readers: an error, never a silently smaller store."""
    known = set(names)
    unmarked: dict[str, str] = {}
    for rel in listing:
        parts = rel.split("/")
        if len(parts) < 4 or parts[0] != "collections" or parts[1] in known or parts[1] in unmarked:
            continue
        if parts[2] == "obs" or (parts[2] == "volumes" and len(parts) >= 5 and not parts[3].startswith("__")):
            unmarked[parts[1]] = rel
    for name, rel in sorted(unmarked.items()):
        report.add(
            "error",
            f"collections/{name}/collection.json",
            f"missing: the folder holds collection data "
            f"(e.g. {rel}) but no collection marker, so readers do not see this collection",
        )


def _check_catalog(
    report: VerifyReport, radi: Any | None, storage: StorageOptions, work: list[tuple[Any, dict[str, Any]]]
) -> None:
    """Tables agree with each other: unique IDs, every subject in ``obs_meta`` (a store's);
    leftovers noted."""
    subjects: set[str] | None = None
    if radi is not None:
        try:
            meta = radi.obs_meta
        except RadiObjectError as exc:
            report.add("error", "obs_meta", str(exc))
            return
        if meta["obs_subject_id"].duplicated().any():
            report.add("error", "obs_meta", "duplicate subject IDs")
        subjects = set(meta["obs_subject_id"])
    by_coll: dict[str, list[dict[str, Any]]] = {}
    colls = {}
    for coll, row in work:
        by_coll.setdefault(coll.name, []).append(row)
        colls[coll.name] = coll
    for name, rows in by_coll.items():
        ids = [str(r["obs_id"]) for r in rows]
        if len(set(ids)) != len(ids):
            report.add("error", f"collections/{name}/obs", "duplicate obs_id")
        orphans = set() if subjects is None else {str(r["obs_subject_id"]) for r in rows} - subjects
        if orphans:
            report.add(
                "error", f"collections/{name}/obs", f"{len(orphans)} subject(s) not in obs_meta, e.g. {min(orphans)!r}"
            )
        root = files.join(colls[name].uri, "volumes")
        on_disk = {n for n in files.listdir(root, storage) if not n.startswith(("__", ".")) and not n.endswith(".json")}
        extra = on_disk - set(ids)
        if extra:
            report.add(
                "note",
                f"collections/{name}/volumes",
                f"{len(extra)} unreferenced array folder(s) "
                f"(an interrupted write; invisible to readers), e.g. {min(extra)!r}",
            )


def _read_back(report: VerifyReport, store: str, coll: Any, row: dict[str, Any], where: str) -> None:
    """Decodes the whole volume (every engine checksum) and compares it with its ``obs`` row."""
    import numpy as np

    from radiobject.model.volume import Volume

    try:
        vol = coll.volume(str(row["obs_id"]))
        data = vol.to_numpy()
        stored = Volume(vol.uri, storage=coll.location.storage)  # geometry from the array's own attributes
        if not np.array_equal(stored.affine.ravel(), np.asarray(row["affine"], dtype=np.float64)):
            report.add("error", where, "the affine stored with the array differs from its obs row")
    except CorruptDataError as exc:
        report.add("error", where, exc.reason + (f" [{exc.part}]" if exc.part else ""))
        return
    except Exception as exc:  # noqa: BLE001 - reported per volume
        report.add("error", where, f"unreadable ({type(exc).__name__}: {exc})")
        return
    if tuple(data.shape) != tuple(int(s) for s in row["shape"]) or str(data.dtype) != row["dtype"]:
        report.add("error", where, f"array is {data.shape} {data.dtype}, obs says {tuple(row['shape'])} {row['dtype']}")
    elif data.dtype.kind == "f" and not np.isfinite(data).all():
        report.add("note", where, "contains NaN / inf")
