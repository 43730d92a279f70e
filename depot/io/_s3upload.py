"""Sending a file's bytes to S3 with their checksum in the object's metadata.

The checksum is metadata, and S3 takes metadata when an upload starts, before
the bytes that make up the checksum have gone by. So:

* content of up to 8 MiB (bytes, or a stream read ahead that far) is hashed in
  memory first and sent in one request, its checksum included: most files.
  Bytes of any size are hashed before they are sent, in parts when large;
* a larger stream that can seek (an open file, the temporary file a web
  framework spools an upload into) is read twice: once for the checksum, then
  to upload it in parts with the checksum already in its metadata;
* a larger stream that cannot seek (a request body) is uploaded in parts as it
  is read, then a server-side copy adds the checksum to the metadata. The copy
  costs time on the server, so above a limit it is skipped and the file has
  ``checksum = None``, like files written by filedepot.

Uploads in parts go through boto3's transfer manager, which aborts them if
they fail, so S3 never shows part of a file. They carry ``x-depot-upload``, a
random id: the copy is made only if the object still carries it, and only if
S3's ETag has not changed since, so a checksum is never stamped on what another
writer stored meanwhile.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections import deque
from collections.abc import Iterator
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from depot.exceptions import BackendUnavailableError, DepotError
from depot.io._chunks import Digest, iter_chunks, read_ahead
from depot.io._fileinfo import Source
from depot.io._objectmeta import CHECKSUM
from depot.io._s3errors import s3_errors

log = logging.getLogger("depot.io.boto3")

UPLOAD = "x-depot-upload"
#: Content up to this size goes in one request; larger goes in parts of this size.
PART_SIZE = 8 * 1024 * 1024
#: S3's limit for a single CopyObject.
_COPY_MAX = 5 * 1024**3

TRANSFER = TransferConfig(
    multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=2
)
# s3transfer's own setting, which boto3's constructor does not take: how many
# parts of a stream may be in memory at once. It, not max_concurrency, bounds
# an upload's memory: about 16 MiB of reading ahead plus 2 parts, ~33 MiB
# whatever the size (boto3's default of 10 parts: ~100 MiB). Two parts sent
# at once already outpace most sources, request bodies above all.
TRANSFER.max_in_memory_upload_chunks = 2


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
        self, fileid: str, key: str, source: Source, args: dict[str, Any], copy_limit: int
    ) -> None:
        """Store ``source`` under ``key``; ``args`` holds PutObject's other arguments.

        The checksum is added to ``args['Metadata']``, except for a stream that
        cannot seek and is larger than ``copy_limit``.
        """
        metadata = args["Metadata"]
        digest = Digest()
        seekable = _can_seek(source)
        chunks = iter_chunks(source, digest)
        if isinstance(source, (bytes, bytearray, memoryview)):
            head, complete = list(chunks), True
        else:
            head, complete = read_ahead(chunks, PART_SIZE)
        with s3_errors(self._where, f"uploading file {fileid}"):
            if complete:
                metadata[CHECKSUM] = digest.checksum
                data = head[0] if len(head) == 1 else b"".join(head)
                if len(data) <= PART_SIZE:
                    self._client.put_object(Bucket=self._bucket, Key=key, Body=bytes(data), **args)
                else:
                    self._send(io.BytesIO(data), key, args)
                return
            metadata[UPLOAD] = uuid.uuid4().hex
            if seekable:
                del head
                for _ in chunks:  # the first pass: only the checksum
                    pass
                metadata[CHECKSUM] = digest.checksum
                source.seek(0)  # type: ignore[union-attr]
                sent = Digest()
                self._send(_ChunkReader(iter_chunks(source, sent)), key, args)
                if sent.checksum != digest.checksum:
                    # The file changed between the two reads: record what was sent.
                    self._fix_checksum(fileid, key, args, sent)
                return
            self._send(_ChunkReader(chunks, head), key, args)
        if digest.length <= copy_limit:
            try:
                self._record_checksum(fileid, key, args, digest)
            except BackendUnavailableError as exc:
                # The file is stored, only without its checksum, as filedepot's
                # are: better than failing and leaving an object nobody knows.
                log.warning("File %s was stored without its checksum: %s", fileid, exc)

    def _send(self, reader: Any, key: str, args: dict[str, Any]) -> None:
        self._client.upload_fileobj(reader, self._bucket, key, ExtraArgs=args, Config=TRANSFER)

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
        except ClientError:
            pass  # deleted or replaced by another writer since


class _ChunkReader:
    """A stream over blocks of bytes, whose ``read(n)`` returns exactly ``n`` bytes
    until the end: the transfer manager makes one part of each read of a stream
    that cannot seek, and S3 refuses parts under 5 MiB but the last.
    """

    def __init__(self, chunks: Iterator[bytes], head: list[bytes] | None = None) -> None:
        self._chunks = chunks
        # Blocks already read from ``chunks``, given up one by one as they are
        # read, so that none stays in memory longer than needed.
        self._head = deque(head or ())
        if head:
            head.clear()
        self._rest = memoryview(b"")

    def read(self, n: int = -1) -> bytes:
        parts = []
        got = 0
        while n < 0 or got < n:
            if not self._rest:
                chunk = self._head.popleft() if self._head else next(self._chunks, None)
                if chunk is None:
                    break
                self._rest = memoryview(chunk)
            piece = self._rest if n < 0 else self._rest[: n - got]
            self._rest = self._rest[len(piece) :]
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)


def _can_seek(source: object) -> bool:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return False
    seekable = getattr(source, "seekable", None)
    try:
        return bool(seekable()) if seekable is not None else False
    except OSError:
        return False
