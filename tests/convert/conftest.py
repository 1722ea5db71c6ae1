"""The S3 server fixtures of ``tests/s3`` for the convert-tiff S3 output tests."""

from tests.s3.conftest import s3_prefix, s3_server  # noqa: F401 - fixtures re-exported
