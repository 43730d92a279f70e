"""What the S3 and GCS backends share: a stored file read by ranged fetches, and a storage
of one object per file under ``<prefix><file id>``.

A backend of a bucket service subclasses :class:`BucketStoredFile` and
:class:`BucketStorage` and fills in the hooks (how to fetch a range of bytes,
sign a URL, look an object up, list, write); the rules around them live here
once: the read position, seeking, ranges, when a file has a public or a signed
URL, the ``policy`` setting, the ``replace()`` flow.

.. versionadded:: 1.0
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar

from depot._headers import DEFAULT_CONTENT_TYPE, DEFAULT_FILENAME
from depot.exceptions import BackendUnavailableError, ConfigurationError, StoredFileNotFoundError
from depot.io._chunks import BLOCK_SIZE, read_blocks
from depot.io._foreign import also_foreign
from depot.io._ids import check_file_id
from depot.io._objectmeta import presign_seconds, response_disposition
from depot.io.interfaces import FileStorage, NewVersion, StoredFile

__all__ = [
    "CANNED_ACL_PRIVATE",
    "CANNED_ACL_PUBLIC_READ",
    "BucketStorage",
    "BucketStoredFile",
    "RangeBody",
    "acl_policy",
]

# filedepot's names and values for the ``policy`` setting, in both its backends.
CANNED_ACL_PUBLIC_READ = "public-read"
CANNED_ACL_PRIVATE = "private"


def acl_policy(value: str | None) -> str:
    """The ``policy`` setting checked: ``public-read`` (the default, as in filedepot) or
    ``private``.

    :raises depot.exceptions.ConfigurationError: any other value.
    """
    policy = value or CANNED_ACL_PUBLIC_READ
    if policy not in (CANNED_ACL_PUBLIC_READ, CANNED_ACL_PRIVATE):
        raise ConfigurationError(
            f"policy must be {CANNED_ACL_PUBLIC_READ!r} or {CANNED_ACL_PRIVATE!r}, not {policy!r}."
        )
    return policy


def _unimplemented(obj: object, hook: str) -> str:
    return (
        f"{type(obj).__name__} is a bucket backend without {hook}(): a subclass of "
        "depot.io._bucket's base classes implements each of its hooks."
    )


class RangeBody(Protocol):
    """The bytes of one range of an object, as :meth:`BucketStoredFile._open` gives them."""

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (``n`` > 0); ``b""`` at the end of the range."""

    def close(self) -> None:
        """Let the connection or the buffered bytes go."""


class BucketStoredFile(StoredFile):
    """A file of a :class:`BucketStorage`: metadata from one request, bytes fetched as read.

    It seeks: a seek drops what was fetched and the next read starts a new
    ranged fetch there. :meth:`iter_range` fetches only the bytes wanted.
    Every fetch is conditional on the version whose metadata the file holds,
    so data and metadata agree: a file replaced after its first read raises
    :class:`~depot.exceptions.BackendUnavailableError` (:meth:`_replaced`).

    A backend implements :meth:`_open`, :meth:`_object_url` and :meth:`_sign`.

    :param file_id: the file's id, checked.
    :param storage: the storage it came from; without one the file has no
        :attr:`public_url` and no :meth:`redirect_url`.
    :param where: the bucket and endpoint, for error messages.
    :param info: the metadata fields of :class:`~depot.io.interfaces.StoredFile`.
    """

    #: The storage's class name, for the message of a malformed id.
    _backend = "BucketStorage"

    def __init__(
        self, file_id: str, storage: BucketStorage | None, where: str, info: dict[str, Any]
    ) -> None:
        check_file_id(file_id, self._backend)
        self._storage = storage
        self._where = where
        self._body: RangeBody | None = None  # what read() reads on, from _pos to the end
        self._ranges: set[RangeBody] = set()  # bodies of iter_range() still being read
        self._pos = 0
        self._closed = False
        super().__init__(file_id, **info)

    # --- the hooks -------------------------------------------------------------------

    def _open(self, start: int, stop: int | None, block_size: int) -> RangeBody:
        """Start fetching bytes ``start`` to ``stop`` (excluded; ``None``: to the end) of
        the version held, which will be read in blocks of about ``block_size``.

        :raises depot.exceptions.StoredFileNotFoundError: the object is gone.
        :raises depot.exceptions.BackendUnavailableError: it was replaced (:meth:`_replaced`).
        """
        raise NotImplementedError(_unimplemented(self, "_open"))

    def _object_url(self) -> str:
        """The object's own URL, served by the bucket (the public URL's shape)."""
        raise NotImplementedError(_unimplemented(self, "_object_url"))

    def _sign(self, expires_in: int, disposition: str, content_type: str) -> str:
        """A URL signed for ``expires_in`` seconds, which the bucket answers with these
        ``Content-Disposition`` and ``Content-Type`` headers.
        """
        raise NotImplementedError(_unimplemented(self, "_sign"))

    # --- reading ---------------------------------------------------------------------

    def read(self, n: int | None = -1) -> bytes:
        self._check_open()
        self._first_read()
        left = (self.content_length or 0) - self._pos
        wanted = left if n is None or n < 0 else min(n, left)
        if wanted <= 0:
            return b""
        if self._body is None:
            self._body = self._open(self._pos, None, BLOCK_SIZE)
        first = self._body.read(wanted)
        got = len(first)
        if got == wanted or not first:
            self._pos += got
            return first
        parts = [first]
        while got < wanted:
            chunk = self._body.read(wanted - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        self._pos += got
        return b"".join(parts)

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_END:  # the end of the version to be read
            self._first_read()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.content_length or 0}
        position = base[whence] + offset
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        if position != self._pos:
            self._drop_body()
            self._pos = position
        return position

    def tell(self) -> int:
        return self._pos

    def iter_range(self, start: int, stop: int, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
        """Yield the bytes from ``start`` up to ``stop``, fetching only those from the bucket.

        The read position of the file is unchanged.
        """
        self._check_open()
        self.hold_version()
        stop = min(stop, self.content_length or 0)
        if start >= stop:
            return
        body = self._open(start, stop, block_size)
        self._ranges.add(body)
        try:
            yield from read_blocks(body.read, stop - start, block_size)
        finally:
            self._ranges.discard(body)
            body.close()

    def close(self) -> None:
        self._closed = True
        self._drop_body()
        for body in list(self._ranges):
            body.close()
        self._ranges.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    def _replaced(self, exc: BaseException) -> BackendUnavailableError:
        """The error of a fetch of a version the bucket no longer has (``exc``: its 412)."""
        message = (
            f"File {self.file_id} in {self._where} was replaced after it was opened: "
            "get() it again to read the new version."
        )
        # filedepot let the service's own error through: it stays a base of ours.
        return also_foreign(BackendUnavailableError(message), exc)

    def _missing(self, exc: BaseException) -> StoredFileNotFoundError:
        """The error of a fetch of a file deleted after it was opened (``exc``: its 404)."""
        return also_foreign(StoredFileNotFoundError(self.file_id, self._where), exc)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed file.")

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    # --- URLs ------------------------------------------------------------------------

    @property
    def public_url(self) -> str | None:
        """The object's own URL, when the storage's ``policy`` is ``public-read``.

        .. versionchanged:: 1.0
           ``None`` with the ``private`` policy: filedepot returned a URL that
           answered 403.
        """
        if self._storage is None or self._storage._policy != CANNED_ACL_PUBLIC_READ:
            return None
        return self._object_url()

    def signed_url(self, expires_in: int = 3600, disposition: str | None = None) -> str:
        """A signed URL that fetches the file from the bucket for ``expires_in`` seconds.

        It works whatever the ``policy``: hand it to a client to download a
        private file without the bytes passing through the application. The
        bucket answers it with the file's content type and a
        ``Content-Disposition`` carrying its name.

        :param expires_in: seconds the URL stays valid; at most 604800 (7 days).
        :param disposition: ``'inline'`` or ``'attachment'``; by default inline
            for the types :class:`~depot.middleware.DepotMiddleware` shows inline
            (images, audio, video, PDF, plain text), attachment for the rest.
        :raises depot.exceptions.ConfigurationError: the storage's credentials
            cannot sign (GCS needs a service account key, or impersonated credentials).

        .. versionadded:: 1.0
        """
        content_type = self.content_type or DEFAULT_CONTENT_TYPE
        header = response_disposition(self.filename or DEFAULT_FILENAME, content_type, disposition)
        return self._sign(expires_in, header, content_type)

    def redirect_url(self) -> tuple[str, bool] | None:
        """The public URL (permanent), else a fresh signed URL if the storage has
        ``presign_ttl`` (temporary), else ``None``: the middleware serves the bytes.

        .. versionadded:: 1.0
        """
        public = self.public_url
        if public is not None:
            return public, True
        ttl = self._storage.presign_ttl if self._storage is not None else None
        if ttl is not None:
            return self.signed_url(ttl), False
        return None


#: The stored file class of a :class:`BucketStorage`.
File = TypeVar("File", bound=BucketStoredFile)


class BucketStorage(FileStorage, Generic[File]):
    """Stores each file as one object of a bucket, under ``<prefix><file id>``.

    A backend calls ``__init__`` once its own settings are checked (after
    :func:`acl_policy`, which comes first, as in filedepot), and implements
    :meth:`_stat`, :meth:`_stored_file`, :meth:`_delete`, :meth:`_names` and
    :meth:`_put`.

    :param policy: the ``policy`` setting, checked by :func:`acl_policy`.
    :param prefix: put before each file id to make its object's name.
    :param presign_ttl: the ``presign_ttl`` setting (seconds), or ``None``.
    """

    #: The bucket and endpoint, for error messages (the backend sets it).
    _where: str

    def __init__(self, policy: str, prefix: str | None, presign_ttl: int | str | None) -> None:
        self._policy = policy
        self._prefix = prefix or ""
        #: Seconds a signed URL from :meth:`~BucketStoredFile.redirect_url` lasts, or None.
        self.presign_ttl = presign_seconds(presign_ttl)

    # --- the hooks -------------------------------------------------------------------

    def _stat(self, fileid: str) -> Any:
        """The object's metadata as the service gives it, ``None`` if there is no object."""
        raise NotImplementedError(_unimplemented(self, "_stat"))

    def _stored_file(self, fileid: str, found: Any) -> File:
        """The stored file of what :meth:`_stat` found."""
        raise NotImplementedError(_unimplemented(self, "_stored_file"))

    def _delete(self, fileid: str) -> None:
        """Delete the object; nothing if there is none."""
        raise NotImplementedError(_unimplemented(self, "_delete"))

    def _names(self) -> Iterator[str]:
        """The names of the objects right under the prefix (not in deeper "folders")."""
        raise NotImplementedError(_unimplemented(self, "_names"))

    def _put(self, fileid: str, new: NewVersion, existing: File | None) -> None:
        """Store ``new`` as the object of ``fileid``.

        :param existing: for a replace, the file found: the write is made
            conditional on its version where the service allows it.
        """
        raise NotImplementedError(_unimplemented(self, "_put"))

    def _exists(self, fileid: str) -> bool:
        """Whether the object exists; by default :meth:`_stat` finds it."""
        return self._stat(fileid) is not None

    # --- the contract ----------------------------------------------------------------

    def get(self, file_or_id: StoredFile | str) -> File:
        fileid = self._checked_id(file_or_id)
        found = self._stat(fileid)
        if found is None:
            raise StoredFileNotFoundError(fileid, self._where)
        return self._stored_file(fileid, found)

    def delete(self, file_or_id: StoredFile | str) -> None:
        self._delete(self._checked_id(file_or_id))

    def exists(self, file_or_id: StoredFile | str) -> bool:
        return self._exists(self._checked_id(file_or_id))

    def list(self) -> list[str]:
        """Return the ids of the files under ``prefix``; other objects are skipped."""
        return list(self.iter_ids())

    def iter_ids(self) -> Iterator[str]:
        """Yield the ids of the files under ``prefix``, a page of the listing at a time."""
        for name in self._names():
            try:
                yield check_file_id(name[len(self._prefix) :], type(self).__name__)
            except ValueError:
                continue

    def _key(self, fileid: str) -> str:
        return self._prefix + fileid

    def _write(self, fileid: str, new: NewVersion) -> None:
        self._put(fileid, new, None)

    def _write_over(self, fileid: str, new: NewVersion, restoring: bool) -> None:
        existing = None if restoring else self.get(fileid)
        self._put(fileid, new.keep_from(existing), existing)
