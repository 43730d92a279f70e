"""What the S3 backend alone has: its objects, streaming, ranges, URLs, errors and faults.

Every request goes over HTTP to moto's server (``tests/backends/s3.py``);
nothing in boto3 or botocore is patched. Where a test must see requests, it
listens to botocore's public event hooks.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import time
import tracemalloc
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from depot.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    CorruptMetadataError,
    StoredFileNotFoundError,
)
from depot.io import _s3upload
from depot.io.interfaces import StoredFile
from depot.manager import DepotManager
from depot.middleware import DepotMiddleware
from depot.utils import make_content_disposition
from tests.backends import settings_to_kwargs
from tests.backends.s3 import MotoServer, client_for, remove_bucket
from tests.servers import free_port
from tests.streams import FileStream, Generated, MiB, OneWayStream, random_file, sha256

boto3_module = pytest.importorskip("depot.io.boto3", reason="the 's3' extra is not installed")
S3Storage = boto3_module.S3Storage
botocore_errors = pytest.importorskip("botocore.exceptions")
ClientError = botocore_errors.ClientError
EndpointConnectionError = botocore_errors.EndpointConnectionError

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


@pytest.fixture
def storage(s3_settings: dict[str, Any]) -> Any:
    return S3Storage(**settings_to_kwargs(s3_settings))


@pytest.fixture
def bucket(s3_settings: dict[str, Any]) -> str:
    return str(s3_settings["depot.bucket"])


def listen(storage: Any, event: str) -> list[dict[str, Any]]:
    """Record the keyword arguments of a botocore event of the storage's client."""
    seen: list[dict[str, Any]] = []
    storage._client.meta.events.register(event, lambda **kwargs: seen.append(kwargs))
    return seen


# --- the objects, as filedepot lays them out ---------------------------------------------


def test_object_layout_and_metadata(storage: Any, s3_client: Any, bucket: str) -> None:
    name = "caf\u00e9 \u2615 \u00fcber.txt"
    file_id = storage.create(b"hello", filename=name)
    stored = storage.get(file_id)

    raw = s3_client.head_object(Bucket=bucket, Key=file_id)
    assert raw["Metadata"] == {
        # quoted exactly as filedepot quotes it (see s3.json of filedepot 0.12)
        "x-depot-filename": "caf%C3%A9%20%E2%98%95%20%C3%BCber.txt",
        "x-depot-modified": stored.last_modified.strftime("%Y-%m-%d %H:%M:%S"),
        "x-depot-checksum": sha256(b"hello"),
    }
    assert raw["ContentType"] == "text/plain"
    assert raw["ContentLength"] == 5
    # the real name, not filedepot's double-encoded one
    assert raw["ContentDisposition"] == make_content_disposition("inline", name)
    grants = s3_client.get_object_acl(Bucket=bucket, Key=file_id)["Grants"]
    assert not any(g["Grantee"].get("URI") == ALL_USERS for g in grants)  # policy: private


def test_filename_quoting_is_filedepots(storage: Any, s3_client: Any, bucket: str) -> None:
    fixture = json.loads(
        (Path(__file__).parents[1] / "fixtures" / "filedepot_0_12" / "s3.json").read_text()
    )
    for entry in fixture["files"].values():
        name = entry["filedepot"]["filename"]
        file_id = storage.create(b"x", filename=name)
        raw = s3_client.head_object(Bucket=bucket, Key=file_id)["Metadata"]
        assert raw["x-depot-filename"] == entry["object"]["Metadata"]["x-depot-filename"]


def test_dangerous_types_are_attachments_on_s3_too(
    storage: Any, s3_client: Any, bucket: str
) -> None:
    file_id = storage.create(b"<script>", filename="page.html")
    raw = s3_client.head_object(Bucket=bucket, Key=file_id)
    assert raw["ContentDisposition"].startswith("attachment;")


def test_header_breaking_content_type_is_stored_as_octet_stream(storage: Any) -> None:
    stored = storage.get(storage.create(b"x", "x", "text/plain\r\nSet-Cookie: a=b"))
    assert stored.content_type == "application/octet-stream"


@pytest.mark.parametrize(
    "content_type", ["image/png, text/html", "text/html; x=\u00e9", "image/png/../../text/html"]
)
def test_object_content_type_is_a_safe_media_type(
    storage: Any, s3_client: Any, bucket: str, content_type: str
) -> None:
    # Issue 12, finding 4: public and signed URLs serve the object's own
    # Content-Type, so it follows the middleware's rule, not a looser one.
    file_id = storage.create(b"<script>", "x", content_type)
    raw = s3_client.head_object(Bucket=bucket, Key=file_id)
    assert raw["ContentType"] == "application/octet-stream"


def test_header_content_type_is_the_rule_of_depot_headers() -> None:
    from depot.io._objectmeta import header_content_type

    assert header_content_type("image/png, text/html") == "application/octet-stream"
    assert header_content_type("text/plain\x7f") == "application/octet-stream"
    assert header_content_type(" text/plain; charset=utf-8") == "text/plain; charset=utf-8"


def test_public_read_policy(
    s3_settings: dict[str, Any], s3_client: Any, s3_endpoint: dict[str, str], bucket: str
) -> None:
    storage = S3Storage(**settings_to_kwargs(s3_settings, policy="public-read"))
    # a new bucket accepts public ACLs, as filedepot set it up
    block = s3_client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": False,
        "IgnorePublicAcls": False,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    ownership = s3_client.get_bucket_ownership_controls(Bucket=bucket)
    assert ownership["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerPreferred"}]

    file_id = storage.create(b"public bytes", filename="p.txt")
    grants = s3_client.get_object_acl(Bucket=bucket, Key=file_id)["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"} in grants

    stored = storage.get(file_id)
    # path style under a custom endpoint, as filedepot's public_url
    assert stored.public_url == f"{s3_endpoint['endpoint_url']}/{bucket}/{file_id}"
    with urllib.request.urlopen(stored.public_url) as response:
        assert response.read() == b"public bytes"
        assert response.headers["Content-Type"] == "text/plain"
        assert response.headers["Content-Disposition"] == make_content_disposition(
            "inline", "p.txt"
        )

    DepotManager._depots["pub"] = storage
    redirect = TestApp(DepotMiddleware(None)).get(f"/depot/pub/{file_id}", status=301)
    assert redirect.headers["Location"] == stored.public_url


def test_prefix(s3_settings: dict[str, Any], s3_client: Any, bucket: str) -> None:
    media = S3Storage(**settings_to_kwargs(s3_settings, prefix="media/"))
    root = S3Storage(**settings_to_kwargs(s3_settings))
    in_media = media.create(b"m")
    in_root = root.create(b"r")
    # keys that are not files of either depot
    other = "00000000-0000-4000-8000-000000000001"
    for key in ["media/readme.txt", f"media/sub/{other}", f"thumbs/{other}", "notes.txt"]:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"-")

    assert s3_client.head_object(Bucket=bucket, Key=f"media/{in_media}")["ContentLength"] == 1
    assert media.list() == [in_media]
    assert root.list() == [in_root]
    assert media.get(in_media).read() == b"m"
    assert not root.exists(in_media)
    assert not media.exists(in_root)
    media.delete(in_media)
    assert media.list() == [] and root.list() == [in_root]


def test_bucket_is_created_in_its_region(s3_settings: dict[str, Any], s3_client: Any) -> None:
    settings = settings_to_kwargs(s3_settings, region_name="eu-west-1")
    S3Storage(**settings)
    location = s3_client.get_bucket_location(Bucket=settings["bucket"])
    assert location["LocationConstraint"] == "eu-west-1"


def test_default_bucket_is_filedepots(s3_endpoint: dict[str, str], s3_client: Any) -> None:
    key_id = f"DepotKey{os.getpid()}"
    try:
        storage = S3Storage(
            key_id,
            "secret",
            endpoint_url=s3_endpoint["endpoint_url"],
            region_name="us-east-1",
        )
        storage.create(b"x")
        assert s3_client.list_objects_v2(Bucket=f"filedepot-depotkey{os.getpid()}")["KeyCount"] == 1
    finally:
        remove_bucket(s3_client, f"filedepot-depotkey{os.getpid()}")


def test_objects_put_by_other_programs_are_read(storage: Any, s3_client: Any, bucket: str) -> None:
    # filedepot's own test_fileoutside_depot: no x-depot-* metadata at all
    file_id = "00000000-0000-4000-8000-0000000000aa"
    s3_client.put_object(Bucket=bucket, Key=file_id, Body=b"HELLO WORLD")
    raw = s3_client.head_object(Bucket=bucket, Key=file_id)
    stored = storage.get(file_id)
    assert stored.read() == b"HELLO WORLD"
    assert stored.filename == "unnamed"
    assert stored.content_type == raw["ContentType"]
    assert stored.last_modified == raw["LastModified"].astimezone(timezone.utc).replace(
        tzinfo=None, microsecond=0
    )
    assert stored.checksum is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("x-depot-checksum", "md5:0123"),
        ("x-depot-filename", "%FF%FE.txt"),
    ],
)
def test_corrupt_metadata_names_the_file(
    storage: Any, s3_client: Any, bucket: str, field: str, value: str
) -> None:
    file_id = "00000000-0000-4000-8000-0000000000bb"
    metadata = {"x-depot-filename": "a.txt", "x-depot-modified": "2024-05-01 12:00:00"}
    s3_client.put_object(Bucket=bucket, Key=file_id, Body=b"x", Metadata={**metadata, field: value})
    with pytest.raises(CorruptMetadataError) as raised:
        storage.get(file_id)
    message = str(raised.value)
    assert field in message and file_id in message and bucket in message
    assert "Restore the file from a backup or delete it" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "value", ["INVALID", "2024-13-45 99:00:00", "2024-05-01T12:00:00", "9" * 500]
)
def test_invalid_modified_time_is_read_without_a_date(
    storage: Any, s3_client: Any, bucket: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    # filedepot read such a file, with last_modified None: so does depot, and says so.
    file_id = "00000000-0000-4000-8000-0000000000be"
    metadata = {"x-depot-filename": "a.txt", "x-depot-modified": value}
    s3_client.put_object(Bucket=bucket, Key=file_id, Body=b"data", Metadata=metadata)
    with caplog.at_level("WARNING", logger="depot.io"):
        stored = storage.get(file_id)
    assert stored.last_modified is None
    assert (stored.filename, stored.read()) == ("a.txt", b"data")
    [record] = [r for r in caplog.records if r.name == "depot.io"]
    assert record.levelname == "WARNING"
    assert file_id in record.getMessage() and "x-depot-modified" in record.getMessage()


def test_bucket_driver_is_kept_for_filedepot_code(storage: Any) -> None:
    file_id = "00000000-0000-4000-8000-0000000000cc"
    storage._bucket_driver.new_key(file_id).put(Body=b"HELLO WORLD")
    assert storage.get(file_id).read() == b"HELLO WORLD"
    assert storage._bucket_driver.get_key(file_id).storage_class in (None, "STANDARD")
    assert storage._bucket_driver.get_key("00000000-0000-4000-8000-0000000000cd") is None
    assert storage._bucket_driver.list_key_names() == [file_id]


def test_storage_class(s3_settings: dict[str, Any], s3_client: Any, bucket: str) -> None:
    storage = S3Storage(**settings_to_kwargs(s3_settings, storage_class="STANDARD_IA"))
    small = storage.create(b"x")
    large = storage.create(Generated(9 * MiB))  # streamed, then copied for its checksum
    for file_id in (small, large):
        assert s3_client.head_object(Bucket=bucket, Key=file_id)["StorageClass"] == "STANDARD_IA"


# --- streaming uploads and their checksum ------------------------------------------------


def test_large_stream_uploads_in_parts_with_flat_memory(
    storage: Any, s3_client: Any, bucket: str
) -> None:
    source = Generated(128 * MiB)
    parts = listen(storage, "after-call.s3.UploadPart")
    tracemalloc.start()
    try:
        file_id = storage.create(source, filename="big.bin")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # One part of 5 MiB, and the copies Generated makes to produce it.
    assert peak < 20 * MiB, f"{peak / MiB:.1f} MiB held for a 128 MiB stream"

    assert len(parts) == 26  # 25 of 5 MiB, and the last 3
    raw = s3_client.head_object(Bucket=bucket, Key=file_id)
    assert raw["ContentLength"] == 128 * MiB
    # the checksum was added by a copy, and the upload's id is gone with it
    assert raw["Metadata"]["x-depot-checksum"] == source.checksum
    assert "x-depot-upload" not in raw["Metadata"]
    stored = storage.get(file_id)
    assert (stored.checksum, stored.content_length) == (source.checksum, 128 * MiB)


@pytest.mark.parametrize("seekable", [True, False], ids=["file", "stream"])
def test_an_upload_holds_one_part_in_memory(storage: Any, tmp_path: Path, seekable: bool) -> None:
    path = random_file(tmp_path / "upload.bin", 64)
    parts = listen(storage, "before-call.s3.UploadPart")
    puts = listen(storage, "before-call.s3.PutObject")
    with open(path, "rb") as f:
        tracemalloc.start()
        try:
            file_id = storage.create(f if seekable else FileStream(f))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # A stream: a part of 5 MiB, read in one call, and botocore's buffers as it
    # sends it (~2 MiB): no reading ahead, no copy of the part. A file: one
    # request, which botocore streams from the file in blocks.
    assert peak < 10 * MiB, f"{peak / MiB:.1f} MiB held for a 64 MiB upload"
    assert (len(puts), len(parts)) == ((1, 0) if seekable else (0, 13))
    with open(path, "rb") as f:
        assert storage.get(file_id).checksum == sha256(f.read())


def test_a_stream_giving_short_reads_is_sent_in_whole_parts(storage: Any) -> None:
    # S3 refuses a part under 5 MiB but the last: short reads are gathered.
    data = os.urandom(12 * MiB)
    parts = listen(storage, "before-parameter-build.s3.UploadPart")
    stored = storage.get(storage.create(OneWayStream(data, piece=100_000)))
    assert [len(p["params"]["Body"]) for p in parts] == [5 * MiB, 5 * MiB, 2 * MiB]
    assert (stored.checksum, stored.content_length) == (sha256(data), 12 * MiB)
    assert hashlib.sha256(stored.read()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_object_copied_for_its_checksum_passes_boto3s_own_check(
    storage: Any, s3_client: Any, bucket: str
) -> None:
    source = Generated(9 * MiB)
    file_id = storage.create(source)
    # A plain GetObject: botocore checks the object's CRC32 against the bytes.
    body = s3_client.get_object(Bucket=bucket, Key=file_id, ChecksumMode="ENABLED")["Body"]
    assert "sha256:" + hashlib.sha256(body.read()).hexdigest() == source.checksum


def test_large_seekable_file_gets_its_checksum_without_a_copy(
    storage: Any, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    path = tmp_path / "upload.bin"
    data = os.urandom(20 * MiB)
    path.write_bytes(data)
    copies = listen(storage, "before-call.s3.CopyObject")
    with open(path, "rb") as f:
        file_id = storage.create(f)
        assert not f.closed  # the caller's
    assert copies == []
    raw = s3_client.head_object(Bucket=bucket, Key=file_id)
    assert "-" not in raw["ETag"]  # one request, not parts
    assert raw["Metadata"]["x-depot-checksum"] == sha256(data)
    assert (
        hashlib.sha256(b"".join(storage.get(file_id))).hexdigest()
        == hashlib.sha256(data).hexdigest()
    )


def test_seekable_file_above_one_requests_limit_goes_in_parts(
    storage: Any, s3_client: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # S3 takes up to 5 GiB in one request; stand-in: 8 MiB.
    monkeypatch.setattr(_s3upload, "_PUT_MAX", 8 * MiB)
    path = tmp_path / "upload.bin"
    data = os.urandom(12 * MiB)
    path.write_bytes(data)
    copies = listen(storage, "before-call.s3.CopyObject")
    with open(path, "rb") as f:
        file_id = storage.create(f)
    assert copies == []
    raw = s3_client.head_object(Bucket=bucket, Key=file_id)
    assert raw["ETag"].endswith('-3"')  # parts of 5 MiB
    assert raw["Metadata"]["x-depot-checksum"] == sha256(data)


def test_small_content_is_one_request(storage: Any) -> None:
    puts = listen(storage, "before-call.s3.PutObject")
    multipart = listen(storage, "before-parameter-build.s3.CreateMultipartUpload")
    storage.create(Generated(5 * MiB - 1))  # a stream smaller than a part
    storage.create(os.urandom(20 * MiB))  # bytes of any size: the checksum is known
    assert len(puts) == 1 and len(multipart) == 1
    assert multipart[0]["params"]["Metadata"]["x-depot-checksum"].startswith("sha256:")
    storage.create(Generated(5 * MiB))  # from a part's size on, in parts
    assert len(puts) == 1 and len(multipart) == 2


def test_stream_above_the_copy_limit_has_no_checksum(
    storage: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(boto3_module, "CHECKSUM_COPY_LIMIT", 10 * MiB)
    copies = listen(storage, "before-call.s3.CopyObject")
    stored = storage.get(storage.create(Generated(12 * MiB)))
    assert copies == []
    assert stored.checksum is None
    assert stored.content_length == 12 * MiB


class OneWayStoredFile(StoredFile):
    """A stored file of another depot that cannot seek, recording ``checksum``."""

    def __init__(self, data: bytes, checksum: str) -> None:
        super().__init__(
            "00000000-0000-4000-8000-000000000001",
            "restored.bin",
            "application/octet-stream",
            None,
            len(data),
            checksum,
        )
        self._data = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._data.read(n)

    def close(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return False


def test_a_restored_file_above_the_copy_limit_keeps_its_recorded_checksum(
    storage: Any, s3_client: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # replace(f, f) of a file from another depot, what copy_depot does: its
    # checksum goes in from the start, no server-side copy needed.
    monkeypatch.setattr(boto3_module, "CHECKSUM_COPY_LIMIT", 6 * MiB)
    copies = listen(storage, "before-call.s3.CopyObject")
    data = os.urandom(7 * MiB)
    restored = OneWayStoredFile(data, sha256(data))
    storage.replace(restored, restored)
    assert copies == []
    assert storage.get(restored.file_id).checksum == sha256(data)
    # Bytes that are not what the file records: the stored object records theirs.
    other = OneWayStoredFile(os.urandom(7 * MiB), sha256(data))
    storage.replace(other, other)
    raw = s3_client.head_object(Bucket=bucket, Key=other.file_id)
    other._data.seek(0)
    assert raw["Metadata"]["x-depot-checksum"] == sha256(other._data.read())


class ChangingFile:
    """A seekable file that holds other bytes once it has been read through."""

    def __init__(self, first: bytes, then: bytes) -> None:
        self._data = io.BytesIO(first)
        self._then = then
        self._read_through = False

    def read(self, n: int = -1) -> bytes:
        chunk = self._data.read(n)
        if not chunk:
            self._read_through = True
        return chunk

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self._read_through:
            self._data = io.BytesIO(self._then)
        return self._data.seek(offset, whence)


@pytest.mark.parametrize("then_size", [10 * MiB, MiB], ids=["larger", "under-a-part"])
def test_file_changed_between_the_two_reads_gets_the_checksum_of_what_was_sent(
    storage: Any, then_size: int
) -> None:
    first, then = os.urandom(9 * MiB), os.urandom(then_size)
    stored = storage.get(storage.create(ChangingFile(first, then)))
    assert stored.checksum == sha256(then)
    assert hashlib.sha256(stored.read()).hexdigest() == hashlib.sha256(then).hexdigest()


def test_checksum_is_not_stamped_on_another_writers_object(
    storage: Any, s3_client: Any, bucket: str
) -> None:
    completing = listen(storage, "before-parameter-build.s3.CompleteMultipartUpload")

    def other_writer(**kwargs: Any) -> None:
        # Between our upload and our checksum copy, someone replaces the object.
        key = completing[-1]["params"]["Key"]
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"theirs", Metadata={"x": "y"})

    storage._client.meta.events.register("after-call.s3.CompleteMultipartUpload", other_writer)
    file_id = storage.create(Generated(9 * MiB))
    raw = s3_client.head_object(Bucket=bucket, Key=file_id)
    assert raw["Metadata"] == {"x": "y"}
    assert storage.get(file_id).read() == b"theirs"


def test_failed_multipart_upload_is_aborted(storage: Any, s3_client: Any, bucket: str) -> None:
    class FailsAt20MiB(Generated):
        def read(self, n: int = -1) -> bytes:
            if self.sent >= 20 * MiB:
                raise ConnectionResetError("client went away")
            return super().read(n)

    started = listen(storage, "after-call.s3.CreateMultipartUpload")
    aborted = listen(storage, "after-call.s3.AbortMultipartUpload")
    with pytest.raises(ConnectionResetError):
        storage.create(FailsAt20MiB(64 * MiB))
    assert (len(started), len(aborted)) == (1, 1)
    assert storage.list() == []
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    kept = storage.create(b"old", filename="k.txt")
    with pytest.raises(ConnectionResetError):
        storage.replace(kept, FailsAt20MiB(64 * MiB))
    assert storage.get(kept).read() == b"old"
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_max_size_crossed_in_a_multipart_upload_aborts_it(
    storage: Any, s3_client: Any, bucket: str
) -> None:
    # Issue 12, finding 5: a stream that cannot seek and tells nothing of its
    # size is counted as its parts are sent; crossing the limit aborts them.
    from depot.exceptions import FileTooLargeError
    from depot.validators import MaxSize, validate

    started = listen(storage, "after-call.s3.CreateMultipartUpload")
    aborted = listen(storage, "after-call.s3.AbortMultipartUpload")
    stream = Generated(64 * MiB)
    with pytest.raises(FileTooLargeError):
        storage.create(validate(stream, [MaxSize(20 * MiB)]))
    assert (len(started), len(aborted)) == (1, 1)
    assert stream.sent <= 20 * MiB + 8 * MiB  # stopped within a part of the limit
    assert storage.list() == []
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# --- reading ---------------------------------------------------------------------


def test_iter_range_asks_s3_for_the_range_only(storage: Any) -> None:
    data = os.urandom(2 * MiB)
    stored = storage.get(storage.create(data))
    answers = listen(storage, "after-call.s3.GetObject")
    assert b"".join(stored.iter_range(1000, 3000)) == data[1000:3000]
    headers = answers[0]["http_response"].headers
    assert headers["Content-Range"] == f"bytes 1000-2999/{len(data)}"
    assert headers["Content-Length"] == "2000"
    assert stored.tell() == 0  # the read position is not moved
    assert list(stored.iter_range(5, 5)) == []
    assert b"".join(stored.iter_range(0, 1)) == data[:1]  # "bytes=0-0", not "bytes=0-"
    assert answers[-1]["http_response"].headers["Content-Length"] == "1"
    assert b"".join(stored.iter_range(len(data) - 3, len(data) + 100)) == data[-3:]


def test_middleware_range_fetches_only_the_range(s3_settings: dict[str, Any]) -> None:
    storage = DepotManager.configure("default", s3_settings)
    data = os.urandom(2 * MiB)
    file_id = storage.create(data, filename="v.mp4")
    answers = listen(storage, "after-call.s3.GetObject")
    app = TestApp(DepotManager.make_middleware(None))
    response = app.get(f"/depot/default/{file_id}", headers={"Range": "bytes=1000000-1000099"})
    assert response.status_int == 206
    assert response.body == data[1000000:1000100]
    sent = sum(int(a["http_response"].headers["Content-Length"]) for a in answers)
    assert sent == 100


def test_reading_is_streamed_in_blocks(storage: Any) -> None:
    data = os.urandom(3 * MiB)
    stored = storage.get(storage.create(data))
    answers = listen(storage, "after-call.s3.GetObject")
    assert stored.read(10) == data[:10]
    stored.seek(2 * MiB)
    assert stored.read(5) == data[2 * MiB : 2 * MiB + 5]
    assert [a["http_response"].headers["Content-Range"] for a in answers] == [
        f"bytes 0-{len(data) - 1}/{len(data)}",
        f"bytes {2 * MiB}-{len(data) - 1}/{len(data)}",
    ]
    stored.close()


def test_replaced_after_opening_is_an_error_not_a_mix(storage: Any) -> None:
    file_id = storage.create(b"first version")
    stored = storage.get(file_id)
    assert stored.read(1) == b"f"  # read once: this version is held
    storage.replace(file_id, b"second")
    stored.seek(6)  # the next read is a new (conditional) GET
    with pytest.raises(BackendUnavailableError, match="was replaced after it was opened"):
        stored.read()


def test_replaced_before_the_first_read_follows_in_one_more_request(storage: Any) -> None:
    file_id = storage.create(b"first version")
    stored = storage.get(file_id)
    storage.replace(file_id, b"second")
    calls = listen(storage, "before-call.s3.*")
    assert stored.read() == b"second"
    assert (stored.content_length, stored.checksum) == (6, sha256(b"second"))
    # The conditional GET (refused), one HEAD, the GET of the new version.
    assert [c["model"].name for c in calls] == ["GetObject", "HeadObject", "GetObject"]


def meanwhile(storage: Any, action: Any) -> None:
    """Run ``action()`` once, just before the storage's next PutObject is sent."""
    done: list[bool] = []

    def hook(**kwargs: Any) -> None:
        if not done:
            done.append(True)
            action()

    storage._client.meta.events.register("before-call.s3.PutObject", hook)


def test_replace_racing_a_delete_does_not_bring_the_file_back(
    storage: Any, s3_client: Any, bucket: str
) -> None:
    file_id = storage.create(b"first")
    meanwhile(storage, lambda: s3_client.delete_object(Bucket=bucket, Key=file_id))
    with pytest.raises(StoredFileNotFoundError, match=file_id):
        storage.replace(file_id, b"second")
    assert not storage.exists(file_id)
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_replace_racing_another_replace_writes_last(
    storage: Any, s3_client: Any, bucket: str
) -> None:
    file_id = storage.create(b"first")
    put = listen(storage, "before-call.s3.PutObject")
    meanwhile(storage, lambda: s3_client.put_object(Bucket=bucket, Key=file_id, Body=b"other"))
    storage.replace(file_id, b"second", filename="b.txt")
    stored = storage.get(file_id)
    assert (stored.read(), stored.filename, stored.checksum) == (
        b"second",
        "b.txt",
        sha256(b"second"),
    )
    assert len(put) == 2  # conditional on the first version, then on the other writer's
    assert all(call["params"]["headers"].get("If-Match") for call in put)


def test_deleted_after_opening(storage: Any) -> None:
    stale = storage.get(storage.create(b"gone"))
    storage.delete(stale.file_id)
    with pytest.raises(StoredFileNotFoundError, match=stale.file_id) as raised:
        stale.read()
    # filedepot let S3's NoSuchKey through here: apps may catch it as such
    assert isinstance(raised.value, ClientError)
    assert raised.value.response["Error"]["Code"] == "NoSuchKey"
    assert raised.value.file_id == stale.file_id


def test_translated_errors_pickle(storage: Any, s3_client: Any, bucket: str) -> None:
    # as botocore's own do: they cross process pools and task queues
    remove_bucket(s3_client, bucket)
    with pytest.raises(BackendUnavailableError) as raised:
        storage.create(b"x")
    again = pickle.loads(pickle.dumps(raised.value))
    # botocore's NoSuchBucket class is made at run time: its ClientError base is kept
    assert isinstance(again, BackendUnavailableError) and isinstance(again, ClientError)
    assert str(again) == str(raised.value)
    assert again.response == raised.value.response


def requests_made(make: Any) -> list[str]:
    """The S3 operations called while ``make()`` runs (storages given keys share a session)."""
    session = boto3_module._session(True)
    seen: list[str] = []

    def record(model: Any, **kwargs: Any) -> None:
        seen.append(model.name)

    session.events.register("before-call.s3", record)
    try:
        make()
    finally:
        session.events.unregister("before-call.s3", record)
    return seen


def test_a_bucket_missing_from_the_listing_is_used_not_refused(
    s3_settings: dict[str, Any], s3_client: Any, bucket: str
) -> None:
    # ListBuckets shows only one's own buckets (and 10,000 at most): a bucket
    # another account shares is not in it, and S3 answers CreateBucket with 409.
    from botocore.awsrequest import AWSResponse

    s3_client.create_bucket(Bucket=bucket)
    session = boto3_module._session(True)
    taken = {
        "Error": {"Code": "BucketAlreadyExists", "Message": "The bucket name is not available"},
        "ResponseMetadata": {"HTTPStatusCode": 409},
    }

    def hide(parsed: dict[str, Any], **kwargs: Any) -> None:
        parsed["Buckets"] = []

    def refuse(**kwargs: Any) -> tuple[Any, dict[str, Any]]:
        return AWSResponse("", 409, {}, None), taken  # S3's answer for another's bucket

    session.events.register("after-call.s3.ListBuckets", hide)
    session.events.register("before-call.s3.CreateBucket", refuse)
    try:
        storage = S3Storage(**settings_to_kwargs(s3_settings))
        assert storage.get(storage.create(b"x")).read() == b"x"
        # a name taken by another account, with no access: says so
        with pytest.raises(BackendUnavailableError, match="belongs to another account"):
            S3Storage(**settings_to_kwargs(s3_settings, bucket="depot-not-ours"))
    finally:
        session.events.unregister("after-call.s3.ListBuckets", hide)
        session.events.unregister("before-call.s3.CreateBucket", refuse)


def test_bucket_check_makes_filedepots_requests(
    s3_settings: dict[str, Any], s3_client: Any, bucket: str
) -> None:
    # filedepot listed the buckets and created a missing one: apps' mocks expect that
    kwargs = settings_to_kwargs(s3_settings, policy="public-read")
    assert requests_made(lambda: S3Storage(**kwargs)) == [
        "ListBuckets",
        "CreateBucket",
        "PutPublicAccessBlock",
    ]
    assert requests_made(lambda: S3Storage(**kwargs)) == ["ListBuckets"]


# --- signed URLs -------------------------------------------------------------------


def test_signed_url(storage: Any) -> None:
    name = "r\u00e9sum\u00e9.pdf"
    stored = storage.get(storage.create(b"%PDF-1.4", filename=name))
    url = stored.signed_url(expires_in=60)
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=60" in url
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"%PDF-1.4"
        assert response.headers["Content-Type"] == "application/pdf"
        assert response.headers["Content-Disposition"] == make_content_disposition("inline", name)
    html = storage.get(storage.create(b"<p>", filename="a.html"))
    with urllib.request.urlopen(html.signed_url()) as response:
        assert response.headers["Content-Disposition"].startswith("attachment;")
    with urllib.request.urlopen(html.signed_url(disposition="inline")) as response:
        assert response.headers["Content-Disposition"].startswith("inline;")
    with pytest.raises(ValueError, match="disposition must be 'inline' or 'attachment'"):
        html.signed_url(disposition="download")
    assert stored.public_url is None  # private


def test_presign_ttl_makes_the_middleware_redirect(s3_settings: dict[str, Any]) -> None:
    storage = DepotManager.configure("default", {**s3_settings, "depot.presign_ttl": "300"})
    file_id = storage.create(b"private bytes", filename="p.txt")
    app = TestApp(DepotManager.make_middleware(None))
    response = app.get(f"/depot/default/{file_id}", status=302)
    assert response.headers["Cache-Control"] == "no-store"
    location = response.headers["Location"]
    assert "X-Amz-Expires=300" in location
    with urllib.request.urlopen(location) as fetched:
        assert fetched.read() == b"private bytes"


# --- settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"policy": "public"}, "policy must be 'public-read' or 'private', not 'public'"),
        ({"presign_ttl": "soon"}, "presign_ttl must be a number of seconds from 1 to 604800"),
        ({"presign_ttl": 8 * 24 * 3600}, "presign_ttl must be a number of seconds"),
        ({"secret_access_key": None}, "access_key_id and secret_access_key go together"),
        ({"access_key_id": None, "secret_access_key": None, "bucket": None}, "bucket is needed"),
        ({"endpoint_url": "localhost:9000"}, "endpoint_url 'localhost:9000' is not usable"),
        ({"bucket": "Not A Bucket!"}, "Invalid bucket name"),
    ],
)
def test_bad_settings(s3_settings: dict[str, Any], changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        S3Storage(**settings_to_kwargs(s3_settings, **changes))


def test_settings_through_the_manager(s3_settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=r"depot\.acl is not a setting of S3Storage"):
        DepotManager.configure("bad", {**s3_settings, "depot.acl": "x"})


def test_missing_boto3_names_the_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['boto3'] = None\n"
        "for name in ('depot.io.boto3', 'depot.io.awss3'):\n"
        "    try:\n"
        "        __import__(name)\n"
        "    except ImportError as exc:\n"
        "        print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    expected = (
        "ImportError depot.io.boto3 needs the 'boto3' package; "
        "install the 's3' extra: pip install 'depot-storage[s3]'."
    )
    assert out == [expected, expected]


# --- errors -----------------------------------------------------------------------


def test_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(BackendUnavailableError) as raised:
        S3Storage("k", "s", bucket="nowhere", endpoint_url=endpoint, region_name="us-east-1")
    message = str(raised.value)
    assert message.startswith(f"Cannot reach the S3 bucket 'nowhere' at {endpoint} while ")
    assert "depot.endpoint_url" in message and "\n" not in message
    assert isinstance(raised.value, OSError)
    assert isinstance(raised.value, EndpointConnectionError)  # what filedepot let through


def test_hung_endpoint_fails_configure_within_the_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that accepts connections and never answers: configure() gives up
    # after max_attempts * read_timeout, naming the endpoint and the settings.
    from tests.backends.silent import SilentServer

    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    with SilentServer() as server:
        settings = {
            "depot.backend": "s3",
            "depot.access_key_id": "k",
            "depot.secret_access_key": "s",
            "depot.bucket": "hung",
            "depot.region_name": "us-east-1",
            "depot.endpoint_url": server.url,
            "depot.read_timeout": "0.5",
            "depot.max_attempts": "2",
        }
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as raised:
            DepotManager.configure("hung", settings)
        waited = time.monotonic() - started
        assert server.connections == 2  # one per attempt
    assert 1.0 <= waited < 6, waited
    message = str(raised.value)
    assert message.startswith(f"The S3 bucket 'hung' at {server.url} did not answer in time ")
    assert "depot.read_timeout" in message and "depot.max_attempts" in message
    assert isinstance(raised.value, botocore_errors.ReadTimeoutError)  # what boto3 raised


def test_timeouts_and_attempts_default_short(
    s3_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    config = S3Storage(**settings_to_kwargs(s3_settings))._client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (5, 15)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    # boto3's own setting is kept when depot's is not given; depot's wins
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    config = S3Storage(**settings_to_kwargs(s3_settings))._client.meta.config
    assert config.retries["total_max_attempts"] == 1
    storage = S3Storage(**settings_to_kwargs(s3_settings, max_attempts="4", connect_timeout="2"))
    config = storage._client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 4}
    assert config.connect_timeout == 2


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("connect_timeout", "0"),
        ("read_timeout", "-1"),
        ("read_timeout", "soon"),
        ("read_timeout", "nan"),
        ("connect_timeout", "1e9"),
        ("max_attempts", "0"),
        ("max_attempts", "2.5"),
        ("max_attempts", True),
    ],
)
def test_bad_timeouts_name_the_setting(
    s3_settings: dict[str, Any], setting: str, value: object
) -> None:
    with pytest.raises(ConfigurationError, match=rf"^S3Storage \(depot\.\* settings\): {setting} "):
        DepotManager.from_config({**s3_settings, f"depot.{setting}": value})


def test_bucket_deleted_after_configuration(storage: Any, s3_client: Any, bucket: str) -> None:
    remove_bucket(s3_client, bucket)
    with pytest.raises(BackendUnavailableError) as raised:
        storage.create(b"x")
    endpoint = s3_client.meta.endpoint_url
    assert str(raised.value).startswith(
        f"The S3 bucket {bucket!r} at {endpoint} does not exist (found while uploading file "
    )
    assert str(raised.value).endswith("Create it, or check depot.bucket and depot.endpoint_url.")


def test_no_credentials_anywhere(
    s3_endpoint: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(
        BackendUnavailableError, match="No usable AWS credentials for the S3 bucket"
    ):
        S3Storage(bucket="no-credentials", endpoint_url=s3_endpoint["endpoint_url"])


@pytest.fixture(scope="module")
def moto_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A moto server of its own that checks signatures and IAM policies, with two users.

    ``admin`` may do anything on S3; ``limited`` may read, write and list, but
    not create buckets; ``lister`` may only list a bucket.
    """
    import boto3

    with MotoServer(tmp_path_factory.mktemp("moto-auth")) as server:
        iam = boto3.client(
            "iam",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        # moto 5.2.6 checks HEAD and ListObjectsV2 against the operations' names
        # (s3:HeadObject, s3:ListObjectsV2), where AWS checks s3:GetObject and
        # s3:ListBucket; naming both keeps the users' rights the same on any moto.
        reads = ["s3:GetObject", "s3:HeadObject"]
        lists = ["s3:ListBucket", "s3:ListObjectsV2"]
        users = {}
        for user, actions in [
            ("admin", ["s3:*"]),
            ("limited", [*reads, "s3:PutObject", "s3:DeleteObject", *lists]),
            ("lister", lists),
        ]:
            iam.create_user(UserName=user)
            policy = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
            }
            iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            users[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        # From now on every request must be signed by a known key and allowed.
        urllib.request.urlopen(
            urllib.request.Request(
                f"{server.url}/moto-api/reset-auth",
                data=b"0",
                headers={"Content-Type": "text/plain"},
                method="POST",
            )
        ).close()
        yield {"endpoint_url": server.url, **users}


def open_with(auth: dict[str, Any], key: tuple[str, str], bucket: str) -> Any:
    return S3Storage(
        *key, bucket=bucket, endpoint_url=auth["endpoint_url"], region_name="us-east-1"
    )


@pytest.mark.parametrize(
    ("key", "code"),
    [
        (("AKIAUNKNOWNUNKNOWN00", "secret"), "InvalidAccessKeyId"),
        ("wrong secret", "SignatureDoesNotMatch"),
    ],
)
def test_bad_credentials(moto_with_auth: dict[str, Any], key: Any, code: str) -> None:
    if key == "wrong secret":
        key = (moto_with_auth["admin"][0], "not-the-secret")
    with pytest.raises(BackendUnavailableError) as raised:
        open_with(moto_with_auth, key, "depot-auth")
    message = str(raised.value)
    assert message.startswith(f"S3 refused the credentials ({code}: ")
    assert f"in the S3 bucket 'depot-auth' at {moto_with_auth['endpoint_url']}" in message
    assert "Check depot.access_key_id and depot.secret_access_key" in message
    assert "\n" not in message
    assert isinstance(raised.value, OSError)
    # and still what filedepot let through, for apps' `except ClientError`
    assert isinstance(raised.value, ClientError)
    assert raised.value.response["Error"]["Code"] == code
    assert raised.value.operation_name == "ListBuckets"


def test_refused_head_object_is_still_a_client_error(moto_with_auth: dict[str, Any]) -> None:
    admin = open_with(moto_with_auth, moto_with_auth["admin"], "depot-head")
    file_id = admin.create(b"x")
    lister = open_with(moto_with_auth, moto_with_auth["lister"], "depot-head")
    for call in (lister.get, lister.exists):
        with pytest.raises(ClientError) as raised:
            call(file_id)
        assert isinstance(raised.value, BackendUnavailableError)
        assert raised.value.operation_name == "HeadObject"
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert str(raised.value).startswith("S3 denied access (403: Forbidden) while reading file")


def test_unknown_bucket_without_permission_to_create_it(moto_with_auth: dict[str, Any]) -> None:
    with pytest.raises(BackendUnavailableError) as raised:
        open_with(moto_with_auth, moto_with_auth["limited"], "depot-not-there")
    message = str(raised.value)
    assert message == (
        f"The S3 bucket 'depot-not-there' at {moto_with_auth['endpoint_url']} does not exist, "
        "and these credentials may not create it (AccessDenied: Access Denied). Create the "
        "bucket, allow the credentials s3:CreateBucket, or check depot.bucket and "
        "depot.endpoint_url."
    )
    assert isinstance(raised.value, ClientError)
    assert raised.value.operation_name == "CreateBucket"


def test_credentials_from_boto3s_chain(
    moto_with_auth: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id, secret = moto_with_auth["admin"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    storage = S3Storage(
        bucket="depot-chain", endpoint_url=moto_with_auth["endpoint_url"], region_name="us-east-1"
    )
    assert storage.get(storage.create(b"signed with the env's key")).read() == (
        b"signed with the env's key"
    )
    # the limited user, in an existing bucket, may do what a depot does
    limited = open_with(moto_with_auth, moto_with_auth["limited"], "depot-chain")
    assert limited.get(limited.create(b"x")).read() == b"x"
    assert len(limited.list()) == 2


# --- the server going away --------------------------------------------------------


def test_server_stopped_during_an_upload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No retries against a dead server: the failure is the subject here.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with MotoServer(tmp_path) as server:
        endpoint = {
            "endpoint_url": server.url,
            "access_key_id": "k",
            "secret_access_key": "s",
            "region_name": "us-east-1",
        }
        storage = S3Storage(bucket="faults", policy="private", **endpoint)
        kept = storage.create(b"stored before")

        class StopsTheServer(Generated):
            def read(self, n: int = -1) -> bytes:
                # By 28 MiB, parts were sent: each goes before the next is read.
                if self.sent >= 28 * MiB:
                    server.stop()
                return super().read(n)

        started = listen(storage, "after-call.s3.CreateMultipartUpload")
        parts = listen(storage, "after-call.s3.UploadPart")
        with pytest.raises(BackendUnavailableError) as raised:
            storage.create(StopsTheServer(48 * MiB))
        assert len(started) == 1 and parts, "stopped in the middle of a multipart upload"
        message = str(raised.value)
        assert message.startswith(
            f"Cannot reach the S3 bucket 'faults' at {server.url} while uploading file "
        )
        assert "\n" not in message and ".." not in message

        # While it is down: a clear OSError, and a 503 from the middleware.
        with pytest.raises(BackendUnavailableError, match="Cannot reach the S3 bucket 'faults'"):
            storage.get(kept)
        DepotManager._depots["down"] = storage
        TestApp(DepotMiddleware(None)).get(f"/depot/down/{kept}", status=503)

        # moto restarts empty; a real S3 would still hold the bucket: make it again.
        server.start()
        client = client_for(endpoint)
        client.create_bucket(Bucket="faults")
        assert storage.list() == []
        assert client.list_multipart_uploads(Bucket="faults").get("Uploads", []) == []
        # The same storage object works again.
        file_id = storage.create(Generated(9 * MiB))
        assert storage.get(file_id).content_length == 9 * MiB
        assert storage.list() == [file_id]


def test_last_modified_is_recent(storage: Any) -> None:
    before = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    stored = storage.get(storage.create(Generated(9 * MiB)))
    assert before <= stored.last_modified <= before + timedelta(seconds=10)
