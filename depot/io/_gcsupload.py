"""Sending a file's bytes to GCS with their checksum in the object's metadata.

An upload's metadata goes with its first request, before the bytes that make
up the checksum have gone by. But GCS, unlike S3, changes an object's metadata
in place, by a small PATCH request that does not touch the bytes. So:

* content smaller than one chunk (8 MiB; bytes, or a stream read that far) is
  hashed in memory first and sent in one request, its checksum included: most
  files. Bytes of any size are hashed before they are sent: from 8 MiB on,
  they go as a resumable upload in chunks with their checksum in its first
  request, each chunk copied out of them only while it is sent;
* a larger stream is sent as a resumable upload, in 8 MiB chunks as it is
  read, whether or not it can seek; once GCS holds the object, a PATCH adds the
  checksum. The PATCH is conditional on the object's generation (its version),
  so a checksum is never stamped on what another writer stored meanwhile. Until
  it lands, readers see ``checksum = None``, as for files written by filedepot.

A resumable upload holds one chunk in memory: each is a single ``read()`` of
the source, sent before the next is read, and let go once GCS has answered it
(google-cloud-storage would keep it, with its answer, until the next is sent).

GCS makes an object visible only when its upload completes, so a failed upload
leaves the old file or none, never part of one; the abandoned upload session
expires on GCS's side after a week.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from typing import Any

from google.api_core.exceptions import NotFound, PreconditionFailed

from depot.exceptions import BackendUnavailableError
from depot.io._chunks import BytesReader, Digest, PartReader, read_part, rewind
from depot.io._fileinfo import Source
from depot.io._gcserrors import gcs_errors
from depot.io._objectmeta import CHECKSUM

log = logging.getLogger("depot.io.gcs")

#: Content smaller than this goes in one request; larger goes in chunks of this
#: size (GCS wants a multiple of 256 KiB, and recommends at least 8 MiB).
CHUNK_SIZE = 8 * 1024 * 1024


def upload(
    blob: Any,
    source: Source,
    metadata: dict[str, str],
    request: Mapping[str, Any],
    where: str,
    fileid: str,
    if_generation_match: int | None = None,
) -> None:
    """Store ``source`` as ``blob`` (its content type and disposition already set).

    :param metadata: the object's custom metadata; the checksum is added to it.
    :param request: the keyword arguments of each request: google-cloud-storage's
        ``retry`` policy and ``timeout``. An upload is retried: sending the same
        bytes under the same name again stores the same file.
    :param if_generation_match: store only over this generation of the object
        (GCS checks it when the upload completes).
    :raises PreconditionFailed: the object is not that generation (any more).
    """
    digest = Digest()
    action = f"uploading file {fileid}"
    # The sends only: the checksum's PATCH has a precondition of its own.
    send = (
        request
        if if_generation_match is None
        else {**request, "if_generation_match": if_generation_match}
    )
    if isinstance(source, (bytes, bytearray, memoryview)):
        digest.update(source)
        blob.metadata = {**metadata, CHECKSUM: digest.checksum}
        content = BytesReader(source)  # each request's bytes copied, never the whole
        if len(content) < CHUNK_SIZE:
            _send_whole(blob, content, len(content), send, where, action)
        else:
            # The checksum is known, and went with the first request: no PATCH.
            _send_chunks(blob, content, send, where, action)
        return
    rewind(source)
    data = read_part(source.read, CHUNK_SIZE, digest)
    if len(data) < CHUNK_SIZE:
        blob.metadata = {**metadata, CHECKSUM: digest.checksum}
        _send_whole(blob, io.BytesIO(data), len(data), send, where, action)
        return
    blob.metadata = dict(metadata)
    parts = PartReader(source, digest, data)
    del data  # the reader's until it is sent as the first chunk
    _send_chunks(blob, parts, send, where, action)
    try:
        _record_checksum(blob, metadata, digest, request, where, fileid)
    except BackendUnavailableError as exc:
        # The file is stored, only without its checksum, as filedepot's are:
        # better than failing and leaving an object nobody knows about.
        log.warning("File %s was stored without its checksum: %s", fileid, exc)


def _send_whole(
    blob: Any, content: Any, size: int, request: Mapping[str, Any], where: str, action: str
) -> None:
    """Send content under one chunk in one request (multipart, metadata included)."""
    with gcs_errors(where, action, (PreconditionFailed,)):
        # With the size known, google-cloud-storage sends up to 8 MiB in one
        # multipart request.
        blob.upload_from_file(content, size=size, content_type=blob.content_type, **request)


def _send_chunks(
    blob: Any,
    parts: PartReader | BytesReader,
    request: Mapping[str, Any],
    where: str,
    action: str,
) -> None:
    """Send ``parts`` as a resumable upload, one chunk in memory at a time."""
    stream = _ChunkStream(parts)
    # google-cloud-storage keeps the answer to a chunk, and through its request
    # the chunk, while it reads and sends the next: two chunks in memory.
    # The hook rides on the client's private requests session: a client built on
    # another HTTP library has no such hooks, and only costs the extra chunk.
    session_hooks = getattr(getattr(blob.client, "_http", None), "hooks", None)
    hooks: list[Any] = session_hooks.setdefault("response", []) if session_hooks else []
    hooks.append(stream.forget_answered)
    try:
        with gcs_errors(where, action, (PreconditionFailed,)):
            blob.upload_from_file(stream, content_type=blob.content_type, **request)
    finally:
        hooks.remove(stream.forget_answered)


def _record_checksum(
    blob: Any,
    metadata: dict[str, str],
    digest: Digest,
    request: Mapping[str, Any],
    where: str,
    fileid: str,
) -> None:
    """Add the checksum to the metadata of the object just uploaded, unless it was replaced."""
    patch = blob.bucket.blob(blob.name)
    # All the keys: GCS merges them into what is there, some servers replace it.
    patch.metadata = {**metadata, CHECKSUM: digest.checksum}
    try:
        with gcs_errors(
            where, f"recording the checksum of file {fileid}", (PreconditionFailed, NotFound)
        ):
            patch.patch(if_generation_match=blob.generation, **request)
    except (PreconditionFailed, NotFound):
        pass  # replaced or deleted by another writer since


class _ChunkStream:
    """A source's parts as the stream a resumable upload reads.

    ``read(n)`` returns exactly ``n`` bytes until the end, and the bytes of the
    last read stay at hand until the next: a caller that recovers a failed
    upload seeks back to what GCS says it received, and sends them again.
    """

    def __init__(self, parts: PartReader | BytesReader) -> None:
        self._parts = parts
        self._window = b""  # the bytes of the last read, from _window_start
        self._window_start = 0
        self._pos = 0

    def tell(self) -> int:
        return self._pos

    def seek(self, position: int, whence: int = io.SEEK_SET) -> int:
        end = self._window_start + len(self._window)
        if whence != io.SEEK_SET or not self._window_start <= position <= end:
            raise io.UnsupportedOperation(
                f"cannot seek to {position}: only the last chunk "
                f"({self._window_start}-{end}) can be sent again"
            )
        self._pos = position
        return position

    def forget_answered(self, response: Any, *args: Any, **kwargs: Any) -> None:
        """A requests response hook: drop the request's reference to the chunk just sent.

        A retry sends the chunk again from its own reference; the request is
        kept only as a record.
        """
        if response.request.body is self._window and self._window:
            response.request.body = None

    def read(self, n: int = -1) -> bytes:
        start = self._pos
        offset = start - self._window_start
        if offset == len(self._window):
            # Nothing to send again: the last chunk goes before the next comes.
            self._window, self._window_start = b"", start
            data = self._parts.read(n)
        else:
            replay = self._window[offset:] if n < 0 else self._window[offset : offset + n]
            fresh = self._parts.read(-1 if n < 0 else n - len(replay)) if n != len(replay) else b""
            data = replay + fresh if fresh else replay
        if start + len(data) > self._window_start + len(self._window):
            # The window always ends where the source stands.
            self._window, self._window_start = data, start
        self._pos = start + len(data)
        return data
