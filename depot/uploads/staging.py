"""Where a depot keeps chunked uploads until they are finalized.

A :class:`Staging` belongs to one storage and lives where the storage's files
do (a directory beside local files, a dict beside memory files), so that every
worker process and host that serves the depot sees the same uploads: a chunk
acknowledged by one worker is there for the next request, whichever worker
takes it, and survives the worker being killed.

The rules of chunked uploads (sizes, overlaps, checksums, expiry) are in
:mod:`depot.uploads.chunked`; a staging only stores and lists.

.. versionadded:: 1.0
"""

from __future__ import annotations

import io
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from depot.io._chunks import BLOCK_SIZE, Digest, iter_chunks
from depot.io._fileinfo import Source

__all__ = ["Chunk", "MemoryStaging", "Staging"]


@dataclass(frozen=True)
class Chunk:
    """A run of bytes received for an upload: where it starts, how long, its checksum."""

    offset: int
    length: int
    checksum: str

    @property
    def end(self) -> int:
        """The offset just past the chunk."""
        return self.offset + self.length


class Staging(ABC):
    """The storage of chunked uploads: records, chunks, and the claim of a finalize.

    Every method may be called by several processes at once for the same
    upload; each says what it guarantees then.
    """

    #: Seconds after which the claim of a finalize that never ended (its
    #: process was killed) may be taken over by the next finalize; until then,
    #: a finalize might still be storing the file (a large one takes minutes).
    claim_timeout: float = 15 * 60

    @abstractmethod
    def start(self, upload_id: str, record: dict[str, Any]) -> None:
        """Keep a new upload's record (a JSON-able dict)."""

    @abstractmethod
    def record(self, upload_id: str) -> dict[str, Any] | None:
        """The upload's record, or ``None`` if there is no such upload."""

    @abstractmethod
    def put_chunk(
        self, upload_id: str, offset: int, source: Source, limit: int
    ) -> tuple[Chunk, Chunk | None]:
        """Store the bytes of ``source`` (at most ``limit``) as the chunk at ``offset``.

        Whole or not at all: readers never see part of a chunk. Returns the
        chunk as received, and the chunk that was at ``offset`` already, if
        one was: then nothing was written, and the caller compares the two.

        :raises OverflowError: ``source`` holds more than ``limit`` bytes.
        :raises KeyError: there is no such upload.
        """

    @abstractmethod
    def chunks(self, upload_id: str) -> list[Chunk]:
        """The chunks received, by offset."""

    @abstractmethod
    def open_chunk(self, upload_id: str, chunk: Chunk) -> io.RawIOBase | io.BufferedIOBase:
        """A stream of the chunk's bytes."""

    @abstractmethod
    def claim(self, upload_id: str, file_id: str) -> bool:
        """Mark the upload as being finalized into ``file_id``; ``False`` if another call did.

        The id is kept with the claim, so that when the finalize dies after
        storing the file, a retry finds the file (see :meth:`claimed`).
        """

    @abstractmethod
    def claimed(self, upload_id: str) -> str | None:
        """The file id of the claim held on the upload, or ``None`` if none is."""

    def take_over(self, upload_id: str, file_id: str) -> bool:
        """Take the claim of ``file_id`` held on the upload for over :attr:`claim_timeout`.

        Only one caller takes a claim over, and only a claim still of
        ``file_id``; the taker finalizes under that id, so that a finalize that
        was slow rather than dead stores the same file, never a second one.
        ``False`` when the claim is younger, gone, or another caller took it.
        Stagings whose :meth:`claim` takes old claims over itself keep this default.
        """
        return False

    @abstractmethod
    def release(self, upload_id: str) -> None:
        """Undo :meth:`claim`: a finalize that failed leaves the upload as it was."""

    @abstractmethod
    def finish(self, upload_id: str, file_id: str) -> None:
        """Record the stored file made of the upload and drop its chunks.

        Nothing happens if the upload is gone (aborted or expired meanwhile).
        """

    @abstractmethod
    def remove(self, upload_id: str) -> None:
        """Forget the upload and its chunks; nothing happens if it is gone."""

    @abstractmethod
    def touched(self, upload_id: str) -> float | None:
        """When the upload was last written (``time.time()``), or ``None`` if it is gone."""

    @abstractmethod
    def idle(self) -> Iterator[tuple[str, float]]:
        """Yield each upload's id and the time (``time.time()``) it was last written."""

    def iter_bytes(self, upload_id: str, chunks: list[Chunk]) -> Iterator[bytes]:
        """Yield the bytes of ``chunks`` in order, a block at a time."""
        for chunk in chunks:
            with self.open_chunk(upload_id, chunk) as stream:
                yield from iter_chunks(stream, Digest(), BLOCK_SIZE)


@dataclass
class _MemoryUpload:
    record: dict[str, Any]
    chunks: dict[int, tuple[Chunk, bytes]] = field(default_factory=dict)
    claimed: str | None = None
    claimed_at: float = 0.0
    touched: float = field(default_factory=time.time)


class MemoryStaging(Staging):
    """Uploads kept in the process, beside a :class:`~depot.io.memory.MemoryFileStorage`."""

    def __init__(self) -> None:
        self._uploads: dict[str, _MemoryUpload] = {}
        self._lock = threading.Lock()

    def start(self, upload_id: str, record: dict[str, Any]) -> None:
        with self._lock:
            self._uploads[upload_id] = _MemoryUpload(dict(record))

    def record(self, upload_id: str) -> dict[str, Any] | None:
        upload = self._uploads.get(upload_id)
        return None if upload is None else dict(upload.record)

    def put_chunk(
        self, upload_id: str, offset: int, source: Source, limit: int
    ) -> tuple[Chunk, Chunk | None]:
        digest = Digest()
        parts = []
        for block in iter_chunks(source, digest):
            if digest.length > limit:
                raise OverflowError(limit)
            parts.append(bytes(block))
        chunk = Chunk(offset, digest.length, digest.checksum)
        with self._lock:
            upload = self._uploads[upload_id]
            upload.touched = time.time()
            if not chunk.length:
                # An empty chunk holds nothing: kept, it would refuse the real
                # chunk at its offset later as "different" (an empty tus PATCH).
                return chunk, None
            found = upload.chunks.get(offset)
            if found is not None:
                return chunk, found[0]
            upload.chunks[offset] = chunk, b"".join(parts)
        return chunk, None

    def chunks(self, upload_id: str) -> list[Chunk]:
        upload = self._uploads.get(upload_id)
        if upload is None:
            return []
        return [upload.chunks[k][0] for k in sorted(upload.chunks)]

    def open_chunk(self, upload_id: str, chunk: Chunk) -> io.BytesIO:
        return io.BytesIO(self._uploads[upload_id].chunks[chunk.offset][1])

    def claim(self, upload_id: str, file_id: str) -> bool:
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is None or upload.claimed:
                return False
            upload.claimed, upload.claimed_at = file_id, time.time()
            return True

    def take_over(self, upload_id: str, file_id: str) -> bool:
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is None or upload.claimed != file_id:
                return False
            if time.time() - upload.claimed_at <= self.claim_timeout:
                return False
            upload.claimed_at = time.time()
            return True

    def claimed(self, upload_id: str) -> str | None:
        upload = self._uploads.get(upload_id)
        return None if upload is None else upload.claimed

    def release(self, upload_id: str) -> None:
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is not None:
                upload.claimed = None

    def finish(self, upload_id: str, file_id: str) -> None:
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is None:
                # Aborted or expired while it was finalized: the file is stored,
                # and finalize() still gives its id (a KeyError lost it).
                return
            upload.record["file_id"] = file_id
            upload.chunks.clear()
            upload.touched = time.time()

    def remove(self, upload_id: str) -> None:
        with self._lock:
            self._uploads.pop(upload_id, None)

    def touched(self, upload_id: str) -> float | None:
        upload = self._uploads.get(upload_id)
        return None if upload is None else upload.touched

    def idle(self) -> Iterator[tuple[str, float]]:
        with self._lock:
            found = [(k, u.touched) for k, u in self._uploads.items()]
        yield from found
