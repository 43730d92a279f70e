"""What the GridFS backend alone promises: filedepot's documents, ids, streaming, safe replace.

Runs on mongomock, or on the MongoDB named by ``DEPOT_TEST_MONGODB_URI``
(``tests/backends/gridfs.py``). The raw documents are read through a client of
the same database (``db``).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import socket
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.streams import sha256

pymongo = pytest.importorskip("pymongo")

from bson import ObjectId  # noqa: E402  (after the skip)

from depot.exceptions import (  # noqa: E402
    BackendUnavailableError,
    ConfigurationError,
    InvalidFileIdError,
    StoredFileNotFoundError,
)
from depot.io import gridfs as depot_gridfs  # noqa: E402
from depot.io.gridfs import GridFSStorage  # noqa: E402
from depot.manager import DepotManager  # noqa: E402

CHUNK = 255 * 1024
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "filedepot_0_12" / "gridfs.json"


@pytest.fixture
def storage(mongodb_uri: str) -> Iterator[GridFSStorage]:
    storage = GridFSStorage(mongodb_uri)
    yield storage
    storage.close()


@pytest.fixture
def db(mongodb_uri: str) -> Iterator[Any]:
    """The test's database, through a client of its own."""
    client = pymongo.MongoClient(mongodb_uri)
    yield client.get_default_database()
    client.close()


class Recorder:
    """Stands in for a collection: records the methods called, or refuses them all."""

    def __init__(self, collection: Any = None) -> None:
        self._collection = collection
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        if self._collection is None:
            raise AssertionError(f"{name} was called on a collection that must not be used")
        method = getattr(self._collection, name)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return method(*args, **kwargs)

        return recorded


class FailingOn(Recorder):
    """A collection whose method ``name`` fails as if the server went away."""

    def __init__(self, collection: Any, name: str) -> None:
        super().__init__(collection)
        self._failing = name

    def __getattr__(self, name: str) -> Any:
        if name == self._failing:
            raise pymongo.errors.AutoReconnect("connection closed")
        return super().__getattr__(name)


# --- filedepot's documents -------------------------------------------------------


def test_documents_are_filedepots(storage: GridFSStorage, db: Any) -> None:
    data = os.urandom(CHUNK + 10)
    file_id = storage.create(data, filename="h\u00e9.bin", content_type="application/x-h")

    document = db["filedepot.files"].find_one({"_id": ObjectId(file_id)})
    assert set(document) == {
        "_id",
        "filename",
        "contentType",
        "last_modified",
        "chunkSize",
        "length",
        "uploadDate",
        "checksum",  # depot's only; filedepot ignores it (test_filedepot_reads_what_depot_wrote)
    }
    assert document["filename"] == "h\u00e9.bin"
    assert document["contentType"] == "application/x-h"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", document["last_modified"])
    assert document["uploadDate"].strftime("%Y-%m-%d %H:%M:%S") == document["last_modified"]
    assert (document["chunkSize"], document["length"]) == (CHUNK, len(data))
    assert document["checksum"] == sha256(data)

    chunks = list(db["filedepot.chunks"].find({"files_id": ObjectId(file_id)}).sort("n"))
    assert [(c["n"], len(c["data"])) for c in chunks] == [(0, CHUNK), (1, 10)]
    assert b"".join(c["data"] for c in chunks) == data
    assert set(chunks[0]) == {"_id", "files_id", "n", "data"}
    # The indexes pymongo's GridFS makes; the chunks' one keeps two chunks from one place.
    keys = [(dict(i["key"]), i.get("unique", False)) for i in db["filedepot.chunks"].list_indexes()]
    assert ({"files_id": 1, "n": 1}, True) in keys


def test_collection_setting(mongodb_uri: str, db: Any) -> None:
    storage = GridFSStorage(mongodb_uri, collection="media")
    file_id = storage.create(b"x")
    assert db["media.files"].count_documents({"_id": ObjectId(file_id)}) == 1
    assert db["filedepot.files"].count_documents({}) == 0
    storage.close()


def test_prefix_setting_gives_each_depot_its_collections(mongodb_uri: str, db: Any) -> None:
    avatars = DepotManager.from_config(
        {"depot.backend": "gridfs", "depot.mongouri": mongodb_uri, "depot.prefix": "avatars_"}
    )
    plain = GridFSStorage(mongodb_uri)
    file_id = avatars.create(b"x")
    assert db["avatars_filedepot.files"].count_documents({"_id": ObjectId(file_id)}) == 1
    assert (plain.list(), plain.exists(file_id)) == ([], False)
    assert avatars.list() == [file_id]
    for bad in ("a$b", "nul\0", 3):
        with pytest.raises(ConfigurationError, match="prefix must be text"):
            GridFSStorage(mongodb_uri, prefix=bad)  # type: ignore[arg-type]
    avatars.close()
    plain.close()


def test_file_put_by_pymongo_reads_with_defaults(storage: GridFSStorage) -> None:
    # filedepot's own GridFS test: a file put by other code, without depot's fields.
    oid = storage._gridfs.put(b"HELLO WORLD")
    stored = storage.get(str(oid))
    assert stored.read() == b"HELLO WORLD"
    assert (stored.filename, stored.content_type) == ("unnamed", "application/octet-stream")
    assert stored.checksum is None
    assert stored.last_modified is not None  # its upload time
    assert str(oid) in storage.list()


# --- ids ---------------------------------------------------------------------------


def test_ids_are_object_ids_that_cannot_be_guessed(storage: GridFSStorage) -> None:
    first, second = ObjectId(storage.create(b"a")), ObjectId(storage.create(b"b"))
    now = time.time()
    assert abs(first.generation_time.timestamp() - now) < 5
    # pymongo's ObjectIds share 5 process bytes and count up in the last 3;
    # ours are random after the time, so a served id does not lead to others.
    assert first.binary[4:9] != second.binary[4:9]


@pytest.mark.parametrize(
    "bad_id",
    [
        "65F1C2A9E4B0A1B2C3D4E5F6",  # uppercase: not what create() returns
        "65f1c2a9e4b0a1b2c3d4e5f",
        "65f1c2a9e4b0a1b2c3d4e5f6a",
        "65f1c2a9e4b0a1b2c3d4e5f6\n",
        b"123456789012",  # 12 bytes: an ObjectId to bson, not an id to depot
        {"$ne": None},
        "00000000-0000-4000-8000-000000000000",
    ],
    ids=repr,
)
@pytest.mark.parametrize("operation", ["get", "exists", "delete", "replace"])
def test_bad_ids_are_refused_before_any_query(
    storage: GridFSStorage, monkeypatch: pytest.MonkeyPatch, operation: str, bad_id: object
) -> None:
    monkeypatch.setattr(storage, "_files", Recorder())
    monkeypatch.setattr(storage, "_chunks", Recorder())
    args = (bad_id, b"data") if operation == "replace" else (bad_id,)
    with pytest.raises(InvalidFileIdError, match="24 lowercase hex digits") as raised:
        getattr(storage, operation)(*args)
    assert isinstance(raised.value, ValueError)


def test_object_id_instances_are_accepted(storage: GridFSStorage) -> None:
    file_id = storage.create(b"x")
    assert storage.get(ObjectId(file_id)).read() == b"x"  # type: ignore[arg-type]
    assert storage.exists(ObjectId(file_id))  # type: ignore[arg-type]


def test_missing_file_names_the_id_and_the_collection(storage: GridFSStorage) -> None:
    missing = str(ObjectId())
    with pytest.raises(StoredFileNotFoundError) as raised:
        storage.get(missing)
    assert isinstance(raised.value, IOError)
    assert missing in str(raised.value)
    assert "GridFS collection 'filedepot' of database 'depot_test_" in str(raised.value)


# --- streaming -----------------------------------------------------------------------


class Repeated:
    """A stream of ``size`` bytes that holds only one block.

    It also measures how far the upload runs ahead of the database: the most
    bytes read from it but not yet in a chunk document.
    """

    def __init__(self, size: int, block: bytes, chunks: Any) -> None:
        self.size = self.left = size
        self.block = block
        self.chunks = chunks
        self.ahead = 0

    def read(self, n: int = -1) -> bytes:
        stored = self.chunks.count_documents({}) * CHUNK
        self.ahead = max(self.ahead, self.size - self.left - stored)
        n = min(self.left, len(self.block) if n < 0 else n)
        self.left -= n
        return self.block[:n]


def test_large_stream_in_flat_memory(storage: GridFSStorage, db: Any) -> None:
    size = 64 * 1024 * 1024
    source = Repeated(size, os.urandom(256 * 1024), db["filedepot.chunks"])
    file_id = storage.create(source)
    # Chunks go out as they come, a few at a time (mongomock keeps what it is
    # sent in memory, so memory alone would not show buffering there).
    assert source.ahead < 4 * 1024 * 1024, f"{source.ahead} bytes held back"

    tracemalloc.start()
    try:
        digest = hashlib.sha256()
        for chunk in storage.get(file_id):
            digest.update(chunk)
        _, download = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert storage.get(file_id).checksum == "sha256:" + digest.hexdigest()
    # pymongo fetches chunks in server batches of up to 16 MiB per open file.
    assert download < 40 * 1024 * 1024, f"download used {download} bytes for {size}"


@pytest.mark.parametrize(
    ("start", "stop"),
    [(0, 10), (5, CHUNK + 5), (CHUNK, CHUNK + 1), (CHUNK - 1, 2 * CHUNK + 7), (700_000, 10**9)],
)
def test_ranged_reads(storage: GridFSStorage, start: int, stop: int) -> None:
    data = os.urandom(2 * CHUNK + 100)
    stored = storage.get(storage.create(data))
    assert b"".join(stored.iter_range(start, stop)) == data[start:stop]
    stored.seek(3)
    assert stored.read(4) == data[3:7]
    assert stored.tell() == 7


def test_list_reads_only_the_ids(storage: GridFSStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = {storage.create(os.urandom(1000)) for _ in range(5)}
    files = Recorder(storage._files)
    monkeypatch.setattr(storage, "_files", files)
    monkeypatch.setattr(storage, "_chunks", Recorder())  # any use fails the test
    assert set(storage.list()) == ids
    assert [(name, kwargs) for name, _, kwargs in files.calls] == [
        ("find", {"projection": {"_id": True}})
    ]


# --- replace ---------------------------------------------------------------------------


def test_failed_upload_keeps_the_old_file_and_leaves_no_chunks(
    storage: GridFSStorage, db: Any
) -> None:
    class Broken:
        def __init__(self) -> None:
            self.sent = 0

        def read(self, n: int = -1) -> bytes:
            if self.sent > 3 * CHUNK:
                raise ConnectionResetError("client went away")
            self.sent += 100_000
            return os.urandom(100_000)

    file_id = storage.create(b"keep me", filename="k.txt")
    with pytest.raises(ConnectionResetError):
        storage.replace(file_id, Broken())
    assert storage.get(file_id).read() == b"keep me"
    assert db["filedepot.chunks"].count_documents({}) == 1
    assert depot_gridfs._JOURNAL not in db["filedepot.files"].find_one()


def test_server_lost_before_the_commit_keeps_the_old_file(
    storage: GridFSStorage, monkeypatch: pytest.MonkeyPatch, db: Any
) -> None:
    file_id = storage.create(b"keep me", filename="k.txt")
    with monkeypatch.context() as patched:
        patched.setattr(storage, "_files", FailingOn(storage._files, "find_one_and_update"))
        with pytest.raises(BackendUnavailableError, match="Cannot reach MongoDB"):
            storage.replace(file_id, b"new")
    assert storage.get(file_id).read() == b"keep me"
    assert db["filedepot.chunks"].count_documents({}) == 1  # the staged chunks are gone


def interrupted_replace(storage: GridFSStorage, monkeypatch: pytest.MonkeyPatch) -> str:
    """A file whose replace() died between deleting the old chunks and moving the new ones."""
    file_id = storage.create(b"old version", filename="v.txt")
    with monkeypatch.context() as patched:
        patched.setattr(storage, "_chunks", FailingOn(storage._chunks, "update_many"))
        with pytest.raises(BackendUnavailableError):
            storage.replace(file_id, b"new version")
    return file_id


def test_readers_wait_for_a_commit_then_give_up(
    storage: GridFSStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_id = interrupted_replace(storage, monkeypatch)
    monkeypatch.setattr(depot_gridfs, "_REPLACE_WAIT", 0.05)
    with pytest.raises(BackendUnavailableError, match="in the middle of a replace") as raised:
        storage.get(file_id)
    assert isinstance(raised.value, OSError)
    with pytest.raises(BackendUnavailableError):
        storage.replace(file_id, b"a third version")


def test_an_abandoned_commit_is_finished_by_the_next_operation(
    storage: GridFSStorage, monkeypatch: pytest.MonkeyPatch, db: Any
) -> None:
    file_id = interrupted_replace(storage, monkeypatch)
    monkeypatch.setattr(depot_gridfs, "_STALE_AFTER", 0.0)
    stored = storage.get(file_id)
    assert (stored.read(), stored.filename, stored.checksum) == (
        b"new version",
        "v.txt",
        sha256(b"new version"),
    )
    assert depot_gridfs._JOURNAL not in db["filedepot.files"].find_one()
    assert db["filedepot.chunks"].count_documents({}) == 1


def test_a_replace_finishes_an_abandoned_one_first(
    storage: GridFSStorage, monkeypatch: pytest.MonkeyPatch, db: Any
) -> None:
    file_id = interrupted_replace(storage, monkeypatch)
    monkeypatch.setattr(depot_gridfs, "_STALE_AFTER", 0.0)
    storage.replace(file_id, b"third")
    assert storage.get(file_id).read() == b"third"
    assert db["filedepot.chunks"].count_documents({}) == 1


def test_delete_during_an_abandoned_commit_removes_every_chunk(
    storage: GridFSStorage, monkeypatch: pytest.MonkeyPatch, db: Any
) -> None:
    file_id = interrupted_replace(storage, monkeypatch)
    storage.delete(file_id)
    assert not storage.exists(file_id)
    assert db["filedepot.chunks"].count_documents({}) == 0


def test_replace_loses_to_a_concurrent_delete(
    storage: GridFSStorage, monkeypatch: pytest.MonkeyPatch, db: Any
) -> None:
    file_id = storage.create(b"x")
    files = storage._files

    class DeletedMeanwhile(Recorder):
        def __getattr__(self, name: str) -> Any:
            if name == "update_one":  # the commit's mark: delete() runs just before it
                storage.delete(file_id)
            return super().__getattr__(name)

    with monkeypatch.context() as patched:
        patched.setattr(storage, "_files", DeletedMeanwhile(files))
        with pytest.raises(StoredFileNotFoundError):
            storage.replace(file_id, b"y")
    assert not storage.exists(file_id)
    assert db["filedepot.chunks"].count_documents({}) == 0


# --- errors -------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_an_oserror_naming_host_not_password() -> None:
    # A real pymongo client (this test takes no mongomock fixture).
    port = closed_port()
    storage = GridFSStorage(
        f"mongodb://depot:s3cr%40t@127.0.0.1:{port}/files?serverSelectionTimeoutMS=100",
        collection="media",
    )
    try:
        for operation, args in [
            ("get", (str(ObjectId()),)),
            ("create", (b"x",)),
            ("list", ()),
        ]:
            with pytest.raises(BackendUnavailableError) as raised:
                getattr(storage, operation)(*args)
            message = str(raised.value)
            assert isinstance(raised.value, OSError)
            assert f"127.0.0.1:{port}" in message
            assert "GridFS collection 'media' of database 'files'" in message
            assert "s3cr" not in message and "depot:" not in message
            # what filedepot let through, for apps' `except ServerSelectionTimeoutError`
            assert isinstance(raised.value, pymongo.errors.ServerSelectionTimeoutError)
    finally:
        storage.close()


@pytest.mark.parametrize("server", ["closed port", "silent"])
def test_a_down_server_costs_seconds_not_pymongos_30(server: str) -> None:
    # A real pymongo client, the URI setting no timeout: depot's default bounds the wait.
    from tests.backends.silent import SilentServer

    with SilentServer() as silent:
        port = silent.port if server == "silent" else closed_port()
        storage = GridFSStorage(f"mongodb://127.0.0.1:{port}/files")
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError) as raised:
                storage.exists(str(ObjectId()))
            waited = time.monotonic() - started
        finally:
            storage.close()
        assert server != "silent" or silent.connections > 0  # it did hang there
    assert 4 <= waited < 10, waited
    assert "serverSelectionTimeoutMS" in str(raised.value)
    assert f"127.0.0.1:{port}" in str(raised.value)


@pytest.mark.parametrize(
    ("query", "selection", "connect"),
    [
        ("", 5.0, 5.0),
        ("?serverSelectionTimeoutMS=100", 0.1, 5.0),
        ("?serverselectiontimeoutms=100&connectTimeoutMS=60000", 0.1, 60.0),
    ],
)
def test_timeouts_of_the_uri_win(query: str, selection: float, connect: float) -> None:
    storage = GridFSStorage(f"mongodb://127.0.0.1:{closed_port()}/files{query}")
    try:
        options = storage._cli.options
        assert options.server_selection_timeout == selection
        assert options.pool_options.connect_timeout == connect
    finally:
        storage.close()


def test_bad_uri_is_still_pymongos_error() -> None:
    # filedepot let pymongo's InvalidURI through: apps may catch it
    with pytest.raises(pymongo.errors.InvalidURI) as raised:
        GridFSStorage("http://localhost/db")
    assert isinstance(raised.value, ConfigurationError)


def test_middleware_answers_503_when_the_server_is_down() -> None:
    from webtest import TestApp

    from depot.manager import DepotManager

    storage = GridFSStorage(
        f"mongodb://127.0.0.1:{closed_port()}/files?serverSelectionTimeoutMS=100"
    )
    DepotManager._depots["down"] = storage
    try:
        TestApp(DepotManager.make_middleware(lambda e, s: [])).get(
            f"/depot/down/{ObjectId()}", status=503
        )
    finally:
        storage.close()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "mongodb://depot:pw@localhost:1",
            "'mongodb://depot:\\*\\*\\*@localhost:1' names no database",
        ),
        ("mongodb://localhost:notaport/db", "is not valid"),
        ("http://localhost/db", "is not valid"),
    ],
)
def test_bad_mongouri_is_a_configuration_error(uri: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        GridFSStorage(uri)
    assert "pw" not in str(raised.value)


def test_settings_name_the_backend() -> None:
    from depot.manager import DepotManager

    with pytest.raises(ConfigurationError, match=r"depot.mongouri"):
        DepotManager.from_config({"depot.backend": "gridfs"})


@pytest.mark.parametrize("missing", [("pymongo", "bson", "gridfs"), ("gridfs",), ("bson",)])
def test_missing_pymongo_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, missing: tuple[str, ...]
) -> None:
    for name in missing:
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    monkeypatch.delitem(sys.modules, "depot.io.gridfs")
    with pytest.raises(ImportError) as raised:
        importlib.import_module("depot.io.gridfs")
    # gridfs and bson are parts of pymongo: pymongo is what to install
    assert str(raised.value) == (
        "depot.io.gridfs needs the 'pymongo' package; "
        "install the 'gridfs' extra: pip install 'depot-storage[gridfs]'."
    )


@pytest.mark.parametrize(("field", "value"), [("filename", 0), ("contentType", False)])
def test_a_falsy_name_or_type_of_the_wrong_type_is_corrupt(
    gridfs_settings: dict[str, Any], field: str, value: object
) -> None:
    # Issue 12, finding 12: 0 or False is not "no name", it is a damaged document.
    from bson import ObjectId

    from depot.exceptions import CorruptMetadataError
    from depot.manager import DepotManager

    storage = DepotManager.from_config(gridfs_settings)
    file_id = storage.create(b"x", filename="a.txt")
    storage._files.update_one({"_id": ObjectId(file_id)}, {"$set": {field: value}})
    with pytest.raises(CorruptMetadataError, match=file_id):
        storage.get(file_id)


def test_reset_closes_the_mongo_client_and_the_storage_reconnects() -> None:
    # A real pymongo client (no mongomock): pymongo refuses a closed client.
    from depot.manager import DepotManager

    port = closed_port()
    uri = f"mongodb://127.0.0.1:{port}/files?serverSelectionTimeoutMS=100"
    storage = DepotManager.configure("mongo", {"depot.backend": "gridfs", "depot.mongouri": uri})
    first = storage._cli
    DepotManager.reset()
    with pytest.raises(pymongo.errors.InvalidOperation):
        first.list_database_names()  # closed: its sockets and threads are gone
    try:
        # still usable, with a new client: here it reports the server down, as before
        assert storage._cli is not first
        with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{port}"):
            storage.exists(str(ObjectId()))
    finally:
        storage.close()


def test_a_storage_shared_across_resets_keeps_its_files(gridfs_settings: dict[str, Any]) -> None:
    # Apps' fixtures may share one storage across tests, with a reset() between them.
    from depot.manager import DepotManager

    storage = DepotManager.configure("shared", gridfs_settings)
    file_id = storage.create(b"kept", filename="a.txt")
    DepotManager.reset()
    DepotManager.reset()
    assert storage.get(file_id).read() == b"kept"
    assert storage.list() == [file_id]
