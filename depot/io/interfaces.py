"""The contract every storage backend fulfils: FileStorage, and the StoredFile it returns.

A backend subclasses both. depot's own tests run one contract suite
(:class:`depot.testing.StorageContract`) against every backend; a third-party
backend runs it too, with one fixture.
"""

from __future__ import annotations

import functools
import inspect
import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeGuard

from depot.exceptions import CorruptMetadataError
from depot.io._async import AsyncStorageMixin, AsyncStoredFileMixin
from depot.io._chunks import BLOCK_SIZE, read_blocks
from depot.io._fileinfo import (
    FileIntent,
    SupportsRead,
    UploadWithFile,
    UploadWithStream,
    resolve,
)
from depot.io._ids import check_file_id, new_file_id
from depot.io._writing import NewVersion
from depot.uploads.chunked import ChunkedUploadsMixin

if TYPE_CHECKING:
    from depot.validators import FileValidator

__all__ = [
    "MAX_CONTENT_LENGTH",
    "FileContent",
    "FileStorage",
    "NewVersion",
    "StoredFile",
    "check_metadata",
    "is_size",
]

#: Everything ``create()`` and ``replace()`` accept: bytes, a binary stream (an
#: open file, a request body), a :class:`~depot.io.utils.FileIntent`, or the
#: upload object of cgi, webob, werkzeug/Flask, Starlette or Django.
FileContent = (
    bytes | bytearray | memoryview | SupportsRead | FileIntent | UploadWithFile | UploadWithStream
)


#: The largest ``content_length`` a stored file can have: what a signed 64-bit
#: file offset holds (no file system or bucket stores more).
MAX_CONTENT_LENGTH = 2**63 - 1


def is_size(value: object) -> TypeGuard[int]:
    """Whether ``value`` can be a stored file's length: an int (not a bool), 0 to the maximum."""
    return isinstance(value, int) and type(value) is not bool and 0 <= value <= MAX_CONTENT_LENGTH


def check_metadata(
    file_id: object,
    where: str,
    *,
    filename: object,
    content_type: object,
    last_modified: object,
    content_length: object,
    checksum: object,
) -> None:
    """Raise :class:`~depot.exceptions.CorruptMetadataError` if a field has the wrong type.

    ``None`` is accepted for each field (unknown). The values are not
    corrected: a file whose metadata is damaged is reported, so that it can be
    restored, rather than served with a guess.

    :param where: what read the metadata (the StoredFile class), for the message.
    """
    problem = None
    for field, value in (("filename", filename), ("content_type", content_type)):
        if value is not None and not isinstance(value, str):
            problem = field, value, "is not a string"
    if last_modified is not None and not isinstance(last_modified, datetime):
        problem = "last_modified", last_modified, "is not a datetime"
    if content_length is not None and not is_size(content_length):
        problem = "content_length", content_length, "is not a size in bytes (an int, 0 or more)"
    if checksum is not None and not isinstance(checksum, str):
        problem = "checksum", checksum, "is not a string"
    if problem is not None:
        field, value, what = problem
        shown = repr(value)
        shown = shown if len(shown) <= 100 else shown[:100] + "..."
        raise CorruptMetadataError(
            f"Invalid metadata {field} of file {file_id} ({where}): {shown} {what}. "
            "Restore the file from a backup or delete it."
        )


class StoredFile(AsyncStoredFileMixin, io.IOBase):
    """A file read back from a depot: a read-only binary file plus its metadata.

    :param file_id: the id the storage gave the file.
    :param filename: the name it was stored under.
    :param content_type: its MIME type.
    :param last_modified: when it was stored, a naive UTC datetime, to the second.
    :param content_length: its size in bytes.
    :param checksum: ``"sha256:<hex>"`` of its bytes, or ``None`` when the backend
        recorded none (files written by filedepot).
    :raises depot.exceptions.CorruptMetadataError: a value of the wrong type: a
        name or type that is not a string, a time that is not a datetime, a
        length that is not an int from 0 to :data:`MAX_CONTENT_LENGTH`. Every
        backend makes its files through here, so metadata written by another
        program or damaged on disk is refused in one place.

    To change a stored file use the storage's ``replace()``; stored files are not
    writable. A file not read yet follows a ``replace()`` of its id: its first
    read reads the new version, and its metadata attributes are refreshed to
    describe it (see :meth:`hold_version`). Once read, it reads that version
    to its end, or raises where the backend no longer has it: the metadata
    always describes the bytes read.

    Iterating yields blocks of bytes (not lines), so a StoredFile can be
    handed straight to a WSGI server.

    Async code awaits ``aread()`` and ``aclose()`` and uses ``async for`` and
    ``async with`` (:class:`~depot.io._async.AsyncStoredFileMixin`).

    .. versionchanged:: 1.0
       ``checksum`` added; iteration yields blocks instead of lines; metadata of
       the wrong type raises :class:`~depot.exceptions.CorruptMetadataError`;
       a file not read yet follows a replace on every backend, metadata
       included (filedepot did on some backends, without the metadata).
    """

    def __init__(
        self,
        file_id: str,
        filename: str | None = None,
        content_type: str | None = None,
        last_modified: datetime | None = None,
        content_length: int | None = None,
        checksum: str | None = None,
    ) -> None:
        self.file_id = file_id
        self._set_metadata(filename, content_type, last_modified, content_length, checksum)

    #: Whether the version to read is settled (see :meth:`hold_version`).
    _version_held = False

    def _set_metadata(
        self,
        filename: str | None,
        content_type: str | None,
        last_modified: datetime | None,
        content_length: int | None,
        checksum: str | None,
    ) -> None:
        """Check and set the metadata attributes: at creation, and when following a replace."""
        check_metadata(
            self.file_id,
            type(self).__name__,
            filename=filename,
            content_type=content_type,
            last_modified=last_modified,
            content_length=content_length,
            checksum=checksum,
        )
        self.filename = filename
        self.content_type = content_type
        self.last_modified = last_modified
        self.content_length = content_length
        self.checksum = checksum

    def hold_version(self) -> None:
        """Read the version the metadata describes now, even if the file is replaced.

        Until it is first read, a StoredFile follows ``replace()``: its first
        read (``read``, ``seek``, iteration, ``fileno``) reads the newest
        version and refreshes the metadata attributes to describe it, as
        filedepot's tests expect. From then on it reads that one version.

        Code that uses the metadata *before* reading and needs both to agree
        (a server that sends ``Content-Length`` and then the body) calls this
        first: :class:`~depot.middleware.FileServeApp` does. :meth:`iter_range`
        holds the version too, as its range was computed from
        :attr:`content_length`. Where the backend no longer has the held
        version after a replace (S3, GCS), reading raises
        :class:`~depot.exceptions.BackendUnavailableError` saying so.

        .. versionadded:: 1.0
        """
        self._version_held = True

    def _first_read(self) -> None:
        """Backends call this before touching the bytes: follow a replace, once."""
        if not self._version_held:
            self._version_held = True
            self._follow_replace()

    def _follow_replace(self) -> None:
        """Switch to the newest version and its metadata, if the file was replaced.

        By default nothing: a backend that cannot tell reads what it opened.
        A file deleted meanwhile keeps what it has, or fails at its read.
        """

    def readable(self) -> bool:
        """Stored files can always be read."""
        return True

    def writable(self) -> bool:
        """Stored files are never written through the file object; use ``replace()``."""
        return False

    def seekable(self) -> bool:
        """Whether :meth:`seek` works; backends that can seek say so."""
        return False

    @property
    def name(self) -> str | None:
        """The stored file name (``unnamed`` if none was known at upload)."""
        return self.filename

    @abstractmethod
    def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes; all that is left when ``n`` is -1."""

    @abstractmethod
    def close(self) -> None:
        """Release what the file holds; reads fail afterwards."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""

    @property
    def public_url(self) -> str | None:
        """A URL where the backend itself serves the file, or ``None``.

        ``None`` means only :class:`~depot.middleware.DepotMiddleware` serves it.
        """
        return None

    @property
    def local_path(self) -> str | None:
        """The path of the bytes on this machine's disk, or ``None`` (the default).

        Front ends use it to let the server or a front server send the file
        itself (``X-Sendfile``, ``X-Accel-Redirect``). Only a backend whose
        bytes are a regular file on a local disk gives one.

        .. versionadded:: 1.0
        """
        return None

    @property
    def held_size(self) -> int | None:
        """The size of the bytes :meth:`fileno` reads, as found when they were opened; or None.

        Front ends that hand the descriptor to ``sendfile()`` check it against
        :attr:`content_length` first; a backend that took the descriptor's
        status anyway says so here and saves them a system call. None (the
        default): they ask the descriptor.

        .. versionadded:: 1.0
        """
        return None

    def redirect_url(self) -> tuple[str, bool] | None:
        """Where to send a client instead of serving the bytes: ``(url, permanent)``, or ``None``.

        :class:`~depot.middleware.DepotMiddleware` answers a permanent URL with
        301, and a temporary one (a signed URL that expires) with 302 and
        ``Cache-Control: no-store``. By default: :attr:`public_url`, permanent.

        .. versionadded:: 1.0
        """
        url = self.public_url
        return None if url is None else (url, True)

    def iter_range(self, start: int, stop: int, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
        """Yield the bytes from offset ``start`` up to, not including, ``stop``.

        Reads only those bytes where the file can seek. A file that cannot must
        not have been read yet: the first ``start`` bytes are read and dropped.
        Backends that can fetch a range directly (S3's ranged GET) override this.

        .. versionadded:: 1.0
        """
        self.hold_version()
        if self.seekable():
            self.seek(start)
        elif sum(len(block) for block in read_blocks(self.read, start, block_size)) < start:
            return  # the file ends before the range starts
        yield from read_blocks(self.read, stop - start, block_size)

    def __next__(self) -> bytes:
        chunk = self.read(BLOCK_SIZE)
        if not chunk:
            raise StopIteration
        return chunk

    def __repr__(self) -> str:
        # filedepot's exact format: applications' tests and logs compare it.
        return (
            f"<{type(self).__name__}:{self.file_id} filename={self.filename} "
            f"content_type={self.content_type} last_modified={self.last_modified}>"
        )


class FileStorage(AsyncStorageMixin, ChunkedUploadsMixin, ABC):
    """A place to store files: create, read, replace, delete and list them by id.

    Async code awaits ``acreate()``, ``aget()``, ``areplace()``, ``adelete()``,
    ``aexists()`` and ``alist()`` (:class:`~depot.io._async.AsyncStorageMixin`).
    """

    @staticmethod
    def fileid(file_or_id: StoredFile | str) -> str:
        """Return the id of a :class:`StoredFile`, or the id itself if given one.

        Backends that name files by UUID (memory, local, S3, GCS) also accept a
        :class:`uuid.UUID` wherever they accept an id.

        .. versionchanged:: 1.0
           UUID objects work (filedepot let them through its check, then found
           no file).
        """
        # Duck-typed, as in filedepot: an UploadedFile (a dict with attribute
        # access) of the ORM layers is accepted too.
        file_id = getattr(file_or_id, "file_id", file_or_id)
        return file_id  # type: ignore[return-value]

    @staticmethod
    def fileinfo(
        fileobj: FileContent,
        filename: str | None = None,
        content_type: str | None = None,
        existing: StoredFile | Callable[[], StoredFile] | None = None,
    ) -> tuple[bytes | bytearray | memoryview | SupportsRead, str, str]:
        """Return ``(source, filename, content_type)`` for what was given to create().

        Explicit ``filename`` and ``content_type`` win over what ``fileobj``
        carries; a missing type is guessed from the name, then defaults to
        ``application/octet-stream``; a missing name is ``unnamed``. With
        ``existing`` (a replace), a content without a name keeps the existing
        file's name and, unless one is known, its type.
        """
        return resolve(fileobj, filename, content_type, existing)

    @abstractmethod
    def get(self, file_or_id: StoredFile | str) -> StoredFile:
        """Open a stored file.

        :raises depot.exceptions.StoredFileNotFoundError: (an ``IOError``) no such file.
        :raises depot.exceptions.InvalidFileIdError: (a ``ValueError``) a malformed id.
        """

    def peek(self, file_or_id: StoredFile | str) -> StoredFile | None:
        """The file's metadata as it is now, without opening its bytes, where that is cheap.

        A hook for servers that answer from the metadata alone (a ``304 Not
        Modified``): the :class:`StoredFile` returned is closed (reading it
        raises ``ValueError``) and describes the version that was current
        during the call. ``None`` means the backend cannot tell without
        opening the file: call :meth:`get`, which also says whether the id is
        valid and the file exists. By default always ``None`` (a backend
        written for filedepot may name its files in any way: nothing is
        checked here).

        .. versionadded:: 1.0
        """
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A backend written for filedepot overrides create() and replace() and
        # never builds a NewVersion, so the policy would not reach it: its two
        # methods are wrapped to check the content first, when there is a policy.
        if cls._write is FileStorage._write:
            for name in ("create", "replace"):
                method = cls.__dict__.get(name)
                if method is not None and not getattr(method, "_checks_policy", False):
                    setattr(cls, name, _checking_policy(method, name == "replace"))

    #: The checks every ``create()`` and ``replace()`` applies before storing:
    #: :class:`~depot.validators.FileValidator` objects, from the depot's
    #: ``max_size``, ``allowed_types`` and ``allowed_extensions`` settings
    #: (:class:`~depot.manager.DepotManager` sets them). Sizes are enforced
    #: while the content streams, so a refused file leaves nothing behind.
    #:
    #: .. versionadded:: 1.0
    policy: tuple[FileValidator, ...] = ()

    #: Whether a restore (``replace(f, f)`` of a stored file of another depot)
    #: that returns has recorded the size and checksum of exactly the bytes it
    #: read from ``f`` (or failed whole), the name and type of ``f``, and the
    #: ``last_modified`` that :func:`depot.io.utils.timestamp` gives (so
    #: :func:`~depot.io.utils.keeping_last_modified` sets it).
    #: :func:`depot.ops.copy_depot` takes such a storage's copy as verified
    #: once the bytes read match the source; it reads back the copies in other
    #: storages. depot's memory, local and S3 backends say so.
    #:
    #: .. versionadded:: 1.0
    records_what_it_reads: bool = False

    def create(
        self,
        content: FileContent,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Store a new file and return its id.

        The name and type are taken from ``content`` when not given, and the type
        is guessed from the name when still unknown.

        The name is stored with at most 255 characters
        (:data:`depot._headers.MAX_FILENAME_LENGTH`): a longer one is shortened,
        keeping its extension, and lone surrogates (what :func:`os.fsdecode`
        makes of undecodable bytes) become U+FFFD. A type that is not a safe
        RFC 9110 media type (control characters, non-ASCII, a list of types,
        more than 256 characters) is stored as ``application/octet-stream``.
        ``replace()`` stores names and types by the same rules.

        :raises depot.exceptions.ValidationError: the depot's :attr:`policy`
            refuses the content (too large, a type or extension not allowed).

        A backend does not override this: it implements :meth:`_write` (and
        :meth:`_new_file_id` if its ids are not UUIDs). Backends written for
        filedepot, which override ``create()`` and ``replace()`` themselves,
        keep working: the policy is checked on the content they are given.

        .. versionchanged:: 1.0
           Names are shortened and unsafe types replaced when stored; the
           depot's policy is applied.
        """
        # Resolved and checked before the backend is touched.
        new = NewVersion(content, filename, content_type, self.policy).keep_from(None)
        fileid = self._new_file_id()
        self._write(fileid, new)
        return fileid

    def replace(
        self,
        file_or_id: StoredFile | str,
        content: FileContent,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Replace the content of an existing file, keeping its id, and return the id.

        A name or type that is neither given nor carried by ``content`` keeps its
        current value. ``replace(stored_file, stored_file)`` restores a file
        read from another depot under its own id, whether or not it exists
        here (as in filedepot).

        :raises depot.exceptions.StoredFileNotFoundError: the file does not exist.
        :raises depot.exceptions.ValidationError: the depot's :attr:`policy`
            refuses the content; the file keeps its current version.
        """
        fileid = self._checked_id(file_or_id)
        restoring = isinstance(file_or_id, StoredFile) and file_or_id is content
        new = NewVersion(content, filename, content_type, self.policy)
        self._write_over(fileid, new, restoring)
        return fileid

    # The hooks the template methods call. A backend implements _write; the
    # others have defaults that suit a backend whose ids are UUIDs.

    def _new_file_id(self) -> str:
        """A new id for :meth:`create`; by default a random UUID in its text form."""
        return new_file_id()

    def _checked_id(self, file_or_id: StoredFile | str) -> str:
        """The id of ``file_or_id``, checked; by default a UUID in its text form.

        :raises depot.exceptions.InvalidFileIdError: a malformed id.
        """
        return check_file_id(self.fileid(file_or_id), type(self).__name__)

    def _write(self, fileid: str, new: NewVersion) -> None:
        """Store ``new`` under ``fileid``, whole or not at all; the one hook to implement.

        Called by :meth:`create` with a new id, and by the default
        :meth:`_write_over` with the id of the file it replaces. Readers must
        see the old version or the new one, never a mix; on failure nothing
        of ``new`` may remain.
        """
        raise NotImplementedError(
            f"{type(self).__name__} stores nothing: a backend implements _write() "
            "(or, as filedepot's backends did, overrides create() and replace())."
        )

    def _write_over(self, fileid: str, new: NewVersion, restoring: bool) -> None:
        """Store ``new`` over the file ``fileid`` for :meth:`replace`.

        By default: the file must exist, unless ``restoring``
        (``replace(f, f)``); ``new`` keeps its name and type when the content
        carries none; then :meth:`_write`. A backend that can make the write
        conditional on the version it found (S3's ``If-Match``), or must lock
        the file while it writes, overrides this.

        :raises depot.exceptions.StoredFileNotFoundError: the file does not exist.
        """
        existing = None if restoring else self.get(fileid)
        self._write(fileid, new.keep_from(existing))

    @abstractmethod
    def delete(self, file_or_id: StoredFile | str) -> None:
        """Delete a file; deleting a file that does not exist does nothing."""

    @abstractmethod
    def exists(self, file_or_id: StoredFile | str) -> bool:
        """Whether the file exists."""

    @abstractmethod
    def list(self) -> list[str]:
        """Return the ids of the stored files."""

    def iter_ids(self) -> Iterator[str]:
        """Yield the ids of the stored files, as :meth:`list` gives them.

        A backend that lists in pages (S3, GCS) yields each page's ids as it
        comes, so a caller can stop early and never holds them all. By
        default, the ids of :meth:`list`.

        .. versionadded:: 1.0
        """
        return iter(self.list())

    def close(self) -> None:
        """Release the connections and threads the storage holds; by default nothing.

        :meth:`DepotManager.reset() <depot.manager.DepotManager.reset>` calls it
        on every depot it forgets. A backend that holds a client of a server
        (:class:`~depot.io.gridfs.GridFSStorage`) closes the client it made
        itself, never one it was handed, and stays usable: its next operation
        connects again.

        .. versionadded:: 1.0
        """
        return  # a hook with a default, not abstract: most backends hold nothing


def _checking_policy(method: Callable[..., str], replacing: bool) -> Callable[..., str]:
    """A filedepot-era ``create`` or ``replace``, checking the storage's policy first."""
    signature = inspect.signature(method)
    # filedepot's names; a backend that chose others is read by position.
    params = list(signature.parameters.values())
    named = [p for p in params if p.name == "content"]
    position = 2 if replacing else 1
    found = named[0] if named else (params[position] if len(params) > position else None)
    if found is None or found.kind is not found.POSITIONAL_OR_KEYWORD:
        return method  # (*args, **kwargs): nothing to tell the content by
    content = found.name

    @functools.wraps(method)
    def checked(self: FileStorage, *args: Any, **kwargs: Any) -> str:
        if not self.policy:
            return method(self, *args, **kwargs)
        from depot.validators import validate

        bound = signature.bind(self, *args, **kwargs)
        given = bound.arguments
        given[content] = validate(
            given[content], self.policy, given.get("filename"), given.get("content_type")
        )
        return method(*bound.args, **bound.kwargs)

    checked._checks_policy = True  # type: ignore[attr-defined]
    return checked
