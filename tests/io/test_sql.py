"""What the SQL backend alone has: its settings, tables and chunks, its writes in the
application's transaction, and what it does when the process, connection or server dies.

Each test runs on SQLite, PostgreSQL and MariaDB (``engine``, from tests/databases.py);
the contract and middleware suites run on the three as well (tests/backends/sql.py).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from webob import Request

from depot.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    InvalidFileIdError,
    StoredFileNotFoundError,
)
from depot.io.sql import SQLStorage, _ReadAhead, define_tables
from depot.manager import DepotManager
from depot.middleware import FileServeApp
from tests.backends.sql import drop_tables
from tests.databases import TestDatabase, database, engine
from tests.streams import MiB, OneWayStream, sha256

__all__ = ["database", "engine"]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def prefix(database: TestDatabase) -> Iterator[str]:
    """A table prefix of this test's own; its tables are dropped afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}_"
    yield name
    drop_tables(database, name)


@pytest.fixture
def storage(engine: sa.Engine, prefix: str) -> SQLStorage:
    return SQLStorage(engine=engine, prefix=prefix, chunk_size=1024)


def chunk_rows(storage: SQLStorage) -> int:
    with storage.engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(storage.tables.chunks)
        ).scalar_one()


class Statements:
    """The statements run on an engine, with their parameters, while it listens."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.seen: list[tuple[str, Any]] = []

    def __enter__(self) -> Statements:
        sa.event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        self.seen.append((statement, params))

    def chunk_selects(self, storage: SQLStorage) -> list[list[int]]:
        """The integer parameters (chunk numbers) of each SELECT of the chunks table."""
        name = storage.tables.chunks.name
        found = []
        for statement, params in self.seen:
            if statement.lstrip().upper().startswith("SELECT") and name in statement:
                values = params.values() if isinstance(params, dict) else params
                found.append([v for v in values if isinstance(v, int)])
        return found

    def chunk_inserts(self, storage: SQLStorage) -> int:
        name = storage.tables.chunks.name
        return sum(1 for s, _ in self.seen if s.lstrip().upper().startswith("INSERT") and name in s)


# --- settings ------------------------------------------------------------------------


def test_configured_by_short_name_and_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'files.sqlite'}"
    storage = DepotManager.from_config(
        {"depot.backend": "sql", "depot.url": url, "depot.chunk_size": "4096"}
    )
    assert isinstance(storage, SQLStorage) and storage.chunk_size == 4096
    file_id = storage.create(b"x" * 10_000, filename="a.bin")
    assert storage.get(file_id).read() == b"x" * 10_000
    with storage.engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) == {"depot_files", "depot_files_chunks"}
    storage.close()  # its own engine: disposed, and usable again
    assert storage.exists(file_id)


def test_the_longest_names_fit_every_database(engine: sa.Engine) -> None:
    prefix = "p" * 20
    storage = SQLStorage(engine=engine, prefix=prefix, table="t" * 32)
    try:
        assert storage.get(storage.create(b"x")).read() == b"x"
    finally:
        storage.tables.files.metadata.drop_all(engine)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "needs the database: set url"),
        ({"url": "sqlite://", "engine": "x"}, "give url or engine, not both"),
        ({"engine": "sqlite://"}, "engine must be an SQLAlchemy Engine"),
        ({"url": "not a url"}, "is not an SQLAlchemy URL"),
        ({"url": "nosuchdb://h/x"}, "SQLAlchemy has no dialect 'nosuchdb'"),
        ({"url": "sqlite://", "chunk_size": 10}, "chunk_size must be a number of bytes"),
        ({"url": "sqlite://", "chunk_size": "1 MiB"}, "chunk_size must be a number of bytes"),
        ({"url": "sqlite://", "chunk_size": 64 * MiB}, "from 1024 to 8388608"),
        ({"url": "sqlite://", "table": "files; DROP TABLE x"}, "letters, digits and underscores"),
        ({"url": "sqlite://", "prefix": "my-app"}, "prefix must be made of letters"),
        ({"url": "sqlite://", "table": ""}, "give a non-empty table name"),
        ({"url": "sqlite://", "table": "t" * 53}, "have at most 52 characters"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_bad_settings_say_what_to_do(settings: dict[str, Any], message: str) -> None:
    config = {"depot.backend": "sql", **{f"depot.{k}": v for k, v in settings.items()}}
    with pytest.raises(ConfigurationError, match=message):
        DepotManager.from_config(config)


def test_missing_driver_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymssql", None)
    with pytest.raises(ConfigurationError, match="needs the database driver 'pymssql'"):
        SQLStorage(url="mssql+pymssql://u@h/db")


def test_a_given_engine_is_left_open(engine: sa.Engine, prefix: str) -> None:
    storage = SQLStorage(engine=engine, prefix=prefix)
    file_id = storage.create(b"x")
    with engine.connect() as conn:
        conn.execute(sa.select(1))
        storage.close()
        conn.execute(sa.select(1))  # not disposed under the application
    assert storage.exists(file_id)


# --- tables and chunks ---------------------------------------------------------------


def test_tables_defined_on_the_applications_metadata(engine: sa.Engine, prefix: str) -> None:
    metadata = sa.MetaData()
    files, chunks = define_tables(metadata, table="media", prefix=prefix)
    assert (files.name, chunks.name) == (f"{prefix}media", f"{prefix}media_chunks")
    metadata.create_all(engine)  # as the application's migration would
    storage = SQLStorage(engine=engine, table="media", prefix=prefix)
    file_id = storage.create(b"in the app's tables")
    with engine.connect() as conn:
        row = conn.execute(sa.select(files).where(files.c.file_id == file_id)).one()
    assert (row.content_length, row.checksum) == (19, sha256(b"in the app's tables"))
    assert row.last_modified.tzinfo is None and row.last_modified.microsecond == 0
    metadata.drop_all(engine)


def test_bytes_are_kept_in_chunks_of_the_chunk_size(storage: SQLStorage) -> None:
    data = os.urandom(5000)
    file_id = storage.create(data)
    chunks = storage.tables.chunks
    with storage.engine.connect() as conn:
        sizes = [len(d) for (d,) in conn.execute(sa.select(chunks.c.data).order_by(chunks.c.n))]
    assert sizes == [1024, 1024, 1024, 1024, 904]
    assert storage.get(file_id).read() == data


def test_files_keep_the_chunk_size_they_were_written_with(
    engine: sa.Engine, storage: SQLStorage, prefix: str
) -> None:
    data = os.urandom(10_000)
    file_id = storage.create(data)
    bigger = SQLStorage(engine=engine, prefix=prefix, chunk_size=4096)
    stored = bigger.get(file_id)
    stored.seek(3000)
    assert stored.read(5000) == data[3000:8000]
    bigger.replace(file_id, data[::-1])
    assert storage.get(file_id).read() == data[::-1]
    assert chunk_rows(storage) == 3


def test_replace_leaves_only_the_new_versions_chunks(storage: SQLStorage) -> None:
    file_id = storage.create(os.urandom(4000))
    other = storage.create(os.urandom(3000))
    storage.replace(file_id, os.urandom(2000))
    assert chunk_rows(storage) == 2 + 3
    storage.delete(file_id)
    assert chunk_rows(storage) == 3
    assert storage.list() == [other]


def test_a_large_write_streams_and_makes_the_row_last(storage: SQLStorage) -> None:
    rows_seen: list[tuple[int, bool]] = []

    class Watched(OneWayStream):
        def read(self, n: int = -1) -> bytes:
            rows_seen.append((chunk_rows(storage), bool(storage.list())))
            return super().read(n)

    data = os.urandom(5 * MiB)
    storage.list()  # the tables, for chunk_rows() to count in
    with Statements(storage.engine) as statements:
        file_id = storage.create(Watched(data, piece=256 * 1024))
    # Chunks were in the database while the stream was still being read...
    assert max(rows for rows, _ in rows_seen) >= 2048
    # ... in several INSERTs, and the file appeared only once they were all in.
    assert statements.chunk_inserts(storage) >= 3
    assert not any(listed for _, listed in rows_seen)
    assert hashlib.sha256(storage.get(file_id).read()).digest() == hashlib.sha256(data).digest()


@contextlib.contextmanager
def commits(engine: sa.Engine) -> Iterator[list[None]]:
    seen: list[None] = []

    def commit(conn: Any) -> None:
        seen.append(None)

    sa.event.listen(engine, "commit", commit)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "commit", commit)


def test_a_file_on_disk_is_committed_in_fewer_transactions_than_a_stream(
    storage: SQLStorage, tmp_path: Path
) -> None:
    # Each commit is a flush to disk; a stream may stall, and no lock is held while
    # waiting for it, so only bytes read from a disk share a transaction across batches.
    data = os.urandom(5 * MiB)  # three batches of 2 MiB at most
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    storage.list()
    with commits(storage.engine) as from_stream:
        streamed = storage.create(OneWayStream(data, piece=256 * 1024))
    with commits(storage.engine) as from_disk, path.open("rb") as f:
        on_disk = storage.create(f)
    assert len(from_stream) == 4  # each batch, then the row
    assert len(from_disk) == 2  # the batches, then the row
    for file_id in (streamed, on_disk):
        assert sha256(storage.get(file_id).read()) == sha256(data)
    assert chunk_rows(storage) == 2 * 5 * 1024


def _read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "depot-sql-read-ahead"]


def test_a_write_failing_mid_file_stops_its_read_ahead(storage: SQLStorage, tmp_path: Path) -> None:
    # A file on disk is read and hashed by a thread while the batch before is
    # written: a failed INSERT stops that thread and leaves no chunk behind.
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(5 * MiB))
    kept = storage.create(b"kept")
    inserts = []

    def fail_third(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            inserts.append(statement)
            if len(inserts) == 3:
                raise sa.exc.OperationalError(statement, None, Exception("the disk is full"))

    sa.event.listen(storage.engine, "before_cursor_execute", fail_third)
    try:
        with pytest.raises(BackendUnavailableError, match="the disk is full"), path.open("rb") as f:
            storage.create(f)
    finally:
        sa.event.remove(storage.engine, "before_cursor_execute", fail_third)
    assert len(inserts) == 3
    assert _read_ahead_threads() == []
    assert storage.list() == [kept]
    assert chunk_rows(storage) == 1


def test_the_read_ahead_gives_items_in_order_and_errors_in_place() -> None:
    made: list[int] = []

    def items(fail_at: int | None) -> Iterator[int]:
        for n in range(1000):
            if n == fail_at:
                raise ValueError(f"refused at {n}")
            made.append(n)
            yield n

    with _ReadAhead(items(None)) as got:
        assert list(got) == list(range(1000))
    with pytest.raises(ValueError, match="refused at 5"), _ReadAhead(items(5)) as got:
        assert next(got) == 0
        for _ in got:
            pass
    made.clear()
    with _ReadAhead(items(None)) as got:
        assert next(got) == 0  # the caller leaves early: the thread stops soon after
    assert _read_ahead_threads() == []
    assert len(made) <= 3  # the caller's item, one waiting, one being made


def test_driver_statements_give_connections_back_as_they_came(
    database: TestDatabase, prefix: str
) -> None:
    # On PostgreSQL the reads and a small create run in the driver's autocommit;
    # the pool's next user gets a connection in a transaction, as the pool gives it.
    url = database.engine.url.render_as_string(hide_password=False)
    own = sa.create_engine(url, pool_size=1, max_overflow=0)
    try:
        storage = SQLStorage(engine=own, prefix=prefix, chunk_size=1024)
        file_id = storage.create(b"x" * 1000)
        assert storage.get(file_id).read() == b"x" * 1000
        storage.create(b"y")
        with own.connect() as conn:  # the pool's one connection, the driver's too
            conn.execute(sa.insert(storage.tables.chunks), {"version": "v", "n": 0, "data": b"z"})
            conn.rollback()  # a transaction: nothing was committed by itself
        assert chunk_rows(storage) == 2
    finally:
        own.dispose()


def test_an_autocommit_engines_connections_stay_in_autocommit(
    database: TestDatabase, prefix: str
) -> None:
    # An application's engine made with isolation_level="AUTOCOMMIT": its
    # statements persist without a commit. The driver's reads and small creates
    # must not give the pool's connection back with autocommit off, or the
    # application's next writes on it are rolled back when it returns (found in review).
    url = database.engine.url.render_as_string(hide_password=False)
    own = sa.create_engine(url, pool_size=1, max_overflow=0, isolation_level="AUTOCOMMIT")
    try:
        storage = SQLStorage(engine=own, prefix=prefix, chunk_size=1024)
        file_id = storage.create(b"x" * 1000)
        storage.create(b"y")
        assert storage.get(file_id).read() == b"x" * 1000
        storage.close()  # SQLite's kept connection back to the pool, for the next user
        with own.connect() as conn:  # the pool's one connection, the driver's too
            conn.execute(sa.insert(storage.tables.chunks), {"version": "v", "n": 0, "data": b"z"})
        assert chunk_rows(storage) == 3
    finally:
        own.dispose()


def test_reads_keep_connections_out_of_the_pool_only_on_sqlite(
    database: TestDatabase, prefix: str
) -> None:
    # On SQLite a few connections stay out of the pool between reads (a checkout
    # costs as much as the read); a server's sessions go back after each statement.
    url = database.engine.url.render_as_string(hide_password=False)
    own = sa.create_engine(url)
    try:
        storage = SQLStorage(engine=own, prefix=prefix, chunk_size=1024)
        file_id = storage.create(b"x" * 3000)
        errors: list[BaseException] = []

        def read_many() -> None:
            try:
                for _ in range(30):
                    assert storage.get(file_id).read() == b"x" * 3000
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=read_many) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        kept = own.pool.checkedout()  # type: ignore[attr-defined]
        assert (1 <= kept <= 2) if own.dialect.name == "sqlite" else kept == 0
        storage.close()
        assert own.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert storage.get(file_id).read() == b"x" * 3000  # usable after close()
        storage.close()

        def read_and_forget() -> None:
            forgotten = SQLStorage(engine=own, prefix=prefix, chunk_size=1024)
            assert forgotten.get(file_id).read() == b"x" * 3000

        read_and_forget()
        gc.collect()  # returned to the pool, not left to SQLAlchemy's warning
        assert own.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        own.dispose()


def test_a_new_small_file_is_one_statement_on_postgresql(storage: SQLStorage) -> None:
    storage.list()
    postgresql = storage.engine.dialect.name == "postgresql"
    for data in (b"", b"x" * 1000):
        with Statements(storage.engine) as statements, commits(storage.engine) as committed:
            file_id = storage.create(data, "a.txt")
        inserts = [
            s for s, _ in statements.seen if s.lstrip().upper().startswith(("INSERT", "WITH"))
        ]
        if postgresql:
            # The row and the chunk in one INSERT that commits itself: one round trip.
            assert len(statements.seen) == 1 and len(inserts) == 1
            assert committed == []
        else:
            assert len(inserts) == (2 if data else 1) and len(committed) == 1
        stored = storage.get(file_id)
        assert (stored.read(), stored.filename, stored.content_length) == (data, "a.txt", len(data))
    assert chunk_rows(storage) == 1


def test_reading_fetches_chunk_by_chunk(storage: SQLStorage) -> None:
    data = os.urandom(20 * 1024)
    stored = storage.get(storage.create(data))
    with Statements(storage.engine) as statements:
        got = b"".join(iter(lambda: stored.read(1024), b""))
    assert got == data
    fetched = statements.chunk_selects(storage)
    # The first read asks for the file's current version with its chunk.
    assert len(fetched) == 20
    assert all(len(numbers) == 2 and numbers[1] - numbers[0] == 1 for numbers in fetched)


def test_a_small_get_and_read_is_two_selects_on_the_driver(tmp_path: Path) -> None:
    # What SQLite runs, seen by the driver itself: no listener on the engine, so the
    # reads take the DBAPI cursor. get() reads the row, the first read the row again
    # (a replace in between is followed) with the chunk: two statements, nothing more.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ran: list[str] = []

    @sa.event.listens_for(engine, "connect")
    def trace(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.set_trace_callback(ran.append)

    try:
        storage = SQLStorage(engine=engine, chunk_size=1024)
        file_id = storage.create(b"x" * 1000)
        ran.clear()
        stored = storage.get(file_id)
        assert stored.read() == b"x" * 1000
        assert [s.split()[0].upper() for s in ran] == ["SELECT", "SELECT"]
        assert storage.tables.chunks.name in ran[1]
    finally:
        engine.dispose()


def test_after_dispose_reads_leave_the_old_pools_connections(tmp_path: Path) -> None:
    # engine.dispose() (a database file restored from a backup, a test's fresh
    # database): the connections SQLite's storage kept out of the pool were of the
    # old pool, and reads went on in the old file, a new file not found and a
    # deleted one served (found in review).
    path = tmp_path / "db.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        storage = SQLStorage(engine=engine, chunk_size=1024)
        old_id = storage.create(b"old")
        assert storage.get(old_id).read() == b"old"
        engine.dispose()
        path.unlink()
        storage.tables.files.metadata.create_all(engine)
        new_id = storage.create(b"new")
        assert storage.get(new_id).read() == b"new"
        with pytest.raises(StoredFileNotFoundError):
            storage.get(old_id)
        storage.close()
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_an_engines_schema_translate_map_is_followed_by_every_read(
    database: TestDatabase, prefix: str, tmp_path: Path
) -> None:
    # A tenant's engine, engine.execution_options(schema_translate_map=...): its
    # writes went to the tenant's schema and the driver's reads to the default
    # one, a file of another tenant served under this one's id (found in review).
    own = sa.create_engine(database.engine.url.render_as_string(hide_password=False))
    name = own.dialect.name
    schema = f"s{uuid.uuid4().hex[:10]}"
    if name == "sqlite":

        @sa.event.listens_for(own, "connect")
        def attach(dbapi_conn: Any, record: Any) -> None:
            dbapi_conn.execute(f"ATTACH DATABASE '{tmp_path / 'other.db'}' AS {schema}")

    else:
        with own.begin() as conn:
            what = "SCHEMA" if name == "postgresql" else "DATABASE"
            conn.execute(sa.text(f"CREATE {what} {schema}"))
    try:
        default = SQLStorage(engine=own, prefix=prefix, chunk_size=1024)
        tenant = own.execution_options(schema_translate_map={None: schema})
        mapped = SQLStorage(engine=tenant, prefix=prefix, chunk_size=1024)
        in_default = default.create(b"the default schema's")
        in_schema = mapped.create(b"x" * 3000)
        assert mapped.get(in_schema).read() == b"x" * 3000
        with pytest.raises(StoredFileNotFoundError):
            mapped.get(in_default)
        assert default.get(in_default).read() == b"the default schema's"
        with pytest.raises(StoredFileNotFoundError):
            default.get(in_schema)
        default.close()
        mapped.close()
    finally:
        if name != "sqlite":
            with own.begin() as conn:
                what = "SCHEMA" if name == "postgresql" else "DATABASE"
                conn.execute(sa.text(f"DROP {what} {schema}{' CASCADE' * (what == 'SCHEMA')}"))
        own.dispose()


def test_statement_listeners_and_echo_still_see_every_read(
    storage: SQLStorage, caplog: pytest.LogCaptureFixture
) -> None:
    # The DBAPI cursor would hide the reads from SQL logging and instrumentation: while
    # something listens, the reads run through SQLAlchemy's execute as before.
    file_id = storage.create(os.urandom(3000))
    with Statements(storage.engine) as statements:
        assert len(storage.get(file_id).read()) == 3000
    assert len(statements.chunk_selects(storage)) == 1  # the row with chunks 0-2
    assert sum(s.lstrip().upper().startswith("SELECT") for s, _ in statements.seen) == 2
    with caplog.at_level("INFO", logger="sqlalchemy.engine"):
        assert len(storage.get(file_id).read()) == 3000
    assert any(storage.tables.chunks.name in r.getMessage() for r in caplog.records)
    # An execute-level listener (auditing, a tenant check) sees them too (found in review).
    executed: list[object] = []

    def after_execute(conn: Any, clause: Any, *args: Any) -> None:
        executed.append(clause)

    sa.event.listen(storage.engine, "after_execute", after_execute)
    try:
        assert len(storage.get(file_id).read()) == 3000
    finally:
        sa.event.remove(storage.engine, "after_execute", after_execute)
    assert len(executed) == 2


def test_a_handle_error_listener_sees_the_reads_errors(
    database: TestDatabase, storage: SQLStorage, prefix: str
) -> None:
    # An application's handle_error listener (its own disconnect codes, an error
    # of its own raised instead) sees the reads' errors, as before the driver
    # (found in review).
    file_id = storage.create(b"x")
    seen: list[BaseException] = []

    def handle_error(context: Any) -> None:
        seen.append(context.original_exception)

    drop_tables(database, prefix)
    sa.event.listen(storage.engine, "handle_error", handle_error)
    try:
        with pytest.raises(BackendUnavailableError):
            storage.get(file_id)
    finally:
        sa.event.remove(storage.engine, "handle_error", handle_error)
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("header", "chunks"),
    [("bytes=5000-5999", (4, 6)), ("bytes=0-0", (0, 1)), ("bytes=-100", (9, 10))],
)
def test_a_range_request_fetches_only_its_chunks(
    storage: SQLStorage, header: str, chunks: tuple[int, int]
) -> None:
    data = os.urandom(10 * 1024)
    file_id = storage.create(data, filename="a.bin")
    app = FileServeApp(storage.get(file_id), 60)
    with Statements(storage.engine) as statements:
        response = Request.blank("/", headers={"Range": header}).get_response(app)
    assert response.status_int == 206
    start, _, end = header.removeprefix("bytes=").partition("-")
    expected = data[-100:] if not start else data[int(start) : int(end) + 1]
    assert response.body == expected
    assert statements.chunk_selects(storage) == [list(chunks)]


# --- replace, read and delete at once --------------------------------------------------


def test_a_file_being_read_says_it_was_replaced(storage: SQLStorage) -> None:
    file_id = storage.create(b"a" * 5000)
    stored = storage.get(file_id)
    assert stored.read(1024) == b"a" * 1024
    storage.replace(file_id, b"b" * 5000)
    with pytest.raises(BackendUnavailableError, match=f"{file_id} .* was replaced"):
        stored.read()
    stored = storage.get(file_id)
    stored.read(10)
    storage.delete(file_id)
    with pytest.raises(StoredFileNotFoundError, match=file_id):
        stored.read()


def test_concurrent_replaces_and_reads_never_mix_versions(storage: SQLStorage) -> None:
    file_id = storage.create(bytes([0]) * 3000)
    stop = time.monotonic() + 3
    problems: list[str] = []
    outcomes = {"whole": 0, "replaced": 0}

    def replace() -> None:
        n = 0
        while time.monotonic() < stop:
            n += 1
            storage.replace(file_id, bytes([n % 256]) * (1000 + (n % 7) * 900))

    def read() -> None:
        while time.monotonic() < stop:
            stored = storage.get(file_id)
            try:
                data = b"".join(iter(lambda s=stored: s.read(700), b""))
            except BackendUnavailableError as exc:
                outcomes["replaced"] += 1
                if "replaced" not in str(exc):
                    problems.append(str(exc))
                continue
            outcomes["whole"] += 1
            if sha256(data) != stored.checksum or len(set(data)) != 1:
                problems.append(f"mixed: {len(data)} bytes, {sorted(set(data))[:5]}")

    threads = [threading.Thread(target=replace)] + [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not problems, problems[:3]
    assert outcomes["whole"] > 10
    assert chunk_rows(storage) == len(storage.get(file_id).read()) // 1024 + 1


def test_concurrent_first_writes_create_the_tables_once(storage: SQLStorage) -> None:
    # Found by tests/io/test_async.py: on SQLite, two threads checking and then
    # creating the tables deadlocked, and one failed with "database is locked".
    ids: list[str] = []
    start = threading.Barrier(16)

    def create(n: int) -> None:
        start.wait()
        ids.append(storage.create(bytes([n]) * 3000))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(storage.list()) == sorted(ids) and len(ids) == 16


@pytest.mark.parametrize(
    "bad_id",
    [
        "'; DROP TABLE depot_files; --",
        "00000000-0000-4000-8000-000000000000' OR '1'='1",
        "00000000-0000-4000-8000-00000000000A",
        " 00000000-0000-4000-8000-000000000000",
        "%",
        "_" * 36,
    ],
)
def test_odd_ids_are_refused_before_any_query(storage: SQLStorage, bad_id: str) -> None:
    storage.create(b"x")
    with Statements(storage.engine) as statements:
        for operation in (storage.get, storage.exists, storage.delete):
            with pytest.raises(InvalidFileIdError):
                operation(bad_id)
    assert statements.seen == []
    assert len(storage.list()) == 1


def test_wrong_types_are_refused_by_typed_columns(engine: sa.Engine, storage: SQLStorage) -> None:
    # Why the contract suite tries fewer corrupt values on PostgreSQL and MariaDB;
    # SQLite keeps any value in any column, so there it tries them all.
    file_id = storage.create(b"x")
    table = storage.tables.files.name
    for column, value in [
        ("content_length", "five"),
        ("last_modified", "2024-02-30 12:00:00"),
        ("last_modified", 5.5),
    ]:
        update = sa.text(f"UPDATE {table} SET {column} = :v WHERE file_id = :id")
        if engine.dialect.name == "sqlite":
            with engine.begin() as conn:
                conn.execute(update, {"v": value, "id": file_id})
            continue
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.execute(update, {"v": value, "id": file_id})
    if engine.dialect.name != "sqlite":
        assert storage.get(file_id).read() == b"x"


# --- in the application's transaction ------------------------------------------------


@pytest.fixture
def app_table(engine: sa.Engine, storage: SQLStorage, prefix: str) -> Iterator[sa.Table]:
    """An application's table of documents, and depot's tables, in one metadata."""
    metadata = sa.MetaData()
    define_tables(metadata, prefix=prefix)
    documents = sa.Table(
        f"{prefix}documents",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("file_id", sa.String(36)),
    )
    metadata.create_all(engine)
    yield documents
    documents.drop(engine)


def documents_in(engine: sa.Engine, documents: sa.Table) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(documents).order_by(documents.c.id))]


def test_joined_commit_stores_the_file_with_the_row(
    engine: sa.Engine, storage: SQLStorage, app_table: sa.Table
) -> None:
    with engine.begin() as conn, storage.joined(conn):
        file_id = storage.create(b"x" * 3000, filename="a.txt")
        conn.execute(sa.insert(app_table), {"id": 1, "file_id": file_id})
        assert storage.get(file_id).read() == b"x" * 3000  # seen inside the transaction
        assert storage.list() == [file_id]
    assert documents_in(engine, app_table) == [(1, file_id)]
    assert storage.get(file_id).read() == b"x" * 3000


def test_joined_rollback_leaves_no_file_and_no_chunks(
    engine: sa.Engine, storage: SQLStorage, app_table: sa.Table
) -> None:
    kept = storage.create(b"kept")
    with engine.connect() as conn, storage.joined(conn):
        conn.begin()
        file_id = storage.create(b"y" * 5000)
        storage.replace(kept, b"changed")
        conn.execute(sa.insert(app_table), {"id": 1, "file_id": file_id})
        conn.rollback()
    assert documents_in(engine, app_table) == []
    assert storage.list() == [kept]
    assert storage.get(kept).read() == b"kept"
    assert chunk_rows(storage) == 1


def test_joined_savepoint_rollback_keeps_the_outer_transaction(
    engine: sa.Engine, storage: SQLStorage, app_table: sa.Table
) -> None:
    with engine.begin() as conn, storage.joined(conn):
        conn.execute(sa.insert(app_table), {"id": 1, "file_id": None})
        savepoint = conn.begin_nested()
        dropped = storage.create(b"z" * 5000)
        conn.execute(sa.insert(app_table), {"id": 2, "file_id": dropped})
        savepoint.rollback()
        kept = storage.create(b"k")
        conn.execute(sa.insert(app_table), {"id": 3, "file_id": kept})
    assert documents_in(engine, app_table) == [(1, None), (3, kept)]
    assert storage.list() == [kept]
    assert chunk_rows(storage) == 1


def test_a_failed_write_in_the_transaction_does_not_poison_it(
    engine: sa.Engine, storage: SQLStorage, app_table: sa.Table
) -> None:
    class Broken(OneWayStream):
        def read(self, n: int = -1) -> bytes:
            if self._data.tell() > 3000:
                raise ConnectionResetError("client went away")
            return super().read(n)

    existing = storage.create(b"old")
    with engine.begin() as conn, storage.joined(conn):
        with pytest.raises(ConnectionResetError):
            storage.create(Broken(os.urandom(10_000)))
        with pytest.raises(StoredFileNotFoundError):
            storage.replace(str(uuid.uuid4()), b"no such file")
        with pytest.raises(ConnectionResetError):
            storage.replace(existing, Broken(os.urandom(10_000)))
        file_id = storage.create(b"after the failures")
        conn.execute(sa.insert(app_table), {"id": 1, "file_id": file_id})
    assert documents_in(engine, app_table) == [(1, file_id)]
    assert sorted(storage.list()) == sorted([existing, file_id])
    assert storage.get(existing).read() == b"old"
    assert chunk_rows(storage) == 2


def test_joined_through_an_orm_session(
    engine: sa.Engine, storage: SQLStorage, app_table: sa.Table
) -> None:
    with orm.Session(engine) as session:
        with session.begin(), storage.joined(session):
            committed = storage.create(b"c")
            session.execute(sa.insert(app_table), {"id": 1, "file_id": committed})
        with pytest.raises(RuntimeError), session.begin(), storage.joined(session):
            storage.delete(committed)
            rolled_back = storage.create(b"r")
            raise RuntimeError("the request failed: both are undone")
    assert storage.list() == [committed]
    assert storage.get(committed).read() == b"c"
    assert storage.exists(committed) and not storage.exists(rolled_back)


def test_joined_is_for_this_thread_only(
    engine: sa.Engine, storage: SQLStorage, app_table: sa.Table
) -> None:
    seen: list[list[str]] = []
    with engine.connect() as conn, storage.joined(conn):
        conn.begin()
        file_id = storage.create(b"uncommitted")
        thread = threading.Thread(target=lambda: seen.append(storage.list()))
        thread.start()
        thread.join()
        conn.rollback()
    assert seen == [[]] and file_id not in storage.list()


def test_a_foreign_key_to_a_file_keeps_it_from_being_deleted(
    engine: sa.Engine, storage: SQLStorage, prefix: str
) -> None:
    metadata = sa.MetaData()
    files, _ = define_tables(metadata, prefix=prefix)
    documents = sa.Table(
        f"{prefix}fk_documents",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("file_id", sa.String(36), sa.ForeignKey(files.c.file_id)),
        mysql_engine="InnoDB",
    )
    metadata.create_all(engine)
    try:
        file_id = storage.create(b"referenced" * 500)
        with engine.begin() as conn:
            conn.execute(sa.insert(documents), {"id": 1, "file_id": file_id})
        with pytest.raises(BackendUnavailableError, match="refused"):
            storage.delete(file_id)
        assert storage.get(file_id).read() == b"referenced" * 500
        storage.replace(file_id, b"replaced")  # the row is updated, never deleted
        with engine.begin() as conn, storage.joined(conn):
            conn.execute(sa.delete(documents))
            storage.delete(file_id)
        assert storage.list() == [] and chunk_rows(storage) == 0
    finally:
        documents.drop(engine)


def test_joined_refuses_what_has_no_transaction(engine: sa.Engine, storage: SQLStorage) -> None:
    with pytest.raises(TypeError, match="Connection or Session, not Engine"):
        storage.joined(engine).__enter__()


def _kill(engine: sa.Engine, conn: sa.Connection) -> None:
    """End ``conn``'s connection as a crash or an administrator would, mid-transaction."""
    name = engine.dialect.name
    if name == "sqlite":
        # No server: the file's connection is closed under SQLAlchemy's feet, and
        # SQLite rolls back what it had not committed.
        conn.connection.dbapi_connection.close()  # type: ignore[union-attr]
        return
    if name == "postgresql":
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        kill = sa.text("SELECT pg_terminate_backend(:pid)")
    else:
        pid = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one()
        kill = sa.text(f"KILL {int(pid)}")
    with engine.connect() as other:
        other.execute(kill, {"pid": pid})
        other.commit()


def test_a_killed_connection_commits_nothing(
    engine: sa.Engine, storage: SQLStorage, app_table: sa.Table
) -> None:
    kept = storage.create(b"kept")
    conn = engine.connect()
    try:
        with storage.joined(conn):
            conn.begin()
            storage.create(os.urandom(5000))
            storage.replace(kept, b"changed")
            conn.execute(sa.insert(app_table), {"id": 1, "file_id": None})
            _kill(engine, conn)
            with pytest.raises(BackendUnavailableError, match="database"):
                storage.create(b"more")
    finally:
        with contextlib.suppress(sa.exc.DBAPIError):  # SQLite's: closed already
            conn.close()
    engine.dispose()  # the pool may hold the dead connection
    assert documents_in(engine, app_table) == []
    assert storage.list() == [kept]
    assert storage.get(kept).read() == b"kept"
    assert chunk_rows(storage) == 1


# --- a killed process, a dead server ---------------------------------------------------

CHILD = r"""
import sys, time
from depot.io.sql import SQLStorage
url, prefix, replace_id, joined = sys.argv[1:5]
storage = SQLStorage(url=url, prefix=prefix, chunk_size=1024)

class Endless:
    sent = 0
    def read(self, n=-1):
        if self.sent > 5 * 2**20:  # two batches of 2 MiB committed
            print("written", flush=True)
            time.sleep(60)
        self.sent += 65536
        return b"e" * 65536

def write():
    if replace_id:
        storage.replace(replace_id, Endless())
    else:
        storage.create(Endless())

if joined == "joined":
    with storage.engine.begin() as conn, storage.joined(conn):
        write()
else:
    write()
"""


@pytest.mark.parametrize("operation", ["create", "replace"])
@pytest.mark.parametrize("mode", ["own", "joined"])
def test_a_process_killed_mid_write_leaves_no_visible_file(
    database: TestDatabase, storage: SQLStorage, prefix: str, operation: str, mode: str
) -> None:
    kept = storage.create(b"the old version")
    url = database.engine.url.render_as_string(hide_password=False)
    replace_id = kept if operation == "replace" else ""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, url, prefix, replace_id, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as child:
        try:
            assert child.stdout is not None and child.stderr is not None
            line = child.stdout.readline()
            if line != b"written\n":
                child.wait()
                pytest.fail(child.stderr.read().decode()[-3000:])
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    assert storage.list() == [kept]
    assert storage.get(kept).read() == b"the old version"
    # Outside a transaction the batches were committed: orphans, until removed.
    if mode == "own":
        assert chunk_rows(storage) >= 2 * 2048
        assert storage.remove_orphans() == 0  # too recent: it may be a write in progress
    deadline = time.monotonic() + 10
    while mode == "joined" and chunk_rows(storage) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)  # the server notices the closed connection and rolls back
    storage.remove_orphans(older_than=timedelta(0))
    assert chunk_rows(storage) == 1
    assert storage.get(kept).read() == b"the old version"


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://postgres@127.0.0.1:1/depot", "mysql+pymysql://root@127.0.0.1:1/depot"],
)
def test_a_dead_server_is_a_clear_backend_error(url: str) -> None:
    storage = SQLStorage(url=url)
    for operation in (
        storage.list,
        lambda: storage.create(b"x"),
        lambda: storage.exists(str(uuid.uuid4())),
    ):
        with pytest.raises(BackendUnavailableError) as raised:
            operation()
        message = str(raised.value)
        assert message.startswith("Cannot use the database for table 'depot_files' of ")
        assert "127.0.0.1:1" in message and "Check that the server is running" in message
        assert "sqlalche.me" not in message and "Traceback" not in message
        assert isinstance(raised.value, OSError)


def test_an_unreadable_database_is_a_clear_backend_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-db.sqlite").write_bytes(b"this is not a database file" * 100)
    storage = SQLStorage(url=f"sqlite:///{tmp_path / 'not-a-db.sqlite'}")
    with pytest.raises(BackendUnavailableError, match="file is not a database"):
        storage.list()
