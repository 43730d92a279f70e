"""Chunked uploads of an SQL depot: three tables beside the depot's own.

For a depot whose files table is ``<prefix><table>`` (``depot_files`` by default)::

    <prefix><table>_uploads    one row per upload: its record (JSON), when it was
                               last written, the file id of a finalize that holds
                               it, the file it became
    <prefix><table>_upchunks   one row per chunk received: upload, offset, length,
                               checksum, and the token of its bytes
    <prefix><table>_updata     the chunks' bytes, in rows of the depot's chunk_size,
                               by upload, token and number

A chunk's bytes are written first, a batch of rows per transaction (so that a
chunk of a gigabyte neither sits in memory nor holds SQLite's lock while it
arrives), and its ``_upchunks`` row last, in a transaction that first locks
the upload's row: of two writers of one offset exactly one wins, in any
process, and readers, who list ``_upchunks`` only, never see a chunk that is
not whole. The bytes of a loser, or of a writer that died, belong to no chunk
row and go with their upload.

A finalize claims the upload by a conditional UPDATE (the rows it changed say
who won), then :meth:`SQLStaging.finish` marks it finished and drops its chunks
in one transaction: a process or connection that dies in it leaves the upload
as it was. A claim whose file is stored outlives a failed finalize, so that
the retry finishes with that file rather than store another.

The tables are made at the first upload (the depot's own at its first
operation), and :func:`depot.io.sql.define_tables` defines them for an
application that manages its schema.

The names add at most 11 characters to the files table's, as its index's
name does: :func:`depot.io.sql.define_tables` refuses names that would make
any of them longer than PostgreSQL takes.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine

from depot.exceptions import UploadNotFound
from depot.io._chunks import Digest, iter_chunks, recut
from depot.io._fileinfo import Source
from depot.io._sqlschema import BYTES, create_missing_tables
from depot.uploads.staging import Chunk, Staging

__all__ = ["SQLStaging", "UploadTables", "define_upload_tables"]

#: What each table's name adds to the files table's (at most 11 characters: see above).
SUFFIXES = ("_uploads", "_upchunks", "_updata")
#: Bytes of rows sent in one INSERT, each INSERT its own transaction.
_BATCH_BYTES = 2 * 1024 * 1024
#: Bytes of rows fetched by one SELECT when a chunk is read.
_FETCH_BYTES = 2 * 1024 * 1024
_TOKEN_LENGTH = 32


class UploadTables(NamedTuple):
    """The tables of an SQL depot's chunked uploads (see the module's docstring)."""

    uploads: sa.Table
    chunks: sa.Table
    data: sa.Table


def define_upload_tables(metadata: sa.MetaData, files_name: str) -> UploadTables:
    """Define (or find, if defined already) the upload tables of the files table ``files_name``."""
    names = [files_name + suffix for suffix in SUFFIXES]
    if all(name in metadata.tables for name in names):
        found = UploadTables(*(metadata.tables[name] for name in names))
        return found
    uploads = sa.Table(
        names[0],
        metadata,
        sa.Column("upload_id", sa.String(36), primary_key=True),
        # MariaDB's TEXT holds 64 KiB; the metadata of a tus upload may be more.
        sa.Column(
            "record",
            sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.Column("touched", sa.Double, nullable=False),
        sa.Column("claimed", sa.String(36)),
        sa.Column("file_id", sa.String(36)),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    chunks = sa.Table(
        names[1],
        metadata,
        sa.Column("upload_id", sa.String(36), primary_key=True),
        sa.Column("offset", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("length", sa.BigInteger, nullable=False),
        sa.Column("checksum", sa.String(71), nullable=False),
        sa.Column("token", sa.String(_TOKEN_LENGTH), nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    data = sa.Table(
        names[2],
        metadata,
        # The upload first: finish() and remove() delete by it, on the key's prefix.
        sa.Column("upload_id", sa.String(36), primary_key=True),
        sa.Column("token", sa.String(_TOKEN_LENGTH), primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("data", BYTES, nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    return UploadTables(uploads, chunks, data)


class _Statements:
    """The staging's statements, built once. Parameters: ``uid``, ``offset``, ``token``."""

    def __init__(self, tables: UploadTables, files: sa.Table) -> None:
        uploads, chunks, data = tables
        upload_is = uploads.c.upload_id == sa.bindparam("uid")
        chunk_upload_is = chunks.c.upload_id == sa.bindparam("uid")
        data_upload_is = data.c.upload_id == sa.bindparam("uid")
        self.start = sa.insert(uploads)
        self.record = sa.select(uploads.c.record, uploads.c.file_id).where(upload_is)
        self.exists = sa.select(uploads.c.upload_id).where(upload_is)
        self.file_id = sa.select(uploads.c.file_id).where(upload_is)
        # The first statement of a chunk's transaction: it locks the upload's row
        # (and takes SQLite's write lock at once), so that the chunk rows of one
        # upload are written one transaction after the other, and remove() or
        # finish() wait for the chunk or run before it.
        self.touch = sa.update(uploads).where(upload_is).values(touched=sa.bindparam("now"))
        self.insert_data = sa.insert(data)
        self.chunk_at = sa.select(chunks).where(
            chunk_upload_is, chunks.c.offset == sa.bindparam("offset")
        )
        self.insert_chunk = sa.insert(chunks)
        self.discard = sa.delete(data).where(data_upload_is, data.c.token == sa.bindparam("token"))
        self.chunks = (
            sa.select(chunks.c.offset, chunks.c.length, chunks.c.checksum)
            .where(chunk_upload_is)
            .order_by(chunks.c.offset)
        )
        self.pieces = (
            sa.select(data.c.n, data.c.data)
            .where(
                data_upload_is,
                data.c.token == sa.bindparam("token"),
                data.c.n >= sa.bindparam("first"),
                data.c.n < sa.bindparam("stop"),
            )
            .order_by(data.c.n)
        )
        # A conditional UPDATE: the database says, by the rows it changed, who won.
        # The claim is activity: touched says when it was made, which tells a
        # claim held by a finalize that died (see take_over).
        self.claim = (
            sa.update(uploads)
            .where(upload_is, uploads.c.claimed.is_(None))
            .values(claimed=sa.bindparam("fid"), touched=sa.bindparam("now"))
        )
        self.take_over = (
            sa.update(uploads)
            .where(
                upload_is,
                uploads.c.claimed == sa.bindparam("fid"),
                uploads.c.touched < sa.bindparam("stale"),
            )
            .values(touched=sa.bindparam("now"))
        )
        self.claimed = sa.select(uploads.c.claimed).where(upload_is)
        # A claim whose file exists stays: that finalize stored the file and then
        # failed to finish(), and the retry must find it (else it stores another).
        stored = sa.select(files.c.file_id).where(files.c.file_id == uploads.c.claimed)
        self.release = (
            sa.update(uploads).where(upload_is, ~stored.exists()).values(claimed=sa.null())
        )
        # The claim goes with it: a finalize that read the record before and
        # claims after finds the file in the record, and gives it as another's
        # (were the claim kept, it would take the file for one it must finish).
        self.finish = (
            sa.update(uploads)
            .where(upload_is)
            .values(file_id=sa.bindparam("fid"), touched=sa.bindparam("now"), claimed=sa.null())
        )
        self.delete_upload = sa.delete(uploads).where(upload_is)
        self.delete_chunks = sa.delete(chunks).where(chunk_upload_is)
        self.delete_data = sa.delete(data).where(data_upload_is)
        self.touched = sa.select(uploads.c.touched).where(upload_is)
        self.idle = sa.select(uploads.c.upload_id, uploads.c.touched)
        # Rows written for an upload removed meanwhile (a writer killed after
        # remove(), which it would have undone): no upload comes back by its id.
        owned = sa.select(uploads.c.upload_id).where(uploads.c.upload_id == data.c.upload_id)
        self.orphans = sa.delete(data).where(~owned.exists())


class SQLStaging(Staging):
    """The uploads of an SQL depot, in tables of its database, through connections of its own.

    Never through the application's (see :meth:`depot.io.sql.SQLStorage.joined`):
    an upload spans requests, and its chunks must be there whatever a request's
    transaction does.

    :param engine: the depot's engine.
    :param tables: the upload tables (:func:`define_upload_tables`).
    :param files: the depot's files table (a claim whose file is stored stays).
    :param piece_size: the bytes per row of ``data`` (the depot's ``chunk_size``).
    :param errors: a context manager factory turning database errors into depot's.
    :param prepare: called before each operation: creates the depot's tables if
        missing; the staging creates its own after them.
    """

    def __init__(
        self,
        engine: Engine,
        tables: UploadTables,
        files: sa.Table,
        piece_size: int,
        errors: Callable[[], contextlib.AbstractContextManager[Any]],
        prepare: Callable[[], None],
    ) -> None:
        if engine.dialect.name in ("mysql", "mariadb"):
            # Without gap locks: writers of one upload insert rows next to those
            # that finish() or a loser's discard delete, and the gap locks of
            # InnoDB's default (REPEATABLE READ) can deadlock them.
            engine = engine.execution_options(isolation_level="READ COMMITTED")
        self._engine = engine
        # Each read is one statement: on PostgreSQL no transaction around it
        # (a BEGIN and a ROLLBACK fewer), as the depot reads its files.
        self._reads = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else engine
        )
        self._sql = _Statements(tables, files)
        self._piece = piece_size
        self._per_batch = max(1, _BATCH_BYTES // piece_size)
        self._per_fetch = max(1, _FETCH_BYTES // piece_size)
        self._errors = errors
        self._prepare_files = prepare
        self._tables = tables
        self._tables_ready = False
        self._tables_lock = threading.Lock()

    def _prepare(self) -> None:
        self._prepare_files()
        if self._tables_ready:
            return
        # As the depot creates its tables (SQLStorage._ensure_tables): one thread
        # of the process at a time, and again when another process raced it.
        with self._tables_lock:
            if self._tables_ready:
                return
            create_missing_tables(self._engine, list(self._tables))
            self._tables_ready = True

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Connection]:
        with self._errors():
            self._prepare()
            with self._engine.begin() as conn:
                yield conn

    def _one(self, statement: Any, **params: Any) -> Any:
        with self._errors():
            self._prepare()
            with self._reads.connect() as conn:
                return conn.execute(statement, params).first()

    def start(self, upload_id: str, record: dict[str, Any]) -> None:
        values = {
            "upload_id": upload_id,
            "record": json.dumps(record),
            "touched": time.time(),
            "claimed": None,
            "file_id": None,
        }
        with self._begin() as conn:
            conn.execute(self._sql.start, values)

    def record(self, upload_id: str) -> dict[str, Any] | None:
        row = self._one(self._sql.record, uid=upload_id)
        if row is None:
            return None
        record: dict[str, Any] = json.loads(row.record)
        if row.file_id:
            record["file_id"] = row.file_id
        return record

    def put_chunk(
        self, upload_id: str, offset: int, source: Source, limit: int
    ) -> tuple[Chunk, Chunk | None]:
        if self._one(self._sql.exists, uid=upload_id) is None:
            raise KeyError(upload_id)
        token = secrets.token_hex(_TOKEN_LENGTH // 2)
        digest = Digest()
        written = False
        try:
            for batch in self._batches(upload_id, token, source, digest, limit):
                with self._begin() as conn:
                    conn.execute(self._sql.insert_data, batch)
                written = True
            chunk = Chunk(offset, digest.length, digest.checksum)
            kept, existing = self._commit_chunk(upload_id, chunk, token)
        except BaseException:
            if written:
                self._discard(upload_id, token)
            raise
        if written and not kept:
            self._discard(upload_id, token)
        return chunk, existing

    def _batches(
        self, upload_id: str, token: str, source: Source, digest: Digest, limit: int
    ) -> Iterator[list[dict[str, Any]]]:
        """The rows of ``source``'s bytes, a batch at a time, read as they are sent."""
        batch: list[dict[str, Any]] = []
        blocks = iter_chunks(source, digest, self._piece)
        for n, piece in enumerate(recut(blocks, self._piece)):
            if digest.length > limit:
                raise OverflowError(limit)
            batch.append({"upload_id": upload_id, "token": token, "n": n, "data": piece})
            if len(batch) == self._per_batch:
                yield batch
                batch = []
        if digest.length > limit:
            raise OverflowError(limit)
        if batch:
            yield batch

    def _commit_chunk(self, upload_id: str, chunk: Chunk, token: str) -> tuple[bool, Chunk | None]:
        """Make ``chunk`` visible, whole. Return whether it was kept, and the chunk
        found at its offset (then it was not)."""
        try:
            with self._begin() as conn:
                now = {"uid": upload_id, "now": time.time()}
                if not conn.execute(self._sql.touch, now).rowcount:
                    # Removed (aborted, expired) while the chunk arrived.
                    raise KeyError(upload_id)
                if conn.execute(self._sql.file_id, {"uid": upload_id}).scalar():
                    # Finished while it arrived: these bytes are in no file, and
                    # write_chunk() says so; kept, they would outlive finish().
                    return False, None
                if not chunk.length:
                    # Nothing to keep: an empty chunk would refuse the real chunk
                    # at its offset later as "different" (an empty tus PATCH).
                    return False, None
                params = {"uid": upload_id, "offset": chunk.offset}
                existing = conn.execute(self._sql.chunk_at, params).first()
                if existing is not None:
                    return False, _chunk(existing)
                values = {
                    "upload_id": upload_id,
                    "offset": chunk.offset,
                    "length": chunk.length,
                    "checksum": chunk.checksum,
                    "token": token,
                }
                conn.execute(self._sql.insert_chunk, values)
        except sa.exc.IntegrityError:
            # Another writer's row came first after all (the lock above should
            # have ordered them): the same outcome as finding it.
            existing = self._one(self._sql.chunk_at, uid=upload_id, offset=chunk.offset)
            if existing is None:
                raise
            return False, _chunk(existing)
        return True, None

    def _discard(self, upload_id: str, token: str) -> None:
        # Best effort on the way out: rows left go with their upload.
        with contextlib.suppress(Exception), self._begin() as conn:
            conn.execute(self._sql.discard, {"uid": upload_id, "token": token})

    def chunks(self, upload_id: str) -> list[Chunk]:
        with self._errors():
            self._prepare()
            with self._reads.connect() as conn:
                rows = conn.execute(self._sql.chunks, {"uid": upload_id}).all()
        return [_chunk(row) for row in rows]

    def open_chunk(self, upload_id: str, chunk: Chunk) -> io.RawIOBase:
        row = self._one(self._sql.chunk_at, uid=upload_id, offset=chunk.offset)
        if row is None:
            raise KeyError(upload_id)
        return _PiecesReader(self, upload_id, row.token, int(row.length))

    def iter_bytes(self, upload_id: str, chunks: list[Chunk]) -> Iterator[bytes]:
        for chunk in chunks:
            reader = self.open_chunk(upload_id, chunk)
            assert isinstance(reader, _PiecesReader)
            yield from reader.pieces()

    def _fetch(self, upload_id: str, token: str, first: int) -> list[tuple[int, bytes]]:
        params = {"uid": upload_id, "token": token, "first": first, "stop": first + self._per_fetch}
        with self._errors(), self._reads.connect() as conn:  # prepared by open_chunk()
            return [(n, data) for n, data in conn.execute(self._sql.pieces, params)]

    def claim(self, upload_id: str, file_id: str) -> bool:
        with self._begin() as conn:
            done = conn.execute(
                self._sql.claim, {"uid": upload_id, "fid": file_id, "now": time.time()}
            )
        return done.rowcount == 1

    def take_over(self, upload_id: str, file_id: str) -> bool:
        now = time.time()
        params = {"uid": upload_id, "fid": file_id, "now": now, "stale": now - self.claim_timeout}
        with self._begin() as conn:
            done = conn.execute(self._sql.take_over, params)
        return done.rowcount == 1

    def claimed(self, upload_id: str) -> str | None:
        row = self._one(self._sql.claimed, uid=upload_id)
        return None if row is None else row.claimed

    def release(self, upload_id: str) -> None:
        with self._begin() as conn:
            conn.execute(self._sql.release, {"uid": upload_id})

    def finish(self, upload_id: str, file_id: str) -> None:
        # One transaction: a process killed in it leaves the upload unfinished
        # with its chunks, and its claim, whose file is stored, for the retry.
        with self._begin() as conn:
            params = {"uid": upload_id, "fid": file_id, "now": time.time()}
            if not conn.execute(self._sql.finish, params).rowcount:
                # Aborted or expired while it was finalized: the file is stored,
                # and finalize() still gives its id.
                return
            conn.execute(self._sql.delete_chunks, {"uid": upload_id})
            conn.execute(self._sql.delete_data, {"uid": upload_id})

    def remove(self, upload_id: str) -> None:
        # The upload's row first: it is gone at once for every reader, and a
        # chunk being committed waits for its lock, then finds no upload.
        with self._begin() as conn:
            conn.execute(self._sql.delete_upload, {"uid": upload_id})
            conn.execute(self._sql.delete_chunks, {"uid": upload_id})
            conn.execute(self._sql.delete_data, {"uid": upload_id})

    def touched(self, upload_id: str) -> float | None:
        row = self._one(self._sql.touched, uid=upload_id)
        return None if row is None else float(row.touched)

    def idle(self) -> Iterator[tuple[str, float]]:
        with self._begin() as conn:
            conn.execute(self._sql.orphans)
        with self._errors(), self._reads.connect() as conn:
            found = conn.execute(self._sql.idle).all()
        for upload_id, touched in found:
            yield str(upload_id), float(touched)


def _chunk(row: Any) -> Chunk:
    return Chunk(int(row.offset), int(row.length), str(row.checksum))


class _PiecesReader(io.RawIOBase):
    """A chunk's bytes, fetched a few rows per SELECT as they are read."""

    def __init__(self, staging: SQLStaging, upload_id: str, token: str, length: int) -> None:
        self._staging = staging
        self._upload_id = upload_id
        self._token = token
        self._length = length
        self._blocks: Iterator[bytes] | None = None
        self._left = b""

    def readable(self) -> bool:
        return True

    def pieces(self) -> Iterator[bytes]:
        """The chunk's rows, in order; raises if they are not all there."""
        expected, given = 0, 0
        while given < self._length:
            rows = self._staging._fetch(self._upload_id, self._token, expected)
            if not rows or rows[0][0] != expected:
                break
            for n, data in rows:
                if n != expected:
                    break
                expected += 1
                given += len(data)
                yield data
        if given != self._length:
            # Deleted while it was read: the upload was aborted or expired.
            raise UploadNotFound(
                f"Upload {self._upload_id} lost the chunk being read ({given} of its "
                f"{self._length} bytes found): it was aborted or expired meanwhile. "
                "Reserve it again."
            )

    def read(self, n: int | None = -1) -> bytes:
        if self._blocks is None:
            self._blocks = self.pieces()
        if n is None or n < 0:
            return self._left + b"".join(self._blocks)
        while not self._left:
            block = next(self._blocks, None)
            if block is None:
                return b""
            self._left = block
        out, self._left = self._left[:n], self._left[n:]
        return out
