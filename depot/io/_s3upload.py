"""Sending a file's bytes to S3 with their checksum in the object's metadata.

The checksum is metadata, and S3 takes metadata when an upload starts, before
the bytes that make up the checksum have gone by. So:

* content smaller than one part (5 MiB; bytes, or a stream read that far) is
  hashed in memory first and sent in one request, its checksum included: most
  files. Bytes of any size are hashed before they are sent, in parts when large;
* a larger stream that can seek (an open file, the temporary file a web
  framework spools an upload into) is read twice: once for the checksum, then
  to upload it with the checksum already in its metadata. Up to 5 GiB (S3's
  limit for one request) it goes as one PutObject that botocore streams from
  the file, in flat memory and at the server's full speed; only larger files
  go in parts;
* a larger stream that cannot seek (a request body) is uploaded in parts as it
  is read, then a server-side copy adds the checksum to the metadata. The copy
  costs time on the server, so above a limit it is skipped and the file has
  ``checksum = None``, like files written by filedepot. A stored file of
  another depot being restored (``replace(f, f)``, what a copy between depots
  does) records its checksum already: that goes in the metadata from the start,
  and if the bytes sent hash otherwise, theirs is recorded by the copy above.

Uploads in parts go through boto3's transfer manager, which aborts them if
they fail, so S3 never shows part of a file. They carry ``x-depot-upload``, a
random id: the copy is made only if the object still carries it, and only if
S3's ETag has not changed since, so a checksum is never stamped on what another
writer stored meanwhile.

An upload holds one part in memory, whatever the file's size: each part is a
single ``read()`` of the source, and the transfer manager runs in the caller's
thread, sending each part before it reads the next. With its threads it would
read a part while sending another, for twice the parts and a malloc arena per
thread: ~20 MiB of memory instead of ~6. The price is time: nothing is sent
while a part is read and hashed.
"""

from __future__ import annotations

import io
import logging
import uuid
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from depot.exceptions import BackendUnavailableError, DepotError, StoredFileNotFoundError
from depot.io._chunks import (
    BLOCK_SIZE,
    BytesReader,
    Digest,
    PartReader,
    is_checksum,
    read_part,
    rewind,
)
from depot.io._fileinfo import Source
from depot.io._objectmeta import CHECKSUM
from depot.io._s3errors import s3_errors
from depot.io.interfaces import StoredFile

log = logging.getLogger("depot.io.boto3")

UPLOAD = "x-depot-upload"
#: Content smaller than this goes in one request; larger goes in parts of this
#: size, S3's smallest, so that the part in memory is small. S3 takes up to
#: 10,000 parts: a stream that cannot seek may be up to 48.8 GiB (larger
#: files that can seek, and bytes, get larger parts: their size is known).
PART_SIZE = 5 * 1024 * 1024
#: S3's limits for a multipart upload, a single PutObject and a single CopyObject.
_MAX_PARTS = 10_000
_PUT_MAX = 5 * 1024**3
_COPY_MAX = 5 * 1024**3
#: How a conditional write that lost its race is answered: the object was
#: deleted (404), replaced meanwhile (412), or is being written (409).
_WRITE_LOST = ("PreconditionFailed", "412", "NoSuchKey", "404", "ConditionalRequestConflict")
#: Conditional writes tried before a replace() gives up on a file rewritten that often.
_REPLACE_TRIES = 8


def _transfer(size: int | None = None) -> TransferConfig:
    """The transfer manager's settings for a file of ``size`` bytes (None: unknown)."""
    part = PART_SIZE
    if size is not None and size > part * _MAX_PARTS:
        mib = 1024 * 1024
        part = -(-size // (_MAX_PARTS * mib)) * mib
    # Both sizes the same: a stream's first read (is it large?) is then its
    # first part as is, not cut in two and copied.
    config = TransferConfig(multipart_threshold=part, multipart_chunksize=part, use_threads=False)
    # Not the CRT transfer manager that boto3 picks on some EC2 instances when
    # awscrt is installed: it ignores these settings. Set as an attribute: the
    # constructor of a boto3 older than that choice does not take it.
    config.preferred_transfer_client = "classic"
    return config


# A file that can seek, up to S3's limit, goes in one request: the transfer
# manager streams it from the file rather than reading it into parts. In parts,
# one at a time (what the memory bound allows), it would wait for the server
# after each part; a single request keeps the bytes flowing.
_ONE_REQUEST = _transfer(_PUT_MAX)
_ONE_REQUEST.multipart_threshold = _PUT_MAX + 1


class ObjectWriter:
    """Writes the objects of one bucket.

    :param client: a boto3 S3 client.
    :param bucket: the bucket's name.
    :param where: the bucket and endpoint, for error messages.
    """

    def __init__(self, client: Any, bucket: str, where: str) -> None:
        self._client = client
        self._bucket = bucket
        self._where = where

    def write(
        self,
        fileid: str,
        key: str,
        source: Source,
        args: dict[str, Any],
        copy_limit: int,
        if_match: str | None = None,
    ) -> None:
        """Store ``source`` under ``key``; ``args`` holds PutObject's other arguments.

        The checksum is added to ``args['Metadata']``, except for a stream that
        cannot seek and is larger than ``copy_limit``.

        :param if_match: for a replace, the ETag of the object being replaced.
            Content sent in one request (under 5 MiB) is then written only if
            the object still exists: a replace racing a delete never puts the
            file back (:meth:`_put_replacing`). Larger content goes through
            boto3's transfer manager, which cannot make the write conditional.
        :raises StoredFileNotFoundError: the replaced object was deleted meanwhile.
        """
        metadata = args["Metadata"]
        digest = Digest()
        with s3_errors(self._where, f"uploading file {fileid}"):
            if isinstance(source, (bytes, bytearray, memoryview)):
                digest.update(source)
                metadata[CHECKSUM] = digest.checksum
                data = bytes(source) if len(source) < PART_SIZE else source
                self._send_known(fileid, data, key, args, if_match)
                return
            seekable = _can_seek(source)
            rewind(source)
            head = read_part(source.read, PART_SIZE, digest)
            if len(head) < PART_SIZE:
                metadata[CHECKSUM] = digest.checksum
                self._send_known(fileid, head, key, args, if_match)
                return
            metadata[UPLOAD] = uuid.uuid4().hex
            if seekable:
                del head
                while read_part(source.read, BLOCK_SIZE, digest):  # the first pass: the checksum
                    pass
                metadata[CHECKSUM] = digest.checksum
                source.seek(0)  # type: ignore[attr-defined]
                if digest.length <= _PUT_MAX:
                    streamed = _HashingFile(source)
                    self._client.upload_fileobj(
                        streamed, self._bucket, key, ExtraArgs=args, Config=_ONE_REQUEST
                    )
                    sent = streamed.digest
                else:
                    sent = Digest()
                    self._send(PartReader(source, sent), key, args, digest.length)
                if sent.checksum != digest.checksum:
                    # The file changed between the two reads: record what was sent.
                    self._fix_checksum(fileid, key, args, sent)
                return
            reader = PartReader(source, digest, head)
            del head  # the reader's until it is sent as the first part
            recorded = _recorded_checksum(source)
            if recorded is not None:
                # A file restored from another depot (replace(f, f), what a copy
                # does) records its checksum: it goes in from the start, and is
                # checked once the bytes have gone by.
                metadata[CHECKSUM] = recorded
            self._send(reader, key, args)
            if recorded is not None:
                if digest.checksum != recorded:
                    self._fix_checksum(fileid, key, args, digest)
                return
        if digest.length <= copy_limit:
            try:
                self._record_checksum(fileid, key, args, digest)
            except BackendUnavailableError as exc:
                # The file is stored, only without its checksum, as filedepot's
                # are: better than failing and leaving an object nobody knows.
                log.warning("File %s was stored without its checksum: %s", fileid, exc)

    def _send_known(
        self,
        fileid: str,
        data: bytes | bytearray | memoryview,
        key: str,
        args: dict[str, Any],
        if_match: str | None,
    ) -> None:
        """Send content held in memory: in one request if small, else in parts."""
        if len(data) >= PART_SIZE:
            self._send(BytesReader(data), key, args, len(data))
        elif if_match is None:
            self._client.put_object(Bucket=self._bucket, Key=key, Body=data, **args)
        else:
            self._put_replacing(fileid, data, key, args, if_match)

    def _put_replacing(
        self,
        fileid: str,
        data: bytes | bytearray | memoryview,
        key: str,
        args: dict[str, Any],
        if_match: str,
    ) -> None:
        """PutObject only over an existing version of the object (S3's conditional write).

        Another replace() that wrote first changed the ETag: this one writes over
        that version in turn (the last writer wins, as without the condition).
        A delete() that came first makes this a StoredFileNotFoundError, so the
        deleted file never comes back.
        """
        for _ in range(_REPLACE_TRIES):
            try:
                with s3_errors(self._where, f"replacing file {fileid}", _WRITE_LOST):
                    self._client.put_object(
                        Bucket=self._bucket, Key=key, Body=data, IfMatch=if_match, **args
                    )
                return
            except DepotError:
                raise
            except ClientError:
                current = self._etag(fileid, key)
                if current is None:
                    raise StoredFileNotFoundError(fileid, self._where) from None
                if_match = current
        raise BackendUnavailableError(
            f"File {fileid} in the {self._where} was replaced by other writers each of the "
            f"{_REPLACE_TRIES} times this replace() tried to store it; try again."
        )

    def _etag(self, fileid: str, key: str) -> str | None:
        """The object's current ETag; None if it does not exist."""
        try:
            with s3_errors(self._where, f"replacing file {fileid}", ("404", "NoSuchKey")):
                etag: str = self._client.head_object(Bucket=self._bucket, Key=key)["ETag"]
        except DepotError:
            raise
        except ClientError:
            return None
        return etag

    def _send(self, reader: Any, key: str, args: dict[str, Any], size: int | None = None) -> None:
        self._client.upload_fileobj(
            reader, self._bucket, key, ExtraArgs=args, Config=_transfer(size)
        )

    def _fix_checksum(self, fileid: str, key: str, args: dict[str, Any], sent: Digest) -> None:
        """Replace the checksum of the first read by the one of the bytes sent."""
        if sent.length <= _COPY_MAX:
            self._record_checksum(fileid, key, args, sent)
            return
        # Too large to copy: a wrong checksum must never stay.
        with s3_errors(self._where, f"deleting file {fileid}"):
            self._client.delete_object(Bucket=self._bucket, Key=key)
        raise DepotError(
            f"File {fileid} changed while it was uploaded to the {self._where}, and is too "
            "large to correct its checksum, so it was deleted. Store a file that does not "
            "change while it is being stored."
        )

    def _record_checksum(self, fileid: str, key: str, args: dict[str, Any], digest: Digest) -> None:
        """Add the checksum to the metadata of the object just uploaded, by a server-side copy.

        Skipped if the object is no longer the one this upload wrote.
        """
        action = f"recording the checksum of file {fileid}"
        try:
            with s3_errors(self._where, action, passthrough=("404", "PreconditionFailed")):
                head = self._client.head_object(Bucket=self._bucket, Key=key)
                if head.get("Metadata", {}).get(UPLOAD) != args["Metadata"][UPLOAD]:
                    return  # replaced by another writer since
                metadata = {k: v for k, v in args["Metadata"].items() if k != UPLOAD}
                metadata[CHECKSUM] = digest.checksum
                others = {k: v for k, v in args.items() if k != "Metadata"}
                self._client.copy_object(
                    Bucket=self._bucket,
                    Key=key,
                    CopySource={"Bucket": self._bucket, "Key": key},
                    CopySourceIfMatch=head["ETag"],
                    MetadataDirective="REPLACE",
                    Metadata=metadata,
                    # S3 computes the copy's own CRC32. Without it a copy may keep
                    # the composite checksum of the parts as if it were the whole
                    # object's (moto does), and boto3 readers that check it fail.
                    ChecksumAlgorithm="CRC32",
                    **others,
                )
        except DepotError:
            raise
        except ClientError:
            pass  # 404, PreconditionFailed: deleted or replaced by another writer since


class _HashingFile:
    """A seekable file whose bytes read from its start are fed to ``digest``.

    botocore may read a request's body more than once (to sign it, and again
    to send it or retry), seeking back to the start each time: a seek there
    starts the digest afresh, so it ends holding what the last pass sent.
    """

    def __init__(self, file: Any) -> None:
        self._file = file
        self._position = 0
        self.digest = Digest()

    def read(self, n: int = -1) -> bytes:
        # The first pass, which hashed the file, already refused text.
        data: bytes = self._file.read(n)
        if self._position == self.digest.length:  # reading on from what was hashed
            self.digest.update(data)
        self._position += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._position = self._file.seek(offset, whence)
        if self._position == 0:
            self.digest = Digest()
        return self._position

    def tell(self) -> int:
        return self._position

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        # The transfer manager closes what it sent; the file is the caller's.
        pass


def _recorded_checksum(source: object) -> str | None:
    """The checksum a stored file being restored records for its bytes, if any."""
    if not isinstance(source, StoredFile):
        return None
    checksum = source.checksum
    return checksum if isinstance(checksum, str) and is_checksum(checksum) else None


def _can_seek(source: object) -> bool:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return False
    seekable = getattr(source, "seekable", None)
    try:
        return bool(seekable()) if seekable is not None else False
    except OSError:
        return False
