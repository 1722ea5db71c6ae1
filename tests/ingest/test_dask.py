"""The ingest on a Dask LocalCluster (2 worker processes on loopback) equals a serial ingest."""

from __future__ import annotations

from pathlib import Path

import pytest

from radiobject import RadiObject, WriteOptions
from radiobject.ingest import plan_from_manifest, run_ingest
from radiobject.ingest.dask import run_ingest_dask
from radiobject.ingest.sample import SampleCohort
from tests.ingest._compare import assert_same_store

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def test_dask_ingest_equals_serial(cohort: SampleCohort, tmp_path: Path, client) -> None:
    serial, dist = str(tmp_path / "serial"), str(tmp_path / "dask")
    run_ingest(
        serial,
        plan_from_manifest(cohort.manifest, subjects=cohort.participants),
        options=WriteOptions(workers=1, commit_every=5),
    )
    from distributed import get_task_stream

    with get_task_stream(client) as stream:
        rep = run_ingest_dask(
            dist,
            plan_from_manifest(cohort.manifest, subjects=cohort.participants),
            client=client,
            options=WriteOptions(commit_every=5),
        )
    assert rep.ok and rep.count("written") == 12
    writes = [t for t in stream.data if str(t["key"]).startswith("write_one")]
    assert len(writes) == 12 and len({t["worker"] for t in writes}) == 2  # both worker processes wrote
    assert_same_store(serial, dist)
    again = run_ingest_dask(dist, plan_from_manifest(cohort.manifest), client=client)
    assert again.count("present") == 12 and again.count("written") == 0


def test_dask_failures_reported(cohort: SampleCohort, tmp_path: Path, client) -> None:
    t1 = cohort.folder / "sub-03/anat/sub-03_T1w.nii.gz"
    t1.write_bytes(t1.read_bytes()[:400])  # header fine, voxels truncated: fails on the worker
    rep = run_ingest_dask(str(tmp_path / "d"), plan_from_manifest(cohort.manifest), client=client)
    (bad,) = rep.failed
    assert bad["obs_id"] == "sub-03" and bad["collection"] == "T1w" and "NiftiReadError" in bad["error"]
    assert RadiObject(str(tmp_path / "d"))["T1w"].obs_subject_ids == ["sub-01", "sub-02", "sub-04"]


def test_dask_scheduler_address(cohort: SampleCohort, tmp_path: Path, client) -> None:
    addr = client.scheduler.address
    assert addr.startswith("tcp://127.0.0.1:")
    rep = run_ingest_dask(str(tmp_path / "d"), plan_from_manifest(cohort.manifest), scheduler=addr)
    assert rep.ok and rep.count("written") == 12


def test_cli_scheduler_option(cohort: SampleCohort, tmp_path: Path, client, capsys: pytest.CaptureFixture[str]) -> None:
    from radiobject.cli.main import main

    serial = str(tmp_path / "serial")
    run_ingest(serial, plan_from_manifest(cohort.manifest, subjects=cohort.participants))
    out = str(tmp_path / "cli")
    rc = main(
        [
            "ingest",
            out,
            "--manifest",
            str(cohort.manifest),
            "--subjects",
            str(cohort.participants),
            "--scheduler",
            client.scheduler.address,
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr()
    assert_same_store(serial, out)
