"""The core (store, formats, ingest, CLI) imports and runs without the ML stack."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ("torch", "lightning", "monai", "torchio", "dask", "distributed", "matplotlib")

_BLOCKER = textwrap.dedent(
    f"""
    import importlib.abc, sys
    BLOCKED = {BLOCKED!r}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked for this test: {{name}}")
            return None
    sys.meta_path.insert(0, Block())
    """
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCKER + textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def test_core_imports_without_ml_stack() -> None:
    proc = _run(
        """
        import radiobject, radiobject.model.collection, radiobject.model.radi_object
        import radiobject.formats.nifti, radiobject.formats.dicom, radiobject.formats.tiff
        import radiobject.ingest, radiobject.storage, radiobject.convert, radiobject.cli.main
        print("ok", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok []"


def test_cli_help_without_ml_stack() -> None:
    proc = _run(
        """
        from radiobject.cli.main import main
        try:
            main(["--help"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "ingest" in proc.stdout


def test_blocker_is_effective() -> None:
    """The test above can fail: importing the ML side with torch blocked raises."""
    proc = _run("import radiobject.ml")
    assert proc.returncode != 0
    assert "blocked for this test" in proc.stderr
