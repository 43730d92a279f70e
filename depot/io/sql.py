"""A storage in an SQL database, through SQLAlchemy: PostgreSQL, MariaDB/MySQL, SQLite.

Settings: ``url`` (an SQLAlchemy URL) or ``engine`` (an :class:`~sqlalchemy.engine.Engine`
given in the settings dict), ``table`` (default ``depot_files``), ``prefix`` (default
empty), ``chunk_size`` (default 256 KiB).

Two tables, created when missing (or by the application: :func:`define_tables`)::

    <prefix><table>          one row per file: file_id (its UUID), version, filename,
                             content_type, content_length, last_modified (naive UTC,
                             to the second), checksum ("sha256:<hex>"), chunk_size
    <prefix><table>_chunks   the bytes: version, n, data (chunk_size bytes, the
                             last chunk shorter)

and three for chunked uploads, ``<prefix><table>_uploads``, ``_upchunks`` and
``_updata``, created at the first upload (see :mod:`depot.uploads._sql`).

Each write stores its chunks under a new *version* key, and only then makes or
switches the file's row to it, in one transaction that also deletes the chunks
of the version it replaces. Readers see the old version or the new one, whole.
A write larger than one batch of chunks commits its chunks batch by batch (16
batches together when the bytes come from memory or a file on disk), so that it
never holds a lock (SQLite's is on the whole database) for the time an upload
takes; should its process die, those chunks belong to no file, and
:meth:`SQLStorage.remove_orphans` deletes them. Inside :meth:`SQLStorage.joined`
every write goes through the application's connection, in its transaction.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import queue
import re
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import timedelta
from itertools import chain, islice
from typing import TYPE_CHECKING, Any, NamedTuple

from depot._settings import missing_dependency_message
from depot.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    CorruptMetadataError,
    DepotError,
    StoredFileNotFoundError,
)
from depot.io._chunks import BLOCK_SIZE, recut
from depot.io.interfaces import FileStorage, NewVersion, StoredFile
from depot.io.utils import _modified_now

try:
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection, Engine
except ModuleNotFoundError as exc:
    raise ImportError(missing_dependency_message(__name__, "SQLAlchemy")) from exc

# After SQLAlchemy: without it, the message above names the extra to install.
from depot.io._sqldriver import Connections, DriverStatement, listened
from depot.io._sqlschema import BYTES, create_missing_tables
from depot.uploads._sql import SQLStaging, define_upload_tables

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_TABLE",
    "SQLStorage",
    "SQLStoredFile",
    "SQLTables",
    "define_tables",
]

_BACKEND = "SQLStorage"
#: The files table's name unless ``table`` says otherwise; the chunks table adds ``_chunks``.
DEFAULT_TABLE = "depot_files"
#: The bytes of one chunk row. 256 KiB is the size depot reads and writes in
#: (:data:`~depot.io._chunks.BLOCK_SIZE`): a read of a block is one row, and
#: benchmarks/backends.py measured larger chunks no faster on SQLite or PostgreSQL.
DEFAULT_CHUNK_SIZE = 256 * 1024
#: The bounds of ``chunk_size``: below, rows cost more than their bytes; above,
#: a row no longer fits MariaDB's default max_allowed_packet (16 MiB) once escaped.
MIN_CHUNK_SIZE = 1024
MAX_CHUNK_SIZE = 8 * 1024 * 1024
#: Bytes of chunks sent in one INSERT (and committed together, outside
#: :meth:`SQLStorage.joined`): few round trips, and memory stays flat.
_BATCH_BYTES = 2 * 1024 * 1024
#: Batches committed together when the bytes come from memory or a file on disk.
_COMMIT_BATCHES = 16
#: Bytes of chunks fetched by one SELECT at most, when a read asks for more.
_FETCH_BYTES = 4 * 1024 * 1024
#: How long a write may take before :meth:`SQLStorage.remove_orphans` counts its
#: chunks as left by a dead process, unless told otherwise.
ORPHAN_AGE = timedelta(hours=1)
#: What a table name may be: every database takes it unquoted, and MariaDB
#: and PostgreSQL take 64 and 63 characters.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_NAME = 63
_CHUNKS_SUFFIX = "_chunks"
#: The longest name made from ``<prefix><table>``: its index's.
_INDEX_NAME = "ix_{}_version"
_CHECKSUM_TEXT = re.compile(r"sha256:[0-9a-f]{64}")
#: A version key: the time in milliseconds (12 hex digits), then 80 random bits.
#: Keys sort by the time of the write, so remove_orphans() finds old ones by range.
_VERSION_LENGTH = 32


#: Rows to insert into the chunks table; chunks read back, as (n, data).
_ChunkRows = list[dict[str, Any]]
_Chunks = list[tuple[int, bytes]]
#: Rows of a SELECT (the storage's ``list`` method hides the builtin in its class).
_Rows = list[Any]


class SQLTables(NamedTuple):
    """The two tables of a depot in a database (see :func:`define_tables`).

    .. versionadded:: 1.0
    """

    #: One row per file: its id, current version and metadata.
    files: sa.Table
    #: The bytes, ``chunk_size`` per row, by version and number.
    chunks: sa.Table


def define_tables(metadata: sa.MetaData, table: str = DEFAULT_TABLE, prefix: str = "") -> SQLTables:
    """Define the tables of an :class:`SQLStorage` on ``metadata`` and return them.

    An application that manages its schema (Alembic's autogenerate, or its own
    ``metadata.create_all()``) includes them in its metadata with the same
    ``table`` and ``prefix`` as the storage's settings::

        from depot.io.sql import define_tables

        class Base(DeclarativeBase):
            pass

        define_tables(Base.metadata)  # depot_files, depot_files_chunks, the uploads' three

    The chunked uploads' tables (``_uploads``, ``_upchunks``, ``_updata`` added
    to the files table's name) are defined on ``metadata`` too; the returned
    tuple holds the two tables of files.

    :param metadata: the application's :class:`~sqlalchemy.schema.MetaData`.
    :param table: the name of the files table (``depot.table``); the chunks
        table is named after it, with ``_chunks`` added.
    :param prefix: put before both names (``depot.prefix``), for several
        depots in one database.
    :raises depot.exceptions.ConfigurationError: a name that is not a plain
        SQL identifier of at most 63 characters.

    .. versionadded:: 1.0
    """
    files_name = _table_name(prefix, table)
    # On MariaDB the tables' own charset, whatever the database's default is:
    # names are Unicode (utf8mb4 holds all of it; MariaDB's "utf8" does not).
    files = sa.Table(
        files_name,
        metadata,
        sa.Column("file_id", sa.String(36), primary_key=True),
        sa.Column("version", sa.String(_VERSION_LENGTH), nullable=False),
        sa.Column("filename", sa.String(255)),
        sa.Column("content_type", sa.String(256)),
        sa.Column("content_length", sa.BigInteger),
        sa.Column("last_modified", sa.DateTime),
        sa.Column("checksum", sa.String(71)),
        # Per file, so that changing depot.chunk_size leaves stored files readable.
        sa.Column("chunk_size", sa.Integer, nullable=False),
        # remove_orphans() asks, for each old chunk, whether a file has its version.
        sa.Index(_INDEX_NAME.format(files_name), "version", unique=True),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    chunks = sa.Table(
        files_name + _CHUNKS_SUFFIX,
        metadata,
        sa.Column("version", sa.String(_VERSION_LENGTH), primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("data", BYTES, nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    define_upload_tables(metadata, files_name)
    return SQLTables(files, chunks)


def _table_name(prefix: object, table: object) -> str:
    for setting, value in (("table", table), ("prefix", prefix)):
        if not isinstance(value, str) or (value and not _NAME.fullmatch(value)):
            raise ConfigurationError(
                f"{setting} must be made of letters, digits and underscores (not starting "
                f"with a digit), not {value!r}; for example 'depot_files' or 'media_'."
            )
    assert isinstance(prefix, str) and isinstance(table, str)
    name = prefix + table
    longest = _INDEX_NAME.format(name)
    if not table or len(longest) > _MAX_NAME:
        raise ConfigurationError(
            f"table {table!r} with prefix {prefix!r} makes the name {name!r}, and its index "
            f"{longest!r} is longer than PostgreSQL's {_MAX_NAME} characters: give a "
            f"non-empty table name with which prefix and table have at most "
            f"{_MAX_NAME - len(_INDEX_NAME.format(''))} characters."
        )
    return name


class _Statements:
    """The storage's statements, built once: building one costs more than running it.

    Their parameters: ``fid`` (a file id), ``version``, ``first`` and ``stop`` (chunk
    numbers, the stop excluded), and the columns' names for what is written.
    """

    def __init__(self, tables: SQLTables) -> None:
        files, chunks = tables
        file_is = files.c.file_id == sa.bindparam("fid")
        version_is = chunks.c.version == sa.bindparam("version")
        in_range = sa.and_(chunks.c.n >= sa.bindparam("first"), chunks.c.n < sa.bindparam("stop"))
        self.file = sa.select(files).where(file_is)
        self.exists = sa.select(files.c.file_id).where(file_is)
        self.ids = sa.select(files.c.file_id)
        self.chunks = (
            sa.select(chunks.c.n, chunks.c.data).where(version_is, in_range).order_by(chunks.c.n)
        )
        # The file's row and chunks of its current version, in one query.
        on = sa.and_(chunks.c.version == files.c.version, in_range)
        self.current = (
            sa.select(files, chunks.c.n, chunks.c.data)
            .select_from(files.outerjoin(chunks, on))
            .where(file_is)
            .order_by(chunks.c.n)
        )
        self.count = sa.select(sa.func.count()).where(version_is)
        self.insert_chunks = sa.insert(chunks)
        self.insert_file = sa.insert(files)
        # PostgreSQL only (an INSERT in a WITH): a new file of one chunk, file row and
        # chunk in one statement, atomic on its own, so run without BEGIN and COMMIT.
        chunk = sa.insert(chunks).values(
            version=sa.bindparam("chunk_version"), n=0, data=sa.bindparam("chunk")
        )
        self.insert_file_and_chunk = sa.insert(files).add_cte(chunk.cte("depot_chunk"))
        self.update_file = sa.update(files).where(file_is)
        self.delete_file = sa.delete(files).where(file_is)
        self.delete_chunks = sa.delete(chunks).where(version_is)
        # An UPDATE first, even of nothing: it takes SQLite's write lock at once.
        # Two writers that both read before writing would deadlock there, and
        # SQLite fails one of them rather than wait.
        self.touch = sa.update(files).where(file_is).values(version=files.c.version)
        # FOR UPDATE reads the newest row, not a snapshot older than the lock
        # (MariaDB's REPEATABLE READ); SQLite has no FOR UPDATE, nor needs it.
        self.lock = sa.select(files.c.version).where(file_is).with_for_update()


#: The connections of the :meth:`SQLStorage.joined` blocks being run, by storage,
#: for this thread or task only.
_JOINED: ContextVar[dict[SQLStorage, Connection] | None] = ContextVar(
    "depot_sql_joined", default=None
)


class SQLStoredFile(StoredFile):
    """A file of an :class:`SQLStorage`; seekable, its chunks fetched as they are read.

    Each fetch is one short SELECT on a connection of the pool (or on the
    application's, inside :meth:`SQLStorage.joined`), so a slow reader holds
    no connection between reads. A read fetches only the chunks it needs:
    :meth:`iter_range` (a Range request) reads only the chunks of the range.

    A file replaced or deleted after its first read raises
    :class:`~depot.exceptions.BackendUnavailableError` (replaced) or
    :class:`~depot.exceptions.StoredFileNotFoundError` at its next fetch: the
    old chunks are gone.

    .. versionadded:: 1.0
    """

    def __init__(self, storage: SQLStorage, file_id: str, row: Any) -> None:
        self._storage = storage
        self._version: str = row.version
        self._chunk_size: int = _chunk_size_of(file_id, row, storage._where)
        self._pos = 0
        # The chunks fetched and not read past yet: (offset of the first, bytes).
        self._buffer_start = 0
        self._buffer = b""
        self._closed = False
        #: Set by the first read when it must check for a replace: the fetch
        #: that follows asks for the file's current version with the chunks.
        self._check_version = False
        super().__init__(file_id, **_metadata(row))

    def _follow_replace(self) -> None:
        self._check_version = True

    def _follow_now(self) -> None:
        """Switch to the file's current version now (a seek from the end needs its length)."""
        if self._check_version:
            self._check_version = False
            row = self._storage._file_row(self.file_id)
            if row is None:
                raise StoredFileNotFoundError(self.file_id, self._storage._where)
            self._switch_to(row)

    def _switch_to(self, row: Any) -> None:
        if row.version != self._version:
            self._set_metadata(**_metadata(row))
            self._chunk_size = _chunk_size_of(self.file_id, row, self._storage._where)
            self._version = row.version
            self._buffer = b""

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed file.")

    def read(self, n: int | None = -1) -> bytes:
        self._check_open()
        self._first_read()
        wanted = -1 if n is None else n
        if wanted == 0:
            return b""
        piece = self._read_some(_FETCH_BYTES if wanted < 0 else wanted)
        if wanted >= 0 and len(piece) in (0, wanted):
            return piece  # one piece of one chunk: no copy
        # Short of n at a chunk's end: a file's read(n) gives n bytes but at the end.
        pieces = [piece]
        got = len(piece)
        while wanted < 0 or got < wanted:
            piece = self._read_some(_FETCH_BYTES if wanted < 0 else wanted - got)
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
        return b"".join(pieces)

    def _read_some(self, n: int, stop: int | None = None) -> bytes:
        """Up to ``n`` bytes from the position, fetching chunks up to ``stop`` at most."""
        offset = self._pos - self._buffer_start
        if not 0 <= offset < len(self._buffer):
            self._fetch(self._pos, self._pos + n if stop is None else stop)
            offset = self._pos - self._buffer_start
            if not 0 <= offset < len(self._buffer):
                return b""  # the end of the file
        buffer = self._buffer
        # A whole chunk is given uncopied.
        data = buffer if offset == 0 and n >= len(buffer) else buffer[offset : offset + n]
        self._pos += len(data)
        return data

    def _fetch(self, start: int, stop: int) -> None:
        """Fill the buffer with the chunks holding ``start`` and as many up to ``stop`` as fit."""
        length = self.content_length
        if not self._check_version and length is not None and start >= length:
            self._buffer = b""
            return
        size = self._chunk_size
        first = start // size
        last = max(start, stop - 1) // size
        count = max(1, min(last - first + 1, _FETCH_BYTES // size))
        storage = self._storage
        if self._check_version:
            # The first read: the current version and its first chunks in one query.
            self._check_version = False
            row, chunks = storage._current_chunks(self.file_id, first, count)
            if row is None:
                raise StoredFileNotFoundError(self.file_id, storage._where)
            if row.version != self._version or row.chunk_size != size:
                self._switch_to(row)
                if self._chunk_size != size:
                    return self._fetch(start, stop)
        else:
            chunks = storage._chunks_of(self._version, first, count)
        length = self.content_length
        expected = first + count if length is None else min(first + count, -(-length // size))
        if not chunks and length is None:
            self._buffer = b""
            return
        self._check_chunks(chunks, first, expected, size)
        self._buffer_start = first * size
        if len(chunks) == 1:
            self._buffer = chunks[0][1]  # uncopied
        else:
            self._buffer = b"".join(c[1] for c in chunks)

    def _check_chunks(self, chunks: _Chunks, first: int, expected: int, size: int) -> None:
        numbers = [c[0] for c in chunks]
        if numbers == list(range(first, expected)):
            length = self.content_length
            # Every chunk full but the file's last, which holds the rest.
            last_size = size if length is None else length - (expected - 1) * size
            if all(len(c[1]) == size for c in chunks[:-1]) and (
                not chunks or len(chunks[-1][1]) in (size, last_size)
            ):
                return
        raise self._unreadable()

    def _unreadable(self) -> DepotError:
        """Why this version's chunks are not all there: a replace, a delete, or damage."""
        storage = self._storage
        row = storage._file_row(self.file_id)
        if row is None:
            return StoredFileNotFoundError(self.file_id, storage._where)
        if row.version != self._version:
            return BackendUnavailableError(
                f"File {self.file_id} in {storage._where} was replaced after it was "
                "opened: get() it again to read the new version."
            )
        return CorruptMetadataError(
            f"File {self.file_id} in {storage._where} has missing or damaged chunks "
            f"(version {self._version}). Restore the file from a backup or delete it."
        )

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        self._first_read()
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._pos + offset
        elif whence == io.SEEK_END:
            self._follow_now()
            position = (self.content_length or 0) + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._pos = position
        return position

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def iter_range(self, start: int, stop: int, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
        """Yield the bytes from ``start`` up to ``stop``, fetching only the chunks they are in."""
        self.hold_version()
        self._check_open()
        self._pos = start
        while self._pos < stop:
            data = self._read_some(min(block_size, stop - self._pos), stop)
            if not data:
                return
            yield data

    def close(self) -> None:
        self._closed = True
        self._buffer = b""

    @property
    def closed(self) -> bool:
        return self._closed


def _metadata(row: Any) -> dict[str, Any]:
    checksum = row.checksum
    return {
        "filename": row.filename,
        "content_type": row.content_type,
        "content_length": row.content_length,
        "last_modified": row.last_modified,
        # A checksum that is not depot's is none: nothing to verify against.
        "checksum": checksum
        if isinstance(checksum, str) and _CHECKSUM_TEXT.fullmatch(checksum)
        else None,
    }


def _chunk_size_of(file_id: str, row: Any, where: str) -> int:
    size = row.chunk_size
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise CorruptMetadataError(
            f"Invalid metadata chunk_size of file {file_id} ({where}): {size!r} is not a "
            "size in bytes. Restore the file from a backup or delete it."
        )
    return size


class SQLStorage(FileStorage):
    """Stores files in two tables of an SQL database, in chunks.

    :param url: the database, as an SQLAlchemy URL such as
        ``postgresql+psycopg://user:password@host/db``,
        ``mysql+pymysql://user:password@host/db?charset=utf8mb4`` or
        ``sqlite:////var/lib/app/files.sqlite``. The storage makes its own
        engine, and :meth:`close` disposes of it.
    :param engine: an :class:`~sqlalchemy.engine.Engine` instead of ``url``
        (given in the settings dict): the application's, to share its pool.
        :meth:`close` leaves it alone.
    :param table: the name of the files table; the chunks table adds ``_chunks``.
    :param prefix: put before both table names, for several depots in one database.
    :param chunk_size: the bytes per chunk row, for new files; from 1 KiB to 8 MiB.

    The tables are created at the first operation if they are missing; an
    application that manages its schema defines them with :func:`define_tables`.
    An operation the database cannot do (unreachable, or it refuses: a missing
    table, a missing privilege) raises
    :class:`~depot.exceptions.BackendUnavailableError` (an ``OSError``) naming
    the database and table.

    :meth:`joined` makes the writes of a block part of the application's
    transaction.

    .. versionadded:: 1.0
    """

    def __init__(
        self,
        url: str | sa.URL | None = None,
        engine: Engine | None = None,
        table: str = DEFAULT_TABLE,
        prefix: str = "",
        chunk_size: int | str = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.tables = define_tables(sa.MetaData(), table, prefix)
        self._sql = _Statements(self.tables)
        self._chunk_size = _checked_chunk_size(chunk_size)
        self._per_batch = max(1, _BATCH_BYTES // self._chunk_size)
        self._engine, self._owns_engine = _engine_of(url, engine)
        # Each read is one statement, atomic on its own. On PostgreSQL a
        # transaction around it would cost two more round trips (BEGIN, and the
        # ROLLBACK when the pool takes the connection back), half of a small
        # file's read; on MariaDB switching autocommit on and off costs more.
        self._is_postgresql = self._engine.dialect.name == "postgresql"
        self._read_engine = (
            self._engine.execution_options(isolation_level="AUTOCOMMIT")
            if self._is_postgresql
            else self._engine
        )
        self._driver: dict[str, DriverStatement] = {}
        self._connections = Connections(self._engine)
        shown = self._engine.url.render_as_string(hide_password=True)
        self._where = f"table {self.tables.files.name!r} of {shown}"
        self._tables_ready = False
        self._tables_lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The engine the storage reads and writes through, outside :meth:`joined`."""
        return self._engine

    @property
    def chunk_size(self) -> int:
        """The bytes per chunk row of the files written from now on."""
        return self._chunk_size

    def close(self) -> None:
        """Close the pooled connections of an engine the storage made from ``url``.

        An engine it was given is the application's: it is left alone (the
        connections the storage kept between statements go back to its pool).
        Either way the storage stays usable; its next operation connects again.
        """
        self._connections.close()
        if self._owns_engine:
            self._engine.dispose()

    def _staging(self) -> SQLStaging:
        # In the depot's database, so that every process and host shares the
        # uploads; built once, as its statements cost more to build than to run.
        staging: SQLStaging | None = self.__dict__.get("_uploads")
        if staging is None:
            files = self.tables.files
            staging = SQLStaging(
                self._engine,
                define_upload_tables(files.metadata, files.name),
                files,
                self._chunk_size,
                lambda: _database_errors(self._where),
                self._ensure_tables,
            )
            self.__dict__["_uploads"] = staging
        return staging

    def _store_reserved(self, *args: Any, **kwargs: Any) -> str:
        # Outside any joined() block: finish() marks the upload finished on the
        # staging's connection, so its file must be committed too, or a request
        # rolled back would leave an upload finished into no file.
        outside = {s: c for s, c in (_JOINED.get() or {}).items() if s is not self}
        token = _JOINED.set(outside)
        try:
            return super()._store_reserved(*args, **kwargs)
        finally:
            _JOINED.reset(token)

    # --- in the application's transaction ------------------------------------------

    @contextlib.contextmanager
    def joined(self, connection: Connection | Session) -> Iterator[None]:
        """Within the block, write and read through ``connection``, in its transaction.

        ``create()``, ``replace()`` and ``delete()`` then run on the
        application's connection (or the connection of its
        :class:`~sqlalchemy.orm.Session`), each inside a SAVEPOINT, and never
        commit: a file stored in the block is committed with the rows that
        reference it, and rolled back with them, leaving nothing behind. A write
        that fails rolls back to its savepoint, so the transaction goes on::

            with Session(engine) as session, session.begin():
                with storage.joined(session):
                    document.file_id = storage.create(upload)
                session.add(document)
            # committed together; an exception in the block rolls both back

        ``get()``, ``exists()`` and ``list()`` see the transaction's own files;
        files got in the block read through it while the block runs.

        The block is per thread (and per asyncio task): other threads using
        the storage meanwhile use its engine. The connection must be to the
        storage's database and the tables must exist already (created by
        the application's schema, see :func:`define_tables`, or by an
        earlier operation of the storage): on MariaDB, creating them inside
        the transaction would commit it. On SQLite, SAVEPOINT needs
        SQLAlchemy's recipe for pysqlite transactions (see
        :ref:`the backends page <backend-sql>`).

        :param connection: a :class:`~sqlalchemy.engine.Connection` or an
            ORM :class:`~sqlalchemy.orm.Session`; a transaction is begun on it
            if none is.

        .. versionadded:: 1.0
        """
        conn = _connection_of(connection)
        token = _JOINED.set({**(_JOINED.get() or {}), self: conn})
        try:
            yield
        finally:
            _JOINED.reset(token)

    def _joined(self) -> Connection | None:
        return (_JOINED.get() or {}).get(self)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A connection in a transaction: the storage's own (committed at the end), or
        the application's inside a savepoint (released at the end, never committed)."""
        joined = self._joined()
        with _database_errors(self._where):
            # Through the storage's own engine in both cases: DDL would commit the
            # application's transaction on MariaDB.
            self._ensure_tables()
            if joined is None:
                with self._engine.begin() as conn:
                    yield conn
            else:
                with joined.begin_nested():
                    yield joined

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        joined = self._joined()
        with _database_errors(self._where):
            self._ensure_tables()
            if joined is None:
                with self._read_engine.connect() as conn:
                    yield conn
            else:
                yield joined

    def _ensure_tables(self) -> None:
        if self._tables_ready:
            return
        # One thread of the process checks and creates: on SQLite, two that both
        # read the schema and then write it deadlock, and one fails at once.
        with self._tables_lock:
            if self._tables_ready:
                return
            # The uploads' tables wait for the first upload (SQLStaging).
            create_missing_tables(self._engine, list(self.tables))
            self._tables_ready = True

    # --- reading ---------------------------------------------------------------------

    def get(self, file_or_id: StoredFile | str) -> SQLStoredFile:
        fileid = self._checked_id(file_or_id)
        row = self._file_row(fileid)
        if row is None:
            raise StoredFileNotFoundError(fileid, self._where)
        return SQLStoredFile(self, fileid, row)

    def exists(self, file_or_id: StoredFile | str) -> bool:
        fileid = self._checked_id(file_or_id)
        with self._reading() as conn:
            return conn.execute(self._sql.exists, {"fid": fileid}).first() is not None

    def list(self) -> list[str]:
        with self._reading() as conn:
            return list(conn.execute(self._sql.ids).scalars())

    def _file_row(self, fileid: str) -> Any:
        with _corrupt_rows(fileid, self._where):
            rows = self._select("file", {"fid": fileid})
        return rows[0] if rows else None

    def _chunks_of(self, version: str, first: int, count: int) -> _Chunks:
        """Chunks ``first`` to ``first + count - 1`` of ``version`` that exist, in order."""
        params = {"version": version, "first": first, "stop": first + count}
        return [(n, data) for n, data in self._select("chunks", params)]

    def _current_chunks(self, fileid: str, first: int, count: int) -> tuple[Any, _Chunks]:
        """The file's row and chunks ``first`` to ``first + count - 1`` of its version.

        One query, so that a first read checks for a replace at no extra cost.
        """
        params = {"fid": fileid, "first": first, "stop": first + count}
        with _corrupt_rows(fileid, self._where):
            rows = self._select("current", params)
        if not rows:
            return None, []
        return rows[0], [(r.n, r.data) for r in rows if r.n is not None]

    def _select(self, name: str, params: dict[str, Any]) -> _Rows:
        """The rows of one of the reads of get() and read() (``_Statements.<name>``)."""
        return self._run(name, params, self._read_engine)

    def _run(self, name: str, params: dict[str, Any], engine: Engine) -> _Rows:
        """Run ``_Statements.<name>`` in one statement of its own; the rows of a SELECT.

        Outside :meth:`joined`, and unless something listens to the engine's
        statements (``echo``, SQLAlchemy's logging, an ``execute`` or
        ``cursor_execute`` listener, before or after, a ``handle_error`` one:
        they see these statements as before), it runs on the DBAPI cursor (see
        :mod:`depot.io._sqldriver`).
        On PostgreSQL it commits itself (``engine`` is in autocommit).
        """
        joined = self._joined()
        if joined is None and self._tables_ready and not listened(engine):
            statement = self._driver.get(name)
            if statement is None:
                statement = self._driver[name] = DriverStatement(
                    getattr(self._sql, name), self._connections, autocommit=self._is_postgresql
                )
            if statement.usable:
                try:
                    return statement.run(params)
                except sa.exc.SQLAlchemyError as exc:
                    raise _database_error(exc, self._where) from exc
        with _database_errors(self._where):
            self._ensure_tables()
            if joined is not None:
                return _rows_of(joined.execute(getattr(self._sql, name), params))
            with engine.connect() as conn:
                return _rows_of(conn.execute(getattr(self._sql, name), params))

    # --- writing ---------------------------------------------------------------------

    def _write(self, fileid: str, new: NewVersion) -> None:
        self._store(fileid, new, existing=False, restoring=False)

    def _write_over(self, fileid: str, new: NewVersion, restoring: bool) -> None:
        current = self._file_row(fileid)
        if current is None:
            if not restoring:
                raise StoredFileNotFoundError(fileid, self._where)
            new.keep_from(None)
        else:
            new.keep_from(lambda: SQLStoredFile(self, fileid, current))
        self._store(fileid, new, existing=current is not None, restoring=restoring)

    def _store(self, fileid: str, new: NewVersion, existing: bool, restoring: bool) -> None:
        """Write the chunks of ``new`` under a new version, then point the file's row at it.

        :param existing: the file was there when the replace began: it must still be.
        """
        version = _new_version()
        batches = self._batches(version, new)
        if self._joined() is not None:
            # All of it in the application's transaction: nothing to clean up, ever.
            with self._writing() as conn:
                for batch in batches:
                    conn.execute(self._sql.insert_chunks, batch)
                self._point(conn, fileid, version, new, existing, restoring)
            return
        first: _ChunkRows = next(batches, [])
        if len(first) <= 1 and not (existing or restoring) and self._is_postgresql:
            # A new file of one chunk at most: its row and chunk in one statement, in
            # one round trip (four with BEGIN, two INSERTs and COMMIT).
            values = self._row_values(fileid, version, new)
            if first:
                values.update(chunk_version=version, chunk=first[0]["data"])
            name = "insert_file_and_chunk" if first else "insert_file"
            self._run(name, values, self._read_engine)
            return
        if len(first) < self._per_batch:
            # The whole file in one batch: chunks and row in one transaction.
            with self._writing() as conn:
                if first:
                    conn.execute(self._sql.insert_chunks, first)
                self._point(conn, fileid, version, new, existing, restoring)
            return
        # Bytes, or a file on a disk, are read without waiting on anyone: a transaction
        # may then span several batches (a commit costs a flush to disk, as much time
        # as writing 2 MiB on SQLite). A stream (a request body, a pipe) can stall, and
        # no lock may be held meanwhile: each batch is committed on its own.
        at_hand = _reads_without_waiting(new.source)
        per_commit = _COMMIT_BATCHES if at_hand else 1
        written = 0
        pending: Iterator[_ChunkRows] = chain([first], batches)
        # Read and hashed by a thread while the batch before is written: the driver,
        # the read and SHA-256 each let go of the GIL, and on SQLite the checksum
        # cost a fifth of a big write's time.
        ahead = _ReadAhead(pending) if at_hand else contextlib.nullcontext(pending)
        try:
            with ahead as pending:
                while opening := next(pending, None):
                    with self._writing() as conn:
                        for batch in chain([opening], islice(pending, per_commit - 1)):
                            conn.execute(self._sql.insert_chunks, batch)
                            written += len(batch)
            with self._writing() as conn:
                self._check_written(conn, version, written)
                self._point(conn, fileid, version, new, existing, restoring)
        except BaseException:
            self._discard(version)
            raise

    def _batches(self, version: str, new: NewVersion) -> Iterator[_ChunkRows]:
        """The chunk rows of ``new``, a batch at a time, read as they are sent."""
        size = self._chunk_size
        pieces = enumerate(recut(new.chunks(min(size, BLOCK_SIZE)), size))
        while batch := [
            {"version": version, "n": n, "data": data}
            for n, data in islice(pieces, self._per_batch)
        ]:
            yield batch

    def _check_written(self, conn: Connection, version: str, count: int) -> None:
        if conn.execute(self._sql.count, {"version": version}).scalar_one() != count:
            raise BackendUnavailableError(
                f"The chunks of a file being written to {self._where} were deleted before "
                "it was complete: remove_orphans() ran with an age shorter than the write "
                "took. Write the file again, and give remove_orphans() a longer age."
            )

    def _point(
        self,
        conn: Connection,
        fileid: str,
        version: str,
        new: NewVersion,
        existing: bool,
        restoring: bool,
    ) -> None:
        """Make the file's row say ``version``; drop the chunks of the version it said."""
        values = self._row_values(fileid, version, new)
        old = self._lock(conn, fileid) if existing or restoring else None
        if old is None:
            if existing:  # deleted while the new version was written
                raise StoredFileNotFoundError(fileid, self._where)
            conn.execute(self._sql.insert_file, values)
            return
        del values["file_id"]
        conn.execute(self._sql.update_file, {"fid": fileid, **values})
        conn.execute(self._sql.delete_chunks, {"version": old})

    def _row_values(self, fileid: str, version: str, new: NewVersion) -> dict[str, Any]:
        """The file row of ``new``, stored under ``version``."""
        filename = new.filename
        if filename is not None and "\x00" in filename and self._is_postgresql:
            # PostgreSQL's text holds no NUL: the insert failed, reported as the
            # database refusing (a 503). As create() does with lone surrogates.
            filename = filename.replace("\x00", "\ufffd")
        return {
            "file_id": fileid,
            "version": version,
            "filename": filename,
            "content_type": new.content_type,
            "content_length": new.digest.length,
            "last_modified": _modified_now()[1],
            "checksum": new.digest.checksum,
            "chunk_size": self._chunk_size,
        }

    def _lock(self, conn: Connection, fileid: str) -> str | None:
        """Lock the file's row for this transaction; return its version, None if no row."""
        conn.execute(self._sql.touch, {"fid": fileid})
        version: str | None = conn.execute(self._sql.lock, {"fid": fileid}).scalar()
        return version

    def _discard(self, version: str) -> None:
        # Best effort, on the way out of a failure: when the database is gone
        # the chunks stay, and remove_orphans() deletes them later.
        with contextlib.suppress(DepotError, sa.exc.SQLAlchemyError), self._writing() as conn:
            conn.execute(self._sql.delete_chunks, {"version": version})

    def delete(self, file_or_id: StoredFile | str) -> None:
        fileid = self._checked_id(file_or_id)
        with self._writing() as conn:
            version = self._lock(conn, fileid)
            if version is None:
                return
            conn.execute(self._sql.delete_chunks, {"version": version})
            conn.execute(self._sql.delete_file, {"fid": fileid})

    def remove_orphans(self, older_than: timedelta = ORPHAN_AGE) -> int:
        """Delete the chunks that no file has, written more than ``older_than`` ago.

        A write that fails deletes its chunks itself; these are the chunks of
        a write whose process was killed, or lost its database, before it
        finished. A write still running has chunks of no file too: give an age
        longer than any upload takes. Run it from a periodic job. Return how
        many chunk rows were deleted.

        :param older_than: how old the chunks must be (by the time their write
            began, on the writer's clock).

        .. versionadded:: 1.0
        """
        files, chunks = self.tables
        cutoff = _version_at(time.time() - older_than.total_seconds())
        owned = sa.select(files.c.file_id).where(files.c.version == chunks.c.version)
        statement = sa.delete(chunks).where(chunks.c.version < cutoff, ~owned.exists())
        with self._writing() as conn:
            return conn.execute(statement).rowcount


class _ReadAhead:
    """The items of an iterator, the next one made by a thread while the caller uses this one.

    For a source that never stalls (bytes, a file on disk): the thread runs only
    while the caller writes, and stops when the caller leaves the block, however it
    leaves; an exception raised making an item (a policy refusing the bytes) is
    raised to the caller in its place. At most two items are held beyond the
    caller's.
    """

    _END = object()

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._make,), name="depot-sql-read-ahead", daemon=True
        )

    def __enter__(self) -> Iterator[Any]:
        self._thread.start()
        return self._take()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):  # unblock a put() waiting for room
                self._queue.get(timeout=0.05)
        self._thread.join()

    def _make(self) -> None:
        try:
            for item in self._items:
                if self._stop.is_set():
                    return
                self._put((item, None))
        except BaseException as exc:  # given to the caller, who raises it
            self._put((self._END, exc))
            return
        self._put((self._END, None))

    def _put(self, entry: tuple[Any, BaseException | None]) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(entry, timeout=0.05)
                return

    def _take(self) -> Iterator[Any]:
        while True:
            item, exc = self._queue.get()
            if exc is not None:
                raise exc
            if item is self._END:
                return
            yield item


def _reads_without_waiting(source: object) -> bool:
    """Whether reading ``source`` waits on nothing but memory or a local disk."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return True
    try:
        return stat.S_ISREG(os.fstat(source.fileno()).st_mode)  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # no file descriptor, or a closed one
        return False


def _new_version() -> str:
    return _version_at(time.time()) + secrets.token_hex(10)


def _version_at(seconds: float) -> str:
    """The start of the version keys of writes begun at ``seconds`` (since the epoch)."""
    return f"{max(0, int(seconds * 1000)):012x}"


def _checked_chunk_size(value: object) -> int:
    size: object = value
    if isinstance(value, str) and value.strip().isdigit():
        size = int(value)  # from a config file
    if (
        not isinstance(size, int)
        or isinstance(size, bool)
        or not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE
    ):
        raise ConfigurationError(
            f"chunk_size must be a number of bytes from {MIN_CHUNK_SIZE} to "
            f"{MAX_CHUNK_SIZE} (8 MiB), not {value!r}; the default is {DEFAULT_CHUNK_SIZE}."
        )
    return size


def _engine_of(url: object, engine: object) -> tuple[Engine, bool]:
    """The engine to use, and whether the storage made it (and so disposes of it)."""
    if engine is not None and url is not None:
        raise ConfigurationError(
            "give url or engine, not both: url makes an engine of the storage's own, "
            "engine shares the application's."
        )
    if engine is not None:
        if not isinstance(engine, Engine):
            raise ConfigurationError(
                f"engine must be an SQLAlchemy Engine (sqlalchemy.create_engine(...)), not "
                f"{type(engine).__name__}; to give a URL as text, use url instead."
            )
        return engine, False
    if url is None:
        raise ConfigurationError(
            "SQLStorage needs the database: set url to an SQLAlchemy URL such as "
            "'postgresql+psycopg://user:password@host/dbname' or "
            "'sqlite:////path/to/files.sqlite', or pass engine (an Engine) in the settings."
        )
    if not isinstance(url, (str, sa.URL)):
        raise ConfigurationError(f"url must be an SQLAlchemy URL as text, not {url!r}.")
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigurationError(
            f"url {url!r} is not an SQLAlchemy URL: write it as "
            "'dialect+driver://user:password@host:port/dbname', for example "
            "'postgresql+psycopg://app@localhost/app'."
        ) from exc
    shown = parsed.render_as_string(hide_password=True)
    try:
        made = sa.create_engine(parsed, **_connect_options(parsed))
    except sa.exc.NoSuchModuleError as exc:
        raise ConfigurationError(
            f"url {shown!r}: SQLAlchemy has no dialect {parsed.drivername!r}; use one such "
            "as postgresql+psycopg, mysql+pymysql or sqlite."
        ) from exc
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"url {shown!r} needs the database driver {exc.name!r}, which is not installed: "
            f"pip install it (for example psycopg[binary] or PyMySQL)."
        ) from exc
    return made, True


#: How long connecting may take (seconds), unless the URL says: the drivers'
#: defaults wait as long as the operating system does when a host is down.
CONNECT_TIMEOUT = 5


def _connect_options(url: sa.URL) -> dict[str, Any]:
    servers = ("postgresql", "mysql", "mariadb")
    if url.get_backend_name() in servers and "connect_timeout" not in url.query:
        # psycopg and PyMySQL both take it, in seconds.
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}}
    return {}


def _connection_of(connection: object) -> Connection:
    if isinstance(connection, Connection):
        return connection
    get_connection = getattr(connection, "connection", None)
    if callable(get_connection) and not isinstance(connection, Engine):
        conn = get_connection()  # a Session: its connection, in its transaction
        if isinstance(conn, Connection):
            return conn
    raise TypeError(
        f"joined() takes an SQLAlchemy Connection or Session, not "
        f"{type(connection).__name__}: the writes join that connection's transaction "
        "(an Engine has none: use engine.begin() as conn, then joined(conn))."
    )


@contextlib.contextmanager
def _corrupt_rows(fileid: str, where: str) -> Iterator[None]:
    """A file row whose values the column types cannot read (SQLite keeps any value)."""
    try:
        yield
    except (ValueError, TypeError, OverflowError) as exc:
        raise CorruptMetadataError(
            f"Invalid metadata of file {fileid} ({where}): {exc}. "
            "Restore the file from a backup or delete it."
        ) from exc


@contextlib.contextmanager
def _database_errors(where: str) -> Iterator[None]:
    """Turn SQLAlchemy's errors into BackendUnavailableError, saying what to check."""
    try:
        yield
    except DepotError:
        raise
    except sa.exc.SQLAlchemyError as exc:
        raise _database_error(exc, where) from exc


def _database_error(exc: sa.exc.SQLAlchemyError, where: str) -> BackendUnavailableError:
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)):
        return BackendUnavailableError(
            f"Cannot use the database for {where}: {_first_line(exc)}. Check that the "
            "server is running and reachable, and that depot.url (or the engine) names it."
        )
    return BackendUnavailableError(
        f"The database refused an operation on {where}: {_first_line(exc)}. Check "
        "that the tables are depot's (see depot.io.sql.define_tables) and that the "
        "database user may read and write them."
    )


def _rows_of(result: sa.CursorResult[Any]) -> _Rows:
    """The rows of a SELECT run by SQLAlchemy; none for another statement."""
    return list(result) if result.returns_rows else []


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    text = lines[0] if lines else type(original).__name__
    return text if len(text) <= 300 else text[:297] + "..."
