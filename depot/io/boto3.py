"""A storage in an Amazon S3 bucket, or on a server that speaks S3 (MinIO, Ceph...), via boto3.

Settings (filedepot's): ``access_key_id``, ``secret_access_key``, ``bucket``,
``region_name``, ``policy``, ``storage_class``, ``endpoint_url``, ``prefix``;
depot adds ``presign_ttl``, ``connect_timeout``, ``read_timeout``, ``max_attempts``.

The layout is filedepot 0.12's, so either library reads what the other wrote.
Each file is one object, under the key ``<prefix><file id>``::

    Content-Type                  the file's content type
    Content-Disposition           its name, for clients that fetch the object itself
    x-amz-meta-x-depot-filename   its name, percent-encoded UTF-8
    x-amz-meta-x-depot-modified   when it was stored: "YYYY-MM-DD HH:MM:SS", UTC
    x-amz-meta-x-depot-checksum   "sha256:<hex>" of its bytes (depot only)
    x-amz-meta-x-depot-upload     a random id, on some files uploaded in parts (depot only)

Writing an object replaces it whole, so a failed upload, a multipart one
included (it is aborted), leaves the old file or none, never part of one.

S3 takes metadata when an upload starts, before the checksum is known: content
under 5 MiB, bytes, and streams that can seek get it in their metadata from
the start; a larger stream that cannot seek gets it by a server-side copy once
uploaded, up to :data:`CHECKSUM_COPY_LIMIT`, unless it is a stored file of
another depot that records its checksum (``depot/io/_s3upload.py`` says why
and how). Larger content goes in parts of 5 MiB, one in memory at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from depot import __version__
from depot._settings import missing_dependency_message
from depot.exceptions import BackendUnavailableError, ConfigurationError, DepotError
from depot.io import _s3direct
from depot.io._bucket import (
    CANNED_ACL_PRIVATE,
    CANNED_ACL_PUBLIC_READ,
    BucketStorage,
    BucketStoredFile,
    acl_policy,
)
from depot.io._chunks import BLOCK_SIZE
from depot.io._foreign import also_foreign
from depot.io._objectmeta import file_info, new_object
from depot.io._timeouts import CONNECT_TIMEOUT, READ_TIMEOUT, attempts, seconds
from depot.io.interfaces import NewVersion
from depot.uploads.direct import DirectUpload
from depot.uploads.staging import Chunk, Staging

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from depot.io._s3errors import client_error_code, describe, s3_errors
    from depot.io._s3upload import ObjectWriter
    from depot.uploads._s3 import S3Staging
except ModuleNotFoundError as exc:
    raise ImportError(missing_dependency_message(__name__, exc.name or "boto3")) from exc

__all__ = [
    "CANNED_ACL_PRIVATE",
    "CANNED_ACL_PUBLIC_READ",
    "CHECKSUM_COPY_LIMIT",
    "BucketDriver",
    "S3Storage",
    "S3StoredFile",
]


#: A stream that cannot seek and is larger than this gets no checksum: adding
#: it would take a server-side copy of the whole object.
CHECKSUM_COPY_LIMIT = 512 * 1024 * 1024

if TYPE_CHECKING:
    from depot.validators import FileValidator

_BACKEND = "S3Storage"


# Making a client loads the description of S3's API (~60 ms); the clients of
# one session share it. boto3 sessions are not thread-safe: one at a time.
_SESSION_LOCK = threading.Lock()
_SHARED: list[boto3.session.Session] = []


def _session(own_credentials: bool) -> boto3.session.Session:
    """A boto3 session to make a storage's client with.

    Storages given their keys share one session. A storage that takes its
    credentials from boto3's chain gets a session of its own: a session keeps
    the credentials it finds, and each storage should find them when it is made.
    """
    # boto3.Session, the name filedepot called: applications' tests patch it.
    if not own_credentials:
        return boto3.Session()
    if not _SHARED:
        _SHARED.append(boto3.Session())
    return _SHARED[0]


class S3StoredFile(BucketStoredFile):
    """A file of an :class:`S3Storage`: its metadata from one HEAD request.

    The bytes are fetched on the first read, streamed in blocks. It seeks
    (a seek starts a new ranged request at the next read), and
    :meth:`iter_range` asks S3 for just the bytes wanted, in one ranged GET.
    Every request for the bytes is conditional on the version whose metadata
    it holds (``If-Match`` its ETag), so data and metadata always agree: a file
    replaced before its first read follows (see
    :meth:`~depot.io.interfaces.StoredFile.hold_version`); one replaced after
    it raises :class:`~depot.exceptions.BackendUnavailableError`.

    The :attr:`public_url` has the shape boto3 gives the bucket and
    ``endpoint_url`` (``https://<bucket>.s3.amazonaws.com/<key>``, or
    ``<endpoint_url>/<bucket>/<key>``), as in filedepot; :meth:`signed_url` is
    a presigned GetObject.

    .. versionchanged:: 1.0
       Seekable; ``checksum``, :meth:`iter_range`, :meth:`signed_url` and
       :meth:`redirect_url` added.
    """

    _backend = _BACKEND
    _storage: S3Storage

    def __init__(self, file_id: str, storage: S3Storage, head: Mapping[str, Any]) -> None:
        self._key = storage._key(file_id)
        self._etag: str | None = head.get("ETag")
        super().__init__(
            file_id, storage, storage._where, _file_info(file_id, self._key, head, storage._where)
        )

    def _follow_replace(self) -> None:
        # Optimistic: the GET is conditional on the version opened, and only
        # when S3 says it was replaced is the new version's metadata fetched.
        if self._pos < (self.content_length or 0):
            try:
                self._body = self._open(self._pos, None, BLOCK_SIZE)
                return
            except BackendUnavailableError:
                head = self._storage._stat(self.file_id)
                if head is None or head.get("ETag") == self._etag:
                    raise
        else:  # nothing to GET (an empty file): ask
            head = self._storage._stat(self.file_id)
            if head is None or head.get("ETag") == self._etag:
                return
        self._set_metadata(**_file_info(self.file_id, self._key, head, self._where))
        self._etag = head.get("ETag")

    def _open(self, start: int, stop: int | None, block_size: int) -> _Body:
        end = "" if stop is None else stop - 1
        args = {"Bucket": self._storage._bucket, "Key": self._key, "Range": f"bytes={start}-{end}"}
        if self._etag:
            args["IfMatch"] = self._etag
        action = f"reading file {self.file_id}"
        try:
            with s3_errors(self._where, action, passthrough=("PreconditionFailed", "NoSuchKey")):
                return _Body(self._storage._client.get_object(**args)["Body"], self._where, action)
        except DepotError:
            raise
        except ClientError as exc:
            if client_error_code(exc) == "NoSuchKey":
                raise self._missing(exc) from exc
            raise self._replaced(exc) from exc

    def _object_url(self) -> str:
        # A signed URL without its signature: boto3 knows which shape suits
        # the bucket and endpoint, and filedepot made it the same way.
        url = self._storage._presign({"Bucket": self._storage._bucket, "Key": self._key}, 3600)
        return url.split("?", 1)[0]

    def _sign(self, expires_in: int, disposition: str, content_type: str) -> str:
        params = {
            "Bucket": self._storage._bucket,
            "Key": self._key,
            "ResponseContentDisposition": disposition,
            "ResponseContentType": content_type,
        }
        return self._storage._presign(params, expires_in)


class _Body:
    """The streaming body of a GetObject, read with botocore's errors translated."""

    def __init__(self, body: Any, where: str, action: str) -> None:
        self._body = body
        self._where = where
        self._action = action

    def read(self, n: int) -> bytes:
        with s3_errors(self._where, self._action):
            data: bytes = self._body.read(n)
        return data

    def close(self) -> None:
        self._body.close()


class S3Storage(BucketStorage[S3StoredFile]):
    """Stores each file as one object of ``bucket``, under ``<prefix><file id>``.

    :param access_key_id: with ``secret_access_key``, the credentials; when both
        are left out, boto3 finds them as usual (environment, ``~/.aws``, the
        instance's role...).
    :param secret_access_key: see ``access_key_id``.
    :param bucket: the bucket; created when missing. Default
        ``filedepot-<access_key_id in lowercase>``, as in filedepot.
    :param region_name: the AWS region (also where a missing bucket is created).
    :param policy: ``public-read`` (the default, as in filedepot: files get a
        :attr:`~S3StoredFile.public_url` and the middleware redirects there) or
        ``private`` (the middleware serves them, or redirects to a signed URL
        with ``presign_ttl``).
    :param storage_class: the S3 storage class of new objects (default ``STANDARD``).
    :param endpoint_url: the server's URL, for S3-compatible servers or an
        AWS endpoint of your choice; default AWS's.
    :param prefix: put before each file id to make its key, e.g. ``media/``
        (mind the slash) to keep files in a "folder".
    :param presign_ttl: seconds; with it the middleware answers a private file
        with a 302 to a signed URL valid that long (at most 604800, 7 days),
        instead of sending the bytes itself.
    :param connect_timeout: seconds to open a connection (default 5).
    :param read_timeout: seconds to wait for each answer from S3 (default 15;
        each read, not the whole transfer).
    :param max_attempts: how many times a request is tried, retries of
        timeouts, throttling and 5xx answers included (default 3, or what
        ``AWS_MAX_ATTEMPTS`` or ``~/.aws/config`` say). A request that gets no
        answer fails after about ``max_attempts * (connect_timeout +
        read_timeout)`` seconds.

    Making the storage checks the bucket (the ``configure()`` of a depot):
    it lists the buckets, then creates this one if it is not listed (when
    listing is denied, it lists the bucket's objects instead). A server that
    does not answer makes it fail, after the wait above, with
    :class:`~depot.exceptions.BackendUnavailableError`.

    Operations that cannot reach S3, or that S3 refuses (bad credentials, access
    denied, no such bucket), raise :class:`~depot.exceptions.BackendUnavailableError`
    (an ``OSError``) naming the bucket and the endpoint.

    Chunked uploads (:mod:`depot.uploads.chunked`, and so tus) become parts of
    one multipart upload, their state kept in the bucket under
    ``<prefix>.depot-uploads/<upload id>/`` (``depot/uploads/_s3.py`` says how).

    .. versionchanged:: 1.0
       Credentials may come from boto3's usual places; uploads stream in parts;
       files carry a checksum; chunked uploads; ``presign_ttl``,
       ``connect_timeout``, ``read_timeout`` and ``max_attempts`` added.
    """

    # Every restore records its checksum, the one of the bytes sent: under 5
    # MiB computed before the PutObject, above it the file's recorded one,
    # checked once sent (depot/io/_s3upload.py); the time is timestamp()'s.
    records_what_it_reads = True

    def __init__(
        self,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        bucket: str | None = None,
        region_name: str | None = None,
        policy: str | None = None,
        storage_class: str | None = None,
        endpoint_url: str | None = None,
        prefix: str = "",
        presign_ttl: int | str | None = None,
        connect_timeout: float | str | None = None,
        read_timeout: float | str | None = None,
        max_attempts: int | str | None = None,
    ) -> None:
        policy = acl_policy(policy)
        if bool(access_key_id) != bool(secret_access_key):
            raise ConfigurationError(
                "access_key_id and secret_access_key go together: set both, or neither "
                "to let boto3 find credentials (environment, ~/.aws, instance role)."
            )
        if not bucket:
            if not access_key_id:
                raise ConfigurationError(
                    "bucket is needed when access_key_id is not given (filedepot's "
                    "default bucket name is made from it): set bucket."
                )
            bucket = f"filedepot-{access_key_id.lower()}"
        super().__init__(policy, prefix, presign_ttl)
        self._storage_class = storage_class or "STANDARD"
        self._bucket = bucket
        timeouts = {
            "connect_timeout": seconds(connect_timeout, "connect_timeout", CONNECT_TIMEOUT),
            "read_timeout": seconds(read_timeout, "read_timeout", READ_TIMEOUT),
        }
        if max_attempts is not None and max_attempts != "":
            # Checked here: below, a ValueError means a bad endpoint_url.
            attempts(max_attempts)
        try:
            with _SESSION_LOCK:
                session = _session(bool(access_key_id))
                self._client_args = {
                    "aws_access_key_id": access_key_id or None,
                    "aws_secret_access_key": secret_access_key or None,
                    "region_name": region_name or None,
                    "endpoint_url": endpoint_url or None,
                    "config": Config(
                        # SigV4 for signed URLs too: every region accepts it.
                        signature_version="s3v4",
                        user_agent_extra=f"depot/{__version__}",
                        retries=_retries(session, max_attempts),
                        **timeouts,
                    ),
                }
                self._client = session.client("s3", **self._client_args)
        except ValueError as exc:  # botocore's "Invalid endpoint"
            raise ConfigurationError(
                f"endpoint_url {endpoint_url!r} is not usable: {exc}. "
                "Give a URL such as 'https://minio.example.com:9000'."
            ) from exc
        self._endpoint = self._client.meta.endpoint_url
        self._where = f"S3 bucket {bucket!r} at {self._endpoint}"
        self._driver: BucketDriver | None = None
        self._writer = ObjectWriter(self._client, bucket, self._where)
        self._ensure_bucket()

    def _stored_file(self, fileid: str, found: Any) -> S3StoredFile:
        return S3StoredFile(fileid, self, found)

    def _delete(self, fileid: str) -> None:
        with s3_errors(self._where, f"deleting file {fileid}"):
            self._client.delete_object(Bucket=self._bucket, Key=self._key(fileid))

    def _names(self) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        with s3_errors(self._where, "listing files"):
            # The delimiter keeps keys in deeper "folders" (another prefix) out.
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix, Delimiter="/"):
                for item in page.get("Contents", ()):
                    yield item["Key"]

    @property
    def _bucket_driver(self) -> BucketDriver:
        """filedepot's helper over boto3's resource API, made on first use.

        depot itself uses a boto3 client; this is kept for code written
        against filedepot, which reached it.
        """
        if self._driver is None:
            with _SESSION_LOCK:
                own = bool(self._client_args["aws_access_key_id"])
                s3 = _session(own).resource("s3", **self._client_args)
            self._driver = BucketDriver(s3, s3.Bucket(self._bucket), self._prefix)
        return self._driver

    def _ensure_bucket(self) -> None:
        # The requests filedepot made (ListBuckets, then CreateBucket if the
        # bucket is not listed), so that applications' mocks of them still hold.
        try:
            with s3_errors(self._where, "opening the bucket", ("AccessDenied",)):
                listed = self._client.list_buckets().get("Buckets") or ()
                names = {bucket.get("Name") for bucket in listed}
        except DepotError:
            raise
        except ClientError:
            # These credentials may not list buckets (s3:ListAllMyBuckets), as
            # is common for a key made for one bucket: ask that bucket.
            names = {self._bucket} if self._bucket_exists() else set()
        if self._bucket not in names:
            self._create_bucket()

    def _bucket_exists(self) -> bool:
        # A listing of the bucket rather than HEAD: its errors say what is wrong
        # (no bucket, bad key), where HEAD only answers 403 or 404.
        try:
            with s3_errors(self._where, "opening the bucket", ("NoSuchBucket", "AccessDenied")):
                self._client.list_objects_v2(Bucket=self._bucket, MaxKeys=1, Prefix=self._prefix)
        except DepotError:
            raise
        except ClientError as exc:
            # AccessDenied: these credentials may not list, but may read and write.
            return client_error_code(exc) != "NoSuchBucket"
        return True

    def _create_bucket(self) -> None:
        args: dict[str, Any] = {"Bucket": self._bucket, "ObjectOwnership": "BucketOwnerPreferred"}
        region = self._client.meta.region_name
        if region and region not in ("us-east-1", "aws-global"):
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        passthrough = ("BucketAlreadyOwnedByYou", "AccessDenied", "BucketAlreadyExists")
        try:
            with s3_errors(self._where, "creating the bucket", passthrough):
                self._client.create_bucket(**args)
        except DepotError:
            raise
        except ClientError as exc:
            code = client_error_code(exc)
            # Not listed, yet there: a bucket of another account shared with these
            # credentials (ListBuckets shows only one's own), or past the listing's end.
            if code != "BucketAlreadyOwnedByYou" and self._bucket_exists():
                return
            if code == "BucketAlreadyExists":
                message = (
                    f"The name of the {self._where} belongs to another account, and these "
                    f"credentials may not use it ({describe(exc)}). Choose another "
                    "depot.bucket, or have its owner grant access."
                )
                raise also_foreign(BackendUnavailableError(message), exc) from exc
            if code == "AccessDenied":
                message = (
                    f"The {self._where} does not exist, and these credentials may not create "
                    f"it ({describe(exc)}). Create the bucket, allow the credentials "
                    "s3:CreateBucket, or check depot.bucket and depot.endpoint_url."
                )
                raise also_foreign(BackendUnavailableError(message), exc) from exc
            return  # created meanwhile by another process
        if self._policy == CANNED_ACL_PUBLIC_READ:
            # New AWS buckets block public ACLs; files of a public-read depot need them.
            # S3-compatible servers that lack this setting need nothing.
            try:
                with s3_errors(
                    self._where, "allowing public-read ACLs on the new bucket", ("NotImplemented",)
                ):
                    self._client.put_public_access_block(
                        Bucket=self._bucket,
                        PublicAccessBlockConfiguration={
                            "BlockPublicAcls": False,
                            "IgnorePublicAcls": False,
                            "BlockPublicPolicy": True,
                            "RestrictPublicBuckets": True,
                        },
                    )
            except DepotError:
                raise
            except ClientError:
                pass  # NotImplemented

    def _stat(self, fileid: str) -> dict[str, Any] | None:
        """HeadObject's answer for the file, ``None`` if there is no such object."""
        try:
            with s3_errors(self._where, f"reading file {fileid}", passthrough=("404", "NoSuchKey")):
                head: dict[str, Any] = self._client.head_object(
                    Bucket=self._bucket, Key=self._key(fileid)
                )
        except DepotError:
            raise
        except ClientError:
            return None  # 404, NoSuchKey
        return head

    def _presign(self, params: dict[str, Any], expires_in: int) -> str:
        with s3_errors(self._where, f"signing a URL for {params['Key']}"):
            url: str = self._client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in
            )
        return url

    def _object_args(self, filename: str, content_type: str) -> dict[str, Any]:
        headers = new_object(filename, content_type)
        args: dict[str, Any] = {
            "ContentType": headers.content_type,
            "ContentDisposition": headers.content_disposition,
            "StorageClass": self._storage_class,
            "Metadata": headers.metadata,
        }
        if self._policy == CANNED_ACL_PUBLIC_READ:
            # private is what S3 gives a new object anyway; not sending it also
            # suits buckets whose ACLs are disabled.
            args["ACL"] = CANNED_ACL_PUBLIC_READ
        return args

    def presign_upload(
        self,
        filename: str | None = None,
        content_type: str | None = None,
        max_size: int | None = None,
        checksum: str | None = None,
        expires_in: int = 900,
        method: str = "POST",
    ) -> DirectUpload:
        """Let a client send one new file to the bucket itself; see :mod:`depot.uploads.direct`.

        :param max_size: the largest file accepted (the depot's ``max_size``
            applies too); a POST's signature enforces it at S3.
        :param checksum: ``"sha256:<hex>"`` the file must have, if known.
        :param method: ``"POST"`` (a browser form) or ``"PUT"``.
        :raises depot.exceptions.ConfigurationError: the depot has no ``signing_keys``.

        .. versionadded:: 1.0
        """
        return _s3direct.presign(
            self, filename, content_type, max_size, checksum, expires_in, method
        )

    def complete_upload(self, token: str) -> str:
        """Check what a presigned upload sent and make it a stored file; return its id.

        Refused files are deleted. Completing again returns the same id.

        :raises depot.exceptions.UploadNotFound: a bad or expired token, or nothing sent.
        :raises depot.exceptions.UploadTooLarge: larger than was presigned.
        :raises depot.exceptions.ContentTypeNotAllowed: a type the depot refuses.
        :raises depot.exceptions.ChecksumMismatch: not the presigned checksum.

        .. versionadded:: 1.0
        """
        return _s3direct.complete(self, token)

    def _staging(self) -> S3Staging:
        # Chunks become parts of a multipart upload, their state objects in
        # the bucket: every worker and host serving the depot sees them.
        return S3Staging(
            self._client, self._bucket, f"{self._prefix}{_s3direct.STAGING}", self._where
        )

    def _store_reserved(
        self,
        upload_id: str,
        file_id: str,
        staging: Staging,
        chunks: list[Chunk],
        record: dict[str, Any],
        validators: list[FileValidator],
    ) -> str:
        # S3 puts the parts together (CompleteMultipartUpload); the object is
        # then checked and copied as a presigned upload is.
        assert isinstance(staging, S3Staging)
        return _s3direct.store_reserved(self, upload_id, file_id, staging, record, validators)

    def _put(self, fileid: str, new: NewVersion, existing: S3StoredFile | None) -> None:
        args = self._object_args(new.filename, new.content_type)
        # A replace writes only over the version it found (when S3 can make that
        # condition): one racing a delete() never brings the file back.
        if_match = existing._etag if existing is not None else None
        self._writer.write(
            fileid, self._key(fileid), new.source, args, CHECKSUM_COPY_LIMIT, if_match
        )


class BucketDriver:
    """filedepot's access to the keys of a bucket, through boto3's resource API.

    :param s3: a boto3 S3 service resource.
    :param bucket: a ``Bucket`` of it.
    :param prefix: put before each key name.
    """

    def __init__(self, s3: Any, bucket: Any, prefix: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix

    def get_key(self, key_name: str) -> Any:
        """The ``Object`` under ``prefix + key_name`` with its metadata loaded, or ``None``."""
        obj = self.bucket.Object(self.prefix + key_name)
        try:
            obj.load()
        except ClientError as exc:
            if client_error_code(exc) in ("404", "NoSuchKey"):
                return None
            raise
        return obj

    def new_key(self, key_name: str) -> Any:
        """The ``Object`` under ``prefix + key_name``, not fetched."""
        return self.bucket.Object(self.prefix + key_name)

    def list_key_names(self) -> list[str]:
        """The names (without the prefix) of every key under the prefix."""
        return [
            obj.key[len(self.prefix) :] for obj in self.bucket.objects.filter(Prefix=self.prefix)
        ]


def _retries(session: Any, max_attempts: object) -> dict[str, Any] | None:
    """botocore's ``retries`` config: the setting, else boto3's own (AWS_MAX_ATTEMPTS,
    ``~/.aws/config``) if set, else :data:`~depot.io._timeouts.MAX_ATTEMPTS` tries.
    """
    if max_attempts is None or max_attempts == "":
        core = getattr(session, "_session", None)
        if core is not None and core.get_config_variable("max_attempts") is not None:
            return None
    # total_max_attempts counts the first try, as depot.max_attempts and AWS_MAX_ATTEMPTS
    # do; botocore's max_attempts would count the retries only.
    return {"mode": "standard", "total_max_attempts": attempts(max_attempts)}


def _file_info(file_id: str, key: str, head: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The StoredFile fields from a HeadObject answer."""
    metadata, stored_at = head.get("Metadata"), head.get("LastModified")
    content_type, size = head.get("ContentType"), head.get("ContentLength")
    return file_info(metadata, stored_at, content_type, size, file_id, key, where)
