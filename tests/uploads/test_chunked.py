"""The chunked upload API, on the backends that keep uploads (memory, local, GridFS, S3)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from depot.exceptions import (
    ChecksumMismatch,
    ConfigurationError,
    ContentTypeNotAllowed,
    ContentTypeNotAllowedError,
    FileTooLargeError,
    InvalidChunk,
    SizeMismatch,
    UploadNotFound,
    UploadTooLarge,
    ValidationError,
)
from depot.io.interfaces import FileStorage
from depot.io.local import LocalFileStorage
from depot.manager import DepotManager
from depot.uploads.chunked import ChunkedUploadsMixin
from depot.validators import MaxSize
from tests.streams import OneWayStream

STAGING_BACKENDS = [
    "memory",
    "local",
    "gridfs",
    "s3",
    "gcs",
    "sql_sqlite",
    "sql_postgresql",
    "sql_mariadb",
]

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
    b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x03\x00\x08\xfc\x02\xfe\xa7"
    b"\x9a\xa0\xa0\x00\x00\x00\x00IEND\xaeB`\x82"
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(params=STAGING_BACKENDS)
def settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    found: dict[str, Any] = request.getfixturevalue(f"{request.param}_settings")
    return found


@pytest.fixture
def depot(settings: dict[str, Any]) -> FileStorage:
    return DepotManager.from_config(settings)


def test_chunks_in_any_order_then_finalize(depot: FileStorage) -> None:
    data = os.urandom(300_000)
    upload_id = depot.reserve(len(data), sha256(data), "application/pdf", "report.pdf", {"k": "v"})
    status = depot.write_chunk(upload_id, 200_000, data[200_000:])
    assert (status.offset, status.missing, status.received) == (0, [(0, 200_000)], 100_000)
    depot.write_chunk(upload_id, 0, OneWayStream(data[:100_000]))  # a request body
    status = depot.status(upload_id)
    assert (status.offset, status.missing, status.complete) == (
        100_000,
        [(100_000, 200_000)],
        False,
    )
    assert (status.filename, status.content_type, status.metadata) == (
        "report.pdf",
        "application/pdf",
        {"k": "v"},
    )
    depot.write_chunk(upload_id, 100_000, data[100_000:200_000])
    assert depot.status(upload_id).complete
    file_id = depot.finalize(upload_id)
    stored = depot.get(file_id)
    assert stored.read() == data
    assert (stored.filename, stored.content_type, stored.checksum) == (
        "report.pdf",
        "application/pdf",
        sha256(data),
    )
    # A client that lost the answer finalizes again: the same file, stored once.
    assert depot.finalize(upload_id) == file_id
    assert depot.status(upload_id).file_id == file_id
    assert depot.list().count(file_id) == 1
    with pytest.raises(UploadNotFound, match="is finished"):
        depot.write_chunk(upload_id, 0, data[:10])


def test_md5_checksums_and_empty_files(depot: FileStorage) -> None:
    upload_id = depot.reserve(0, "md5:" + hashlib.md5(b"").hexdigest(), filename="empty.txt")
    assert depot.status(upload_id).complete
    assert depot.get(depot.finalize(upload_id)).read() == b""
    upload_id = depot.reserve(3, "MD5:" + hashlib.md5(b"abc").hexdigest().upper())
    depot.write_chunk(upload_id, 0, b"abc")
    assert depot.get(depot.finalize(upload_id)).read() == b"abc"


def test_a_repeated_chunk_is_accepted_a_different_one_refused(depot: FileStorage) -> None:
    data = b"0123456789" * 10
    upload_id = depot.reserve(100, sha256(data))
    depot.write_chunk(upload_id, 0, data[:50])
    assert depot.write_chunk(upload_id, 0, data[:50]).received == 50  # the same again
    with pytest.raises(InvalidChunk, match="differ from the chunk received there before"):
        depot.write_chunk(upload_id, 0, b"x" * 50)
    with pytest.raises(InvalidChunk, match="differ"):
        depot.write_chunk(upload_id, 0, data[:40])  # a shorter one is another chunk
    with pytest.raises(InvalidChunk, match="overlaps bytes received before"):
        depot.write_chunk(upload_id, 25, data[25:75])
    with pytest.raises(InvalidChunk, match="overlap"):
        depot.finalize(upload_id)  # what the refused chunk left is still refused


def test_chunks_outside_the_reserved_size_are_refused(depot: FileStorage) -> None:
    upload_id = depot.reserve(10, sha256(b"0123456789"))
    with pytest.raises(InvalidChunk, match="goes past the upload's size"):
        depot.write_chunk(upload_id, 5, b"6789ab")
    with pytest.raises(InvalidChunk, match="past the upload's size"):
        depot.write_chunk(upload_id, 0, OneWayStream(b"z" * 5_000_000))
    for offset in (-1, 11, 2**70, True, "0", None, 1.5):
        with pytest.raises(InvalidChunk, match="starts between 0 and 10"):
            depot.write_chunk(upload_id, offset, b"x")  # type: ignore[arg-type]
    assert depot.status(upload_id).received == 0


def test_finalize_checks_size_and_checksum_first(depot: FileStorage) -> None:
    before = set(depot.list())
    upload_id = depot.reserve(20, sha256(b"a" * 20))
    depot.write_chunk(upload_id, 0, b"a" * 10)
    with pytest.raises(SizeMismatch, match="10 of its 20 bytes are missing, first 10-19"):
        depot.finalize(upload_id)
    depot.write_chunk(upload_id, 10, b"b" * 10)
    with pytest.raises(ChecksumMismatch, match="a chunk was sent wrong"):
        depot.finalize(upload_id)
    assert set(depot.list()) == before
    # A failed finalize leaves the upload to be fixed or aborted.
    assert depot.status(upload_id).complete
    depot.abort(upload_id)
    with pytest.raises(UploadNotFound, match="Reserve a new one"):
        depot.status(upload_id)
    depot.abort(upload_id)  # gone already: nothing happens


def test_the_depot_policy_applies_at_reserve_and_at_finalize(settings: dict[str, Any]) -> None:
    depot = DepotManager.from_config(
        {**settings, "depot.max_size": 1000, "depot.allowed_types": "image/png"}
    )
    with pytest.raises(UploadTooLarge, match="at most 1 KB") as raised:
        depot.reserve(1001, sha256(b""), "image/png", "a.png")
    assert isinstance(raised.value, FileTooLargeError) and raised.value.max_size == 1000
    with pytest.raises(ContentTypeNotAllowed) as refused:
        depot.reserve(10, sha256(b""), "text/html", "a.html")
    assert isinstance(refused.value, ContentTypeNotAllowedError)
    # Declared a PNG, the bytes are a page: the sniffed type is refused at the end.
    page = b"<!DOCTYPE html><script>alert(1)</script>"
    upload_id = depot.reserve(len(page), sha256(page), "image/png", "cat.png")
    depot.write_chunk(upload_id, 0, page)
    before = set(depot.list())
    with pytest.raises(ContentTypeNotAllowed):
        depot.finalize(upload_id)
    assert set(depot.list()) == before
    upload_id = depot.reserve(len(PNG), sha256(PNG), "image/png", "dot.png")
    depot.write_chunk(upload_id, 0, PNG)
    assert depot.get(depot.finalize(upload_id)).content_type == "image/png"


def test_a_fields_validators_run_at_finalize(depot: FileStorage) -> None:
    upload_id = depot.reserve(100, sha256(b"x" * 100), filename="x.bin")
    depot.write_chunk(upload_id, 0, b"x" * 100)
    with pytest.raises(UploadTooLarge, match="at most 50 bytes"):
        depot.finalize(upload_id, validators=[MaxSize(50)])
    assert depot.get(depot.finalize(upload_id, validators=[MaxSize(100)])).read() == b"x" * 100


@pytest.mark.parametrize(
    "bad_id",
    [
        "../../etc/passwd",
        "",
        None,
        42,
        "A" * 10_000,
        "0F8FAD5B-D9CB-469F-A165-70867728950E",
        "\x00",
    ],
)
def test_odd_upload_ids_are_not_found(depot: FileStorage, bad_id: Any) -> None:
    for call in (
        lambda: depot.status(bad_id),
        lambda: depot.write_chunk(bad_id, 0, b"x"),
        lambda: depot.finalize(bad_id),
        lambda: depot.abort(bad_id),
    ):
        with pytest.raises(UploadNotFound) as raised:
            call()
        assert len(str(raised.value)) < 200


@pytest.mark.parametrize(
    ("size", "checksum", "message"),
    [
        (-1, sha256(b""), "number of bytes"),
        (True, sha256(b""), "number of bytes"),
        (1, "sha1:" + "0" * 40, "Cannot check an upload"),
        (1, "sha256:xyz", "Cannot check an upload"),
        (1, 42, "Cannot check an upload"),
    ],
)
def test_bad_reservations_say_what_to_give(
    depot: FileStorage, size: Any, checksum: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        depot.reserve(size, checksum)


def test_without_a_checksum_only_the_size_is_checked(depot: FileStorage) -> None:
    upload_id = depot.reserve(4, None, filename="a.txt")
    depot.write_chunk(upload_id, 0, b"abcd")
    assert depot.get(depot.finalize(upload_id)).checksum == sha256(b"abcd")


def test_an_expired_upload_is_gone_before_expire_uploads_runs(settings: dict[str, Any]) -> None:
    depot = DepotManager.from_config({**settings, "depot.upload_expiry": 0.5})
    upload_id = depot.reserve(4, None)
    depot.write_chunk(upload_id, 0, b"ab")
    time.sleep(1.1)
    with pytest.raises(UploadNotFound):
        depot.write_chunk(upload_id, 2, b"cd")
    assert depot.expire_uploads() == []  # removed already


def test_idle_uploads_expire(settings: dict[str, Any]) -> None:
    depot = DepotManager.from_config({**settings, "depot.upload_expiry": "3600"})
    assert depot.upload_expiry == 3600
    old = depot.reserve(5, sha256(b"hello"))
    depot.write_chunk(old, 0, b"hello")
    status = depot.status(old)
    assert time.time() + 3590 < status.expires_at <= time.time() + 3600
    assert depot.expire_uploads() == []
    assert depot.expire_uploads(idle=-1) == [old]
    with pytest.raises(UploadNotFound):
        depot.status(old)
    with pytest.raises(ConfigurationError, match="number of seconds above 0"):
        DepotManager.from_config({**settings, "depot.upload_expiry": "soon"})


def test_backends_without_staging_say_so() -> None:
    # The mixin alone: what a backend that keeps no uploads inherits.
    with pytest.raises(NotImplementedError, match="does not support chunked uploads"):
        ChunkedUploadsMixin().reserve(1, sha256(b"x"))


def test_errors_are_validation_errors_a_client_can_be_shown() -> None:
    for error in (InvalidChunk, SizeMismatch, ChecksumMismatch, ContentTypeNotAllowed):
        assert issubclass(error, ValidationError)
    assert issubclass(UploadNotFound, LookupError)


# Several workers: state in the storage, not the process.


def _write_chunk_in_child(path: str, upload_id: str, offset: int, data: bytes) -> None:
    LocalFileStorage(path).write_chunk(upload_id, offset, data)


def test_workers_share_an_upload_through_the_disk(tmp_path: Path) -> None:
    path = str(tmp_path / "files")
    data = os.urandom(8 * 65536)
    first = LocalFileStorage(path)
    upload_id = first.reserve(len(data), sha256(data), filename="shared.bin")
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_write_chunk_in_child,
            args=(path, upload_id, n * 65536, data[n * 65536 : (n + 1) * 65536]),
        )
        for n in range(8)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    second = LocalFileStorage(path)  # another worker, with nothing in memory
    assert second.status(upload_id).complete
    assert second.get(second.finalize(upload_id)).read() == data
    assert first.finalize(upload_id) == second.finalize(upload_id)


def _write_forever(path: str, upload_id: str, ready: Any) -> None:
    class Stalling:
        """A request body that sends 1 MiB, then hangs until the worker is killed."""

        sent = 0

        def read(self, n: int = -1) -> bytes:
            if self.sent >= 1 << 20:
                ready.set()
                time.sleep(3600)
            self.sent += 65536
            return b"b" * 65536

    LocalFileStorage(path).write_chunk(upload_id, 100, Stalling())  # type: ignore[arg-type]


def test_a_killed_writer_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = str(tmp_path / "files")
    data = b"a" * 100 + b"b" * 50_000_000
    storage = LocalFileStorage(path)
    upload_id = storage.reserve(len(data), sha256(data))
    storage.write_chunk(upload_id, 0, data[:100])  # acknowledged
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    worker = context.Process(target=_write_forever, args=(path, upload_id, ready))
    worker.start()
    assert ready.wait(60)
    os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
    worker.join(10)
    status = LocalFileStorage(path).status(upload_id)
    assert (status.received, status.missing) == (100, [(100, len(data))])
    # The chunk being written when it died never appears; the upload goes on.
    storage.write_chunk(upload_id, 100, data[100:])
    assert storage.get(storage.finalize(upload_id)).checksum == sha256(data)


def test_finalize_streams_in_flat_memory(tmp_path: Path) -> None:
    storage = LocalFileStorage(str(tmp_path / "files"), fsync=False)
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    for _ in range(64):
        digest.update(block)
    upload_id = storage.reserve(64 << 20, "sha256:" + digest.hexdigest())
    for n in range(8):
        storage.write_chunk(upload_id, n * (8 << 20), block * 8)
    tracemalloc.start()
    try:
        file_id = storage.finalize(upload_id)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert storage.get(file_id).content_length == 64 << 20
    assert peak < 4 << 20, f"finalize of 64 MiB peaked at {peak / 2**20:.1f} MiB"


def _finalize_then_die(path: str, upload_id: str) -> None:
    from depot.uploads._local import LocalStaging

    def die(*args: Any) -> None:
        os._exit(9)  # killed after the file was stored, before the upload knew

    LocalStaging.finish = die  # type: ignore[method-assign]
    LocalFileStorage(path).finalize(upload_id)


def test_a_killed_finalize_leaves_no_orphan(tmp_path: Path) -> None:
    path = str(tmp_path / "files")
    storage = LocalFileStorage(path)
    upload_id = storage.reserve(5, sha256(b"hello"), filename="h.txt")
    storage.write_chunk(upload_id, 0, b"hello")
    worker = multiprocessing.get_context("spawn").Process(
        target=_finalize_then_die, args=(path, upload_id)
    )
    worker.start()
    worker.join(60)
    assert worker.exitcode == 9
    (stored,) = storage.list()  # the file it stored, whole
    assert storage.finalize(upload_id) == stored  # the retry finishes with it
    assert storage.list() == [stored]
    assert storage.get(stored).read() == b"hello"


def test_an_empty_chunk_takes_no_offset(depot: FileStorage) -> None:
    upload_id = depot.reserve(3, sha256(b"abc"))
    assert depot.write_chunk(upload_id, 0, b"").received == 0
    assert depot.write_chunk(upload_id, 0, OneWayStream(b"")).missing == [(0, 3)]
    depot.write_chunk(upload_id, 0, b"abc")
    assert depot.get(depot.finalize(upload_id)).read() == b"abc"


def test_the_claim_of_a_finalize_that_died_is_taken_over_after_the_timeout(
    depot: FileStorage, patched: pytest.MonkeyPatch
) -> None:
    """A finalize killed before storing the file held its claim until the upload expired,
    and expiry then removed the acknowledged bytes."""
    from depot.uploads.staging import Staging

    data = b"hello, world"
    upload_id = depot.reserve(len(data), sha256(data), filename="h.txt")
    depot.write_chunk(upload_id, 0, data)
    staging = depot._staging()  # type: ignore[attr-defined]
    dead = depot._new_file_id()  # type: ignore[attr-defined]
    assert staging.claim(upload_id, dead)  # what the killed finalize left
    with pytest.raises(UploadNotFound, match="being finalized by another request"):
        depot.finalize(upload_id)  # it might still be storing: left alone

    patched.setattr(Staging, "claim_timeout", -1.0)  # now it counts as long dead
    file_id = depot.finalize(upload_id)
    assert depot.get(file_id).read() == data
    if type(staging).take_over is not Staging.take_over:
        assert file_id == dead  # the id the dead one would have stored under
    assert depot.finalize(upload_id) == file_id
    assert depot.list() == [file_id]


@pytest.mark.parametrize("settings", ["memory", "local", "gridfs", "sql_sqlite"], indirect=True)
def test_one_taker_of_a_dead_claim_wins_and_only_a_claim_of_its_id(
    depot: FileStorage, patched: pytest.MonkeyPatch
) -> None:
    from depot.uploads.staging import Staging

    upload_id = depot.reserve(1, sha256(b"x"))
    staging = depot._staging()  # type: ignore[attr-defined]
    dead, other = depot._new_file_id(), depot._new_file_id()  # type: ignore[attr-defined]
    assert staging.claim(upload_id, dead)
    patched.setattr(Staging, "claim_timeout", 0.2)
    assert not staging.take_over(upload_id, dead)  # young
    time.sleep(0.3)
    assert not staging.take_over(upload_id, other)  # not the claim it saw
    assert staging.take_over(upload_id, dead)
    assert not staging.take_over(upload_id, dead)  # taken just now: young again
    assert staging.claimed(upload_id) == dead
    staging.remove(upload_id)
    assert not staging.take_over(upload_id, dead)  # gone
