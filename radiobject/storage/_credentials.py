"""Explicit S3 keys handed to tensorstore: private, per-process AWS profile files."""

from __future__ import annotations

import atexit
import os
import tempfile
from functools import lru_cache

PROFILE = "radiobject"


@lru_cache(maxsize=16)
def profile_files(key: str, secret: str, token: str | None, region: str | None, pid: int) -> tuple[str, str]:
    """Private (0600) AWS credentials + config files holding one profile, per process and key pair.

    tensorstore takes explicit S3 keys only through a profile (its provider needs both files);
    writing them there, not into ``os.environ``, keeps two stores with different keys apart. The
    files are created 0600 from the start (``mkstemp``) and removed at exit.
    """
    out = []
    for suffix, text in (
        (
            "credentials",
            f"[{PROFILE}]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
            + (f"aws_session_token = {token}\n" if token else ""),
        ),
        ("config", f"[profile {PROFILE}]\nregion = {region or 'us-east-1'}\n"),
    ):
        fd, path = tempfile.mkstemp(prefix=f"radiobject-aws-{suffix}-", suffix=".ini")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        atexit.register(_unlink_quietly, path)
        out.append(path)
    return out[0], out[1]


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
