"""A storage in a Google Cloud Storage bucket, via google-cloud-storage.

Settings (filedepot's): ``project_id``, ``credentials``, ``bucket``, ``policy``,
``storage_class``, ``prefix``; depot adds ``presign_ttl``, ``connect_timeout``,
``read_timeout``, ``retry_timeout``.

The layout is filedepot 0.12's, so either library reads what the other wrote.
Each file is one object, named ``<prefix><file id>``::

    contentType                    the file's content type
    contentDisposition             its name, for clients that fetch the object itself
    metadata x-depot-filename      its name, percent-encoded UTF-8
    metadata x-depot-content-type  its content type again (filedepot reads it there)
    metadata x-depot-modified      when it was stored: "YYYY-MM-DD HH:MM:SS", UTC
    metadata x-depot-checksum      "sha256:<hex>" of its bytes (depot only)

Content under 8 MiB is sent in one request with its checksum; from 8 MiB on,
it streams out as a resumable upload in 8 MiB chunks, one in memory at a time,
and a stream's checksum is added by a metadata PATCH once GCS holds it
(``depot/io/_gcsupload.py`` says why and how). A failed upload leaves the old
file or none. A replace writes only over the generation it found, so one
racing a delete raises ``StoredFileNotFoundError`` rather than bring the file
back; one that finds another replace wrote first writes again over that one
(the last writer wins), unless its content is a stream that cannot seek: then
it yields to the other, as the earlier of the two.

Connect to an emulator as google-cloud-storage does: set
``STORAGE_EMULATOR_HOST`` (e.g. ``http://localhost:9023``); requests then go
there, without credentials unless ``credentials`` is set.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from depot._settings import missing_dependency_message
from depot.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    StoredFileNotFoundError,
)
from depot.io._bucket import (
    CANNED_ACL_PRIVATE,
    CANNED_ACL_PUBLIC_READ,
    BucketStorage,
    BucketStoredFile,
    acl_policy,
)
from depot.io._foreign import also_foreign
from depot.io._objectmeta import file_info, new_object
from depot.io._timeouts import CONNECT_TIMEOUT, READ_TIMEOUT, seconds
from depot.io.interfaces import NewVersion
from depot.uploads.direct import DirectUpload

if TYPE_CHECKING:
    from depot.uploads._gcs import GCSStaging

try:
    import google.auth
    from google.api_core.exceptions import Conflict, Forbidden, NotFound, PreconditionFailed
    from google.auth.credentials import AnonymousCredentials, Credentials, Signing
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud.storage import Client as StorageClient
    from google.cloud.storage.retry import DEFAULT_RETRY
    from google.oauth2 import service_account

    from depot.io import _gcsdirect
    from depot.io._gcserrors import describe, gcs_errors
    from depot.io._gcsupload import CHUNK_SIZE, upload
except ModuleNotFoundError as exc:
    raise ImportError(missing_dependency_message(__name__, "google-cloud-storage")) from exc

__all__ = [
    "CANNED_ACL_PRIVATE",
    "CANNED_ACL_PUBLIC_READ",
    "READ_AHEAD",
    "RETRY",
    "RETRY_TIMEOUT",
    "GCSStorage",
    "GCSStoredFile",
]

#: How requests are retried: google-cloud-storage's default policy, exponential
#: backoff on 408, 429, 5xx answers, timeouts and connection errors, for at most
#: the storage's ``retry_timeout``. Assign a ``google.api_core.retry.Retry`` of
#: your own before making a storage, or ``None`` for no retries.
RETRY = DEFAULT_RETRY
#: Seconds during which a failing request is retried, unless ``retry_timeout``
#: says otherwise (google-cloud-storage's default is 120).
RETRY_TIMEOUT = 30.0

#: The most a stored file fetches in one request when read in order. It starts
#: at one block and doubles with each request, so a client reading only the
#: first bytes costs little, and a long read takes few requests. A request's
#: bytes cost up to twice their size in memory while they come in
#: (google-cloud-storage gathers them in a buffer that grows), ~7 MiB for 4 MiB.
READ_AHEAD = 4 * 1024 * 1024

_BACKEND = "GCSStorage"
_CONTENT_TYPE = "x-depot-content-type"
_PUBLIC_ROLE, _ALL_USERS = "roles/storage.objectViewer", "allUsers"
_DEFAULT_ENDPOINT = "https://storage.googleapis.com"
#: Conditional writes tried before a replace() gives up on a file rewritten that often.
_REPLACE_TRIES = 8

log = logging.getLogger("depot.io.gcs")


class GCSStoredFile(BucketStoredFile):
    """A file of a :class:`GCSStorage`, with its metadata from one request.

    The bytes are fetched as they are read, by ranged requests of growing size
    (up to :data:`READ_AHEAD`); it seeks, and :meth:`iter_range` fetches just
    the bytes wanted. Every request for the bytes is conditional on the
    generation (version) whose metadata it holds, so data and metadata always
    agree: a file replaced before its first read follows (one more metadata
    request at that read; see
    :meth:`~depot.io.interfaces.StoredFile.hold_version`), one replaced after
    it raises :class:`~depot.exceptions.BackendUnavailableError`.

    The :attr:`public_url` is ``https://storage.googleapis.com/<bucket>/<object>``,
    as in filedepot (under ``STORAGE_EMULATOR_HOST``, the emulator's address);
    :meth:`signed_url` is a V4 signed URL, which needs credentials that can
    sign: a service account key (``credentials``), or impersonated credentials.

    :param file_id: the file's id.
    :param blob: its ``google.cloud.storage.Blob``, metadata loaded (kept as
        :attr:`blob`, as in filedepot).
    :param storage: the storage it came from; without one the file has no
        :attr:`public_url` and no :meth:`redirect_url`.

    .. versionchanged:: 1.0
       Seekable; ``checksum``, :meth:`iter_range`, :meth:`signed_url` and
       :meth:`redirect_url` added.
    """

    _backend = _BACKEND
    _storage: GCSStorage | None

    def __init__(self, file_id: str, blob: Any, storage: GCSStorage | None = None) -> None:
        self.blob = blob
        where = storage._where if storage is not None else _bucket_where(blob.bucket)
        super().__init__(file_id, storage, where, _file_info(file_id, blob, where))

    def _follow_replace(self) -> None:
        # One metadata request: emulators do not all enforce the generation
        # precondition of the reads, so a replace is looked for, not waited for.
        with gcs_errors(self._where, f"reading file {self.file_id}"):
            newest = self.blob.bucket.get_blob(self.blob.name, retry=RETRY)
        if newest is not None and newest.generation != self.blob.generation:
            self._set_metadata(**_file_info(self.file_id, newest, self._where))
            self.blob = newest

    def _open(self, start: int, stop: int | None, block_size: int) -> _Fetches:
        end = self.content_length or 0
        return _Fetches(self, start, end if stop is None else min(stop, end), block_size)

    def _object_url(self) -> str:
        url: str = self.blob.public_url
        return url

    def _sign(self, expires_in: int, disposition: str, content_type: str) -> str:
        if self._storage is None:
            raise ConfigurationError(
                "signed_url() needs the storage's credentials: get the file from its GCSStorage."
            )
        credentials = self._storage._signing_credentials()
        with gcs_errors(self._where, f"signing a URL for file {self.file_id}"):
            url: str = self.blob.bucket.blob(self.blob.name).generate_signed_url(
                version="v4",
                expiration=timedelta(seconds=expires_in),
                method="GET",
                credentials=credentials,
                response_disposition=disposition,
                response_type=content_type,
            )
        return url

    def _fetch(self, start: int, stop: int) -> bytes:
        """Bytes ``start`` to ``stop`` (excluded) of the generation that was opened."""
        stop = min(stop, self.content_length or 0)
        if start >= stop:
            return b""
        # A blob without the generation in its URL: with one, a replaced file
        # would read as missing instead of replaced.
        blob = self.blob.bucket.blob(self.blob.name)
        action = f"reading file {self.file_id}"
        try:
            with gcs_errors(self._where, action, (NotFound, PreconditionFailed)):
                data: bytes = blob.download_as_bytes(
                    start=start,
                    end=stop - 1,
                    if_generation_match=self.blob.generation,
                    # The bytes as stored, which the size and ranges count, even
                    # for an object put gzip-encoded by another program.
                    raw_download=True,
                    **(self._storage._request if self._storage is not None else {"retry": RETRY}),
                )
        except NotFound as exc:
            raise self._missing(exc) from exc
        except PreconditionFailed as exc:
            raise self._replaced(exc) from exc
        return data


class _Fetches:
    """Bytes ``start`` to ``stop`` of a file, fetched in requests of growing size.

    The first request asks for ``first`` bytes (or what a read wants, if more),
    each next one for twice as many, up to :data:`READ_AHEAD`: a client reading
    only the first bytes costs little, and a long read takes few requests.
    """

    def __init__(self, file: GCSStoredFile, start: int, stop: int, first: int) -> None:
        self._file = file
        self._pos = start
        self._stop = stop
        self._first = first
        self._ahead = first
        self._buffer = b""  # bytes fetched ahead, from offset _buffer_start
        self._buffer_start = start

    def read(self, n: int) -> bytes:
        parts = []
        got = 0
        while got < n:
            offset = self._pos - self._buffer_start
            if not 0 <= offset < len(self._buffer):
                self._buffer = b""  # let it go before the next one comes
                size = max(n - got, self._ahead)
                self._buffer = self._file._fetch(self._pos, min(self._stop, self._pos + size))
                self._buffer_start, offset = self._pos, 0
                self._ahead = max(self._first, min(self._ahead * 2, READ_AHEAD))
                if not self._buffer:
                    break
            piece = self._buffer[offset : offset + n - got]
            parts.append(piece)
            got += len(piece)
            self._pos += len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        self._buffer = b""


class GCSStorage(BucketStorage[GCSStoredFile]):
    """Stores each file as one object of ``bucket``, named ``<prefix><file id>``.

    :param project_id: the Google Cloud project, where a missing bucket is
        created. Default: the one of the credentials, else ``GOOGLE_CLOUD_PROJECT``.
    :param credentials: a service account key: the path of its JSON file, the
        JSON text itself, or its content as a dict; or a ``google.auth``
        credentials object. Default: what Google's libraries find
        (``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default
        login``, the instance's service account); none at all under
        ``STORAGE_EMULATOR_HOST``.
    :param bucket: the bucket; created when missing, if the credentials may.
    :param policy: ``public-read`` (the default, as in filedepot: the bucket's
        objects are readable by anyone, files get a
        :attr:`~GCSStoredFile.public_url` and the middleware redirects there)
        or ``private`` (the middleware serves them, or redirects to a signed URL
        with ``presign_ttl``).
    :param storage_class: the storage class of new objects, e.g. ``NEARLINE``;
        default: the bucket's.
    :param prefix: put before each file id to make its object name, e.g.
        ``media/`` (mind the slash) to keep files in a "folder".
    :param presign_ttl: seconds; with it the middleware answers a private file
        with a 302 to a signed URL valid that long (at most 604800, 7 days),
        instead of sending the bytes itself. Needs credentials that can sign.
    :param connect_timeout: seconds to open a connection (default 5).
    :param read_timeout: seconds to wait for each answer (default 15; each
        read, not the whole transfer). google-cloud-storage's default is 60.
    :param retry_timeout: seconds during which a request that failed (timeout,
        connection error, 408, 429, 5xx) is tried again (default 30;
        google-cloud-storage's is 120). A request that gets no answer fails
        after about ``retry_timeout + read_timeout`` seconds.

    Making the storage checks the bucket (the ``configure()`` of a depot): it
    gets the bucket (``Client.get_bucket``, as filedepot), creates it if it
    is missing and, for ``public-read``, reads and sets its IAM policy. A
    server that does not answer makes it fail, after the wait above, with
    :class:`~depot.exceptions.BackendUnavailableError`.

    ``public-read`` grants ``allUsers`` the role ``roles/storage.objectViewer``
    on the whole bucket, as filedepot did: keep private files in another bucket.

    Operations that cannot reach GCS, or that GCS refuses (bad credentials,
    access denied, no such bucket), raise
    :class:`~depot.exceptions.BackendUnavailableError` (an ``OSError``) naming
    the bucket and the endpoint. Requests are retried as :data:`RETRY` says.

    .. versionchanged:: 1.0
       Credentials may come from Google's usual places; uploads and downloads
       stream; files carry a checksum; ``storage_class`` is applied;
       ``presign_ttl``, ``connect_timeout``, ``read_timeout`` and
       ``retry_timeout`` added.
    """

    def __init__(
        self,
        project_id: str | None = None,
        credentials: Any = None,
        bucket: str | None = None,
        policy: str | None = None,
        storage_class: str | None = None,
        prefix: str = "",
        presign_ttl: int | str | None = None,
        connect_timeout: float | str | None = None,
        read_timeout: float | str | None = None,
        retry_timeout: float | str | None = None,
    ) -> None:
        policy = acl_policy(policy)
        if not bucket:
            raise ConfigurationError("bucket is needed: set it to the name of a GCS bucket.")
        super().__init__(policy, prefix, presign_ttl)
        self._storage_class = storage_class or None
        retry, limit = RETRY, seconds(retry_timeout, "retry_timeout", RETRY_TIMEOUT)
        # A RETRY the application assigned keeps its own limit, unless the setting is given.
        if retry is not None and (retry is DEFAULT_RETRY or retry_timeout not in (None, "")):
            retry = retry.with_timeout(limit)
        #: The keyword arguments of every request: how long to wait, how to retry.
        self._request: dict[str, Any] = {
            "retry": retry,
            "timeout": (
                seconds(connect_timeout, "connect_timeout", CONNECT_TIMEOUT),
                seconds(read_timeout, "read_timeout", READ_TIMEOUT),
            ),
        }
        self._credentials, found_project = _load_credentials(credentials)
        project = project_id or found_project or os.environ.get("GOOGLE_CLOUD_PROJECT")
        self.client = StorageClient(
            project=project or None,  # None: no project, rather than a lookup that may hang
            credentials=self._credentials,
        )
        self._endpoint = getattr(self.client, "api_endpoint", None) or _DEFAULT_ENDPOINT
        self._where = f"GCS bucket {bucket!r} at {self._endpoint}"
        if self.presign_ttl is not None:
            self._signing_credentials()  # fail now, not on every request
        try:
            #: The ``google.cloud.storage.Bucket``, as in filedepot.
            self.bucket = self.client.bucket(bucket)
        except ValueError as exc:
            raise ConfigurationError(f"bucket {bucket!r} is not a valid name: {exc}") from exc
        self._ensure_bucket()
        if policy == CANNED_ACL_PUBLIC_READ:
            self.set_bucket_public_iam(self.bucket)

    def _stat(self, fileid: str) -> Any:
        with gcs_errors(self._where, f"reading file {fileid}"):
            return self.bucket.get_blob(self._key(fileid), **self._request)

    def _stored_file(self, fileid: str, found: Any) -> GCSStoredFile:
        return GCSStoredFile(fileid, found, self)

    def _delete(self, fileid: str) -> None:
        try:
            with gcs_errors(self._where, f"deleting file {fileid}", (NotFound,)):
                self.bucket.blob(self._key(fileid)).delete(**self._request)
        except NotFound:
            pass

    def _exists(self, fileid: str) -> bool:
        with gcs_errors(self._where, f"looking for file {fileid}"):
            found: bool = self.bucket.blob(self._key(fileid)).exists(**self._request)
        return found

    def _names(self) -> Iterator[str]:
        with gcs_errors(self._where, "listing files"):
            # The delimiter keeps objects in deeper "folders" (another prefix) out.
            blobs = self.client.list_blobs(
                self.bucket, prefix=self._prefix or None, delimiter="/", **self._request
            )
            for blob in blobs:
                yield blob.name

    def set_bucket_public_iam(self, bucket: Any, members: tuple[str, ...] = (_ALL_USERS,)) -> None:
        """Let ``members`` read every object of ``bucket`` (filedepot's name).

        Adds them to the bucket's ``roles/storage.objectViewer`` binding unless
        they are there already.
        """
        action = "making the bucket public (depot.policy is public-read)"
        try:
            with gcs_errors(self._where, action, (Forbidden,)):
                policy = bucket.get_iam_policy(requested_policy_version=3, **self._request)
                for binding in policy.bindings:
                    if (
                        binding["role"] == _PUBLIC_ROLE
                        and not binding.get("condition")
                        and set(members) <= set(binding["members"])
                    ):
                        return
                policy.bindings.append({"role": _PUBLIC_ROLE, "members": set(members)})
                bucket.set_iam_policy(policy, **self._request)
        except Forbidden as exc:
            message = (
                f"GCS denied access ({describe(exc)}) while {action} in the {self._where}. "
                "Allow the credentials storage.buckets.getIamPolicy and setIamPolicy on "
                "the bucket, or set depot.policy to private (with depot.presign_ttl to "
                "redirect to signed URLs)."
            )
            raise also_foreign(BackendUnavailableError(message), exc) from exc

    def _ensure_bucket(self) -> None:
        try:
            with gcs_errors(self._where, "opening the bucket", (NotFound, Forbidden)):
                # get_bucket, the call filedepot made: applications' mocks expect it.
                self.bucket = self.client.get_bucket(self.bucket, **self._request)
        except Forbidden:
            return  # these credentials may not read the bucket's settings, but may use it
        except NotFound:
            self._create_bucket()

    def _create_bucket(self) -> None:
        if not self.client.project:
            raise ConfigurationError(
                f"The {self._where} does not exist, and no project is known to create it "
                "in: set depot.project_id, or create the bucket."
            )
        action = "creating the bucket"
        try:
            with gcs_errors(self._where, action, (Forbidden, Conflict)):
                self.bucket = self.client.create_bucket(self.bucket.name, **self._request)
        except Forbidden as exc:
            message = (
                f"The {self._where} does not exist, and these credentials may not create it "
                f"({describe(exc)}). Create the bucket, allow the credentials "
                "storage.buckets.create, or check depot.bucket and depot.project_id."
            )
            raise also_foreign(BackendUnavailableError(message), exc) from exc
        except Conflict:
            pass  # created meanwhile by another process

    def _signing_credentials(self) -> Any:
        if not isinstance(self._credentials, Signing):
            raise ConfigurationError(
                "Signed URLs (presign_ttl, signed_url()) need credentials that can sign, "
                f"but the {self._where} is used with {type(self._credentials).__name__}. "
                "Set depot.credentials to a service account key."
            )
        return self._credentials

    def _staging(self) -> GCSStaging:
        """Chunked uploads as objects under ``<prefix>.depot-uploads/<upload id>/``.

        .. versionadded:: 1.0
        """
        from depot.uploads._gcs import GCSStaging

        return GCSStaging(self)

    def _store_reserved(
        self,
        upload_id: str,
        file_id: str,
        staging: Any,
        chunks: list[Any],
        record: dict[str, Any],
        validators: list[Any],
    ) -> str:
        """Compose the chunks inside GCS, check the result once, rewrite it as the file."""
        from depot.uploads._gcs import store_composed

        # The claim's id: a finalize that took over a dead one's claim stores
        # under the same id, so that the two never make two files.
        file_id = staging.claimed(upload_id) or file_id
        if store_composed(self, upload_id, file_id, chunks, record, validators):
            return file_id
        return super()._store_reserved(upload_id, file_id, staging, chunks, record, validators)

    def presign_upload(
        self,
        filename: str | None = None,
        content_type: str | None = None,
        max_size: int | None = None,
        checksum: str | None = None,
        expires_in: int = 900,
        method: str = "PUT",
    ) -> DirectUpload:
        """Let a client send one new file to the bucket itself; see :mod:`depot.uploads.direct`.

        The client PUTs the file at the V4 signed URL with the
        :attr:`~depot.uploads.direct.DirectUpload.headers` given (the
        ``Content-Type``, and ``x-goog-content-length-range`` when there is a
        largest size: GCS then refuses a larger body itself).

        :param max_size: the largest file accepted (the depot's ``max_size`` applies too).
        :param checksum: ``"sha256:<hex>"`` the file must have, if known.
        :param expires_in: seconds the URL and the token stay valid (at most 7 days).
        :param method: ``"PUT"``, the one GCS signed URLs take a body with.
        :raises depot.exceptions.ConfigurationError: the depot has no
            ``signing_keys``, or its credentials cannot sign (a service account key can).

        .. versionadded:: 1.0
        """
        return _gcsdirect.presign(
            self, filename, content_type, max_size, checksum, expires_in, method
        )

    def complete_upload(self, token: str) -> str:
        """Check what a signed upload sent and make it a stored file; return its id.

        Refused files are deleted. Completing again returns the same id.

        :raises depot.exceptions.UploadNotFound: a bad or expired token, nothing
            sent, or bytes sent again while they were checked (complete again).
        :raises depot.exceptions.UploadTooLarge: larger than was presigned.
        :raises depot.exceptions.ContentTypeNotAllowed: a type the depot refuses.
        :raises depot.exceptions.ChecksumMismatch: not the presigned checksum.

        .. versionadded:: 1.0
        """
        return _gcsdirect.complete(self, token)

    def _put(self, fileid: str, new: NewVersion, existing: GCSStoredFile | None) -> None:
        if existing is None:
            blob = self._new_blob(fileid, new.filename, new.content_type)
            upload(blob, new.source, blob.metadata, self._request, self._where, fileid)
            return
        # A replace writes only over the generation it found: one racing a
        # delete() never brings the file back (GCS checks the precondition
        # when the upload completes, whatever its size).
        generation = existing.blob.generation
        for _ in range(_REPLACE_TRIES):
            blob = self._new_blob(fileid, new.filename, new.content_type)
            try:
                upload(blob, new.source, blob.metadata, self._request, self._where, fileid,
                       if_generation_match=generation)  # fmt: skip
                return
            except PreconditionFailed as exc:
                current = self._stat(fileid)
                if current is None:
                    raise StoredFileNotFoundError(fileid, self._where) from None
                if current.generation == generation:
                    message = (
                        f"GCS refused to replace file {fileid} in the {self._where} over its "
                        f"current generation {generation} ({describe(exc)}); try again."
                    )
                    raise also_foreign(BackendUnavailableError(message), exc) from exc
                if not _can_send_again(new.source):
                    # Another replace() stored its version while this one's stream
                    # went out, and the stream cannot be read again: this replace
                    # counts as the earlier of the two, overwritten by the other.
                    log.info("File %s was replaced by another writer during this replace()", fileid)
                    return
                # The last writer wins, as without the condition: over that version.
                generation = current.generation
        raise BackendUnavailableError(
            f"File {fileid} in the {self._where} was replaced by other writers each of the "
            f"{_REPLACE_TRIES} times this replace() tried to store it; try again."
        )

    def _new_blob(self, fileid: str, filename: str, content_type: str) -> Any:
        """The blob of a new version of ``fileid``, with depot's metadata set (no checksum)."""
        headers = new_object(filename, content_type)
        blob = self.bucket.blob(self._key(fileid), chunk_size=CHUNK_SIZE)
        blob.content_type = headers.content_type
        blob.content_disposition = headers.content_disposition
        if self._storage_class:
            blob.storage_class = self._storage_class
        # filedepot reads the type from the metadata too.
        blob.metadata = {**headers.metadata, _CONTENT_TYPE: headers.content_type}
        return blob


def _load_credentials(value: Any) -> tuple[Credentials, str | None]:
    """The credentials the ``credentials`` setting names, and their project if they know it."""
    if value is None or value == "":
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            return AnonymousCredentials(), None
        try:
            found, project = google.auth.default()
        except DefaultCredentialsError as exc:
            raise ConfigurationError(
                f"no Google credentials were found ({exc}). Set credentials to a service "
                "account key file, or GOOGLE_APPLICATION_CREDENTIALS, or run "
                "'gcloud auth application-default login'."
            ) from exc
        return found, project
    if isinstance(value, Credentials):
        return value, getattr(value, "project_id", None)
    try:
        if isinstance(value, Mapping):
            loaded = service_account.Credentials.from_service_account_info(dict(value))
        elif isinstance(value, str) and value.lstrip().startswith("{"):
            loaded = service_account.Credentials.from_service_account_info(json.loads(value))
        elif isinstance(value, (str, os.PathLike)):
            loaded = service_account.Credentials.from_service_account_file(os.fspath(value))
        else:
            raise TypeError(f"not a {type(value).__name__}")
    except OSError as exc:
        raise ConfigurationError(
            f"credentials {value!r} cannot be read ({exc.strerror or exc}): give the path "
            "of a service account key file (JSON)."
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        # Never the value itself: it may hold a private key.
        raise ConfigurationError(
            f"credentials is not a service account key ({type(exc).__name__}: "
            f"{str(exc)[:200]}). Give the path of its JSON file, the JSON text, or a dict."
        ) from exc
    return loaded, loaded.project_id


def _bucket_where(bucket: Any) -> str:
    endpoint = getattr(bucket.client, "api_endpoint", None) or _DEFAULT_ENDPOINT
    return f"GCS bucket {bucket.name!r} at {endpoint}"


def _file_info(file_id: str, blob: Any, where: str) -> dict[str, Any]:
    """The StoredFile fields from an object's resource."""
    metadata = blob.metadata or {}
    content_type = metadata.get(_CONTENT_TYPE) or blob.content_type
    stored_at = blob.time_created or blob.updated
    return file_info(metadata, stored_at, content_type, blob.size, file_id, blob.name, where)


def _can_send_again(source: object) -> bool:
    """Whether an upload of ``source`` can start over: bytes, or a stream that seeks."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return True
    seekable = getattr(source, "seekable", None)
    try:
        return bool(seekable()) if seekable is not None else False
    except OSError:
        return False
