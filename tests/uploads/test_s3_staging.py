"""Chunked uploads on S3 (moto's server): parts of one multipart upload, state in the bucket.

The contract of chunked uploads runs on S3 in test_chunked, test_hostile and
test_tus; here is what S3 alone has: the part grid, pieces, the multipart
upload, and finalize's completion and copy.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import threading
import time
import tracemalloc
from typing import Any

import pytest

from depot.exceptions import (
    BackendUnavailableError,
    ChecksumMismatch,
    ContentTypeNotAllowed,
    InvalidChunk,
    UploadNotFound,
)
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from depot.uploads._s3 import PART_SIZE, S3Staging, part_size
from depot.validators import ContentTypes
from tests.streams import Generated, OneWayStream
from tests.uploads.test_chunked import PNG, sha256

P = PART_SIZE


@pytest.fixture
def depot(s3_settings: dict[str, Any]) -> Any:
    return DepotManager.from_config(s3_settings)


def keys(depot: Any, s3_client: Any, upload_id: str = "") -> list[str]:
    """The keys of the upload's state (or of every upload) in the bucket."""
    prefix = f"{depot._prefix}.depot-uploads/{upload_id}"
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=depot._bucket, Prefix=prefix)
    return sorted(item["Key"][len(prefix) :] for page in pages for item in page.get("Contents", ()))


def parts(depot: Any, s3_client: Any, upload_id: str) -> list[int]:
    multipart = depot._staging().record(upload_id)["multipart"]
    found = s3_client.list_parts(
        Bucket=depot._bucket, Key=depot._staging().staged_key(upload_id), UploadId=multipart
    )
    return [part["PartNumber"] for part in found.get("Parts", ())]


def multipart_uploads(depot: Any, s3_client: Any) -> list[Any]:
    return list(s3_client.list_multipart_uploads(Bucket=depot._bucket).get("Uploads", ()))


def test_the_grid_has_at_most_10000_parts() -> None:
    assert part_size(0) == part_size(P * 10_000) == P
    big = 5 * 1024**4  # S3's largest object
    assert part_size(big) % (1 << 20) == 0 and -(-big // part_size(big)) <= 10_000


def test_parts_are_made_as_chunks_arrive(depot: Any, s3_client: Any) -> None:
    data = os.urandom(2 * P + 1000)
    upload_id = depot.reserve(len(data), sha256(data), filename="a.bin")
    depot.write_chunk(upload_id, 0, data[:P])  # a whole part: copied into part 1 by S3
    assert parts(depot, s3_client, upload_id) == [1]
    depot.write_chunk(upload_id, 2 * P + 10, data[2 * P + 10 :])  # half of the last part
    depot.write_chunk(upload_id, P, OneWayStream(data[P : P + 100]))  # the start of part 2
    assert parts(depot, s3_client, upload_id) == [1]
    pieces = [k for k in keys(depot, s3_client, upload_id) if "/piece/" in k]
    assert len(pieces) == 2  # kept until their parts can be made
    # This chunk completes parts 2 and 3, each of two chunks: both are made now.
    depot.write_chunk(upload_id, P + 100, data[P + 100 : 2 * P + 10])
    assert parts(depot, s3_client, upload_id) == [1, 2, 3]
    assert not [k for k in keys(depot, s3_client, upload_id) if "/piece/" in k]
    file_id = depot.finalize(upload_id)
    assert depot.get(file_id).read() == data
    assert depot.get(file_id).checksum == sha256(data)
    # Nothing of the upload is left but its record (a repeated finalize reads it).
    assert multipart_uploads(depot, s3_client) == []
    assert depot.list() == [file_id]
    left = keys(depot, s3_client, upload_id)
    assert "" not in left and not [k for k in left if "/piece/" in k or "/chunk/" in k]
    assert depot.finalize(upload_id) == file_id
    depot.abort(upload_id)
    assert keys(depot, s3_client) == []


def test_finalize_makes_the_parts_a_dead_writer_left(depot: Any, s3_client: Any) -> None:
    data = os.urandom(P + 10)
    upload_id = depot.reserve(len(data), sha256(data))
    staging = depot._staging()
    real = S3Staging._make_parts
    S3Staging._make_parts = lambda *args: None  # the writer died after its commit
    try:
        depot.write_chunk(upload_id, 0, data[:5])
        depot.write_chunk(upload_id, 5, data[5:])
    finally:
        S3Staging._make_parts = real  # type: ignore[method-assign]
    assert parts(depot, s3_client, upload_id) == []
    assert staging.chunks(upload_id)[1].offset == 5
    assert depot.get(depot.finalize(upload_id)).read() == data


def test_two_writers_completing_one_part_at_once(depot: Any, s3_client: Any) -> None:
    """Both halves of a part are committed; both writers make the part at the same time.

    They send the same bytes; the one that finds a piece gone (the other made
    the part and deleted them) stops. The part is right either way.
    """
    from depot.exceptions import DepotError
    from depot.uploads._s3 import _Listed

    data = os.urandom(P + 10)
    upload_id = depot.reserve(len(data), sha256(data))
    staging = depot._staging()
    real = S3Staging._make_parts
    S3Staging._make_parts = lambda *args: None  # both commit before either makes parts
    try:
        depot.write_chunk(upload_id, 0, data[: P // 2])
        depot.write_chunk(upload_id, P // 2, data[P // 2 :])
    finally:
        S3Staging._make_parts = real  # type: ignore[method-assign]
    record = staging.record(upload_id)
    listed: list[_Listed] = staging._listed(upload_id)
    both = threading.Barrier(2, timeout=30)
    outcomes: list[str] = []

    def make(chunk: _Listed) -> None:
        both.wait()
        try:
            staging._make_parts(upload_id, record, chunk)
            outcomes.append("made")
        except DepotError:
            outcomes.append("found it made")

    threads = [threading.Thread(target=make, args=(chunk,)) for chunk in listed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(outcomes) == 2 and "made" in outcomes
    assert parts(depot, s3_client, upload_id) == [1, 2]
    assert depot.get(depot.finalize(upload_id)).read() == data


def test_finalize_racing_the_writer_that_makes_a_part(
    depot: Any, patched: pytest.MonkeyPatch
) -> None:
    """finalize() finds a part missing, and its writer makes it (and deletes its
    pieces) just then: finalize sees the part made, rather than failing (a 503)."""
    data = os.urandom(P + 10)
    upload_id = depot.reserve(len(data), sha256(data))
    patched.setattr(S3Staging, "_make_parts", lambda *args: None)
    depot.write_chunk(upload_id, 0, data[:100])
    depot.write_chunk(upload_id, 100, data[100:])
    real = S3Staging.make_part

    def made_just_before(self: Any, *args: Any) -> Any:
        real(self, *args)  # the writer, a moment earlier
        return real(self, *args)

    patched.setattr(S3Staging, "make_part", made_just_before)
    file_id = depot.finalize(upload_id)
    patched.undo()
    assert depot.get(file_id).read() == data


def test_concurrent_writers_of_one_upload(depot: Any, s3_settings: dict[str, Any]) -> None:
    """Eight workers (threads, each with a storage of its own, as processes have), chunks
    across part boundaries, each part made by whoever completes it."""
    size = P + 12345
    data = os.urandom(size)
    upload_id = depot.reserve(size, sha256(data))
    cuts = sorted({0, size, *(n * size // 8 + 77 for n in range(1, 8))})
    ready = threading.Barrier(len(cuts) - 1, timeout=30)
    errors: list[BaseException] = []

    def write(start: int, end: int) -> None:
        worker = DepotManager.from_config(s3_settings)
        ready.wait()
        try:
            worker.write_chunk(upload_id, start, data[start:end])
        except BaseException as exc:  # noqa: BLE001 (shown by the assert below)
            errors.append(exc)

    pairs = zip(cuts, cuts[1:], strict=False)
    threads = [threading.Thread(target=write, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert depot.status(upload_id).complete
    assert depot.get(depot.finalize(upload_id)).read() == data


@pytest.mark.parametrize("same", [True, False], ids=["same-bytes", "other-bytes"])
def test_two_writers_of_one_offset_at_once(depot: Any, s3_client: Any, same: bool) -> None:
    """Both read their whole chunk (a part and a half) before either commits.

    The same bytes (a client that repeats a chunk during its own upload) are
    accepted twice; other bytes are refused, and only the winner's reach the
    file, whichever of the two finishes sending first.
    """
    size = P + P // 2
    chunks = {b"a": b"a" * size, b"b": (b"a" if same else b"b") * size}
    upload_id = depot.reserve(size, None)
    both_read = threading.Barrier(2, timeout=30)
    outcomes: dict[bytes, str] = {}

    class Body:
        def __init__(self, data: bytes) -> None:
            self.data, self.sent = data, 0

        def read(self, n: int = -1) -> bytes:
            if self.sent >= len(self.data):
                both_read.wait()  # both have sent every piece, neither has committed
                return b""
            piece = self.data[self.sent : self.sent + (1 << 20)]
            self.sent += len(piece)
            return piece

    def write(name: bytes) -> None:
        try:
            depot.write_chunk(upload_id, 0, Body(chunks[name]))
            outcomes[name] = "stored"
        except InvalidChunk:
            outcomes[name] = "refused"

    threads = [threading.Thread(target=write, args=(name,)) for name in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if same:
        assert outcomes == {b"a": "stored", b"b": "stored"}
    else:
        assert sorted(outcomes.values()) == ["refused", "stored"]
    (winner,) = {chunks[n] for n, outcome in outcomes.items() if outcome == "stored"}
    assert depot.get(depot.finalize(upload_id)).read() == winner
    # The loser's pieces went at once; the winner's with their parts.
    assert not [k for k in keys(depot, s3_client, upload_id) if "/piece/" in k]


def test_a_chunk_past_the_size_leaves_no_piece(depot: Any, s3_client: Any) -> None:
    upload_id = depot.reserve(P + 10, None)
    with pytest.raises(InvalidChunk, match="past the upload's size"):
        depot.write_chunk(upload_id, 5, Generated(P + 6))
    assert [k for k in keys(depot, s3_client, upload_id) if "/piece/" in k] == []
    assert depot.status(upload_id).received == 0


def test_a_refused_upload_is_no_file_and_stays_to_be_checked_again(
    s3_settings: dict[str, Any], s3_client: Any
) -> None:
    depot = DepotManager.from_config({**s3_settings, "depot.allowed_types": "image/*"})
    page = b"<!DOCTYPE html><script>alert(1)</script>"
    upload_id = depot.reserve(len(page), sha256(page), "image/png", "cat.png")
    depot.write_chunk(upload_id, 0, page)
    with pytest.raises(ContentTypeNotAllowed):
        depot.finalize(upload_id)  # by the depot's policy, on the bytes S3 put together
    assert depot.list() == []
    assert depot.status(upload_id).complete  # as on every backend: fix it or abort it
    upload_id = depot.reserve(len(PNG), sha256(PNG), "image/png", "dot.png")
    depot.write_chunk(upload_id, 0, PNG)
    with pytest.raises(ContentTypeNotAllowed):
        depot.finalize(upload_id, validators=[ContentTypes("image/jpeg")])  # by a field's
    assert depot.list() == []
    # Completed once, checked on each finalize: the bytes are read again.
    file_id = depot.finalize(upload_id, validators=[ContentTypes("image/png")])
    assert depot.get(file_id).read() == PNG and depot.list() == [file_id]


def test_a_checksum_mismatch_then_abort_leaves_nothing(depot: Any, s3_client: Any) -> None:
    upload_id = depot.reserve(P + 1, "md5:" + hashlib.md5(b"x" * (P + 1)).hexdigest())
    depot.write_chunk(upload_id, 0, b"y" * (P + 1))
    with pytest.raises(ChecksumMismatch, match="a chunk was sent wrong"):
        depot.finalize(upload_id)
    assert depot.list() == []
    with pytest.raises(ChecksumMismatch):
        depot.finalize(upload_id)  # the retry checks again, and refuses again
    depot.abort(upload_id)
    assert keys(depot, s3_client) == []
    assert multipart_uploads(depot, s3_client) == []


def test_abort_and_expiry_remove_the_multipart_upload(depot: Any, s3_client: Any) -> None:
    first = depot.reserve(2 * P, None)
    depot.write_chunk(first, 0, b"f" * (P + 5))
    second = depot.reserve(10, None)
    depot.write_chunk(second, 0, b"s" * 4)
    empty = depot.reserve(0, None)  # S3 takes no multipart upload without parts: none made
    assert len(multipart_uploads(depot, s3_client)) == 2
    depot.abort(first)
    assert len(multipart_uploads(depot, s3_client)) == 1
    assert keys(depot, s3_client, first) == []
    assert depot.expire_uploads() == []
    assert sorted(depot.expire_uploads(idle=-1)) == sorted([second, empty])
    assert multipart_uploads(depot, s3_client) == [] and keys(depot, s3_client) == []
    # What a writer racing remove() put after it (no touched object) goes too.
    stray = f"{depot._prefix}.depot-uploads/{first}/sum/late"
    s3_client.put_object(Bucket=depot._bucket, Key=stray, Body=b"")
    assert depot.expire_uploads(idle=-1) == [] and keys(depot, s3_client) == []


def test_the_last_write_is_kept_in_the_bucket(s3_settings: dict[str, Any]) -> None:
    one = DepotManager.from_config({**s3_settings, "depot.upload_expiry": 3600})
    upload_id = one.reserve(4, None)
    one.write_chunk(upload_id, 0, b"ab")
    touched = one._staging().touched(upload_id)
    other = DepotManager.from_config(s3_settings)  # another worker
    assert other._staging().touched(upload_id) == touched
    assert [u for u, _ in other._staging().idle()] == [upload_id]
    time.sleep(0.01)
    other.write_chunk(upload_id, 2, b"cd")
    assert one._staging().touched(upload_id) > touched  # type: ignore[operator]
    assert one.get(one.finalize(upload_id)).read() == b"abcd"


def test_a_finalize_interrupted_after_completing_is_checked_again(
    depot: Any, s3_client: Any, patched: pytest.MonkeyPatch
) -> None:
    """S3 failed between CompleteMultipartUpload and the copy; meanwhile the staged
    object was replaced. The retry does not trust the first check: it reads again."""
    data = b"k" * (P + 100)
    upload_id = depot.reserve(len(data), sha256(data), filename="k.bin")
    depot.write_chunk(upload_id, 0, data)
    real = S3Staging.complete

    def complete_then_fail(self: Any, upload_id: str, record: Any) -> None:
        real(self, upload_id, record)
        raise BackendUnavailableError("S3 went away")

    patched.setattr(S3Staging, "complete", complete_then_fail)
    with pytest.raises(BackendUnavailableError):
        depot.finalize(upload_id)
    patched.undo()
    assert depot.list() == [] and multipart_uploads(depot, s3_client) == []
    staged = depot._staging().staged_key(upload_id)
    s3_client.put_object(Bucket=depot._bucket, Key=staged, Body=b"z" * len(data))
    with pytest.raises(ChecksumMismatch):
        depot.finalize(upload_id)
    assert depot.list() == []
    s3_client.put_object(Bucket=depot._bucket, Key=staged, Body=data)
    file_id = depot.finalize(upload_id)
    assert depot.get(file_id).read() == data and depot.list() == [file_id]


def test_a_finalize_that_died_after_the_copy_makes_no_second_file(
    depot: Any, s3_client: Any, patched: pytest.MonkeyPatch
) -> None:
    from depot.io import _s3direct

    data = b"c" * 1000
    upload_id = depot.reserve(len(data), sha256(data))
    depot.write_chunk(upload_id, 0, data)
    real = _s3direct._copy

    def copy_then_fail(*args: Any) -> Any:
        real(*args)
        raise KeyboardInterrupt  # the copy is made; the staged object not deleted

    patched.setattr(_s3direct, "_copy", copy_then_fail)
    with pytest.raises(KeyboardInterrupt):
        depot.finalize(upload_id)
    patched.undo()
    (made,) = depot.list()
    assert depot.finalize(upload_id) == made  # the id the first finalize chose
    assert depot.list() == [made] and depot.get(made).read() == data
    assert "" not in keys(depot, s3_client, upload_id)  # the staged object went


def _finalize_then_die(settings: dict[str, Any], upload_id: str) -> None:
    from depot.io import _s3direct

    def die(*args: Any) -> None:
        os._exit(9)  # killed after CompleteMultipartUpload and the checks, before the copy

    _s3direct._copy = die  # type: ignore[assignment]
    DepotManager.from_config(settings).finalize(upload_id)


def test_a_finalize_killed_before_the_copy_is_taken_over(
    s3_settings: dict[str, Any], s3_client: Any, patched: pytest.MonkeyPatch
) -> None:
    """Its claim stays: held for long, the next finalize takes it over and checks again.

    Before, the upload could not be finalized until it expired (a day).
    """
    depot = DepotManager.from_config(s3_settings)
    data = b"d" * (P + 3)
    upload_id = depot.reserve(len(data), sha256(data))
    depot.write_chunk(upload_id, 0, data)
    worker = multiprocessing.get_context("spawn").Process(
        target=_finalize_then_die, args=(s3_settings, upload_id)
    )
    worker.start()
    worker.join(60)
    assert worker.exitcode == 9
    assert multipart_uploads(depot, s3_client) == [] and depot.list() == []
    with pytest.raises(UploadNotFound, match="being finalized"):
        depot.finalize(upload_id)  # a claim held just now may be a finalize running
    patched.setattr(S3Staging, "claim_timeout", 0)
    file_id = depot.finalize(upload_id)
    assert depot.list() == [file_id] and depot.get(file_id).read() == data
    assert depot.finalize(upload_id) == file_id


def test_a_64_mib_upload_holds_less_than_a_part_in_memory(depot: Any) -> None:
    size = 64 * (1 << 20) + 12345
    source = Generated(size)
    block = 9 * (1 << 20) + 7  # chunks across the grid: whole parts and pieces
    tracemalloc.start()
    try:
        upload_id = depot.reserve(size, None)
        offset = 0
        while offset < size:
            length = min(block, size - offset)
            depot.write_chunk(upload_id, offset, _Limited(source, length))
            offset += length
        file_id = depot.finalize(upload_id)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert depot.get(file_id).checksum == "sha256:" + source.hash.hexdigest()
    # Under one part: a part waits for S3 in a temporary file (5 MiB measured).
    assert peak < P, f"a 64 MiB upload peaked at {peak / 2**20:.1f} MiB"


class _Limited:
    """The next ``n`` bytes of ``source``, as a request body of that length."""

    def __init__(self, source: Generated, n: int) -> None:
        self.source, self.left = source, n

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return self.source.read(n)


def _write_then_hang(settings: dict[str, Any], upload_id: str, ready: Any) -> None:
    class Stalling:
        """A request body that sends a part and a half, then hangs until killed."""

        sent = 0

        def read(self, n: int = -1) -> bytes:
            if self.sent >= P + P // 2:
                ready.set()
                time.sleep(3600)
            self.sent += 1 << 20
            return b"b" * (1 << 20)

    DepotManager.from_config(settings).write_chunk(upload_id, 100, Stalling())


def test_a_killed_writer_loses_nothing_acknowledged(
    s3_settings: dict[str, Any], s3_client: Any
) -> None:
    depot = DepotManager.from_config(s3_settings)
    data = b"a" * 100 + b"b" * (2 * P)
    upload_id = depot.reserve(len(data), sha256(data))
    depot.write_chunk(upload_id, 0, data[:100])  # acknowledged
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    worker = context.Process(target=_write_then_hang, args=(s3_settings, upload_id, ready))
    worker.start()
    try:
        assert ready.wait(60)
    finally:
        os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
        worker.join(10)
    # Its pieces are in the bucket, but no commit: the chunk never appears.
    assert [k for k in keys(depot, s3_client, upload_id) if "/piece/" in k]
    status = DepotManager.from_config(s3_settings).status(upload_id)
    assert (status.received, status.missing) == (100, [(100, len(data))])
    depot.write_chunk(upload_id, 100, data[100:])
    file_id = depot.finalize(upload_id)
    assert depot.get(file_id).checksum == sha256(data)
    assert not [k for k in keys(depot, s3_client, upload_id) if "/piece/" in k]


def test_tuspy_uploads_to_an_s3_depot(depot: FileStorage) -> None:
    """tuspy sends 3 MiB chunks over real HTTP: none of them fits the 8 MiB grid."""
    import io
    import socketserver
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    tusclient = pytest.importorskip("tusclient.client")
    from depot.uploads.tus import TusServer, TusWSGIApp

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    class Threaded(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True

    done: list[str] = []
    tus = TusServer(
        depot, mountpoint="/files", on_complete=lambda s, status, r: done.append(s.file_id)
    )
    server = make_server("127.0.0.1", 0, TusWSGIApp(tus), Threaded, Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        data = os.urandom(P + 2 * (1 << 20) + 5)
        client = tusclient.TusClient(f"http://127.0.0.1:{server.server_port}/files")
        client.uploader(
            file_stream=io.BytesIO(data), chunk_size=3 << 20, metadata={"filename": "t.bin"}
        ).upload()
    finally:
        server.shutdown()
        server.server_close()
    (file_id,) = done
    stored = depot.get(file_id)
    assert (stored.filename, stored.read() == data) == ("t.bin", True)


def test_a_dead_server_is_a_backend_error_not_a_lost_upload(tmp_path: Any) -> None:
    """S3 goes away between two chunks: each call says the storage is unavailable
    (a tus 503, which clients retry), never that the upload is gone (a 404)."""
    from tests.backends.s3 import MotoServer

    with MotoServer(tmp_path) as server:
        depot = DepotManager.from_config(
            {
                "depot.backend": "s3",
                "depot.bucket": "dead-server",
                "depot.endpoint_url": server.url,
                "depot.access_key_id": "k",
                "depot.secret_access_key": "s",
                "depot.region_name": "us-east-1",
                "depot.prefix": "media/",
                "depot.max_attempts": 1,
                "depot.connect_timeout": 1,
            }
        )
        upload_id = depot.reserve(10, None)
        depot.write_chunk(upload_id, 0, b"01234")
        assert depot.list() == []  # the staging folder is no file, under a prefix too
        server.stop()
        for call in (
            lambda: depot.write_chunk(upload_id, 5, b"56789"),
            lambda: depot.status(upload_id),
            lambda: depot.finalize(upload_id),
            lambda: depot.expire_uploads(),
        ):
            with pytest.raises(BackendUnavailableError, match="Cannot reach"):
                call()
