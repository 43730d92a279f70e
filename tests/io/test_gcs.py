"""What the GCS backend alone has: its objects, streaming, ranges, URLs, errors and faults.

Every request goes over HTTP to gcp-storage-emulator (``tests/backends/gcs.py``);
nothing in google-cloud-storage is patched. Where a test must see requests, it
hooks the responses of the client's HTTP session (a requests ``Session``). The
emulator checks neither credentials nor preconditions: what depends on them is
tested as far as the requests sent, and the error messages from the exceptions
google-cloud-storage raises; races of writes go through a proxy that enforces
``ifGenerationMatch`` as GCS does (``tests/backends/gcs_preconditions.py``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from webtest import TestApp

from depot.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    CorruptMetadataError,
    StoredFileNotFoundError,
)
from depot.manager import DepotManager
from depot.middleware import DepotMiddleware
from depot.utils import make_content_disposition
from tests.backends import settings_to_kwargs
from tests.backends.gcs import GCSEmulator, remove_bucket
from tests.backends.gcs_preconditions import precondition_proxy
from tests.servers import free_port
from tests.streams import FileStream, Generated, MiB, OneWayStream, random_file, sha256

gcs_module = pytest.importorskip("depot.io.gcs", reason="the 'gcs' extra is not installed")
GCSStorage = gcs_module.GCSStorage

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "filedepot_0_12" / "gcs.json"


@pytest.fixture
def storage(gcs_settings: dict[str, Any]) -> Any:
    return GCSStorage(**settings_to_kwargs(gcs_settings))


@pytest.fixture
def bucket(gcs_settings: dict[str, Any]) -> str:
    return str(gcs_settings["depot.bucket"])


@pytest.fixture
def no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail at once against a server that is down: the failure is the subject."""
    monkeypatch.setattr(gcs_module, "RETRY", None)


class Request:
    """One request the storage's client sent, and the status and headers of its answer."""

    def __init__(self, response: Any) -> None:
        self.method = response.request.method
        url = urlsplit(response.request.url)
        self.path = url.path
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.headers = response.request.headers  # both case-insensitive
        self.status = response.status_code
        self.answer = response.headers
        self.json = response.json() if "json" in response.headers.get("Content-Type", "") else None


def listen(storage: Any) -> list[Request]:
    """Record every request the storage's client sends from now on."""
    seen: list[Request] = []
    storage.client._http.hooks["response"].append(
        lambda response, *args, **kwargs: seen.append(Request(response))
    )
    return seen


# --- the objects, as filedepot lays them out ---------------------------------------------


def test_object_layout_and_metadata(storage: Any, gcs_client: Any, bucket: str) -> None:
    name = "caf\u00e9 \u2615 \u00fcber.txt"
    file_id = storage.create(b"hello", filename=name)
    stored = storage.get(file_id)

    raw = gcs_client.bucket(bucket).get_blob(file_id)
    assert raw.metadata == {
        # quoted exactly as filedepot quotes it (see gcs.json of filedepot 0.12)
        "x-depot-filename": "caf%C3%A9%20%E2%98%95%20%C3%BCber.txt",
        "x-depot-content-type": "text/plain",
        "x-depot-modified": stored.last_modified.strftime("%Y-%m-%d %H:%M:%S"),
        "x-depot-checksum": sha256(b"hello"),
    }
    assert raw.content_type == "text/plain"
    assert raw.size == 5
    # the real name, not filedepot's double-encoded one
    assert raw.content_disposition == make_content_disposition("inline", name)
    assert raw.download_as_bytes() == b"hello"


def test_filename_quoting_is_filedepots(storage: Any, gcs_client: Any, bucket: str) -> None:
    for entry in json.loads(FIXTURE.read_text())["files"].values():
        name = entry["filedepot"]["filename"]
        file_id = storage.create(b"x", filename=name)
        raw = gcs_client.bucket(bucket).get_blob(file_id).metadata
        assert raw["x-depot-filename"] == entry["object"]["metadata"]["x-depot-filename"]


def test_dangerous_types_are_attachments_on_gcs_too(
    storage: Any, gcs_client: Any, bucket: str
) -> None:
    file_id = storage.create(b"<script>", filename="page.html")
    raw = gcs_client.bucket(bucket).get_blob(file_id)
    assert raw.content_disposition.startswith("attachment;")


def test_header_breaking_content_type_is_stored_as_octet_stream(storage: Any) -> None:
    stored = storage.get(storage.create(b"x", "x", "text/plain\r\nSet-Cookie: a=b"))
    assert stored.content_type == "application/octet-stream"


@pytest.mark.parametrize(
    "content_type", ["image/png, text/html", "text/html; x=\u00e9", "image/png/../../text/html"]
)
def test_object_content_type_is_a_safe_media_type(
    storage: Any, gcs_client: Any, bucket: str, content_type: str
) -> None:
    # Issue 12, finding 4: public and signed URLs serve the object's own
    # Content-Type, so it follows the middleware's rule, not a looser one.
    file_id = storage.create(b"<script>", "x", content_type)
    assert gcs_client.bucket(bucket).get_blob(file_id).content_type == "application/octet-stream"
    assert gcs_client.bucket(bucket).get_blob(file_id).metadata["x-depot-content-type"] == (
        "application/octet-stream"
    )


def test_header_content_type_is_the_rule_of_depot_headers() -> None:
    from depot.io._objectmeta import header_content_type

    assert header_content_type("image/png, text/html") == "application/octet-stream"
    assert header_content_type("text/plain\x7f") == "application/octet-stream"
    assert header_content_type(" text/plain; charset=utf-8") == "text/plain; charset=utf-8"


def test_public_read_policy(
    gcs_settings: dict[str, Any], gcs_client: Any, gcs_emulator: str, bucket: str
) -> None:
    storage = GCSStorage(**settings_to_kwargs(gcs_settings, policy="public-read"))
    GCSStorage(**settings_to_kwargs(gcs_settings, policy="public-read"))
    # the whole bucket is readable by anyone, as filedepot made it; granted once
    # (filedepot added the binding again each time a storage was made)
    bindings = gcs_client.bucket(bucket).get_iam_policy().bindings
    assert [(b["role"], sorted(b["members"])) for b in bindings] == [
        ("roles/storage.objectViewer", ["allUsers"])
    ]

    file_id = storage.create(b"public bytes", filename="p.txt")
    stored = storage.get(file_id)
    assert stored.public_url == f"{gcs_emulator}/{bucket}/{file_id}"
    with urllib.request.urlopen(stored.public_url) as response:
        assert response.read() == b"public bytes"
        assert response.headers["Content-Type"] == "text/plain"

    DepotManager._depots["pub"] = storage
    redirect = TestApp(DepotMiddleware(None)).get(f"/depot/pub/{file_id}", status=301)
    assert redirect.headers["Location"] == stored.public_url


def test_private_files_have_no_public_url(storage: Any, gcs_client: Any, bucket: str) -> None:
    assert storage.get(storage.create(b"x")).public_url is None
    assert gcs_client.bucket(bucket).get_iam_policy().bindings == []


def test_prefix(gcs_settings: dict[str, Any], gcs_client: Any, bucket: str) -> None:
    media = GCSStorage(**settings_to_kwargs(gcs_settings, prefix="media/"))
    root = GCSStorage(**settings_to_kwargs(gcs_settings))
    in_media = media.create(b"m")
    in_root = root.create(b"r")
    # objects that are not files of either depot
    other = "00000000-0000-4000-8000-000000000001"
    for name in ["media/readme.txt", f"media/sub/{other}", f"thumbs/{other}", "notes.txt"]:
        gcs_client.bucket(bucket).blob(name).upload_from_string(b"-")

    assert gcs_client.bucket(bucket).get_blob(f"media/{in_media}").size == 1
    assert media.list() == [in_media]
    assert root.list() == [in_root]
    assert media.get(in_media).read() == b"m"
    assert not root.exists(in_media)
    assert not media.exists(in_root)
    media.delete(in_media)
    assert media.list() == [] and root.list() == [in_root]


def test_storage_class(gcs_settings: dict[str, Any], gcs_client: Any, bucket: str) -> None:
    storage = GCSStorage(**settings_to_kwargs(gcs_settings, storage_class="NEARLINE"))
    small = storage.create(b"x")
    large = storage.create(Generated(9 * MiB))  # a resumable upload, then a metadata patch
    for file_id in (small, large):
        assert gcs_client.bucket(bucket).get_blob(file_id).storage_class == "NEARLINE"


def test_missing_bucket_is_created_in_the_project(
    gcs_settings: dict[str, Any], gcs_client: Any, bucket: str
) -> None:
    assert gcs_client.lookup_bucket(bucket) is None
    GCSStorage(**settings_to_kwargs(gcs_settings))
    assert gcs_client.lookup_bucket(bucket) is not None


def test_missing_bucket_without_a_project(gcs_settings: dict[str, Any], bucket: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        GCSStorage(**settings_to_kwargs(gcs_settings, project_id=None))
    assert str(raised.value).startswith(f"The GCS bucket {bucket!r} at http://127.0.0.1:")
    assert str(raised.value).endswith(
        "does not exist, and no project is known to create it in: set depot.project_id, "
        "or create the bucket."
    )


def test_existing_bucket_needs_no_project(
    gcs_settings: dict[str, Any], gcs_client: Any, bucket: str
) -> None:
    gcs_client.create_bucket(bucket)
    storage = GCSStorage(**settings_to_kwargs(gcs_settings, project_id=None))
    assert storage.get(storage.create(b"x")).read() == b"x"


def test_objects_put_by_other_programs_are_read(storage: Any, gcs_client: Any, bucket: str) -> None:
    file_id = "00000000-0000-4000-8000-0000000000aa"
    gcs_client.bucket(bucket).blob(file_id).upload_from_string(
        b"HELLO WORLD", content_type="text/x-other"
    )
    raw = gcs_client.bucket(bucket).get_blob(file_id)
    stored = storage.get(file_id)
    assert stored.read() == b"HELLO WORLD"
    assert stored.filename == "unnamed"
    assert stored.content_type == "text/x-other"
    assert stored.last_modified == raw.time_created.astimezone(timezone.utc).replace(
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
    storage: Any, gcs_client: Any, bucket: str, field: str, value: str
) -> None:
    file_id = "00000000-0000-4000-8000-0000000000bb"
    blob = gcs_client.bucket(bucket).blob(file_id)
    blob.metadata = {"x-depot-filename": "a.txt", "x-depot-modified": "2024-05-01 12:00:00"}
    blob.metadata = {**blob.metadata, field: value}
    blob.upload_from_string(b"x")
    with pytest.raises(CorruptMetadataError) as raised:
        storage.get(file_id)
    message = str(raised.value)
    assert field in message and file_id in message and bucket in message
    assert "Restore the file from a backup or delete it" in message
    assert "\n" not in message


@pytest.mark.parametrize("value", ["INVALID", "2024-13-45 99:00:00", "2024-05-01T12:00:00"])
def test_invalid_modified_time_is_read_without_a_date(
    storage: Any, gcs_client: Any, bucket: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    # filedepot read such a file, with last_modified None: so does depot, and says so.
    file_id = "00000000-0000-4000-8000-0000000000be"
    blob = gcs_client.bucket(bucket).blob(file_id)
    blob.metadata = {"x-depot-filename": "a.txt", "x-depot-modified": value}
    blob.upload_from_string(b"data")
    with caplog.at_level("WARNING", logger="depot.io"):
        stored = storage.get(file_id)
    assert stored.last_modified is None
    assert (stored.filename, stored.read()) == ("a.txt", b"data")
    [record] = [r for r in caplog.records if r.name == "depot.io"]
    assert file_id in record.getMessage() and "x-depot-modified" in record.getMessage()


def test_filedepot_attributes(storage: Any, gcs_client: Any, bucket: str) -> None:
    file_id = storage.create(b"x")
    assert storage.bucket.name == bucket
    assert storage.client.project == "depot-test"
    assert storage.get(file_id).blob.name == file_id
    assert gcs_module.CANNED_ACL_PUBLIC_READ == "public-read"
    assert gcs_module.CANNED_ACL_PRIVATE == "private"


# --- streaming uploads and their checksum ------------------------------------------------


def test_large_stream_uploads_in_chunks_with_flat_memory(
    storage: Any, gcs_client: Any, bucket: str
) -> None:
    source = Generated(60 * MiB)
    requests = listen(storage)
    tracemalloc.start()
    try:
        file_id = storage.create(source, filename="big.bin")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # One chunk of 8 MiB, and the copies Generated makes to produce it.
    assert peak < 22 * MiB, f"{peak / MiB:.1f} MiB held for a 60 MiB stream"

    chunks = [r for r in requests if r.method == "PUT"]
    assert len(chunks) == 8  # 7 of 8 MiB, and the last 4
    assert chunks[0].headers["Content-Range"] == "bytes 0-8388607/*"
    # then the checksum by a metadata patch, on the generation just written
    patch = requests[-1]
    assert patch.method == "PATCH"
    assert patch.query["ifGenerationMatch"] == chunks[-1].json["generation"]
    raw = gcs_client.bucket(bucket).get_blob(file_id)
    assert raw.size == 60 * MiB
    assert raw.metadata["x-depot-checksum"] == source.checksum
    assert raw.metadata["x-depot-filename"] == "big.bin"
    stored = storage.get(file_id)
    assert (stored.checksum, stored.content_length) == (source.checksum, 60 * MiB)


@pytest.mark.parametrize("seekable", [True, False], ids=["file", "stream"])
def test_an_upload_holds_one_chunk_in_memory(storage: Any, tmp_path: Path, seekable: bool) -> None:
    path = random_file(tmp_path / "upload.bin", 60)
    requests = listen(storage)
    with open(path, "rb") as f:
        tracemalloc.start()
        try:
            file_id = storage.create(f if seekable else FileStream(f))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # A chunk of 8 MiB, read from the file in one call: not two, though
    # google-cloud-storage keeps the answer to the last one as it reads the next.
    assert peak < 12 * MiB, f"{peak / MiB:.1f} MiB held for a 60 MiB upload"
    assert len([r for r in requests if r.method == "PUT"]) == 8  # 7 of 8 MiB, and the last 4
    with open(path, "rb") as f:
        assert storage.get(file_id).checksum == sha256(f.read())


def test_stream_ending_on_a_chunk_boundary(storage: Any) -> None:
    source = Generated(16 * MiB)
    stored = storage.get(storage.create(source))
    assert (stored.content_length, stored.checksum) == (16 * MiB, source.checksum)
    assert hashlib.sha256(stored.read()).hexdigest() == source.checksum[len("sha256:") :]


def test_small_content_is_one_request_with_its_checksum(storage: Any) -> None:
    requests = listen(storage)
    storage.create(Generated(8 * MiB - 1))  # a stream smaller than a chunk
    assert [(r.method, r.query.get("uploadType")) for r in requests] == [("POST", "multipart")]
    storage.create(Generated(8 * MiB))  # from a chunk's size on, resumable
    assert [(r.method, r.query.get("uploadType")) for r in requests][1] == ("POST", "resumable")


def test_large_bytes_have_their_checksum_from_the_start(storage: Any) -> None:
    data = os.urandom(20 * MiB)
    requests = listen(storage)
    stored = storage.get(storage.create(data))
    assert stored.checksum == sha256(data)
    # a resumable upload: its metadata, checksum included, goes first; no patch
    assert [r.method for r in requests][:2] == ["POST", "PUT"]
    assert "PATCH" not in [r.method for r in requests]


def test_large_seekable_file_is_read_once(storage: Any, tmp_path: Path) -> None:
    path = tmp_path / "upload.bin"
    data = os.urandom(12 * MiB)
    path.write_bytes(data)

    class CountingFile(io.FileIO):
        reads = 0

        def read(self, n: int = -1) -> bytes:  # type: ignore[override]
            chunk = super().read(n)
            self.reads += len(chunk)
            return chunk

    with CountingFile(path, "rb") as f:
        file_id = storage.create(f)
        assert f.reads == len(data)
    assert storage.get(file_id).checksum == sha256(data)


def test_failed_upload_leaves_the_old_file(storage: Any) -> None:
    class FailsAt20MiB(Generated):
        def read(self, n: int = -1) -> bytes:
            if self.sent >= 20 * MiB:
                raise ConnectionResetError("client went away")
            return super().read(n)

    with pytest.raises(ConnectionResetError):
        storage.create(FailsAt20MiB(64 * MiB))
    assert storage.list() == []

    kept = storage.create(b"old", filename="k.txt")
    with pytest.raises(ConnectionResetError):
        storage.replace(kept, FailsAt20MiB(64 * MiB))
    stored = storage.get(kept)
    assert (stored.read(), stored.filename, stored.checksum) == (b"old", "k.txt", sha256(b"old"))


def test_checksum_patch_failure_keeps_the_file(
    storage: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def delete_before_the_patch(response: Any, *args: Any, **kwargs: Any) -> None:
        # The last chunk is in: the object exists, and now goes away.
        if response.request.method == "PUT" and response.status_code == 200:
            storage.bucket.blob(response.json()["name"]).delete()

    storage.client._http.hooks["response"].append(delete_before_the_patch)
    with caplog.at_level(logging.WARNING, "depot.io.gcs"):
        file_id = storage.create(Generated(9 * MiB))
    # deleted by "another writer": nothing to stamp, and nothing to complain about
    assert caplog.records == []
    assert not storage.exists(file_id)


def test_chunk_stream_sends_the_last_chunk_again() -> None:
    from depot.io._chunks import Digest, PartReader
    from depot.io._gcsupload import _ChunkStream

    data = os.urandom(1000)
    digest = Digest()
    stream = _ChunkStream(PartReader(OneWayStream(data[100:], piece=64), digest, data[:100]))
    assert stream.read(300) == data[:300]
    assert stream.read(300) == data[300:600]
    assert stream.tell() == 600
    # a failed request: GCS received up to 450
    assert stream.seek(450) == 450
    assert stream.read(300) == data[450:750]
    stream.seek(700)
    assert stream.read(100) == data[700:800]  # 50 bytes sent before, 50 new
    assert stream.read(-1) == data[800:]
    assert stream.read(10) == b""
    with pytest.raises(io.UnsupportedOperation, match="only the last chunk"):
        stream.seek(100)
    assert digest.length == 900  # the head was hashed by whoever read it


# --- reading ---------------------------------------------------------------------


def downloads(requests: list[Request]) -> list[Request]:
    return [r for r in requests if r.method == "GET" and r.query.get("alt") == "media"]


def test_iter_range_asks_gcs_for_the_range_only(storage: Any) -> None:
    data = os.urandom(2 * MiB)
    stored = storage.get(storage.create(data))
    requests = listen(storage)
    assert b"".join(stored.iter_range(1000, 3000)) == data[1000:3000]
    assert downloads(requests)[0].headers["range"] == "bytes=1000-2999"
    assert downloads(requests)[0].answer["Content-Length"] == "2000"
    assert stored.tell() == 0  # the read position is not moved
    assert list(stored.iter_range(5, 5)) == []
    assert b"".join(stored.iter_range(0, 1)) == data[:1]  # "bytes=0-0", not "bytes=0-"
    assert downloads(requests)[-1].headers["range"] == "bytes=0-0"
    assert b"".join(stored.iter_range(len(data) - 3, len(data) + 100)) == data[-3:]


def test_long_range_comes_in_growing_requests(storage: Any) -> None:
    data = os.urandom(20 * MiB)
    stored = storage.get(storage.create(data))
    requests = listen(storage)
    blocks = list(stored.iter_range(MiB, 20 * MiB, block_size=256 * 1024))
    assert b"".join(blocks) == data[MiB:]
    assert {len(b) for b in blocks[:-1]} == {256 * 1024}
    sizes = [int(r.answer["Content-Length"]) for r in downloads(requests)]
    assert sizes == [256 * 1024, 512 * 1024, MiB, 2 * MiB, *[4 * MiB] * 3, 3 * MiB + 256 * 1024]


def test_middleware_range_fetches_only_the_range(gcs_settings: dict[str, Any]) -> None:
    storage = DepotManager.configure("default", gcs_settings)
    data = os.urandom(2 * MiB)
    file_id = storage.create(data, filename="v.mp4")
    requests = listen(storage)
    app = TestApp(DepotManager.make_middleware(None))
    response = app.get(f"/depot/default/{file_id}", headers={"Range": "bytes=1000000-1000099"})
    assert response.status_int == 206
    assert response.body == data[1000000:1000100]
    assert sum(int(r.answer["Content-Length"]) for r in downloads(requests)) == 100


def test_reading_in_order_reads_ahead(storage: Any) -> None:
    data = os.urandom(3 * MiB)
    stored = storage.get(storage.create(data))
    requests = listen(storage)
    assert stored.read(10) == data[:10]
    assert stored.read(300 * 1024) == data[10 : 10 + 300 * 1024]
    stored.seek(2 * MiB)
    assert stored.read(5) == data[2 * MiB : 2 * MiB + 5]
    assert [r.headers["range"] for r in downloads(requests)] == [
        f"bytes=0-{256 * 1024 - 1}",
        f"bytes={256 * 1024}-{256 * 1024 + 512 * 1024 - 1}",
        f"bytes={2 * MiB}-{2 * MiB + 256 * 1024 - 1}",
    ]
    stored.seek(0)
    assert stored.read() == data
    stored.close()
    with pytest.raises(ValueError, match="closed file"):
        stored.read(1)


def test_reading_a_large_file_in_flat_memory(storage: Any) -> None:
    source = Generated(64 * MiB)
    stored = storage.get(storage.create(source))
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        for block in stored:
            digest.update(block)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "sha256:" + digest.hexdigest() == source.checksum
    # One request's bytes at a time, and little else.
    assert peak < gcs_module.READ_AHEAD + 2 * MiB, f"{peak / MiB:.1f} MiB held to read 64 MiB"


def test_reads_are_of_the_generation_opened(storage: Any) -> None:
    file_id = storage.create(b"first version")
    stored = storage.get(file_id)
    requests = listen(storage)
    stored.read()
    # GCS answers 412 once the file was replaced; the emulator does not check.
    assert downloads(requests)[0].query["ifGenerationMatch"] == str(stored.blob.generation)


def test_deleted_after_opening(storage: Any) -> None:
    stale = storage.get(storage.create(b"gone"))
    storage.delete(stale.file_id)
    with pytest.raises(StoredFileNotFoundError, match=stale.file_id) as raised:
        stale.read()
    from google.api_core.exceptions import NotFound

    # filedepot let google-cloud-storage's NotFound through here: apps may catch it
    assert isinstance(raised.value, NotFound) and raised.value.code == 404


# --- signed URLs -------------------------------------------------------------------


@pytest.fixture
def signing_settings(
    gcs_settings: dict[str, Any], gcs_service_account: dict[str, str]
) -> dict[str, Any]:
    """``gcs_settings`` with a service account key, which signs URLs."""
    return {**gcs_settings, "depot.credentials": gcs_service_account}


def test_signed_url(signing_settings: dict[str, Any], gcs_emulator: str) -> None:
    storage = GCSStorage(**settings_to_kwargs(signing_settings))
    name = "r\u00e9sum\u00e9.pdf"
    stored = storage.get(storage.create(b"%PDF-1.4", filename=name))
    url = stored.signed_url(expires_in=60)
    assert url.startswith(f"{gcs_emulator}/{storage.bucket.name}/{stored.file_id}?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Expires"] == "60"
    assert query["X-Goog-Credential"].startswith("depot-test@depot-test.iam.gserviceaccount.com/")
    assert re.fullmatch(r"[0-9a-f]{512}", query["X-Goog-Signature"])
    assert query["response-content-type"] == "application/pdf"
    assert query["response-content-disposition"] == make_content_disposition("inline", name)
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"%PDF-1.4"
        assert response.headers["Content-Disposition"] == make_content_disposition("inline", name)

    html = storage.get(storage.create(b"<p>", filename="a.html"))
    assert "attachment%3B" in html.signed_url()
    assert "inline%3B" in html.signed_url(disposition="inline")
    with pytest.raises(ValueError, match="disposition must be 'inline' or 'attachment'"):
        html.signed_url(disposition="download")
    assert stored.public_url is None  # private


def test_presign_ttl_makes_the_middleware_redirect(signing_settings: dict[str, Any]) -> None:
    storage = DepotManager.configure("default", {**signing_settings, "depot.presign_ttl": "300"})
    file_id = storage.create(b"private bytes", filename="p.txt")
    app = TestApp(DepotManager.make_middleware(None))
    response = app.get(f"/depot/default/{file_id}", status=302)
    assert response.headers["Cache-Control"] == "no-store"
    location = response.headers["Location"]
    assert "X-Goog-Expires=300" in location
    with urllib.request.urlopen(location) as fetched:
        assert fetched.read() == b"private bytes"


def test_signing_needs_credentials_that_can_sign(
    storage: Any, gcs_settings: dict[str, Any], bucket: str
) -> None:
    stored = storage.get(storage.create(b"x"))
    with pytest.raises(ConfigurationError) as raised:
        stored.signed_url()
    assert str(raised.value).startswith(
        "Signed URLs (presign_ttl, signed_url()) need credentials that can sign, but the "
        f"GCS bucket {bucket!r} at http://127.0.0.1:"
    )
    assert str(raised.value).endswith(
        "is used with AnonymousCredentials. Set depot.credentials to a service account key."
    )
    with pytest.raises(ConfigurationError, match="need credentials that can sign"):
        DepotManager.configure("signed", {**gcs_settings, "depot.presign_ttl": 60})


# --- settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"policy": "public"}, "policy must be 'public-read' or 'private', not 'public'"),
        ({"presign_ttl": "soon"}, "presign_ttl must be a number of seconds from 1 to 604800"),
        ({"presign_ttl": 8 * 24 * 3600}, "presign_ttl must be a number of seconds"),
        ({"bucket": None}, "bucket is needed: set it to the name of a GCS bucket."),
        ({"bucket": "Not A Bucket!"}, "bucket 'Not A Bucket!' is not a valid name"),
        ({"credentials": "/nowhere/key.json"}, "credentials '/nowhere/key.json' cannot be read"),
        ({"credentials": {"type": "service_account"}}, "credentials is not a service account key"),
        ({"credentials": '{"private_key": "x"'}, "credentials is not a service account key"),
        ({"credentials": 42}, "credentials is not a service account key (TypeError: not a int)"),
    ],
)
def test_bad_settings(gcs_settings: dict[str, Any], changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        GCSStorage(**settings_to_kwargs(gcs_settings, **changes))


def test_credentials_as_a_file_or_json_text(
    gcs_settings: dict[str, Any], gcs_service_account: dict[str, str], tmp_path: Path
) -> None:
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(gcs_service_account))
    for credentials in (str(key_file), key_file.read_text()):
        storage = GCSStorage(**settings_to_kwargs(gcs_settings, credentials=credentials))
        stored = storage.get(storage.create(b"x"))
        assert "X-Goog-Signature=" in stored.signed_url()
    # the key's project is the default project, as in filedepot
    storage = GCSStorage(
        **settings_to_kwargs(gcs_settings, credentials=str(key_file), project_id=None)
    )
    assert storage.client.project == "depot-test"


def test_settings_through_the_manager(gcs_settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=r"depot\.acl is not a setting of GCSStorage"):
        DepotManager.configure("bad", {**gcs_settings, "depot.acl": "x"})


def test_missing_google_cloud_storage_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['google.cloud.storage'] = None\n"
        "try:\n"
        "    import depot.io.gcs\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == (
        "ImportError depot.io.gcs needs the 'google-cloud-storage' package; "
        "install the 'gcs' extra: pip install 'depot-storage[gcs]'."
    )


def test_no_credentials_anywhere(tmp_path: Path) -> None:
    code = (
        "from depot.io.gcs import GCSStorage\n"
        "from depot.exceptions import ConfigurationError\n"
        "try:\n"
        "    GCSStorage(bucket='b')\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "NO_GCE_CHECK": "true",  # no metadata server either
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    assert out.startswith("no Google credentials were found (")
    assert out.endswith(
        "Set credentials to a service account key file, or GOOGLE_APPLICATION_CREDENTIALS, "
        "or run 'gcloud auth application-default login'."
    )


# --- errors -----------------------------------------------------------------------


@pytest.mark.parametrize("retry", ["none", "short"])
def test_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch, retry: str) -> None:
    from google.cloud.storage.retry import DEFAULT_RETRY

    # "short": retries give up after a second; the message is about the last attempt.
    policy = None if retry == "none" else DEFAULT_RETRY.with_timeout(1.0).with_delay(0.1)
    monkeypatch.setattr(gcs_module, "RETRY", policy)
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    with pytest.raises(BackendUnavailableError) as raised:
        GCSStorage(bucket="nowhere")
    message = str(raised.value)
    assert message.startswith(
        f"Cannot reach the GCS bucket 'nowhere' at {endpoint} while opening the bucket: "
    )
    assert message.endswith(
        "Check that the server is up and reachable (and STORAGE_EMULATOR_HOST, if it is set)."
    )
    assert "\n" not in message
    assert isinstance(raised.value, OSError)
    # also what filedepot let through: requests' ConnectionError, or the RetryError
    import requests
    from google.api_core.exceptions import RetryError

    expected = requests.ConnectionError if retry == "none" else RetryError
    assert isinstance(raised.value, expected)


def test_hung_endpoint_fails_configure_within_the_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that accepts connections and never answers: configure() gives up
    # after about retry_timeout + read_timeout, naming the endpoint.
    from tests.backends.silent import SilentServer

    with SilentServer() as server:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
        settings = {
            "depot.backend": "gcs",
            "depot.bucket": "hung",
            "depot.project_id": "depot-test",
            "depot.read_timeout": "0.5",
            "depot.retry_timeout": "2",
        }
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as raised:
            DepotManager.configure("hung", settings)
        waited = time.monotonic() - started
        assert server.connections >= 1
    assert 1.0 <= waited < 6, waited
    message = str(raised.value)
    assert message.startswith(f"The GCS bucket 'hung' at {server.url} did not answer in time ")
    assert "depot.read_timeout" in message and "depot.retry_timeout" in message


def test_timeouts_default_short(gcs_settings: dict[str, Any]) -> None:
    storage = GCSStorage(**settings_to_kwargs(gcs_settings))
    assert storage._request["timeout"] == (5.0, 15.0)
    assert storage._request["retry"]._timeout == 30.0  # google-cloud-storage's: 120
    storage = GCSStorage(**settings_to_kwargs(gcs_settings, retry_timeout="3", read_timeout="7"))
    assert storage._request["timeout"] == (5.0, 7.0)
    assert storage._request["retry"]._timeout == 3.0
    with pytest.raises(ConfigurationError, match="read_timeout must be a number of seconds"):
        GCSStorage(**settings_to_kwargs(gcs_settings, read_timeout="never"))


def test_bucket_check_is_filedepots_get_bucket(gcs_settings: dict[str, Any]) -> None:
    # Apps' tests mock Client.get_bucket, the call filedepot made to find the bucket.
    from unittest import mock

    original = gcs_module.StorageClient.get_bucket
    with mock.patch.object(
        gcs_module.StorageClient, "get_bucket", autospec=True, side_effect=original
    ) as get_bucket:
        storage = GCSStorage(**settings_to_kwargs(gcs_settings))
    [call] = get_bucket.call_args_list
    assert storage.bucket.name == gcs_settings["depot.bucket"]
    assert getattr(call.args[1], "name", call.args[1]) == gcs_settings["depot.bucket"]


def test_bucket_deleted_after_configuration(
    storage: Any, gcs_client: Any, gcs_emulator: str, bucket: str
) -> None:
    remove_bucket(gcs_client, bucket)
    with pytest.raises(BackendUnavailableError) as raised:
        storage.create(b"x")
    assert str(raised.value).startswith(
        f"The GCS bucket {bucket!r} at {gcs_emulator} does not exist (found while uploading file "
    )
    assert str(raised.value).endswith("Create it, or check depot.bucket and depot.project_id.")
    with pytest.raises(BackendUnavailableError, match="does not exist .found while listing"):
        storage.list()


def test_refused_credentials(
    gcs_settings: dict[str, Any], gcs_service_account: dict[str, str], gcs_token_server: str
) -> None:
    revoked = {**gcs_service_account, "token_uri": f"{gcs_token_server}/refuse"}
    with pytest.raises(BackendUnavailableError) as raised:
        GCSStorage(**settings_to_kwargs(gcs_settings, credentials=revoked))
    message = str(raised.value)
    assert message.startswith("GCS refused the credentials (invalid_grant: Invalid JWT) while")
    assert f"while opening the bucket in the GCS bucket {gcs_settings['depot.bucket']!r}" in message
    assert "Check depot.credentials" in message and "\n" not in message
    from google.auth.exceptions import RefreshError

    assert isinstance(raised.value, RefreshError)  # what filedepot let through


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            "Unauthorized",
            "GCS refused the credentials (401 Bad) while reading file x in "
            "the GCS bucket 'b' at https://storage.googleapis.com. Check depot.credentials",
        ),
        (
            "Forbidden",
            "GCS denied access (403 Bad) while reading file x in the GCS "
            "bucket 'b' at https://storage.googleapis.com. Check that the credentials may "
            "read, write, delete and list its objects (the role roles/storage.objectAdmin "
            "on the bucket).",
        ),
        (
            "ServiceUnavailable",
            "GCS failed (503 Bad) while reading file x in the GCS bucket 'b' "
            "at https://storage.googleapis.com; try again later.",
        ),
        (
            "BadRequest",
            "GCS refused (400 Bad) reading file x in the GCS bucket 'b' at "
            "https://storage.googleapis.com.",
        ),
    ],
)
def test_refusal_messages(error: str, expected: str) -> None:
    from google.api_core import exceptions

    from depot.io._gcserrors import gcs_errors

    where = "GCS bucket 'b' at https://storage.googleapis.com"
    with pytest.raises(BackendUnavailableError) as raised, gcs_errors(where, "reading file x"):
        raise getattr(exceptions, error)("GET https://storage.googleapis.com/x: Bad")
    assert str(raised.value).startswith(expected)
    # still the GoogleAPICallError filedepot let through, its attributes kept
    assert isinstance(raised.value, getattr(exceptions, error))
    assert raised.value.code == getattr(exceptions, error).code
    assert raised.value.message == "GET https://storage.googleapis.com/x: Bad"


# --- the server going away --------------------------------------------------------


@pytest.fixture
def own_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GCSEmulator]:
    with GCSEmulator(tmp_path) as server:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
        yield server


@pytest.mark.usefixtures("no_retries")
def test_server_stopped_during_an_upload(own_emulator: GCSEmulator) -> None:
    server = own_emulator
    storage = GCSStorage(bucket="faults", policy="private", project_id="p")
    kept = storage.create(b"stored before")

    class StopsTheServer(Generated):
        def read(self, n: int = -1) -> bytes:
            # Each chunk is one read, made once the one before was sent: at
            # 16 MiB, two chunks of 8 MiB are in.
            if self.sent >= 16 * MiB:
                server.stop()
            return super().read(n)

    requests = listen(storage)
    with pytest.raises(BackendUnavailableError) as raised:
        storage.create(StopsTheServer(48 * MiB))
    assert [r.method for r in requests if r.status == 308] == ["PUT", "PUT"], "cut mid-upload"
    message = str(raised.value)
    assert message.startswith(
        f"Cannot reach the GCS bucket 'faults' at {server.url} while uploading file "
    )
    assert "\n" not in message and ".." not in message

    # While it is down: a clear OSError, and a 503 from the middleware.
    with pytest.raises(BackendUnavailableError, match="Cannot reach the GCS bucket 'faults'"):
        storage.get(kept)
    DepotManager._depots["down"] = storage
    TestApp(DepotMiddleware(None)).get(f"/depot/down/{kept}", status=503)

    # The emulator restarts empty; GCS would still hold the bucket: make it again.
    server.start()
    storage.client.create_bucket("faults")
    assert storage.list() == []
    # The same storage object works again.
    file_id = storage.create(Generated(9 * MiB))
    assert storage.get(file_id).content_length == 9 * MiB
    assert storage.list() == [file_id]


def test_last_modified_is_recent(storage: Any) -> None:
    before = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    stored = storage.get(storage.create(Generated(9 * MiB)))
    assert before <= stored.last_modified <= before + timedelta(seconds=10)


# --- replace() is conditional on the generation it found ------------------------------


@pytest.fixture
def racing(gcs_emulator: str, gcs_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Two storages of one bucket, through a proxy that enforces ifGenerationMatch as GCS
    does (the emulator does not: ``tests/backends/gcs_preconditions.py``)."""
    with precondition_proxy(gcs_emulator) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        kwargs = settings_to_kwargs(gcs_settings)
        one, other = GCSStorage(**kwargs), GCSStorage(**kwargs)
        yield proxy, one, other
        one.client._http.close()  # their connections to the proxy, before it goes
        other.client._http.close()


def after_the_lookup(storage: Any, action: Any) -> None:
    """Run ``action`` once, right after ``storage`` next reads an object's metadata: between
    the lookup of a replace() and its upload."""

    def hook(response: Any, *args: Any, **kwargs: Any) -> None:
        request = response.request
        if request.method == "GET" and "alt=media" not in request.url:
            storage.client._http.hooks["response"].remove(hook)
            action()

    storage.client._http.hooks["response"].append(hook)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda: b"mine", id="bytes"),
        pytest.param(lambda: OneWayStream(b"mine"), id="stream"),
        pytest.param(lambda: Generated(9 * MiB), id="resumable"),
    ],
)
def test_a_replace_racing_a_delete_does_not_bring_the_file_back(racing: Any, content: Any) -> None:
    """Before, the replace wrote unconditionally and the deleted file came back."""
    proxy, one, other = racing
    file_id = one.create(b"first")
    after_the_lookup(one, lambda: other.delete(file_id))
    with pytest.raises(StoredFileNotFoundError):
        one.replace(file_id, content())
    assert proxy.refused == 1
    assert not other.exists(file_id)
    assert one.list() == []


def test_a_replace_racing_a_replace_writes_over_it(racing: Any) -> None:
    """The last writer wins, as S3's replace(): it writes again over the version found."""
    proxy, one, other = racing
    file_id = one.create(b"first", filename="a.txt")
    after_the_lookup(one, lambda: other.replace(file_id, b"theirs", filename="b.txt"))
    requests = listen(one)
    one.replace(file_id, io.BytesIO(b"mine"))  # a stream that seeks: sent again
    assert proxy.refused == 1
    uploads = [r for r in requests if r.method == "POST"]
    assert [r.status for r in uploads] == [412, 200]
    theirs = int(uploads[0].query["ifGenerationMatch"])
    assert int(uploads[1].query["ifGenerationMatch"]) != theirs
    stored = other.get(file_id)
    assert stored.read() == b"mine"
    assert stored.filename == "a.txt"  # the name it found, as replace() keeps it
    assert stored.checksum == sha256(b"mine")


def test_a_stream_that_cannot_be_sent_again_yields_to_the_other_replace(racing: Any) -> None:
    """Its bytes are gone: it counts as the earlier replace, overwritten by the other."""
    proxy, one, other = racing
    file_id = one.create(b"first")
    after_the_lookup(one, lambda: other.replace(file_id, b"theirs"))
    assert one.replace(file_id, OneWayStream(b"mine")) == file_id
    assert proxy.refused == 1
    assert other.get(file_id).read() == b"theirs"


def test_a_replace_of_a_file_rewritten_each_time_gives_up(racing: Any) -> None:
    proxy, one, other = racing
    file_id = one.create(b"first")

    def rewrite(response: Any, *args: Any, **kwargs: Any) -> None:
        if response.request.method == "GET" and "alt=media" not in response.request.url:
            other.replace(file_id, b"theirs")

    one.client._http.hooks["response"].append(rewrite)
    with pytest.raises(BackendUnavailableError, match="replaced by other writers each of the 8"):
        one.replace(file_id, b"mine")
    assert proxy.refused == 8
    assert other.get(file_id).read() == b"theirs"


def test_racing_replaces_and_a_delete_end_with_no_file(
    racing: Any, gcs_settings: dict[str, Any]
) -> None:
    """Two writers replace the file over and over while a third deletes it: from the
    delete on, every replace fails as not found, and none brings the file back."""
    proxy, one, other = racing
    file_id = one.create(b"first")
    errors: list[BaseException] = []
    stopped: list[int] = []

    def writer(storage: Any, n: int) -> None:
        for r in range(200):
            try:
                storage.replace(file_id, f"writer {n} round {r}".encode())
            except StoredFileNotFoundError:
                stopped.append(n)
                return
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=writer, args=(s, n)) for n, s in enumerate((one, other))]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    deleter = GCSStorage(**settings_to_kwargs(gcs_settings))  # through the proxy too
    deleter.delete(file_id)
    for thread in threads:
        thread.join(60)
    deleter.client._http.close()
    assert errors == []
    assert sorted(stopped) == [0, 1]
    assert not one.exists(file_id)
    assert one.list() == []
