"""depot and filedepot 0.12 read each other's S3 objects.

One direction puts the raw objects filedepot 0.12 wrote
(``tests/fixtures/filedepot_0_12/s3.json``, recorded by ``generate_s3.py``)
into a bucket with plain PutObject calls and reads them with depot. The other
runs filedepot itself, from the throwaway venv of the ``filedepot_python``
fixture (``tests/conftest.py``), on a bucket depot wrote.
"""

from __future__ import annotations

import base64
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.reference import assert_filedepot_read, assert_replaces_and_deletes, run_filedepot
from tests.streams import OneWayStream

boto3_module = pytest.importorskip("depot.io.boto3", reason="the 's3' extra is not installed")
S3Storage = boto3_module.S3Storage

FIXTURE = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "filedepot_0_12" / "s3.json").read_text()
)


def storage_for(s3_settings: dict[str, Any], **changes: Any) -> Any:
    kwargs = {k[len("depot.") :]: v for k, v in s3_settings.items() if k != "depot.backend"}
    return S3Storage(**{**kwargs, **changes})


@pytest.fixture
def filedepot_bucket(s3_settings: dict[str, Any], s3_client: Any) -> str:
    """The bucket of ``s3_settings`` holding the objects filedepot 0.12 wrote."""
    bucket = str(s3_settings["depot.bucket"])
    s3_client.create_bucket(Bucket=bucket, ObjectOwnership="BucketOwnerPreferred")
    for entry in FIXTURE["files"].values():
        raw = entry["object"]
        s3_client.put_object(
            Bucket=bucket,
            Key=raw["Key"],
            Body=base64.b64decode(raw["body_base64"]),
            Metadata=raw["Metadata"],
            ContentType=raw["ContentType"],
            ContentDisposition=raw["ContentDisposition"],
            ACL="public-read" if raw["public"] else "private",
        )
    return bucket


def test_reads_every_file_filedepot_wrote(
    s3_settings: dict[str, Any], s3_endpoint: dict[str, str], filedepot_bucket: str
) -> None:
    by_prefix: dict[str, list[str]] = {}
    for file_id, entry in FIXTURE["files"].items():
        by_prefix.setdefault(entry["prefix"], []).append(file_id)
    for prefix, ids in by_prefix.items():
        storage = storage_for(s3_settings, prefix=prefix, policy="public-read")
        assert sorted(storage.list()) == sorted(ids)
        for file_id in ids:
            entry = FIXTURE["files"][file_id]
            expected = entry["filedepot"]
            stored = storage.get(file_id)
            assert stored.read() == base64.b64decode(entry["object"]["body_base64"]), entry["label"]
            assert stored.filename == expected["filename"]
            assert stored.content_type == expected["content_type"]
            assert stored.content_length == expected["content_length"]
            assert str(stored.last_modified) == expected["last_modified"]
            assert stored.checksum is None  # filedepot records none
            assert stored.public_url == expected["public_url"].format(
                endpoint=s3_endpoint["endpoint_url"]
            ).replace(FIXTURE["bucket"], filedepot_bucket)


def test_replaces_and_deletes_files_filedepot_wrote(
    s3_settings: dict[str, Any], filedepot_bucket: str
) -> None:
    storage = storage_for(s3_settings)
    file_id = next(
        i for i, e in FIXTURE["files"].items() if e["filedepot"]["filename"] == "hello.txt"
    )
    assert_replaces_and_deletes(storage, file_id)


# --- filedepot reads what depot wrote ------------------------------------------

FILEDEPOT_READER = textwrap.dedent(
    """
    import base64, json, sys
    import depot.io.boto3
    from depot.io.boto3 import S3Storage  # filedepot's

    endpoint, key_id, secret, region, bucket, prefix = sys.argv[1:]
    storage = S3Storage(
        key_id, secret, bucket=bucket, endpoint_url=endpoint, region_name=region, prefix=prefix
    )
    report = {}
    for file_id in storage.list():
        stored = storage.get(file_id)
        report[file_id] = dict(
            data=base64.b64encode(stored.read()).decode(), filename=stored.filename,
            content_type=stored.content_type, content_length=stored.content_length,
            last_modified=str(stored.last_modified), public_url=stored.public_url,
        )
    # and filedepot writes one file of its own into the same bucket
    new_id = storage.create(b"from filedepot", "fd.txt")
    print(json.dumps({"read": report, "created": new_id, "module": depot.io.boto3.__file__}))
    """
)


@pytest.mark.parametrize("prefix", ["", "media/"])
def test_filedepot_reads_what_depot_wrote(
    filedepot_python: str,
    s3_settings: dict[str, Any],
    s3_endpoint: dict[str, str],
    tmp_path: Path,
    prefix: str,
) -> None:
    storage = storage_for(s3_settings, prefix=prefix, policy="public-read")
    big = os.urandom(9 * 1024 * 1024)  # streamed in parts, then copied for its checksum
    written = {
        storage.create(b"plain"): (b"plain", "unnamed", "application/octet-stream"),
        storage.create("caf\u00e9".encode(), filename="\u00fcber caf\u00e9.txt"): (
            "caf\u00e9".encode(),
            "\u00fcber caf\u00e9.txt",
            "text/plain",
        ),
        storage.create(
            OneWayStream(big, piece=65536), filename="big.bin", content_type="application/x-big"
        ): (
            big,
            "big.bin",
            "application/x-big",
        ),
    }
    replaced = next(iter(written))
    storage.replace(replaced, b"replaced", filename="r.txt")
    written[replaced] = (b"replaced", "r.txt", "text/plain")

    endpoint = s3_endpoint
    report = run_filedepot(
        filedepot_python,
        FILEDEPOT_READER,
        endpoint["endpoint_url"],
        endpoint["access_key_id"],
        endpoint["secret_access_key"],
        endpoint["region_name"],
        s3_settings["depot.bucket"],
        prefix,
        cwd=tmp_path,
        env={"AWS_CONFIG_FILE": os.devnull},
    )

    assert_filedepot_read(report, storage, written, public_url=True)

    theirs = storage.get(report["created"])
    assert (theirs.read(), theirs.filename, theirs.checksum) == (b"from filedepot", "fd.txt", None)
