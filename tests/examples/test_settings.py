"""The examples' settings (examples/filebox/settings.py): environment variables and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.examples.apps import EXAMPLES


def test_with_nothing_set_files_and_database_are_local() -> None:
    from filebox.settings import from_env

    settings = from_env({})
    assert (settings.host, settings.port, settings.url) == (
        "127.0.0.1",
        8080,
        "http://127.0.0.1:8080/",
    )
    assert settings.data_dir == EXAMPLES / "data"
    assert settings.database_url == f"sqlite:///{EXAMPLES / 'data' / 'filebox.sqlite'}"
    assert settings.depot == {
        "depot.backend": "local",
        "depot.storage_path": str(EXAMPLES / "data" / "files"),
    }
    assert settings.max_upload == 1024**3


def test_every_variable_is_read(tmp_path: Path) -> None:
    from filebox.settings import from_env

    settings = from_env(
        {
            "FILEBOX_HOST": "0.0.0.0",
            "FILEBOX_PORT": "9000",
            "FILEBOX_DATA": str(tmp_path),
            "FILEBOX_DATABASE_URL": "postgresql://db/filebox",
            "FILEBOX_MAX_UPLOAD_MB": "5",
            "DEPOT_STORAGE_PATH": "/srv/files",
        }
    )
    assert (settings.host, settings.port, settings.data_dir) == ("0.0.0.0", 9000, tmp_path)
    assert settings.database_url == "postgresql://db/filebox"
    assert settings.max_upload == 5 * 1024**2
    assert settings.depot["depot.storage_path"] == "/srv/files"


def test_s3_needs_a_bucket_and_keeps_files_private() -> None:
    from filebox.settings import from_env

    settings = from_env(
        {
            "DEPOT_BACKEND": "s3",
            "DEPOT_S3_BUCKET": "files",
            "DEPOT_S3_PREFIX": "box/",
            "DEPOT_S3_PRESIGN_TTL": "300",
        }
    )
    assert settings.depot == {
        "depot.backend": "s3",
        "depot.bucket": "files",
        "depot.policy": "private",
        "depot.prefix": "box/",
        "depot.presign_ttl": "300",
    }
    with pytest.raises(ValueError, match="DEPOT_BACKEND=s3 needs DEPOT_S3_BUCKET"):
        from_env({"DEPOT_BACKEND": "s3"})


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DEPOT_BACKEND", "ftp", "DEPOT_BACKEND must be 'local' or 's3', not 'ftp'."),
        ("FILEBOX_PORT", "http", "FILEBOX_PORT must be a port number such as 8080, not 'http'."),
        ("FILEBOX_MAX_UPLOAD_MB", "-1", "FILEBOX_MAX_UPLOAD_MB must be a size in MiB, not '-1'."),
    ],
)
def test_a_wrong_value_is_named_with_what_to_set(variable: str, value: str, message: str) -> None:
    from filebox.settings import from_env

    with pytest.raises(ValueError) as error:
        from_env({variable: value})
    assert str(error.value) == message
