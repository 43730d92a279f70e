"""Chunked uploads on the SQL backend, as a hostile user tries them: writers racing,
finalizes racing, chunks larger than a row, a killed writer, a killed connection.

The shared chunked-upload tests (test_chunked.py) run on SQL too; these are
what only the SQL staging has. Each runs on SQLite, PostgreSQL and MariaDB
(tests/databases.py) unless it says otherwise.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from depot.exceptions import BackendUnavailableError, InvalidChunk, UploadNotFound
from depot.io.sql import SQLStorage, define_tables
from depot.manager import DepotManager
from depot.uploads._sql import SUFFIXES, SQLStaging
from depot.uploads.tus import TusServer, TusWSGIApp
from tests.databases import TestDatabase, database, engine, sqlite_engine
from tests.io.test_sql import prefix
from tests.streams import Generated, MiB, OneWayStream, sha256

__all__ = ["database", "engine", "prefix"]

ROW = 1024  # the storage fixture's chunk_size: the bytes per row of staged data


@pytest.fixture
def storage(engine: sa.Engine, prefix: str) -> SQLStorage:
    return SQLStorage(engine=engine, prefix=prefix, chunk_size=ROW)


def rows(storage: SQLStorage) -> dict[str, int]:
    """How many rows each upload table holds."""
    staging = storage._staging()
    assert isinstance(staging, SQLStaging)
    counts = {}
    with storage.engine.connect() as conn:
        for suffix in SUFFIXES:
            table = storage.tables.files.metadata.tables[storage.tables.files.name + suffix]
            counts[suffix] = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
    return counts


EMPTY = dict.fromkeys(SUFFIXES, 0)


def test_the_tables_are_defined_with_the_depots() -> None:
    metadata = sa.MetaData()
    define_tables(metadata, "media", "app_")
    assert set(metadata.tables) == {
        "app_media",
        "app_media_chunks",
        "app_media_uploads",
        "app_media_upchunks",
        "app_media_updata",
    }
    # The longest name define_tables takes makes no table name PostgreSQL would cut.
    longest = sa.MetaData()
    define_tables(longest, "t" * 52)
    assert max(len(name) for name in longest.tables) <= 63


def test_the_upload_tables_are_made_at_the_first_upload(storage: SQLStorage, prefix: str) -> None:
    def tables() -> set[str]:
        with storage.engine.connect() as conn:
            return {n for n in sa.inspect(conn).get_table_names() if n.startswith(prefix)}

    storage.create(b"x")
    assert tables() == {f"{prefix}depot_files", f"{prefix}depot_files_chunks"}
    storage.reserve(1, None)
    assert tables() == {f"{prefix}depot_files{s}" for s in ("", "_chunks", *SUFFIXES)}


def test_writers_of_one_upload_in_threads(storage: SQLStorage) -> None:
    piece = 5 * ROW + 17  # six rows each
    data = os.urandom(6 * piece)
    upload_id = storage.reserve(len(data), sha256(data))
    offsets = [n * piece for n in range(6)]
    errors: list[BaseException] = []
    start = threading.Barrier(12)

    def send(offset: int) -> None:
        start.wait()
        try:
            storage.write_chunk(upload_id, offset, OneWayStream(data[offset : offset + piece]))
        except BaseException as exc:
            errors.append(exc)

    # Each chunk twice at once, as clients retrying do: both are told it is in.
    threads = [threading.Thread(target=send, args=(o,)) for o in offsets * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert storage.status(upload_id).complete
    # The losers' rows are gone: six rows per chunk, once.
    assert rows(storage) == {"_uploads": 1, "_upchunks": 6, "_updata": 36}
    file_id = storage.finalize(upload_id)
    assert storage.get(file_id).read() == data
    assert rows(storage) == {"_uploads": 1, "_upchunks": 0, "_updata": 0}


def test_different_bytes_at_one_offset_at_once(storage: SQLStorage) -> None:
    upload_id = storage.reserve(3 * ROW, None)
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def send(byte: bytes) -> None:
        start.wait()
        try:
            outcomes.append(storage.write_chunk(upload_id, 0, byte * 3 * ROW).received)
        except InvalidChunk as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=send, args=(b,)) for b in (b"a", b"b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(map(type, outcomes), key=str) == sorted([int, InvalidChunk], key=str)
    content = storage.get(storage.finalize(upload_id)).read()
    assert content in (b"a" * 3 * ROW, b"b" * 3 * ROW)


def finalize_at_once(storage: SQLStorage, upload_id: str, callers: int) -> list[object]:
    """What ``callers`` threads calling finalize() at the same moment got."""
    start = threading.Barrier(callers)
    outcomes: list[object] = []

    def finalize() -> None:
        start.wait()
        try:
            outcomes.append(storage.finalize(upload_id))
        except UploadNotFound as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=finalize) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_finalizes_racing(storage: SQLStorage) -> None:
    for _ in range(3):
        data = os.urandom(20 * ROW)
        upload_id = storage.reserve(len(data), sha256(data))
        storage.write_chunk(upload_id, 0, data)
        outcomes = finalize_at_once(storage, upload_id, 4)
        # One stores the file; the others get its id, or are told to ask later.
        ids = {o for o in outcomes if isinstance(o, str)}
        assert len(outcomes) == 4 and len(ids) == 1, outcomes
        assert all(isinstance(o, (str, UploadNotFound)) for o in outcomes)
        assert storage.finalize(upload_id) in ids  # asked again: the same file
    assert len(storage.list()) == 3


def test_a_finalize_that_read_the_upload_before_another_finished_it(
    storage: SQLStorage, patched: pytest.MonkeyPatch
) -> None:
    upload_id = storage.reserve(3, sha256(b"abc"))
    storage.write_chunk(upload_id, 0, b"abc")
    staging = storage._staging()
    before = staging.record(upload_id)
    file_id = storage.finalize(upload_id)
    # The slow one read the record before the first finished, and claims after.
    reads = iter([before, staging.record(upload_id)])
    patched.setattr(staging, "record", lambda upload_id: next(reads))
    # The same file, and not as one this call recorded (tus would tell twice).
    assert storage._finalize(upload_id, ()) == (file_id, False)
    patched.undo()
    assert storage.finalize(upload_id) == file_id
    assert storage.list() == [file_id]


def test_a_chunk_arriving_while_its_upload_is_finalized(storage: SQLStorage) -> None:
    data = os.urandom(10 * ROW)
    upload_id = storage.reserve(len(data), sha256(data))
    storage.write_chunk(upload_id, 0, data)
    finalized = []

    class Resent:
        """The chunk sent again by a client, while another request finalizes."""

        sent = 0

        def read(self, n: int = -1) -> bytes:
            if self.sent == 5 * ROW:
                finalized.append(storage.finalize(upload_id))
            piece = data[self.sent : self.sent + ROW]
            self.sent += len(piece)
            return piece

    with pytest.raises(UploadNotFound, match="finished while this chunk arrived"):
        storage.write_chunk(upload_id, 0, Resent())  # type: ignore[arg-type]
    assert storage.get(finalized[0]).read() == data
    # Its rows went with it: kept, they would have outlived the upload's finish.
    assert rows(storage) == {"_uploads": 1, "_upchunks": 0, "_updata": 0}


def test_expiry_sweeps_the_rows_of_a_writer_killed_after_an_abort(storage: SQLStorage) -> None:
    upload_id = storage.reserve(1, None)
    tables = storage.tables.files.metadata.tables
    # What a writer leaves that wrote a batch of rows after its upload was
    # aborted, and was killed before it could see so and delete them.
    with storage.engine.begin() as conn:
        conn.execute(
            sa.insert(tables[storage.tables.files.name + "_updata"]),
            [{"upload_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "token": "t", "n": 0,
              "data": b"x"}],
        )  # fmt: skip
    assert rows(storage)["_updata"] == 1
    assert storage.expire_uploads() == []  # nothing idle yet, but the orphans are gone
    assert rows(storage) == {"_uploads": 1, "_upchunks": 0, "_updata": 0}
    assert storage.status(upload_id).missing == [(0, 1)]


def test_finalize_in_a_joined_block_commits_the_file(
    engine: sa.Engine, storage: SQLStorage
) -> None:
    upload_id = storage.reserve(5, sha256(b"hello"))
    storage.write_chunk(upload_id, 0, b"hello")
    with orm.Session(engine) as session:
        session.begin()
        with storage.joined(session):
            file_id = storage.finalize(upload_id)
        session.rollback()  # the request failed after it
    # Before, the file went with the rollback, and the upload said it was finished
    # into it: its bytes were lost. Now the request, retried, gets the same file.
    assert storage.get(file_id).read() == b"hello"
    assert storage.finalize(upload_id) == file_id


def test_a_chunk_larger_than_a_row_is_split_as_it_streams(storage: SQLStorage) -> None:
    data = os.urandom(10 * ROW + 1)
    upload_id = storage.reserve(len(data), sha256(data))
    storage.write_chunk(upload_id, 0, OneWayStream(data, piece=333))
    tables = storage.tables.files.metadata.tables
    data_table = tables[storage.tables.files.name + "_updata"]
    with storage.engine.connect() as conn:
        lengths = conn.execute(
            sa.select(sa.func.length(data_table.c.data)).order_by(data_table.c.n)
        ).scalars()
        assert list(lengths) == [ROW] * 10 + [1]
    # The same bytes again, from a stream cut otherwise: the same chunk.
    assert storage.write_chunk(upload_id, 0, OneWayStream(data, piece=4000)).complete
    assert storage.get(storage.finalize(upload_id)).read() == data


def test_abort_and_expiry_remove_the_rows(storage: SQLStorage) -> None:
    first = storage.reserve(4 * ROW, None)
    second = storage.reserve(4 * ROW, None)
    finished = storage.reserve(3, None)
    for upload_id in (first, second):
        storage.write_chunk(upload_id, 0, b"x" * 3 * ROW)
    storage.write_chunk(finished, 0, b"abc")
    storage.finalize(finished)
    assert rows(storage) == {"_uploads": 3, "_upchunks": 2, "_updata": 6}
    storage.abort(first)
    assert rows(storage) == {"_uploads": 2, "_upchunks": 1, "_updata": 3}
    with pytest.raises(UploadNotFound):
        storage.write_chunk(first, 3 * ROW, b"y")
    assert sorted(storage.expire_uploads(idle=-1)) == sorted([second, finished])
    assert rows(storage) == EMPTY


def test_a_chunk_arriving_while_its_upload_is_aborted(storage: SQLStorage) -> None:
    upload_id = storage.reserve(10 * ROW, None)

    class AbortedMidway:
        """A request body whose upload is aborted by another request half-way."""

        sent = 0

        def read(self, n: int = -1) -> bytes:
            if self.sent == 5 * ROW:
                storage.abort(upload_id)
            if self.sent >= 10 * ROW:
                return b""
            self.sent += ROW
            return b"z" * ROW

    with pytest.raises(UploadNotFound):
        storage.write_chunk(upload_id, 0, AbortedMidway())  # type: ignore[arg-type]
    # The rows written after the abort went with the refused chunk.
    assert rows(storage) == EMPTY


def test_a_request_body_cut_off_midway_leaves_no_rows(storage: SQLStorage) -> None:
    upload_id = storage.reserve(10 * ROW, None)

    class CutOff:
        """A client whose connection drops after a few rows' worth of bytes."""

        sent = 0

        def read(self, n: int = -1) -> bytes:
            if self.sent >= 4 * ROW:
                raise ConnectionResetError("the client went away")
            self.sent += ROW
            return b"c" * ROW

    with pytest.raises(ConnectionResetError):
        storage.write_chunk(upload_id, 0, CutOff())  # type: ignore[arg-type]
    assert rows(storage) == {"_uploads": 1, "_upchunks": 0, "_updata": 0}
    assert storage.status(upload_id).received == 0


def test_an_abort_while_finalize_reads_the_chunks(
    storage: SQLStorage, patched: pytest.MonkeyPatch
) -> None:
    data = os.urandom(5 * ROW)
    upload_id = storage.reserve(len(data), sha256(data))
    storage.write_chunk(upload_id, 0, data)
    staging = storage._staging()
    fetch = staging._fetch

    def aborted_first(*args: Any) -> Any:
        storage.abort(upload_id)  # another request, just before the rows are read
        return fetch(*args)

    patched.setattr(staging, "_fetch", aborted_first)
    with pytest.raises(UploadNotFound, match="aborted or expired meanwhile"):
        storage.finalize(upload_id)
    assert storage.list() == []


def test_an_unreachable_database_is_said_so() -> None:
    storage = SQLStorage(url="postgresql+psycopg://depot@127.0.0.1:9/none?connect_timeout=2")
    with pytest.raises(BackendUnavailableError, match="Check that the server is running"):
        storage.reserve(1, None)


def test_a_large_record_and_odd_metadata(storage: SQLStorage) -> None:
    metadata = {"$where": "1", "k'; DROP TABLE x; --": "\U0001f600" * 30_000}
    upload_id = storage.reserve(1, None, "text/plain", "a'b\".txt", metadata)
    assert storage.status(upload_id).metadata == metadata


def test_a_32_mib_upload_in_flat_memory(engine: sa.Engine, prefix: str) -> None:
    storage = SQLStorage(engine=engine, prefix=prefix)  # the default chunk_size
    size = 32 * MiB
    upload_id = storage.reserve(size, None)
    first, second = Generated(size // 2), Generated(size // 2)
    tracemalloc.start()
    try:
        storage.write_chunk(upload_id, 0, first)  # type: ignore[arg-type]
        storage.write_chunk(upload_id, size // 2, second)  # type: ignore[arg-type]
        written = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        file_id = storage.finalize(upload_id)
        finalized = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Its checksum, computed as the file was written, is that of the bytes sent.
    both = hashlib.sha256()
    both.update(first._block * 16)
    both.update(second._block * 16)
    assert storage.get(file_id).checksum == "sha256:" + both.hexdigest()
    # About 6 MiB on each database, 2 of them the test's stream's own.
    assert written < 10 * MiB, f"16 MiB chunks written in {written / MiB:.1f} MiB"
    assert finalized < 10 * MiB, f"32 MiB finalized in {finalized / MiB:.1f} MiB"


# --- a killed writer, a killed connection -------------------------------------------


def _storage_in_child(url: str, prefix: str) -> SQLStorage:
    if url.startswith("sqlite"):
        engine = sqlite_engine(Path(sa.make_url(url).database or ""))
    else:
        engine = sa.create_engine(url)
    return SQLStorage(engine=engine, prefix=prefix)


def _write_forever(url: str, prefix: str, upload_id: str, ready: Any) -> None:
    class Stalling:
        """A request body that sends a batch of rows and more, then hangs until killed."""

        sent = 0

        def read(self, n: int = -1) -> bytes:
            if self.sent >= 2 * MiB + 65536:
                ready.set()
                time.sleep(3600)
            self.sent += 65536
            return b"b" * 65536

    _storage_in_child(url, prefix).write_chunk(upload_id, 100, Stalling())  # type: ignore[arg-type]


# A child process per database takes a second to start: SQLite and one server.
@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
def test_a_killed_writer_loses_nothing_acknowledged(engine: sa.Engine, prefix: str) -> None:
    storage = SQLStorage(engine=engine, prefix=prefix)
    data = b"a" * 100 + b"b" * 3 * MiB
    upload_id = storage.reserve(len(data), sha256(data))
    storage.write_chunk(upload_id, 0, data[:100])  # acknowledged
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    url = engine.url.render_as_string(hide_password=False)
    worker = context.Process(target=_write_forever, args=(url, prefix, upload_id, ready))
    worker.start()
    assert ready.wait(60)
    os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
    worker.join(10)
    status = storage.status(upload_id)
    assert (status.received, status.missing) == (100, [(100, len(data))])
    assert rows(storage)["_updata"] > 1  # what it wrote before it died, in no chunk
    storage.write_chunk(upload_id, 100, data[100:])
    assert storage.get(storage.finalize(upload_id)).checksum == sha256(data)
    assert rows(storage) == {"_uploads": 1, "_upchunks": 0, "_updata": 0}


def _finalize_dying_in_finish(path: str, prefix: str, upload_id: str) -> None:
    storage = _storage_in_child(f"sqlite:///{path}", prefix)

    @sa.event.listens_for(storage.engine, "before_cursor_execute")
    def die(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("DELETE FROM") and "_updata" in statement:
            os._exit(9)  # in finish's transaction, after it marked the upload finished

    storage.finalize(upload_id)


def test_a_process_killed_in_finish(tmp_path: Path) -> None:
    path = tmp_path / "files.sqlite"
    storage = SQLStorage(engine=sqlite_engine(path), prefix="p_", chunk_size=ROW)
    data = os.urandom(5 * ROW)
    upload_id = storage.reserve(len(data), sha256(data), filename="h.bin")
    storage.write_chunk(upload_id, 0, data)
    worker = multiprocessing.get_context("spawn").Process(
        target=_finalize_dying_in_finish, args=(str(path), "p_", upload_id)
    )
    worker.start()
    worker.join(60)
    assert worker.exitcode == 9
    (stored,) = storage.list()  # the file it stored, whole
    status = storage.status(upload_id)
    assert (status.file_id, status.complete) == (None, True)  # finish() undone whole
    assert rows(storage) == {"_uploads": 1, "_upchunks": 1, "_updata": 5}
    assert storage.finalize(upload_id) == stored  # the retry finishes with it
    assert storage.list() == [stored]
    assert storage.get(stored).read() == data


class Killer:
    """Kills the server connection of the first statement ``matches`` accepts, just before
    it is sent, from another connection (as a server restart or a proxy would)."""

    def __init__(
        self, engine: sa.Engine, admin: sa.Engine, matches: Callable[[str], bool], skip: int = 0
    ) -> None:
        self.admin = admin
        self.matches = matches
        self.skip = skip
        self.killed = 0
        sa.event.listen(engine, "before_cursor_execute", self._maybe_kill)

    def _maybe_kill(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.killed or not self.matches(statement):
            return
        if self.skip:
            self.skip -= 1
            return
        self.killed += 1
        raw = conn.connection.dbapi_connection
        with self.admin.connect() as admin:
            if self.admin.dialect.name == "postgresql":
                pid = raw.info.backend_pid
                admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                time.sleep(0.2)  # the backend exits on its own time
            else:
                admin.execute(sa.text(f"KILL {int(raw.thread_id())}"))
            admin.commit()


@pytest.fixture
def own_engine(database: TestDatabase) -> Iterator[sa.Engine]:
    """An engine of the test's own on the database, to kill connections of."""
    made = sa.create_engine(database.engine.url.render_as_string(hide_password=False))
    yield made
    made.dispose()


def _written(table: str) -> Callable[[str], bool]:
    return lambda statement: statement.startswith("INSERT INTO") and f"{table} " in statement


# Servers only: SQLite has no connection another one can kill.
@pytest.mark.parametrize("database", ["postgresql", "mariadb"], indirect=True)
def test_a_connection_killed_in_finalizes_write(
    database: TestDatabase, own_engine: sa.Engine, prefix: str
) -> None:
    storage = SQLStorage(engine=own_engine, prefix=prefix, chunk_size=ROW)
    data = os.urandom(2100 * ROW)  # more than one batch (2048) of chunk rows
    upload_id = storage.reserve(len(data), sha256(data))
    storage.write_chunk(upload_id, 0, data)
    # The second batch of the file's chunk rows: the first is committed by then.
    killer = Killer(own_engine, database.engine, _written(f"{prefix}depot_files_chunks"), 1)
    with pytest.raises(BackendUnavailableError, match="database"):
        storage.finalize(upload_id)
    assert killer.killed == 1
    assert storage.list() == []
    assert storage.status(upload_id).complete  # the upload as it was, claim released
    file_id = storage.finalize(upload_id)
    assert storage.get(file_id).read() == data
    with own_engine.connect() as conn:
        chunk_rows = sa.select(sa.func.count()).select_from(storage.tables.chunks)
        assert conn.execute(chunk_rows).scalar() == 2100  # none left by the failed write


@pytest.mark.parametrize("database", ["postgresql", "mariadb"], indirect=True)
def test_a_connection_killed_in_finish(
    database: TestDatabase, own_engine: sa.Engine, prefix: str
) -> None:
    storage = SQLStorage(engine=own_engine, prefix=prefix, chunk_size=ROW)
    data = os.urandom(5 * ROW)
    upload_id = storage.reserve(len(data), sha256(data))
    storage.write_chunk(upload_id, 0, data)

    def finishing(statement: str) -> bool:
        return statement.startswith("DELETE FROM") and "_updata" in statement

    killer = Killer(own_engine, database.engine, finishing)
    with pytest.raises(BackendUnavailableError, match="database"):
        storage.finalize(upload_id)
    assert killer.killed == 1
    (stored,) = storage.list()
    status = storage.status(upload_id)
    assert (status.file_id, status.complete) == (None, True)  # finish() rolled back whole
    # The claim stayed with its stored file: the retry finishes with it, not a copy.
    assert storage._staging().claimed(upload_id) == stored
    assert storage.finalize(upload_id) == stored
    assert storage.list() == [stored]
    assert rows(storage) == {"_uploads": 1, "_upchunks": 0, "_updata": 0}


# --- tus ------------------------------------------------------------------------------


def test_tus_on_a_sql_depot(sql_postgresql_settings: dict[str, Any]) -> None:
    depot = DepotManager.configure("default", {**sql_postgresql_settings, "depot.chunk_size": ROW})
    completed = []
    server = TusServer(
        "default", mountpoint="/files", on_complete=lambda stored, *_: completed.append(stored)
    )
    client = httpx.Client(
        transport=httpx.WSGITransport(app=TusWSGIApp(server)), base_url="http://t"
    )
    tus = {"Tus-Resumable": "1.0.0"}
    data = os.urandom(10 * ROW + 5)
    answer = client.post(
        "/files",
        headers={**tus, "Upload-Length": str(len(data)), "Upload-Metadata": "filename YS5iaW4="},
    )
    assert answer.status_code == 201, answer.text
    url = answer.headers["location"]
    chunk = {**tus, "Content-Type": "application/offset+octet-stream"}
    for start in (0, 4 * ROW, 8 * ROW):
        headers = {**chunk, "Upload-Offset": str(start)}
        answer = client.patch(url, headers=headers, content=data[start : start + 4 * ROW])
        assert answer.status_code == 204, answer.text
        assert client.head(url, headers=tus).headers["upload-offset"] == str(
            min(len(data), start + 4 * ROW)
        )
    (stored,) = completed
    assert (stored.read(), stored.filename) == (data, "a.bin")
    assert depot.list() == [stored.file_id]
    assert client.head(url, headers=tus).headers["upload-offset"] == str(len(data))


def test_without_sqlalchemy_the_extra_is_named() -> None:
    # Before, the staging's own import of SQLAlchemy came first, and failed bare.
    code = (
        "import sys; sys.modules['sqlalchemy'] = None\n"
        "try:\n    import depot.io.sql\n"
        "except ImportError as exc:\n    print(type(exc).__name__, exc)\n"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.startswith("ImportError depot.io.sql needs the 'SQLAlchemy' package")
