# ruff: noqa: F811 (the fixtures of test_tus, imported, are the parameters)
"""Chunked uploads and tus as a hostile client uses them: odd headers, races, broken streams."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any

import pytest

from depot.exceptions import InvalidChunk, UploadNotFound
from depot.http.request import RequestFacts
from depot.io.interfaces import FileStorage
from depot.io.memory import MemoryFileStorage
from depot.uploads.tus import TusServer
from tests.uploads.test_chunked import sha256
from tests.uploads.test_tus import (  # noqa: F401 (fixtures)
    CHUNK,
    TUS,
    Send,
    b64,
    completed,
    create,
    depot,
    make_client,
    send,
)


def direct(storage: FileStorage, **options: Any) -> Callable[..., Any]:
    """The tus server called as the front ends call it, with any header text at all."""
    server = TusServer(storage, mountpoint="/files", **options)

    def call(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Any:
        lowered = {k.lower(): v for k, v in headers.items()}
        return server.handle(RequestFacts(method, path, headers=lowered), io.BytesIO(body))

    return call


# --- tus headers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "length",
    [
        "9" * 19,  # 19 digits, past 2**63 - 1: was a ValueError from reserve(), a 500
        str(2**63),
        "1" + "0" * 30,
        "-1",
        "١٢٣",
        "+12",
        "0x10",
        "1_000",
        "1e3",
        "",
    ],
)
def test_an_upload_length_that_is_no_size_is_a_400(length: str) -> None:
    storage = MemoryFileStorage()
    answer = direct(storage)("POST", "/files", {**TUS, "Upload-Length": length})
    assert answer.status == 400, (length, answer.body)
    assert b"Upload-Length" in answer.body


def test_the_largest_size_and_whitespace_are_taken() -> None:
    call = direct(MemoryFileStorage())
    assert call("POST", "/files", {**TUS, "Upload-Length": str(2**63 - 1)}).status == 201
    assert call("POST", "/files", {**TUS, "Upload-Length": " 12\t"}).status == 201


@pytest.mark.parametrize("offset", ["+0", "-0", "٠", "0x0", "9" * 30, "0 0"])
def test_odd_upload_offsets_are_refused(offset: str) -> None:
    storage = MemoryFileStorage()
    call = direct(storage)
    location = dict(call("POST", "/files", {**TUS, "Upload-Length": "3"}).headers)["Location"]
    answer = call("PATCH", location, {**CHUNK, "Upload-Offset": offset}, b"abc")
    assert answer.status == 400, offset
    assert call("HEAD", location, TUS).headers[0] == ("Upload-Offset", "0")


def test_hostile_metadata(depot: FileStorage) -> None:
    call = direct(depot)
    many = ",".join(f"k{i} {b64('v')}" for i in range(10_000))
    answer = call("POST", "/files", {**TUS, "Upload-Length": "1", "Upload-Metadata": many})
    assert answer.status == 201
    big = "k " + b64("v" * 1_000_000)
    assert (
        call("POST", "/files", {**TUS, "Upload-Length": "1", "Upload-Metadata": big}).status == 201
    )
    for bad in ("k !!", "k YQ", "k YQ==,", ",k YQ==", "k YQ== YQ==", "é YQ=="):
        answer = call("POST", "/files", {**TUS, "Upload-Length": "1", "Upload-Metadata": bad})
        assert answer.status == 400, bad
    # Keys with control characters and values that are not UTF-8: taken, never sent back raw.
    binary, name = b64(b"\xff\xfe"), b64("a\r\nb")
    meta = f"a\x01b {b64('x')},\x00 {b64('y')},bin {binary},filename {name}"
    answer = call("POST", "/files", {**TUS, "Upload-Length": "1", "Upload-Metadata": meta})
    assert answer.status == 201
    location = dict(answer.headers)["Location"]
    head = call("HEAD", location, TUS)
    for _name, value in head.headers:
        assert value.isascii() and value.isprintable(), value
    status = depot.status(location.rsplit("/", 1)[1])
    assert "bin" not in status.metadata  # not UTF-8: dropped
    assert status.filename == "a\r\nb"


def test_hostile_origins_are_never_sent_back() -> None:
    for configured in (["https://app.example"], ["*"]):
        call = direct(MemoryFileStorage(), cors_origins=configured)
        for origin in ("https://app.example\r\nSet-Cookie: x=1", "x" * 100_000, "\x00", "null"):
            answer = call("OPTIONS", "/files", {"Origin": origin})
            assert answer.status == 204
            for name, value in answer.headers:
                assert "\r" not in value and "\n" not in value and len(value) < 1000, name
                assert "Set-Cookie" not in value


@pytest.mark.parametrize(
    "path",
    ["/files/..", "/files/../../x", "/files/%2e%2e", "/files/\x00", "/files/" + "a" * 100_000,
     "/files//x", "/files/" + "0f8fad5b-d9cb-469f-a165-70867728950E", "/files/ \t"],
)  # fmt: skip
def test_upload_ids_that_are_paths_are_not_found(path: str) -> None:
    call = direct(MemoryFileStorage())
    for method in ("HEAD", "PATCH", "DELETE"):
        answer = call(method, path, {**CHUNK, "Upload-Offset": "0"}, b"x")
        assert answer.status == 404, (method, path)


def test_method_override_on_the_endpoint_deletes_nothing() -> None:
    storage = MemoryFileStorage()
    call = direct(storage)
    location = dict(call("POST", "/files", {**TUS, "Upload-Length": "3"}).headers)["Location"]
    for method in ("DELETE", "HEAD", "PATCH", "delete\r\n", "GET", "X" * 10_000):
        answer = call("POST", "/files", {**TUS, "X-HTTP-Method-Override": method})
        assert answer.status == 405, method
    assert call("HEAD", location, TUS).status == 200
    # On an upload, it is the override the tus protocol defines: the upload goes.
    assert call("POST", location, {**TUS, "X-HTTP-Method-Override": "DELETE"}).status == 204
    assert call("HEAD", location, TUS).status == 404


def test_content_length_lying(depot: FileStorage, send: Send) -> None:
    url = create(send, 6)
    headers = {**CHUNK, "Upload-Offset": "0", "Content-Length": "3"}
    answer = send("PATCH", url, headers=headers, content=b"abcdef")
    assert answer.status_code == 204, answer.text
    # WSGI reads what Content-Length says; an ASGI server frames the body itself.
    assert answer.headers["upload-offset"] in ("3", "6")
    head = send("HEAD", url, headers=TUS)
    assert head.headers["upload-offset"] == answer.headers["upload-offset"]


def test_a_body_shorter_than_its_content_length_stores_nothing() -> None:
    """A WSGI server that ends the input early (the client went away): 400, nothing kept."""
    from depot.uploads.tus import TusWSGIApp

    storage = MemoryFileStorage()
    location = dict(direct(storage)("POST", "/files", {**TUS, "Upload-Length": "10"}).headers)[
        "Location"
    ]
    app = TusWSGIApp(TusServer(storage, mountpoint="/files"))
    environ = {
        "REQUEST_METHOD": "PATCH",
        "PATH_INFO": location,
        "CONTENT_LENGTH": "10",
        "CONTENT_TYPE": CHUNK["Content-Type"],
        "HTTP_TUS_RESUMABLE": "1.0.0",
        "HTTP_UPLOAD_OFFSET": "0",
        "wsgi.input": io.BytesIO(b"abc"),
    }
    statuses: list[str] = []
    app(environ, lambda status, headers: statuses.append(status))
    assert statuses[0].startswith("400")
    assert storage.status(location.rsplit("/", 1)[1]).received == 0


def test_an_empty_patch_does_not_block_the_real_one(
    depot: FileStorage,
    send: Send,
    completed: list[Any],
) -> None:
    # Before: the empty PATCH was kept as a 0-byte chunk at offset 0, and the real
    # chunk at 0 was then refused with 409 "differ from the chunk received there".
    url = create(send, 3)
    answer = send("PATCH", url, headers={**CHUNK, "Upload-Offset": "0"}, content=b"")
    assert (answer.status_code, answer.headers["upload-offset"]) == (204, "0")
    answer = send("PATCH", url, headers={**CHUNK, "Upload-Offset": "0"}, content=b"abc")
    assert answer.status_code == 204, answer.text
    assert completed[0][0].read() == b"abc"


# --- the chunked API ----------------------------------------------------------------


def test_an_empty_chunk_leaves_its_offset_free(depot: FileStorage) -> None:
    upload_id = depot.reserve(6, sha256(b"abcdef"))
    depot.write_chunk(upload_id, 0, b"")
    depot.write_chunk(upload_id, 3, io.BytesIO(b""))
    assert depot.write_chunk(upload_id, 0, b"abc").offset == 3
    assert depot.write_chunk(upload_id, 3, b"def").complete
    assert depot.get(depot.finalize(upload_id)).read() == b"abcdef"


class Breaking:
    """A request body that gives ``good`` bytes, then fails (the client went away)."""

    def __init__(self, good: int, error: BaseException) -> None:
        self.left = good
        self.error = error

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            raise self.error
        n = min(self.left, 65536 if n is None or n < 0 else n)
        self.left -= n
        return b"a" * n


def test_a_stream_that_fails_midway_leaves_nothing(depot: FileStorage) -> None:
    data = b"a" * 300_000
    upload_id = depot.reserve(len(data), sha256(data))
    for error in (ConnectionResetError("gone"), ValueError("closed"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            depot.write_chunk(upload_id, 0, Breaking(200_000, error))  # type: ignore[arg-type]
        assert (depot.status(upload_id).received, depot._staging().chunks(upload_id)) == (0, [])
    depot.write_chunk(upload_id, 0, data)
    assert depot.get(depot.finalize(upload_id)).read() == data


def test_streams_giving_the_wrong_things(depot: FileStorage) -> None:
    upload_id = depot.reserve(10, None)

    class Text:
        def read(self, n: int = -1) -> str:
            return "abc"

    with pytest.raises(TypeError, match="binary mode"):
        depot.write_chunk(upload_id, 0, Text())  # type: ignore[arg-type]

    class Views:
        sent = False

        def read(self, n: int = -1) -> memoryview:
            if self.sent:
                return memoryview(b"")
            self.sent = True
            return memoryview(b"abcde")

    assert depot.write_chunk(upload_id, 0, Views()).offset == 5  # type: ignore[arg-type]

    class Generous:
        """Gives more than asked: what counts is what it gave."""

        def read(self, n: int = -1) -> bytes:
            return b"x" * 1_000_000

    with pytest.raises(InvalidChunk, match="past the upload's size"):
        depot.write_chunk(upload_id, 5, Generous())  # type: ignore[arg-type]
    assert depot.status(upload_id).received == 5


def test_delete_racing_a_chunk(depot: FileStorage) -> None:
    """The upload is aborted while a chunk arrives: the writer is told it is gone.

    Before, on a local depot, the writer got FileNotFoundError from link() (its
    directory had moved away): a tus 503, "the storage is unavailable".
    """
    upload_id = depot.reserve(400_000, None)

    class Aborting:
        sent = 0

        def read(self, n: int = -1) -> bytes:
            if self.sent == 65536:
                depot.abort(upload_id)
            if self.sent >= 200_000:
                return b""
            self.sent += 65536
            return b"a" * 65536

    with pytest.raises(UploadNotFound):
        depot.write_chunk(upload_id, 0, Aborting())  # type: ignore[arg-type]
    with pytest.raises(UploadNotFound):
        depot.status(upload_id)
    assert depot._staging().chunks(upload_id) == []  # nothing left behind


def test_delete_racing_patch_through_tus(depot: FileStorage) -> None:
    call = direct(depot)
    location = dict(call("POST", "/files", {**TUS, "Upload-Length": "400000"}).headers)["Location"]
    upload_id = location.rsplit("/", 1)[1]
    server = TusServer(depot, mountpoint="/files")

    class Aborting(io.RawIOBase):
        sent = 0

        def read(self, n: int = -1) -> bytes:
            if self.sent == 65536:
                depot.abort(upload_id)
            if self.sent >= 200_000:
                return b""
            self.sent += 65536
            return b"a" * 65536

    request = RequestFacts(
        "PATCH",
        location,
        headers={k.lower(): v for k, v in {**CHUNK, "Upload-Offset": "0"}.items()},
    )
    assert server.handle(request, Aborting()).status == 404


def test_concurrent_patches_at_one_offset(depot: FileStorage) -> None:
    call = direct(depot)
    done: list[bytes] = []
    location = dict(call("POST", "/files", {**TUS, "Upload-Length": "200000"}).headers)["Location"]
    server = TusServer(
        depot,
        mountpoint="/files",
        on_complete=lambda stored, status, request: done.append(stored.read()),
    )
    both_reading = threading.Barrier(2, timeout=30)
    a_done = threading.Event()

    class Body(io.RawIOBase):
        def __init__(self, byte: bytes) -> None:
            self.left, self.byte, self.waited = 200_000, byte, False

        def read(self, n: int = -1) -> bytes:
            if not self.waited:
                self.waited = True
                both_reading.wait()  # both have passed the offset check
            if not self.left and self.byte == b"b":
                assert a_done.wait(30)  # b's last byte arrives once a finished the upload
            n = min(self.left, 65536)
            self.left -= n
            return self.byte * n

    answers: dict[bytes, int] = {}

    def patch(byte: bytes) -> None:
        headers = {k.lower(): v for k, v in {**CHUNK, "Upload-Offset": "0"}.items()}
        request = RequestFacts("PATCH", location, headers=headers)
        answers[byte] = server.handle(request, Body(byte)).status
        if byte == b"a":
            a_done.set()

    threads = [threading.Thread(target=patch, args=(b,)) for b in (b"a", b"b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Before, b was answered 204 too: told its bytes were stored, and they are in
    # no file (a's finalize had run; b's chunk landed in the finished upload).
    assert answers == {b"a": 204, b"b": 404}
    assert done == [b"a" * 200_000]


def test_finalize_racing_finalize_stores_one_file(depot: FileStorage) -> None:
    data = b"z" * 3_000_000
    upload_id = depot.reserve(len(data), sha256(data))
    depot.write_chunk(upload_id, 0, data)
    before = set(depot.list())
    results: list[Any] = []
    start = threading.Barrier(4, timeout=30)

    def finalize() -> None:
        start.wait()
        try:
            results.append(depot.finalize(upload_id))
        except UploadNotFound as exc:
            results.append(exc)

    threads = [threading.Thread(target=finalize) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ids = {r for r in results if isinstance(r, str)}
    assert len(ids) == 1
    assert all(isinstance(r, str) or "being finalized" in str(r) for r in results)
    assert set(depot.list()) - before == ids
    assert depot.finalize(upload_id) in ids


def test_expire_uploads_spares_an_upload_written_since_it_listed(
    depot: FileStorage,
    patched: pytest.MonkeyPatch,
) -> None:
    """expire_uploads() lists the idle uploads, then removes them: a chunk may land between.

    Before, the upload was removed all the same, with the chunk its client was
    told was stored. The listing is made stale here, as a write just after it would.
    """
    upload_id = depot.reserve(4, None)
    staging_type = type(depot._staging())
    patched.setattr(staging_type, "idle", lambda self: iter([(upload_id, 0.0)]))
    depot.write_chunk(upload_id, 0, b"ab")  # acknowledged after the listing
    assert depot.expire_uploads(idle=60) == []
    assert depot.status(upload_id).received == 2
    patched.undo()
    assert depot.expire_uploads(idle=-1) == [upload_id]


# --- a finalize killed between storing the file and recording it ---------------------

KILLED_FINALIZE = r"""
import os, signal, sys
from depot.io.local import LocalFileStorage
from depot.uploads.staging import Staging
path, upload_id = sys.argv[1:3]
storage = LocalFileStorage(path)
stored = []
real_write = type(storage)._write

def write_then_die(self, fileid, new):
    real_write(self, fileid, new)
    print(fileid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the file is stored; finish() never runs

type(storage)._write = write_then_die
storage.finalize(upload_id)
"""


def test_a_finalize_killed_after_storing_is_finished_by_the_retry(tmp_path: Any) -> None:
    """SIGKILL between the file's create and the upload's finish.

    Before, the claim of the dead finalize stayed: every retry said "being
    finalized by another request" until the upload expired, and the stored file
    was never recorded, in no row, for ever. Now the retry finds the file the
    dead one stored (its id was recorded with the claim) and finishes with it:
    no second file, no orphan.
    """
    import subprocess
    import sys
    from pathlib import Path

    from depot.io.local import LocalFileStorage

    path = str(tmp_path / "files")
    storage = LocalFileStorage(path)
    data = b"k" * 100_000
    upload_id = storage.reserve(len(data), sha256(data), filename="k.bin")
    storage.write_chunk(upload_id, 0, data)
    env = {"PYTHONPATH": str(Path(__file__).parents[2]), "PATH": "/usr/bin:/bin"}
    child = subprocess.run(
        [sys.executable, "-c", KILLED_FINALIZE, path, upload_id],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert child.returncode == -9, child.stderr
    made = child.stdout.split()[0]
    assert storage.list() == [made]
    assert storage.finalize(upload_id) == made
    assert storage.list() == [made]
    assert storage.get(made).read() == data
    assert storage.status(upload_id).file_id == made


def test_a_finalize_that_died_before_finish_on_every_staging(
    depot: FileStorage, patched: pytest.MonkeyPatch
) -> None:
    """The same death in the process: finish() never runs, nor does release()."""
    data = b"q" * 50_000
    upload_id = depot.reserve(len(data), sha256(data))
    depot.write_chunk(upload_id, 0, data)
    staging_type = type(depot._staging())
    before = set(depot.list())

    def die(self: Any, upload_id: str, file_id: str) -> None:
        raise KeyboardInterrupt

    patched.setattr(staging_type, "finish", die)
    patched.setattr(staging_type, "release", lambda self, upload_id: None)
    with pytest.raises(KeyboardInterrupt):
        depot.finalize(upload_id)
    (made,) = set(depot.list()) - before
    patched.undo()
    assert depot.finalize(upload_id) == made
    assert set(depot.list()) - before == {made}
    assert depot.get(made).read() == data
    # A claim held while nothing is stored yet is still a finalize running.
    other = depot.reserve(1, None)
    depot.write_chunk(other, 0, b"x")
    assert depot._staging().claim(other, depot._new_file_id())  # type: ignore[attr-defined]
    with pytest.raises(UploadNotFound, match="being finalized"):
        depot.finalize(other)


def test_head_stores_an_upload_whose_last_patch_died_before_storing_it(
    depot: FileStorage, send: Send, completed: list[Any]
) -> None:
    """The worker took the last bytes, then died before finalize (or the storage failed).

    The client asks HEAD, reads offset == length, and sends nothing more. Before,
    the upload was then never stored and on_complete never called: lost.
    """
    url = create(send, 3, filename="a.txt")
    depot.write_chunk(url.rsplit("/", 1)[1], 0, b"abc")  # what the dead worker did
    head = send("HEAD", url, headers=TUS)
    assert (head.status_code, head.headers["upload-offset"]) == (200, "3")
    ((stored, status),) = completed
    assert stored.read() == b"abc" and status.file_id == stored.file_id
    assert send("HEAD", url, headers=TUS).status_code == 200
    assert len(completed) == 1


def test_head_while_another_request_finalizes_is_no_404(depot: FileStorage) -> None:
    call = direct(depot)
    location = dict(call("POST", "/files", {**TUS, "Upload-Length": "3"}).headers)["Location"]
    upload_id = location.rsplit("/", 1)[1]
    depot.write_chunk(upload_id, 0, b"abc")
    assert depot._staging().claim(upload_id, depot._new_file_id())  # type: ignore[attr-defined]
    head = call("HEAD", location, TUS)
    assert head.status == 200
    assert ("Upload-Offset", "3") in head.headers


def test_abort_racing_finalize(depot: FileStorage, patched: pytest.MonkeyPatch) -> None:
    """The upload is aborted (or expires) while finalize stores it.

    Before, finish() then raised KeyError (memory) or FileNotFoundError (local)
    out of finalize(): the file was stored and its id given to no one.
    """
    data = b"r" * 10_000
    upload_id = depot.reserve(len(data), sha256(data))
    depot.write_chunk(upload_id, 0, data)
    before = set(depot.list())
    staging_type = type(depot._staging())
    real_finish = staging_type.finish

    def abort_first(self: Any, upload_id: str, file_id: str) -> None:
        depot.abort(upload_id)
        real_finish(self, upload_id, file_id)

    patched.setattr(staging_type, "finish", abort_first)
    file_id = depot.finalize(upload_id)
    assert set(depot.list()) - before == {file_id}
    assert depot.get(file_id).read() == data


def _write_in_child(path: str, upload_id: str, byte: bytes, ready: Any, go: Any, out: Any) -> None:
    from depot.io.local import LocalFileStorage

    storage = LocalFileStorage(path)

    class Body:
        left = 300_000

        def read(self, n: int = -1) -> bytes:
            if self.left == 300_000:
                ready.wait()  # both processes are writing
                go.wait()
            size = min(self.left, 65536)
            self.left -= size
            return byte * size

    try:
        storage.write_chunk(upload_id, 0, Body())  # type: ignore[arg-type]
        out.put((byte, "stored"))
    except InvalidChunk:
        out.put((byte, "refused"))


def test_two_processes_write_one_offset(tmp_path: Any) -> None:
    import multiprocessing

    from depot.io.local import LocalFileStorage

    path = str(tmp_path / "files")
    storage = LocalFileStorage(path)
    upload_id = storage.reserve(300_000, None)
    context = multiprocessing.get_context("spawn")
    ready, go, out = context.Barrier(3), context.Event(), context.Queue()
    workers = [
        context.Process(target=_write_in_child, args=(path, upload_id, b, ready, go, out))
        for b in (b"a", b"b")
    ]
    for worker in workers:
        worker.start()
    ready.wait(60)
    go.set()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    outcomes = dict(out.get(timeout=10) for _ in workers)
    assert sorted(outcomes.values()) == ["refused", "stored"]
    (winner,) = [b for b, outcome in outcomes.items() if outcome == "stored"]
    assert storage.get(storage.finalize(upload_id)).read() == winner * 300_000


def test_a_checksummed_patch_without_length_is_bounded_by_the_upload() -> None:
    """Chunked transfer, no Content-Length, and Upload-Checksum: the chunk is held aside
    to be checked first. Before, it was held whole, however long the client sent."""
    import base64
    import hashlib

    storage = MemoryFileStorage()
    call = direct(storage)
    location = dict(call("POST", "/files", {**TUS, "Upload-Length": "10"}).headers)["Location"]

    class Endless(io.RawIOBase):
        given = 0

        def read(self, n: int = -1) -> bytes:
            assert self.given < 10 << 20, "read far past the upload's length"
            self.given += 65536
            return b"e" * 65536

    digest = base64.b64encode(hashlib.sha1(b"x").digest()).decode()
    headers = {**CHUNK, "Upload-Offset": "0", "Upload-Checksum": f"sha1 {digest}"}
    server = TusServer(storage, mountpoint="/files")
    lowered = {k.lower(): v for k, v in headers.items()}
    body = Endless()
    answer = server.handle(RequestFacts("PATCH", location, headers=lowered), body)
    assert answer.status == 413
    assert body.given < 1 << 20
    assert storage.status(location.rsplit("/", 1)[1]).received == 0


def test_on_complete_once_when_a_head_races_the_last_patch(
    depot: FileStorage, send: Send, completed: list[Any], patched: pytest.MonkeyPatch
) -> None:
    """HEAD read the upload as complete and not stored, then the PATCH stored it.

    finalize() of a finished upload returns its file: the HEAD must not tell
    on_complete a second time (the application would attach the file twice).
    """
    url = create(send, 3)
    upload_id = url.rsplit("/", 1)[1]
    depot.write_chunk(upload_id, 0, b"abc")
    stale = depot.status(upload_id)  # what the HEAD read
    depot.finalize(upload_id)  # what the PATCH did meanwhile (its on_complete aside)
    real_status = type(depot).status
    calls: list[int] = []

    def status_once_stale(self: Any, upload_id: str) -> Any:
        calls.append(1)
        return stale if len(calls) == 1 else real_status(self, upload_id)

    patched.setattr(type(depot), "status", status_once_stale)
    assert send("HEAD", url, headers=TUS).status_code == 200
    assert completed == []
