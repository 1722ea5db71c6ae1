"""What ``radiobject.model.integrity.verify_store`` found: :class:`Finding` and :class:`VerifyReport`,
and their text form (``radiobject verify``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Finding", "VerifyReport", "iter_lines", "summary"]


@dataclass(frozen=True)
class Finding:
    """One thing ``verify`` found: ``level`` ``"error"`` or ``"note"``, ``where`` (relative to the
    store: a file, a volume, a table), ``what`` happened."""

    level: str
    where: str
    what: str

    def __str__(self) -> str:
        return f"{'note: ' if self.level == 'note' else ''}{self.where}: {self.what}"


@dataclass
class VerifyReport:
    """What ``verify_store`` checked and found."""

    uri: str
    quick: bool
    findings: list[Finding] = field(default_factory=list)
    volumes: int = 0
    collections: int = 0
    files_checked: int = 0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, level: str, where: str, what: str) -> None:
        self.findings.append(Finding(level, where, what))

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "quick": self.quick,
            "ok": self.ok,
            "volumes": self.volumes,
            "collections": self.collections,
            "files_checked": self.files_checked,
            "errors": len(self.errors),
            "findings": [asdict(f) for f in self.findings],
        }


def summary(report: VerifyReport) -> str:
    """One line: what was checked and whether it is clean."""
    n = len(report.errors)
    return (
        f"verified {report.volumes} volume(s) in {report.collections} collection(s), "
        f"{report.files_checked} file(s){' (quick: presence and sizes)' if report.quick else ''}: "
        f"{'OK' if not n else f'{n} problem(s)'}"
    )


def iter_lines(report: VerifyReport) -> Iterable[str]:
    """The findings as text lines (errors first)."""
    for f in sorted(report.findings, key=lambda f: f.level != "error"):
        yield str(f)
