"""depot.io.awss3: filedepot's boto 2 settings, served by the boto3 backend."""

from __future__ import annotations

from typing import Any

import pytest

from depot.manager import DepotManager

awss3 = pytest.importorskip("depot.io.awss3", reason="the 's3' extra is not installed")


def awss3_kwargs(s3_settings: dict[str, Any], s3_endpoint: dict[str, str]) -> dict[str, Any]:
    return {
        "access_key_id": s3_endpoint["access_key_id"],
        "secret_access_key": s3_endpoint["secret_access_key"],
        "bucket": s3_settings["depot.bucket"],
        "host": s3_endpoint["endpoint_url"],
    }


def test_deprecated_and_the_warning_points_at_the_caller(
    s3_settings: dict[str, Any], s3_endpoint: dict[str, str]
) -> None:
    with pytest.warns(DeprecationWarning, match="use depot.io.boto3.S3Storage") as caught:
        storage = awss3.S3Storage(**awss3_kwargs(s3_settings, s3_endpoint), policy="private")
    assert caught[0].filename == __file__
    file_id = storage.create(b"through the shim", filename="a.txt")
    stored = storage.get(file_id)
    assert isinstance(stored, awss3.S3StoredFile)
    assert (stored.read(), stored.filename) == (b"through the shim", "a.txt")
    assert (awss3.CANNED_ACL_PUBLIC_READ, awss3.CANNED_ACL_PRIVATE) == ("public-read", "private")


def test_filedepot_settings_through_the_manager(
    s3_settings: dict[str, Any], s3_endpoint: dict[str, str], s3_client: Any
) -> None:
    settings = {f"depot.{k}": v for k, v in awss3_kwargs(s3_settings, s3_endpoint).items()}
    settings.update({"depot.backend": "depot.io.awss3.S3Storage", "depot.encrypt_key": "true"})
    with pytest.warns(DeprecationWarning):
        storage = DepotManager.configure("old", settings)
    file_id = storage.create(b"encrypted at rest")
    raw = s3_client.head_object(Bucket=s3_settings["depot.bucket"], Key=file_id)
    assert raw["ServerSideEncryption"] == "AES256"
    # public-read was filedepot's default here too
    assert storage.get(file_id).public_url.endswith(f"/{s3_settings['depot.bucket']}/{file_id}")


@pytest.mark.parametrize(
    ("host", "endpoint"),
    [
        (None, "https://s3.amazonaws.com"),
        ("s3.amazonaws.com", "https://s3.amazonaws.com"),
        ("minio.example.com:9000", "https://minio.example.com:9000"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    ],
)
def test_host_becomes_the_endpoint(
    host: str | None, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the mapping is looked at: no request is made to these hosts.
    monkeypatch.setattr(awss3._S3Storage, "_ensure_bucket", lambda self: None)
    with pytest.warns(DeprecationWarning):
        storage = awss3.S3Storage("key", "secret", bucket="b", host=host)
    assert storage._endpoint == endpoint


def test_the_boto3_timeouts_pass_through_the_shim(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from depot.exceptions import BackendUnavailableError
    from tests.backends.silent import SilentServer

    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    with SilentServer() as server, pytest.warns(DeprecationWarning):
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="did not answer in time"):
            awss3.S3Storage(
                "k", "s", bucket="hung", host=server.url, read_timeout="0.5", max_attempts="1"
            )
        assert time.monotonic() - started < 5
        assert server.connections == 1
