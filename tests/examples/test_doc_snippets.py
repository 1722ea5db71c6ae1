"""The code in README.md and docs/ runs as written, and says what it does.

Each test takes a snippet out of the page itself (so an edit that breaks it fails here), runs it on
the data the page names (``radiobject sample-cohort``, small synthetic layouts, the shared real
TIFF), and checks the values the page's comments state.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from radiobject.cli.main import build_parser, main
from tests.conftest import data_path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def block(page: Path, heading: str, lang: str, nth: int = 0) -> str:
    """The ``nth`` fenced block in ``lang`` ("" = no language) after the first line starting with ``heading``."""
    lines = page.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    found, body, fence = [], [], None
    for line in lines[start:]:
        if fence is None and line.startswith("```"):
            fence, body = line[3:].strip(), []
        elif fence is not None and line.rstrip() == "```":
            found.append((fence, "".join(body)))
            fence = None
        elif fence is not None:
            body.append(line)
    return [code for lg, code in found if lg == lang][nth]


def commands(script: str) -> list[list[str]]:
    """The commands of a bash block, comments dropped; each without the leading ``radiobject``."""
    out = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "radiobject", line
            out.append(words[1:])
    return out


def run_python(code: str, cwd: Path, timeout: float = 240) -> str:
    """Runs ``code`` in a fresh interpreter in ``cwd``; returns stdout, fails with stderr."""
    res = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-4000:]
    return res.stdout


@pytest.fixture
def sample_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``radiobject sample-cohort data --subjects 8`` in a fresh working folder."""
    monkeypatch.chdir(tmp_path)
    assert main(["sample-cohort", "data", "--subjects", "8"]) == 0
    return tmp_path


CHECK_QUICKSTART = """
assert vol.shape == (48, 56, 40) and str(vol.dtype) == "float32" and vol.orientation == "RAS", vol
assert patch.shape == (32, 32, 32) and axial.shape == (48, 56), (patch.shape, axial.shape)
assert list(train.T1w.obs_ids) == ["sub-04", "sub-05"], train.T1w.obs_ids
assert list(RadiObject("train.radi").obs_subject_ids) == ["sub-04", "sub-05"]
print(tuple(batch["image"].shape), tuple(batch["label"].shape))
"""


def test_readme_python_quick_start(sample_data: Path) -> None:
    code = block(ROOT / "README.md", "## Quick start: Python", "python")
    code = code.replace("for batch in loader:", "for batch in [next(iter(loader))]:")
    out = run_python(code + CHECK_QUICKSTART, sample_data)
    assert out.split() == ["(2,", "1,", "32,", "32,", "32)", "(2,", "1,", "32,", "32,", "32)"]


def test_quickstart_page_snippet(sample_data: Path) -> None:
    assert commands(block(DOCS / "quickstart.md", "## Quick start\n", "bash")) == [
        ["sample-cohort", "data", "--subjects", "8"]
    ]
    out = run_python(block(DOCS / "quickstart.md", "## Quick start\n", "python") + CHECK_QUICKSTART, sample_data)
    assert "(2, 1, 32, 32, 32) (2, 1, 32, 32, 32)" in out


def test_readme_command_line_quick_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    cmds = commands(block(ROOT / "README.md", "## Quick start: command line", "bash"))
    assert cmds[-1] == ["--help"]
    for argv in cmds[:-1]:
        assert main(argv) == 0, argv
    out = capsys.readouterr().out
    assert "store.radi  (zarr)  8 subjects, 3 collections" in out
    assert "verified 24 volume(s) in 3 collection(s)" in out and ": OK" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["FLAIR", "T1w", "seg"]


def test_ingest_page_output_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The ingest + info output printed on the page is today's (names, shapes, dtypes, codecs, raw sizes)."""
    monkeypatch.chdir(tmp_path)
    page = DOCS / "ingest.md"
    for argv in commands(block(page, "## Ingesting a cohort", "bash")):
        assert main(argv) == 0, argv
    out = capsys.readouterr().out.splitlines()
    timing = re.compile(r"written in [\d.]+ s, [\d.]+ volumes/s, [\d.]+ MB/s")
    sizes = re.compile(r"^(\S+ +\d+ \d+x\S+ +\S+ +\S+ +[\d.]+ \S+)  +[\d.]+ \S+ +[\d.]+$")  # stored size varies
    for line in block(page, "## Ingesting a cohort", "").splitlines():
        if timing.search(line):
            assert any(timing.sub("", line) == timing.sub("", o) for o in out), line
        elif m := sizes.match(line):
            assert any(o.startswith(m.group(1)) for o in out), line
        else:
            assert line in out, line


def write_layouts(root: Path) -> None:
    """Tiny BIDS (3 subjects, one without DWI), MSD (2-channel images) and nnU-Net datasets."""
    rng = np.random.default_rng(0)
    aff = np.diag([1.0, 1.0, 1.2, 1.0])

    def save(rel: str, arr: np.ndarray) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(arr, aff), path)

    image = lambda *shape: rng.normal(100, 10, shape).astype(np.float32)  # noqa: E731
    label = np.zeros((12, 12, 8), np.uint8)
    label[2:6, 2:6, 2:5] = 1
    for s in ("01", "02", "03"):
        save(f"ds000001/sub-{s}/anat/sub-{s}_T1w.nii.gz", image(12, 12, 8))
        if s != "03":
            save(f"ds000001/sub-{s}/dwi/sub-{s}_dwi.nii.gz", image(6, 6, 4, 3))
            (root / f"ds000001/sub-{s}/dwi/sub-{s}_dwi.bval").write_text("0 1000 1000\n")
            (root / f"ds000001/sub-{s}/dwi/sub-{s}_dwi.bvec").write_text("0 1 0\n0 0 1\n0 0 0\n")
    (root / "ds000001/participants.tsv").write_text("participant_id\tage\nsub-01\t34\nsub-02\tn/a\nsub-03\t51\n")
    training = []
    for i in (1, 2):
        save(f"Task05_Prostate/imagesTr/prostate_{i:02d}.nii.gz", image(12, 12, 8, 2))
        save(f"Task05_Prostate/labelsTr/prostate_{i:02d}.nii.gz", label)
        case = f"prostate_{i:02d}.nii.gz"
        training.append({"image": f"./imagesTr/{case}", "label": f"./labelsTr/{case}"})
    msd = {"modality": {"0": "T2", "1": "ADC"}, "labels": {"0": "background", "1": "PZ"}, "training": training}
    (root / "Task05_Prostate/dataset.json").write_text(json.dumps(msd))
    nn = root / "nnUNet_raw/Dataset001_X"
    for case in ("c1", "c2"):
        for ch in range(2):
            save(f"nnUNet_raw/Dataset001_X/imagesTr/{case}_{ch:04d}.nii.gz", image(12, 12, 8))
        save(f"nnUNet_raw/Dataset001_X/labelsTr/{case}.nii.gz", label)
    ds = {"channel_names": {"0": "T1", "1": "FLAIR"}, "labels": {"background": 0, "tumour": 1}}
    (nn / "dataset.json").write_text(json.dumps({**ds, "numTraining": 2, "file_ending": ".nii.gz"}))


def test_layouts_page_commands_and_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_layouts(tmp_path)
    monkeypatch.chdir(tmp_path)
    page = DOCS / "layouts.md"
    for argv in commands(block(page, "## One command per layout", "bash")):
        assert main([*argv, "--no-progress"] if argv[0] != "export-nnunet" else argv) == 0, argv
    exported = json.loads((tmp_path / "nnUNet_raw/Dataset101_Back/dataset.json").read_text())
    assert exported["channel_names"] == {"0": "T1", "1": "FLAIR"} and exported["numTraining"] == 2
    out = run_python(block(page, "From Python:", "python"), tmp_path)
    assert "Incomplete(subject_id='sub-03', missing=('dwi',))" in out
    assert re.search(r"^total\s+5\s+0\s+0\s+0$", out, flags=re.M), out


def test_tiff_page_snippet_on_real_ome_tiff(tmp_path: Path) -> None:
    """The reading snippet on the file whose values its comments quote (rand_uint16.ome.tiff)."""
    src = data_path("tiff", "tiledb_bioimaging", "rand_uint16.ome.tiff")
    (tmp_path / "slide.ome.tiff").symlink_to(src)
    code = block(DOCS / "tiff.md", "### Reading TIFFs", "python")
    check = """
assert (info.axes, info.shape) == ("cyx", (3, 512, 128))
assert info.levels == ((3, 512, 128), (3, 256, 64), (3, 128, 32))
assert info.physical_size == {"x": 0.29, "y": 0.29}
assert info.channel_names == ("Channel 1 R", "Channel 1 G", "Channel 1 B")
assert info.channel_colors == ("FF0000", "00FF00", "0000FF")
assert arr.shape == (3, 256, 64) and tile.shape == (100, 40)
assert img.array.shape == (128, 512, 1, 3) and vol.shape == (128, 512, 1, 3)
"""
    run_python(code + check, tmp_path)


def test_concepts_prediction_snippet(sample_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = ["T1w=data/*/anat/*_T1w.nii.gz", "seg=data/*/anat/*_seg.nii.gz"]
    assert main(["ingest", "store.radi", "--images", *images, "--no-progress"]) == 0
    setup = textwrap.dedent("""
        import numpy as np, torch
        from radiobject import RadiObject
        radi = RadiObject("store.radi")
        model = lambda x: torch.randn(x.shape[0], 3, *x.shape[2:])
    """)
    code = block(DOCS / "concepts.md", "**Predictions.**", "python")
    check = """
fresh = RadiObject("store.radi")
assert list(fresh.pred_seg.obs_ids) == list(fresh.T1w.obs_ids) and list(fresh.pred_whole.obs_ids) == ["sub-01"]
assert fresh.pred_seg.iloc[0].shape == fresh.T1w.iloc[0].shape
"""
    run_python(setup + code + check, sample_data)


def test_cli_page_lists_every_command() -> None:
    """docs/cli.md's command table names exactly the sub-commands of ``radiobject --help``."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    table = (DOCS / "cli.md").read_text()
    listed = set(re.findall(r"^\| `([a-z-]+)[ `]", table, flags=re.M))
    tools = ["stats", "split", "resample", "labels"]
    if re.search(r"^\| " + ", ".join(f"`{t}`" for t in tools) + r" \|", table, flags=re.M):
        listed |= set(tools)
    assert listed == set(subparsers.choices), sorted(listed ^ set(subparsers.choices))
