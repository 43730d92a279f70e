"""SQLStorage as a hostile user tries it: odd ids and names, sizes at chunk edges, ranges
across them, replaces during a read, a failed transaction, a connection killed mid-read.

Each test runs on SQLite, PostgreSQL and MariaDB (tests/databases.py).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from webob import Request

from depot.exceptions import (
    BackendUnavailableError,
    DepotError,
    InvalidFileIdError,
    StoredFileNotFoundError,
)
from depot.io.sql import SQLStorage
from depot.middleware import FileServeApp
from tests.databases import TestDatabase, database, engine
from tests.io.test_sql import prefix, storage

__all__ = ["database", "engine", "prefix", "storage"]

CHUNK = 1024  # the storage fixture's chunk_size
BLOCK = 256 * 1024


@pytest.mark.parametrize(
    "file_id",
    ["' OR 1=1 --", "%", "_", "a%'\"\\", "\x00", "0f8fad5b-d9cb-469f-a165-70867728950e\x00", ""],
)
def test_odd_file_ids_are_refused_before_the_database(storage: SQLStorage, file_id: str) -> None:
    storage.create(b"x")
    for call in (storage.get, storage.exists, storage.delete):
        with pytest.raises(InvalidFileIdError):
            call(file_id)
    assert len(storage.list()) == 1


@pytest.mark.parametrize(
    "name",
    ["it's \"quoted\".txt", "100%_done.txt", "nul\x00in\x00it.txt", "back\\slash';--.txt",
     "\U0001f600 émoji.txt", "x" * 1000 + ".txt"],
)  # fmt: skip
def test_odd_filenames_are_stored_and_read_back(storage: SQLStorage, name: str) -> None:
    file_id = storage.create(b"data", filename=name, content_type='text/plain; charset="x\'"')
    stored = storage.get(file_id)
    assert stored.read() == b"data"
    assert stored.filename is not None and len(stored.filename) <= 255
    if len(name) < 255:
        # PostgreSQL's text holds no NUL: U+FFFD instead. Before, create() failed
        # there with BackendUnavailableError, "the database refused".
        if storage.engine.dialect.name == "postgresql":
            name = name.replace("\x00", "\ufffd")
        assert stored.filename == name
        replaced = storage.replace(file_id, b"more", filename=name + "\x00")
        assert storage.get(replaced).filename in (name + "\x00", name + "\ufffd")


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK - 1])
def test_sizes_at_chunk_edges(storage: SQLStorage, size: int) -> None:
    data = os.urandom(size)
    file_id = storage.create(data)
    stored = storage.get(file_id)
    assert (stored.content_length, stored.read()) == (size, data)
    stored = storage.get(file_id)
    pieces = iter(lambda: stored.read(CHUNK - 1), b"")
    assert b"".join(pieces) == data

    def ranged(header: str) -> Any:
        app = FileServeApp(storage.get(file_id), 60)
        return Request.blank("/", headers={"Range": header}).get_response(app)

    for edge in range(CHUNK, size, CHUNK):
        header = f"bytes={edge - 1}-{edge + 1}"
        response = ranged(header)
        assert response.status_int == 206, header
        assert response.body == data[edge - 1 : edge + 2], header
    if size:
        assert ranged(f"bytes={size - 1}-").body == data[-1:]
    assert ranged(f"bytes={size}-").status_int == 416


def test_replace_while_a_range_is_read_never_mixes_versions(storage: SQLStorage) -> None:
    from depot.io.sql import _FETCH_BYTES

    per_fetch = _FETCH_BYTES // CHUNK  # a range longer than one fetch: fetched twice
    old, new = b"o" * ((per_fetch + 20) * CHUNK), b"n" * ((per_fetch + 20) * CHUNK)
    file_id = storage.create(old)
    stored = storage.get(file_id)
    got = []
    with pytest.raises(BackendUnavailableError, match="was replaced"):
        for n, block in enumerate(stored.iter_range(CHUNK - 1, len(old) - 1, BLOCK)):
            got.append(block)
            if n == 3:
                storage.replace(file_id, new)
    assert set(b"".join(got)) == {ord("o")}
    assert storage.get(file_id).read() == new


def test_joined_with_a_failed_transaction(engine: sa.Engine, storage: SQLStorage) -> None:
    storage.create(b"first")  # the tables exist
    with orm.Session(engine) as session:
        session.begin()
        with pytest.raises(sa.exc.DBAPIError):
            session.execute(sa.text("SELECT * FROM no_such_table_here"))
        with storage.joined(session):
            try:
                file_id = storage.create(b"in a failed transaction")
            except DepotError as exc:
                # PostgreSQL refuses anything until the rollback: said so, not raw.
                assert isinstance(exc, BackendUnavailableError)
                assert "database" in str(exc)
            else:
                assert storage.get(file_id).read() == b"in a failed transaction"
        session.rollback()
    assert len(storage.list()) == 1


def _pids(engine: sa.Engine) -> Any:
    name = engine.dialect.name
    return sa.text("SELECT pg_backend_pid()" if name == "postgresql" else "SELECT CONNECTION_ID()")


# Servers only: SQLite has no connection another one can kill.
@pytest.mark.parametrize("database", ["postgresql", "mariadb"], indirect=True)
def test_a_connection_killed_mid_read(database: TestDatabase, prefix: str) -> None:
    engine = database.engine
    url = engine.url.render_as_string(hide_password=False)
    own = sa.create_engine(url, pool_size=1, max_overflow=0)
    try:
        storage = SQLStorage(engine=own, prefix=prefix, chunk_size=CHUNK)
        data = os.urandom(50 * CHUNK)
        file_id = storage.create(data)
        stored = storage.get(file_id)
        assert stored.read(CHUNK) == data[:CHUNK]
        with own.connect() as conn:  # the pool's one connection, the reads' too
            pid = conn.execute(_pids(own)).scalar_one()
        with engine.connect() as admin:
            if own.dialect.name == "postgresql":
                admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            else:
                admin.execute(sa.text(f"KILL {int(pid)}"))
            admin.commit()
        stored.seek(10 * CHUNK)
        with pytest.raises(BackendUnavailableError, match="database") as raised:
            stored.read(CHUNK)
        assert isinstance(raised.value, OSError)
        # The pool let the dead connection go: the next read reconnects.
        again = storage.get(file_id)
        assert again.read() == data
        with pytest.raises(StoredFileNotFoundError):
            storage.get("0f8fad5b-d9cb-469f-a165-70867728950e")
    finally:
        own.dispose()
