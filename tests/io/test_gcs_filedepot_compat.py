"""depot and filedepot 0.12 read each other's GCS objects.

One direction puts the raw objects filedepot 0.12 wrote
(``tests/fixtures/filedepot_0_12/gcs.json``, recorded by ``generate_gcs.py``)
into a bucket with a plain client and reads them with depot. The other runs
filedepot itself, from the throwaway venv of the ``filedepot_python`` fixture
(``tests/conftest.py``), on a bucket depot wrote. Both against the emulator of
``tests/backends/gcs.py``.
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

gcs_module = pytest.importorskip("depot.io.gcs", reason="the 'gcs' extra is not installed")
GCSStorage = gcs_module.GCSStorage

FIXTURE = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "filedepot_0_12" / "gcs.json").read_text()
)


def storage_for(gcs_settings: dict[str, Any], **changes: Any) -> Any:
    kwargs = {k[len("depot.") :]: v for k, v in gcs_settings.items() if k != "depot.backend"}
    return GCSStorage(**{**kwargs, **changes})


@pytest.fixture
def filedepot_bucket(gcs_settings: dict[str, Any], gcs_client: Any) -> str:
    """The bucket of ``gcs_settings`` holding the objects filedepot 0.12 wrote."""
    bucket = gcs_client.create_bucket(gcs_settings["depot.bucket"])
    for entry in FIXTURE["files"].values():
        raw = entry["object"]
        blob = bucket.blob(raw["name"])
        blob.metadata = raw["metadata"]
        blob.content_disposition = raw["contentDisposition"]
        blob.upload_from_string(
            base64.b64decode(raw["body_base64"]), content_type=raw["contentType"]
        )
        if raw["public"]:
            blob.make_public()
    return str(bucket.name)


def test_reads_every_file_filedepot_wrote(
    gcs_settings: dict[str, Any], gcs_emulator: str, filedepot_bucket: str
) -> None:
    groups: dict[tuple[str, str], list[str]] = {}
    for file_id, entry in FIXTURE["files"].items():
        groups.setdefault((entry["prefix"], entry["policy"]), []).append(file_id)
    for (prefix, policy), ids in groups.items():
        storage = storage_for(gcs_settings, prefix=prefix, policy=policy)
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
            if policy == "public-read":
                assert stored.public_url == expected["public_url"].format(
                    endpoint=gcs_emulator
                ).replace(FIXTURE["bucket"], filedepot_bucket)
            else:
                assert stored.public_url is None  # filedepot gave a URL that answered 403
    by_prefix: dict[str, set[str]] = {}
    for file_id, entry in FIXTURE["files"].items():
        by_prefix.setdefault(entry["prefix"], set()).add(file_id)
    for prefix, ids in by_prefix.items():
        assert set(storage_for(gcs_settings, prefix=prefix).list()) == ids


def test_replaces_and_deletes_files_filedepot_wrote(
    gcs_settings: dict[str, Any], filedepot_bucket: str
) -> None:
    storage = storage_for(gcs_settings)
    file_id = next(
        i for i, e in FIXTURE["files"].items() if e["filedepot"]["filename"] == "hello.txt"
    )
    assert_replaces_and_deletes(storage, file_id)


# --- filedepot reads what depot wrote ------------------------------------------

FILEDEPOT_READER = textwrap.dedent(
    """
    import base64, json, sys
    import depot.io.gcs
    from depot.io.gcs import GCSStorage  # filedepot's

    key, bucket, prefix = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    storage = GCSStorage(credentials=key, bucket=bucket, prefix=prefix)
    report = {}
    # filedepot's list() gives object names, the prefix included
    for name in storage.list():
        file_id = name[len(prefix):]
        stored = storage.get(file_id)
        report[file_id] = dict(
            data=base64.b64encode(stored.read()).decode(), filename=stored.filename,
            content_type=stored.content_type, content_length=stored.content_length,
            last_modified=str(stored.last_modified), public_url=stored.public_url,
        )
    # and filedepot writes one file of its own into the same bucket
    new_id = storage.create(b"from filedepot", "fd.txt")
    print(json.dumps({"read": report, "created": new_id, "module": depot.io.gcs.__file__}))
    """
)


@pytest.mark.parametrize("prefix", ["", "media/"])
def test_filedepot_reads_what_depot_wrote(
    filedepot_python: str,
    gcs_settings: dict[str, Any],
    gcs_emulator: str,
    gcs_service_account: dict[str, str],
    tmp_path: Path,
    prefix: str,
) -> None:
    storage = storage_for(gcs_settings, prefix=prefix, policy="public-read")
    big = os.urandom(9 * 1024 * 1024)  # a resumable upload, then a metadata patch
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

    report = run_filedepot(
        filedepot_python,
        FILEDEPOT_READER,
        json.dumps(gcs_service_account),
        gcs_settings["depot.bucket"],
        prefix,
        cwd=tmp_path,
        env={"STORAGE_EMULATOR_HOST": gcs_emulator},
    )

    assert_filedepot_read(report, storage, written, public_url=True)

    theirs = storage.get(report["created"])
    assert (theirs.read(), theirs.filename, theirs.checksum) == (b"from filedepot", "fd.txt", None)
