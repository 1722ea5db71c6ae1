"""The report of a cohort ingest (``run_ingest``): per-collection item results, the rows rejected
before writing, counts, the JSON form (the CLI's ``--json``) and the end-of-run table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from radiobject.ingest.tasks import Problem
from radiobject.model.bulk import IngestReport

__all__ = ["STATUSES", "STORED", "CohortReport"]

#: Item statuses: newly ``written``, ``replaced`` (source changed), already ``present``, ``failed``.
STATUSES: tuple[str, ...] = ("written", "replaced", "present", "failed")
#: Statuses of an item whose volume is stored after the run.
STORED: frozenset[str] = frozenset({"written", "replaced", "present"})


@dataclass
class CohortReport:
    """Outcome of one ingest run: per-collection item results plus rows rejected before writing."""

    uri: str
    backend: str = ""
    collections: dict[str, IngestReport] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    subjects_added: int = 0
    seconds: float = 0.0
    aborted: str = ""

    def rows(self) -> list[dict[str, Any]]:
        """One dict per item: collection, obs_id, subject, status, seconds, nbytes, source, error."""
        out: list[dict[str, Any]] = []
        for p in self.problems:
            out.append(
                {
                    "collection": p.collection,
                    "obs_id": p.obs_id,
                    "obs_subject_id": p.subject_id,
                    "status": "failed",
                    "seconds": 0.0,
                    "nbytes": 0,
                    "source": p.source,
                    "error": p.reason,
                }
            )
        for name, rep in self.collections.items():
            for r in rep.results:
                out.append({"collection": name, **asdict(r)})
        return out

    def count(self, status: str) -> int:
        """Items with this status (one of :data:`STATUSES`)."""
        n = sum(rep.count(status) for rep in self.collections.values())
        return n + (len(self.problems) if status == "failed" else 0)

    @property
    def failed(self) -> list[dict[str, Any]]:
        out = [r for r in self.rows() if r["status"] == "failed"] if self.count("failed") else []
        return out

    def _with_status(self, status: str) -> list[dict[str, Any]]:
        return [r for r in self.rows() if r["status"] == status] if self.count(status) else []

    @property
    def ok(self) -> bool:
        """True when nothing failed and the run was not aborted."""
        return not self.aborted and not self.failed

    @property
    def bytes_written(self) -> int:
        return sum(
            r.nbytes for rep in self.collections.values() for r in rep.results if r.status in ("written", "replaced")
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable report (the CLI's ``--json``)."""
        rows = self.rows()
        per: dict[str, dict[str, int]] = {}
        for name in dict.fromkeys([*self.collections, *(p.collection for p in self.problems)]):
            per[name] = {s: 0 for s in STATUSES}
        for r in rows:
            per[r["collection"]][r["status"]] += 1
        return {
            "uri": self.uri,
            "backend": self.backend,
            "ok": self.ok,
            "aborted": self.aborted,
            "seconds": round(self.seconds, 3),
            "subjects_added": self.subjects_added,
            "counts": {s: self.count(s) for s in STATUSES},
            "bytes_written": self.bytes_written,
            "collections": per,
            "items": rows,
        }

    def summary_table(self, max_failures: int = 50) -> str:
        """The end-of-run table: per collection ingested / replaced / already present / failed, then
        the failures and the replaced volumes with their reasons."""
        d = self.to_dict()
        head = f"{'collection':<20} {'ingested':>9} {'replaced':>9} {'already present':>16} {'failed':>7}"
        lines = [head]
        for name, c in [*d["collections"].items(), ("total", d["counts"])]:
            lines.append(f"{name or '-':<20} {c['written']:>9} {c['replaced']:>9} {c['present']:>16} {c['failed']:>7}")
        c = d["counts"]
        mb = self.bytes_written / 1e6
        n = c["written"] + c["replaced"]
        rate = f", {n / self.seconds:.1f} volumes/s, {mb / self.seconds:.1f} MB/s" if self.seconds > 0 else ""
        lines.append(f"{mb:.1f} MB written in {self.seconds:.2f} s{rate}; {self.subjects_added} subject(s) added")
        kept = [r for r in self._with_status("present") if r["error"]]
        for title, rows in (
            ("failed", self.failed),
            ("replaced (source changed)", self._with_status("replaced")),
            ("kept although the source changed", kept),
        ):
            if not rows:
                continue
            lines.append(f"{title} ({len(rows)}):")
            for r in rows[:max_failures]:
                who = "/".join(x for x in (r["collection"], r["obs_id"]) if x) or "-"
                lines.append(f"  {who}: {r['error']}  [{r['source']}]")
            if len(rows) > max_failures:
                lines.append(f"  ... {len(rows) - max_failures} more (see --json)")
        if self.aborted:
            lines.append(f"aborted: {self.aborted}")
        return "\n".join(lines)
