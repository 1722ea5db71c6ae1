"""s3:// stores end to end against a real S3 server (moto_server subprocess), both backends:
create, ingest, open, read, re-run, CLI, ml loaders with a disk cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radiobject import RadiObject, StorageOptions, WriteOptions
from radiobject.cli.main import main
from radiobject.ingest import make_sample_cohort, plan_from_manifest, run_ingest
from radiobject.ingest.sample import SampleCohort

pytestmark = pytest.mark.s3


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> SampleCohort:
    return make_sample_cohort(tmp_path_factory.mktemp("s3cohort"), 3, (20, 22, 18))


def test_ingest_open_read(
    cohort: SampleCohort, s3_server: StorageOptions, s3_prefix: str, tmp_path: Path, backend: str
) -> None:
    uri = f"{s3_prefix}/store"
    rep = run_ingest(
        uri,
        plan_from_manifest(cohort.manifest, subjects=cohort.participants),
        options=WriteOptions(backend=backend, chunks=(8, 8, 8)),
        storage=s3_server,
    )
    assert rep.ok and rep.count("written") == 9, rep.summary_table()
    local = str(tmp_path / "local")
    run_ingest(
        local,
        plan_from_manifest(cohort.manifest, subjects=cohort.participants),
        options=WriteOptions(backend=backend, chunks=(8, 8, 8)),
    )
    radi, ref = RadiObject(uri, storage=s3_server), RadiObject(local)
    assert radi.backend_name == backend and radi.collection_names == ref.collection_names
    pd.testing.assert_frame_equal(radi.obs_meta, ref.obs_meta)
    for name in ref.collection_names:
        pd.testing.assert_frame_equal(radi[name].obs.drop(columns="version"), ref[name].obs.drop(columns="version"))
        for oid in ref[name].obs_ids:
            a, b = radi[name].volume(oid), ref[name].volume(oid)
            assert np.array_equal(a[3:17, 2:9, 5:18], b[3:17, 2:9, 5:18])
            assert np.array_equal(a.affine, b.affine) and a.dtype == b.dtype
    # re-run against S3: nothing rewritten
    again = run_ingest(uri, plan_from_manifest(cohort.manifest), storage=s3_server)
    assert again.ok and again.count("present") == 9 and again.count("written") == 0
    # reopen from the picklable location (what worker processes do)
    reopened = RadiObject.open(radi.location)
    assert reopened.obs_subject_ids == ref.obs_subject_ids


def test_cli_with_s3_options_and_env(
    cohort: SampleCohort,
    s3_server: StorageOptions,
    s3_prefix: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
) -> None:
    uri = f"{s3_prefix}/cli"
    s3 = [
        "--s3-endpoint",
        str(s3_server.endpoint_url),
        "--s3-key",
        "testing",
        "--s3-secret",
        "testing",
        "--s3-region",
        "us-east-1",
    ]
    rc = main(["ingest", uri, "--manifest", str(cohort.manifest), "--backend", backend, "--no-progress", *s3])
    assert rc == 0, capsys.readouterr()
    assert main(["verify", uri, *s3]) == 0
    assert "OK" in capsys.readouterr().out
    # the same through the standard AWS_* environment variables only
    for k, v in {
        "AWS_ENDPOINT_URL": str(s3_server.endpoint_url),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    assert main(["info", uri]) == 0
    assert "3 subjects, 3 collections" in capsys.readouterr().out
    assert main(["export", uri, str(tmp_path / "exp"), "--collections", "seg"]) == 0
    assert len(os.listdir(tmp_path / "exp" / "seg")) == 3


def test_ml_loader_from_s3_with_disk_cache(
    cohort: SampleCohort, s3_server: StorageOptions, s3_prefix: str, tmp_path: Path, backend: str
) -> None:
    loaders = pytest.importorskip("radiobject.ml.loaders")
    from radiobject.ml.cache._files import SUFFIX

    uri = f"{s3_prefix}/ml"
    assert run_ingest(
        uri, plan_from_manifest(cohort.manifest), options=WriteOptions(backend=backend), storage=s3_server
    ).ok
    local = str(tmp_path / "local")
    run_ingest(local, plan_from_manifest(cohort.manifest), options=WriteOptions(backend=backend))
    cache_dir = tmp_path / "cache"
    kw = {"modalities": ["T1w", "FLAIR"], "label": "seg", "patch_size": (8, 8, 8), "batch_size": 2, "seed": 3}
    remote = loaders.create_training_dataloader(
        RadiObject(uri, storage=s3_server), cache_strategy="disk", cache_path=str(cache_dir), cache_bytes=64 << 20, **kw
    )
    ref = loaders.create_training_dataloader(RadiObject(local), **kw)
    got, want = list(remote), list(ref)
    assert len(got) == len(want) > 0
    for a, b in zip(got, want, strict=True):
        ka = a if isinstance(a, dict) else dict(enumerate(a))
        kb = b if isinstance(b, dict) else dict(enumerate(b))
        for k in kb:
            if hasattr(kb[k], "shape"):
                assert np.array_equal(np.asarray(ka[k]), np.asarray(kb[k])), k
    assert any(cache_dir.rglob(f"*{SUFFIX}"))  # volumes from S3 went through the disk cache
    assert list(remote) and len(list(remote)) == len(want)  # second epoch served (cache warm)
