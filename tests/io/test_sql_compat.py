"""Tables written by earlier SQLStorage code read, and are replaced and deleted, as before.

The rows are tests/fixtures/sql_main/rows.json, written by main before the reads went to
the DBAPI cursor (its generate.py says how): each test inserts them as they are into a
table of its own, on SQLite, PostgreSQL and MariaDB, and uses them with today's code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from depot.exceptions import StoredFileNotFoundError
from depot.io.sql import SQLStorage
from tests.backends.sql import drop_tables
from tests.databases import TestDatabase, database, engine
from tests.fixtures.sql_main.generate import payload

__all__ = ["database", "engine"]

FIXTURE = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "sql_main" / "rows.json").read_text()
)
FILES = FIXTURE["files"]
BY_ID = {row["file_id"]: row for row in FIXTURE["file_rows"]}


@pytest.fixture
def old(engine: sa.Engine, database: TestDatabase) -> Iterator[SQLStorage]:
    """A storage over tables holding the fixture's rows, inserted as the old code wrote them."""
    prefix = f"c{uuid.uuid4().hex[:10]}_"
    storage = SQLStorage(engine=engine, prefix=prefix)
    files, chunks = storage.tables
    files.metadata.create_all(engine)
    rows = [
        {**r, "last_modified": datetime.fromisoformat(r["last_modified"])} for r in BY_ID.values()
    ]
    chunk_rows = [{**c, "data": bytes.fromhex(c["data"])} for c in FIXTURE["chunk_rows"]]
    with engine.begin() as conn:
        conn.execute(sa.insert(files), rows)
        conn.execute(sa.insert(chunks), chunk_rows)
    yield storage
    drop_tables(database, prefix)


def expected(entry: dict[str, Any]) -> bytes:
    return payload(entry["name"], entry["size"])


class Listening:
    """A before_cursor_execute listener: the reads then run through SQLAlchemy's execute."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine, self.selects = engine, 0

    def __enter__(self) -> Listening:
        sa.event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.selects += statement.lstrip().upper().startswith("SELECT")


def test_the_fixture_was_written_by_the_old_code() -> None:
    # The rows must be what main wrote: several chunk sizes, a replaced file's new version.
    assert len(FIXTURE["written_by"]) == 40
    assert {r["chunk_size"] for r in BY_ID.values()} == {1024, 4096, 262144}
    versions = {r["version"] for r in BY_ID.values()}
    assert {c["version"] for c in FIXTURE["chunk_rows"]} <= versions


@pytest.mark.parametrize("listened", [False, True], ids=["dbapi-cursor", "listened"])
def test_old_rows_read_whole_with_their_metadata(
    old: SQLStorage, engine: sa.Engine, listened: bool
) -> None:
    with Listening(engine) if listened else contextlib.nullcontext() as listening:
        for entry in FILES:
            stored = old.get(entry["file_id"])
            data = expected(entry)
            assert stored.read() == data
            row = BY_ID[entry["file_id"]]
            assert stored.filename == row["filename"]
            assert stored.content_type == row["content_type"]
            assert stored.content_length == len(data)
            assert stored.last_modified == datetime.fromisoformat(row["last_modified"])
            assert stored.checksum == "sha256:" + hashlib.sha256(data).hexdigest()
            stored.close()
    if listened:
        assert listening is not None and listening.selects >= len(FILES)


def test_old_rows_read_by_range_and_by_seek(old: SQLStorage) -> None:
    for entry in FILES:
        data = expected(entry)
        stored = old.get(entry["file_id"])
        for start, stop in ((0, 1), (1000, 1030), (1023, 2049), (len(data) - 7, len(data))):
            start, stop = max(0, start), max(0, min(stop, len(data)))
            assert b"".join(stored.iter_range(start, stop)) == data[start:stop]
        tail = min(3, len(data))
        stored.seek(-tail, 2)
        assert stored.read() == data[len(data) - tail :]


def test_old_rows_are_replaced_and_deleted_by_the_new_code(old: SQLStorage) -> None:
    entry = next(e for e in FILES if e["size"] == 2500)
    file_id = entry["file_id"]
    old.replace(file_id, b"new bytes", "new.txt")
    assert old.get(file_id).read() == b"new bytes"
    with old.engine.connect() as conn:
        versions = set(conn.execute(sa.select(old.tables.chunks.c.version)).scalars())
    assert BY_ID[file_id]["version"] not in versions  # the old version's chunks are gone
    other = next(e for e in FILES if e["size"] == 9000)
    old.delete(other["file_id"])
    with pytest.raises(StoredFileNotFoundError):
        old.get(other["file_id"])
    assert sorted(old.list()) == sorted(e["file_id"] for e in FILES if e is not other)
