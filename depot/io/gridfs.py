"""A storage in MongoDB GridFS.

Settings: ``mongouri`` (required; it names the database), ``collection``
(default ``filedepot``).

The documents are the ones filedepot 0.12 wrote through pymongo's GridFS, so
either library reads what the other wrote::

    <collection>.files    _id (an ObjectId: the file id), filename, contentType,
                          length, chunkSize, uploadDate, last_modified
                          ("YYYY-MM-DD HH:MM:SS", UTC), checksum ("sha256:<hex>";
                          depot only, filedepot ignores it)
    <collection>.chunks   files_id, n, data: the bytes, in chunks of 255 KiB

Both directions stream: ``create()`` sends chunks as they are read, a few at a
time, and a stored file fetches them as it is read.

``replace()`` uploads the new content under a temporary id first, so a failed
upload leaves the old file untouched. Then it commits in a few server-side
steps: it records the new version in a ``depot_replace`` field of the file's
document (which also keeps other replaces of the file out), swaps the chunks
and writes the new document. GridFS has no multi-document atomicity without
transactions, so a reader that opens the file during those milliseconds waits
for the commit; if the replacing process dies in the middle, the first
operation on the file a minute later finishes the commit from what was recorded.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote

from depot._headers import DEFAULT_CONTENT_TYPE, DEFAULT_FILENAME
from depot._settings import missing_dependency_message
from depot.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    CorruptMetadataError,
    DepotError,
    InvalidFileIdError,
    StoredFileNotFoundError,
)
from depot.io._chunks import is_checksum, recut
from depot.io._foreign import also_foreign
from depot.io.interfaces import FileStorage, NewVersion, StoredFile
from depot.io.utils import _modified_now, parse_timestamp
from depot.uploads._gridfs import GridFSStaging
from depot.utils import utcnow_naive

try:
    import gridfs
    import pymongo
    from bson import Int64, ObjectId
    from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError
except ModuleNotFoundError as exc:
    # gridfs and bson come with pymongo: it is the package to install.
    raise ImportError(missing_dependency_message(__name__, "pymongo")) from exc

__all__ = ["GridFSStorage", "GridFSStoredFile"]

_BACKEND = "GridFSStorage"
#: How long an operation waits for a usable server, unless ``mongouri`` sets
#: ``serverSelectionTimeoutMS``: pymongo's 30 s would hold a request that long
#: when MongoDB is down.
SERVER_SELECTION_TIMEOUT_MS = 5000
#: How long opening a connection may take, unless ``mongouri`` sets ``connectTimeoutMS``
#: (pymongo: 20 s).
CONNECT_TIMEOUT_MS = 5000
#: pymongo's default chunk size, which every file filedepot wrote has.
_CHUNK_SIZE = 255 * 1024
#: Chunks sent in one insert: few round trips, and memory stays flat (~2 MiB).
_CHUNKS_PER_INSERT = 8
_OBJECT_ID_TEXT = re.compile(r"[0-9a-f]{24}")
#: The field of a files document that holds a replace() being committed.
_JOURNAL = "depot_replace"
#: How long an operation waits for another process's replace() to commit.
_REPLACE_WAIT = 5.0
#: A commit older than this was abandoned (its process died): the next
#: operation on the file finishes it. Committing takes milliseconds.
_STALE_AFTER = 60.0


class GridFSStoredFile(StoredFile):
    """A file of a :class:`GridFSStorage`; seekable, its chunks fetched as it is read.

    :param file_id: the file's id.
    :param gridout: pymongo's :class:`gridfs.GridOut` of the file.
    :param where: where the file is, for error messages.

    Its chunks come from the server in batches of up to 16 MiB. A ``replace()``
    that commits while a larger file is being read shows in the batches still
    to come: :meth:`read` raises :class:`~depot.exceptions.CorruptMetadataError`
    when the new version's size differs, and otherwise returns its bytes for the
    rest of the file. Open the file again to read one version whole.
    """

    def __init__(
        self,
        file_id: str,
        gridout: gridfs.GridOut,
        where: str = "GridFS",
        newest: Callable[[], gridfs.GridOut | None] | None = None,
    ) -> None:
        file_id = _check_file_id(file_id)
        self._gridout = gridout
        self._where = where
        self._newest = newest
        self._closed = False
        with _server_errors(where):
            metadata = _read_metadata(file_id, gridout, where)
        super().__init__(file_id, **metadata)

    def _follow_replace(self) -> None:
        newest = self._newest() if self._newest is not None else None
        if newest is not None and newest._file != self._gridout._file:
            with _server_errors(self._where):
                self._set_metadata(**_read_metadata(self.file_id, newest, self._where))
            self._gridout = newest

    def read(self, n: int = -1) -> bytes:
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        self._first_read()
        with _server_errors(self._where):
            try:
                return self._gridout.read(n)
            except gridfs.errors.CorruptGridFile as exc:
                # Still the CorruptGridFile filedepot let through, for its except clauses.
                raise also_foreign(self._unreadable(exc), exc) from exc

    def _unreadable(self, exc: gridfs.errors.CorruptGridFile) -> DepotError:
        """Why the chunks do not fit the files document: a replace, a delete, or damage."""
        # A replace or delete since get() removed this version's chunks.
        newest = self._newest() if self._newest is not None else None
        if self._newest is not None and newest is None:
            return StoredFileNotFoundError(self.file_id, self._where)
        if newest is not None and newest._file != self._gridout._file:
            return BackendUnavailableError(
                f"File {self.file_id} in {self._where} was replaced after it was opened: "
                "get() it again to read the new version."
            )
        return CorruptMetadataError(
            f"File {self.file_id} in {self._where} has damaged chunks: {exc}. If it "
            "was replaced while being read, read it again; otherwise restore it "
            "from a backup or delete it."
        )

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        self._first_read()
        return self._gridout.seek(offset, whence)

    def tell(self) -> int:
        return self._gridout.tell()

    def close(self) -> None:
        self._closed = True
        self._gridout.close()

    @property
    def closed(self) -> bool:
        return self._closed


class GridFSStorage(FileStorage):
    """Stores files in GridFS, in the collections ``<collection>.files`` and ``.chunks``.

    :param mongouri: the MongoDB connection string; it must name the database,
        as in ``mongodb://user:password@host:27017/mydb``. Connection options go
        in its query string. Unless it sets them, depot gives
        ``serverSelectionTimeoutMS`` and ``connectTimeoutMS`` 5000 (pymongo's
        defaults are 30 and 20 seconds), so an operation fails within about 5
        seconds when the server is down, rather than holding a request 30.
    :param collection: the GridFS prefix of the two collections.
    :param prefix: put before ``collection``, for several depots in one
        database (``avatars_`` gives ``avatars_filedepot.files``); empty by default.

    An operation that cannot reach the server, or that the server refuses,
    raises :class:`~depot.exceptions.BackendUnavailableError` (an ``OSError``)
    naming the host, database and collection.

    .. versionchanged:: 1.0
       ``replace()`` never loses the old file; files carry a checksum; ids are
       random; ``close()`` added; 5 second server selection and connect
       timeouts unless ``mongouri`` sets them; ``prefix`` added.
    """

    def __init__(self, mongouri: str, collection: str = "filedepot", prefix: str = "") -> None:
        if not isinstance(collection, str) or not collection:
            raise ConfigurationError(
                f"collection must be the name of a GridFS collection, not {collection!r}."
            )
        if not isinstance(prefix, str) or "$" in prefix or "\0" in prefix:
            raise ConfigurationError(
                f"prefix must be text to put before the collection's name, without '$' "
                f"or NUL, not {prefix!r}."
            )
        collection = prefix + collection
        self._mongouri = mongouri
        self._collection = collection
        self._connect()
        self._where = (
            f"GridFS collection {collection!r} of database {self._db.name!r} at {_hosts(mongouri)}"
        )
        self._indexed = False

    def close(self) -> None:
        """Close the connections to MongoDB and stop pymongo's threads.

        The storage stays usable: its next operation connects again (so a
        storage shared by several tests survives :meth:`DepotManager.reset()
        <depot.manager.DepotManager.reset>` between them).

        .. versionadded:: 1.0
        """
        self._cli.close()
        # A client that connects on first use: it holds nothing until then.
        self._connect(connect=False)

    def _connect(self, connect: bool = True) -> None:
        """Make the MongoClient of ``mongouri`` and the collections over it."""
        mongouri = self._mongouri
        try:
            # pymongo says what is wrong with a URI through all three.
            self._cli: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
                mongouri, connect=connect, **_default_timeouts(mongouri)
            )
        except (pymongo.errors.ConfigurationError, ValueError, TypeError) as exc:
            raise also_foreign(ConfigurationError(_uri_problem(mongouri, exc)), exc) from exc
        try:
            self._db = self._cli.get_default_database()
        except pymongo.errors.ConfigurationError as exc:
            self._cli.close()
            raise also_foreign(ConfigurationError(_uri_problem(mongouri, exc)), exc) from exc
        #: pymongo's GridFS over the same collections, as filedepot had it.
        self._gridfs = gridfs.GridFS(self._db, collection=self._collection)
        self._root = self._db[self._collection]
        self._files = self._root.files
        self._chunks = self._root.chunks

    def get(self, file_or_id: StoredFile | str) -> GridFSStoredFile:
        fileid = self._checked_id(file_or_id)
        with _server_errors(self._where):
            document = self._find(fileid)
        if document is None:
            raise StoredFileNotFoundError(fileid, self._where)
        return self._stored_file(fileid, document)

    def _new_file_id(self) -> str:
        return str(_new_object_id())

    def _checked_id(self, file_or_id: StoredFile | str) -> str:
        return _check_file_id(self.fileid(file_or_id))

    def _write(self, fileid: str, new: NewVersion) -> None:
        oid = ObjectId(fileid)
        with _server_errors(self._where):
            document = self._upload(oid, new)
            # The document last: the file appears whole. Should this insert fail,
            # its chunks are left alone, for the server may have stored it anyway.
            self._files.insert_one({"_id": oid, **document})

    def _write_over(self, fileid: str, new: NewVersion, restoring: bool) -> None:
        oid = ObjectId(fileid)
        with _server_errors(self._where):
            current = self._find(fileid)
            if current is None:
                if not restoring:
                    raise StoredFileNotFoundError(fileid, self._where)
                document = self._upload(oid, new)
                self._files.insert_one({"_id": oid, **document})
                return
            new.keep_from(lambda: self._stored_file(fileid, current))
            staged = _new_object_id()
            document = self._upload(staged, new)
            journal = {
                "staged": staged,
                "file": document,
                "moving": False,
                "owner": ObjectId(),
                "since": _now(),
            }
            try:
                claimed = self._claim(oid, journal)
            except BaseException:
                self._discard_chunks(staged)
                raise
            if not claimed:
                self._discard_chunks(staged)
                raise StoredFileNotFoundError(fileid, self._where)
            # From here on the new version is recorded: should this process die,
            # another one finishes the commit.
            if not self._commit(oid, journal) and self._files.find_one({"_id": oid}) is None:
                raise StoredFileNotFoundError(fileid, self._where)  # deleted meanwhile

    def delete(self, file_or_id: StoredFile | str) -> None:
        oid = ObjectId(self._checked_id(file_or_id))
        with _server_errors(self._where):
            # The document first: the file is gone at once, its chunks follow.
            document = self._files.find_one_and_delete({"_id": oid})
            if document is None:
                return
            self._chunks.delete_many({"files_id": oid})
            journal = document.get(_JOURNAL)
            if isinstance(journal, dict) and "staged" in journal:
                self._chunks.delete_many({"files_id": journal["staged"]})

    def exists(self, file_or_id: StoredFile | str) -> bool:
        oid = ObjectId(self._checked_id(file_or_id))
        with _server_errors(self._where):
            return self._files.find_one({"_id": oid}, projection={"_id": True}) is not None

    def list(self) -> list[str]:
        """Return the ids of the stored files, reading only the ids of the files documents."""
        with _server_errors(self._where):
            documents = self._files.find({}, projection={"_id": True})
            # Other programs may have put files with ids of other types here.
            return [str(d["_id"]) for d in documents if isinstance(d["_id"], ObjectId)]

    def _staging(self) -> GridFSStaging:
        # Beside the depot's collections, so that every process and host shares them.
        return GridFSStaging(self._root, lambda: _server_errors(self._where))

    def _find(self, fileid: str) -> dict[str, Any] | None:
        """The files document of ``fileid``, once no replace() is being committed on it."""
        document = self._files.find_one({"_id": ObjectId(fileid)})
        if document is not None and _JOURNAL in document:
            document = self._wait_for_commit(document)
        return document

    def _stored_file(self, fileid: str, document: dict[str, Any]) -> GridFSStoredFile:
        gridout = gridfs.GridOut(self._root, file_document=document)
        return GridFSStoredFile(fileid, gridout, self._where, lambda: self._newest(fileid))

    def _newest(self, fileid: str) -> gridfs.GridOut | None:
        """The current version of ``fileid``, for a file that follows a replace."""
        with _server_errors(self._where):
            document = self._find(fileid)
        return None if document is None else gridfs.GridOut(self._root, file_document=document)

    def _upload(self, files_id: ObjectId, new: NewVersion) -> dict[str, Any]:
        """Store the chunks of ``new`` under ``files_id``; return the files document to write.

        A failed upload removes the chunks it sent.
        """
        self._ensure_indexes()
        batch: list[dict[str, Any]] = []
        try:
            for n, data in enumerate(recut(new.chunks(), _CHUNK_SIZE)):
                batch.append({"files_id": files_id, "n": n, "data": data})
                if len(batch) == _CHUNKS_PER_INSERT:
                    self._chunks.insert_many(batch)
                    batch = []
            if batch:
                self._chunks.insert_many(batch)
        except BaseException:
            self._discard_chunks(files_id)
            raise
        now = utcnow_naive()
        return {
            "filename": new.filename,
            "contentType": new.content_type,
            "last_modified": _modified_now()[0],
            "chunkSize": _CHUNK_SIZE,
            "length": Int64(new.digest.length),
            "uploadDate": now,
            "checksum": new.digest.checksum,
        }

    def _discard_chunks(self, files_id: ObjectId) -> None:
        # Best effort, on the way out of a failure: when the server is gone the
        # chunks stay behind, unreachable (no files document names them).
        with contextlib.suppress(PyMongoError):
            self._chunks.delete_many({"files_id": files_id})

    def _ensure_indexes(self) -> None:
        # As pymongo's GridFS does: only on empty collections, so that a user
        # who may not create indexes can still write to an existing store.
        if self._indexed:
            return
        for collection, keys, unique in (
            (self._files, [("filename", 1), ("uploadDate", 1)], False),
            (self._chunks, [("files_id", 1), ("n", 1)], True),
        ):
            if collection.find_one({}, projection={"_id": True}) is not None:
                continue
            try:
                existing = [dict(index["key"]) for index in collection.list_indexes()]
            except OperationFailure:
                existing = []
            if dict(keys) not in existing:
                collection.create_index(keys, unique=unique)
        self._indexed = True

    def _claim(self, oid: ObjectId, journal: dict[str, Any]) -> bool:
        """Record ``journal`` in the file's document; False if the file does not exist."""
        while True:
            claimed = self._files.find_one_and_update(
                {"_id": oid, _JOURNAL: {"$exists": False}},
                {"$set": {_JOURNAL: journal}},
                projection={"_id": True},
            )
            if claimed is not None:
                return True
            document = self._files.find_one({"_id": oid})
            if document is None:
                return False
            if _JOURNAL in document:  # another replace() is committing
                self._wait_for_commit(document)

    def _commit(self, oid: ObjectId, journal: dict[str, Any]) -> bool:
        """Swap in the chunks and document ``journal`` records; False if it was not ours to do.

        The old chunks are deleted before the staged ones take their place; a
        ``moving`` mark separates the two steps, so that a commit finished by
        another process never deletes chunks that were already moved.
        """
        staged = journal["staged"]
        ours = {"_id": oid, f"{_JOURNAL}.owner": journal["owner"]}
        if not journal.get("moving"):
            self._chunks.delete_many({"files_id": oid})
            marked = self._files.update_one(ours, {"$set": {f"{_JOURNAL}.moving": True}})
            if not marked.matched_count:
                return False  # deleted meanwhile, or taken over by another process
        self._chunks.update_many({"files_id": staged}, {"$set": {"files_id": oid}})
        written = self._files.replace_one(ours, {"_id": oid, **journal["file"]})
        if not written.matched_count and self._files.find_one({"_id": oid}) is None:
            # delete() ran during the swap: drop what was moved in after it.
            self._discard_chunks(oid)
            self._discard_chunks(staged)
        return bool(written.matched_count)

    def _wait_for_commit(self, document: dict[str, Any]) -> dict[str, Any] | None:
        """Wait while another process commits a replace(); finish it if it was abandoned.

        Return the file's document after the commit, ``None`` if the file was deleted.
        """
        oid = document["_id"]
        deadline = time.monotonic() + _REPLACE_WAIT
        current: dict[str, Any] | None = document
        while current is not None and _JOURNAL in current:
            journal = current[_JOURNAL]
            since = _naive(journal.get("since"))
            if since is None or utcnow_naive() - since > timedelta(seconds=_STALE_AFTER):
                self._take_over(oid, journal)
            elif time.monotonic() > deadline:
                raise BackendUnavailableError(
                    f"File {oid} in {self._where} has been in the middle of a replace() "
                    f"since {since:%Y-%m-%d %H:%M:%S} UTC; try again in a minute, when "
                    "an abandoned replace is finished."
                )
            else:
                time.sleep(0.01)
            current = self._files.find_one({"_id": oid})
        return current

    def _take_over(self, oid: ObjectId, journal: dict[str, Any]) -> None:
        """Finish an abandoned commit, unless another process takes it over first."""
        owner = ObjectId()
        taken = self._files.find_one_and_update(
            # In the state it was seen in, too: had a slow (not dead) commit marked
            # itself moving since, deleting the file's chunks would delete new ones.
            {
                "_id": oid,
                f"{_JOURNAL}.owner": journal.get("owner"),
                f"{_JOURNAL}.moving": journal.get("moving"),
            },
            {"$set": {f"{_JOURNAL}.owner": owner, f"{_JOURNAL}.since": _now()}},
            projection={_JOURNAL: True},
        )
        if taken is None:
            return
        recorded = taken[_JOURNAL]
        if not {"staged", "file"} <= set(recorded):
            # Not a journal depot wrote: drop it rather than block the file forever.
            self._files.update_one({"_id": oid}, {"$unset": {_JOURNAL: ""}})
            return
        self._commit(oid, {**recorded, "owner": owner})


def _check_file_id(file_id: object) -> str:
    """Return ``file_id`` as text if it is an ObjectId's canonical text, else raise."""
    if isinstance(file_id, ObjectId):  # filedepot accepted them
        return str(file_id)
    if isinstance(file_id, str) and _OBJECT_ID_TEXT.fullmatch(file_id):
        return file_id
    shown = repr(file_id)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    raise InvalidFileIdError(
        f"Invalid file id {shown}: {_BACKEND} file ids are MongoDB ObjectIds written as "
        "24 lowercase hex digits, such as '65f1c2a9e4b0a1b2c3d4e5f6'; pass the id that "
        "create() returned."
    )


def _new_object_id() -> ObjectId:
    """A new ObjectId: the current time, then 8 random bytes.

    pymongo's own ObjectIds end with a per-process counter, so the id of the
    next upload could be guessed from any served URL; these cannot. Sorting by
    ``_id`` still sorts by upload time.
    """
    return ObjectId(int(time.time()).to_bytes(4, "big") + os.urandom(8))


def _read_metadata(file_id: str, gridout: gridfs.GridOut, where: str) -> dict[str, Any]:
    # Through __getattr__, which reads the document's fields without the
    # DeprecationWarning of GridOut.content_type.
    def field(name: str) -> Any:
        return getattr(gridout, name, None)

    try:
        length = field("length")
        if (isinstance(length, float) and length.is_integer()) or (
            isinstance(length, int) and not isinstance(length, bool)
        ):
            # bson's Int64 as a plain int; and drivers without 64-bit ints
            # (Node's) write large lengths as doubles.
            length = int(length)
        info = {
            # Only an absent or empty value takes the default: 0 or False is a
            # wrong type, refused by StoredFile as corrupt.
            "filename": _or_default(field("filename"), DEFAULT_FILENAME),
            "content_type": _or_default(field("contentType"), DEFAULT_CONTENT_TYPE),
            "content_length": length,
            "last_modified": _last_modified(field("last_modified"), field("uploadDate")),
        }
    except (ValueError, TypeError) as exc:
        raise CorruptMetadataError(
            f"Invalid file metadata for {file_id} in {where}: {exc}. "
            "Restore the file from a backup or delete it."
        ) from exc
    checksum = field("checksum")
    info["checksum"] = checksum if is_checksum(checksum) else None
    return info


def _or_default(value: object, default: str) -> object:
    return default if value is None or value == "" else value


def _last_modified(recorded: object, uploaded: object) -> datetime | None:
    if isinstance(recorded, str):
        return parse_timestamp(recorded)
    if recorded is not None and not isinstance(recorded, datetime):
        raise TypeError(f"last_modified {recorded!r} is neither a time string nor a date")
    # Files put by other programs have no last_modified: their upload time serves.
    value = recorded if isinstance(recorded, datetime) else uploaded
    naive = _naive(value)
    return None if naive is None else naive.replace(microsecond=0)


def _naive(value: object) -> datetime | None:
    """A datetime from MongoDB as a naive UTC datetime (None for anything else)."""
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _now() -> datetime:
    # To the millisecond, as BSON stores it.
    now = utcnow_naive()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@contextlib.contextmanager
def _server_errors(where: str) -> Iterator[None]:
    """Turn pymongo's connection and refusal errors into BackendUnavailableError.

    The error raised is also an instance of pymongo's (a ``ConnectionFailure``,
    an ``OperationFailure`` with its ``code``), which filedepot let through:
    see :mod:`depot.io._foreign`.
    """
    try:
        yield
    except DepotError:
        raise  # translated already, by a block inside this one
    except ConnectionFailure as exc:
        message = (
            f"Cannot reach MongoDB for the {where}: {_first_line(exc)}. Check that the "
            "server is running and reachable, and that depot.mongouri names it; "
            "serverSelectionTimeoutMS in its query string sets how long to wait "
            f"(default here {SERVER_SELECTION_TIMEOUT_MS} ms)."
        )
        raise also_foreign(BackendUnavailableError(message), exc) from exc
    except OperationFailure as exc:
        message = (
            f"MongoDB refused an operation on the {where}: {_first_line(exc)}. Check the "
            "user and password in depot.mongouri and the user's roles on the database."
        )
        raise also_foreign(BackendUnavailableError(message), exc) from exc


def _default_timeouts(uri: object) -> dict[str, Any]:
    """The timeouts depot sets unless ``uri`` sets them (pymongo's are 30 s and 20 s)."""
    query = uri.partition("?")[2] if isinstance(uri, str) else ""
    given = {key.lower() for key, _ in parse_qsl(query, keep_blank_values=True)}
    defaults: dict[str, Any] = {
        "serverSelectionTimeoutMS": SERVER_SELECTION_TIMEOUT_MS,
        "connectTimeoutMS": CONNECT_TIMEOUT_MS,
    }
    return {key: value for key, value in defaults.items() if key.lower() not in given}


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # pymongo appends its whole view of the cluster to server selection errors.
    text = text.partition(", Topology Description:")[0]
    return text if len(text) <= 300 else text[:297] + "..."


def _hosts(uri: str) -> str:
    """The host list of a MongoDB URI, without the user name and password."""
    rest = uri.partition("://")[2]
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    return unquote(netloc.rpartition("@")[2]) or "an unknown host"


def _uri_problem(uri: object, exc: Exception) -> str:
    if not isinstance(uri, str):
        return f"mongouri must be a MongoDB connection string, not {uri!r}."
    shown = _hide_password(uri)
    detail = _hide_password(str(exc))
    if "default database" in detail.lower():
        return (
            f"mongouri {shown!r} names no database: add it after the hosts, as in "
            "'mongodb://localhost:27017/mydb'."
        )
    return f"mongouri {shown!r} is not valid: {detail}"


_PASSWORD = re.compile(r"(?<=://)([^:/@]*):([^@/]*)@")


def _hide_password(text: str) -> str:
    return _PASSWORD.sub(r"\1:***@", text)
