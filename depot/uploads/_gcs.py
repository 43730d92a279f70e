"""Chunked uploads of a GCS depot: small objects beside the depot's files.

Layout, under ``<prefix>.depot-uploads/<upload id>/`` (``list()`` of the depot
skips it; direct uploads wait at ``<prefix>.depot-uploads/<file id>``, no
deeper)::

    record.json               the reservation (and the file id once finished)
    chunk-<offset, 20 digits> a chunk's bytes; its checksum in its metadata
    finalizing                present while a finalize runs: the id it stores

GCS shows an object only once it is uploaded whole, so readers never see
part of a chunk. Each object is created only if none is there (GCS's
``ifGenerationMatch=0``): of two writers of one offset, or two finalizes,
exactly one wins, in any process. An upload's last activity is the latest
``updated`` time of its objects.

The chunks are read back at ``finalize()``, once for the reserved checksum
and once into the new file (the default ``_store_reserved``): gcp-storage-
emulator, which depot's tests run on, takes resumable sessions in several
chunks, but enforces no precondition, and a session fed by several workers
needs them to keep its bytes in order.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from google.api_core.exceptions import NotFound, PreconditionFailed

from depot.io._chunks import BLOCK_SIZE, Digest, iter_chunks
from depot.io._fileinfo import Source
from depot.io._gcserrors import gcs_errors
from depot.io._gcsupload import upload
from depot.io._objectmeta import CHECKSUM
from depot.uploads.direct import STAGING
from depot.uploads.staging import Chunk, Staging

if TYPE_CHECKING:
    from depot.io.gcs import GCSStorage

__all__ = ["GCSStaging"]

_RECORD = "record.json"
_CLAIM = "finalizing"
_CHUNK = "chunk-"
_OFFSET_DIGITS = 20
_JSON = "application/json"
#: Bytes fetched per request when a chunk is read back.
_READ_SIZE = 1024 * 1024


class GCSStaging(Staging):
    """The uploads of a :class:`~depot.io.gcs.GCSStorage`, as objects of its bucket."""

    def __init__(self, storage: GCSStorage) -> None:
        self._storage = storage
        self._bucket = storage.bucket
        self._root = f"{storage._prefix}{STAGING}"

    def _name(self, upload_id: str, leaf: str = "") -> str:
        # Ids are checked by the caller (uuid4 text): no separator reaches here.
        return f"{self._root}{upload_id}/{leaf}"

    def _errors(self, action: str, passthrough: tuple[type[BaseException], ...] = ()) -> Any:
        return gcs_errors(self._storage._where, action, passthrough)

    def _create(self, name: str, data: bytes, action: str) -> bool:
        """Store ``data`` as ``name`` unless an object is there; ``False`` if one was."""
        blob = self._bucket.blob(name)
        try:
            with self._errors(action, (PreconditionFailed,)):
                blob.upload_from_string(
                    data, content_type=_JSON, if_generation_match=0, **self._storage._request
                )
        except PreconditionFailed:
            return False
        return True

    def _read(self, name: str, action: str) -> bytes | None:
        try:
            with self._errors(action, (NotFound,)):
                data: bytes = self._bucket.blob(name).download_as_bytes(**self._storage._request)
        except NotFound:
            return None
        return data

    def _list(self, prefix: str, action: str) -> list[Any]:
        with self._errors(action):
            return list(
                self._storage.client.list_blobs(
                    self._bucket, prefix=prefix, **self._storage._request
                )
            )

    def _delete(self, names: list[str], action: str) -> None:
        for name in names:
            try:
                with self._errors(action, (NotFound,)):
                    self._bucket.blob(name).delete(**self._storage._request)
            except NotFound:
                pass

    # --- the staging -----------------------------------------------------------------

    def start(self, upload_id: str, record: dict[str, Any]) -> None:
        name = self._name(upload_id, _RECORD)
        if not self._create(name, json.dumps(record).encode(), f"reserving upload {upload_id}"):
            raise FileExistsError(name)  # a new uuid4 taken: never in practice

    def record(self, upload_id: str) -> dict[str, Any] | None:
        data = self._read(self._name(upload_id, _RECORD), f"reading upload {upload_id}")
        if data is None:
            return None
        found: dict[str, Any] = json.loads(data)
        return found

    def put_chunk(
        self, upload_id: str, offset: int, source: Source, limit: int
    ) -> tuple[Chunk, Chunk | None]:
        name = self._name(upload_id, f"{_CHUNK}{offset:0{_OFFSET_DIGITS}d}")
        action = f"storing a chunk of upload {upload_id}"
        if self.record(upload_id) is None:
            raise KeyError(upload_id)
        existing = self._chunk(name, offset, action)
        counted = _Bounded(source, limit)
        if existing is not None:
            # Only its checksum is needed, to compare: the bytes go nowhere.
            for _ in iter_chunks(counted, Digest()):
                pass
            return counted.chunk(offset), existing
        blob = self._bucket.blob(name)
        blob.content_type = "application/octet-stream"
        try:
            upload(blob, counted, {}, self._storage._request, self._storage._where, name,
                   if_generation_match=0)  # fmt: skip
        except PreconditionFailed:
            # Another writer of this offset won meanwhile: its chunk is the one kept.
            return counted.chunk(offset), self._chunk(name, offset, action)
        chunk = counted.chunk(offset)
        if not chunk.length:
            # An empty chunk holds nothing: kept, it would refuse the real chunk
            # at its offset later as "different" (an empty tus PATCH).
            self._delete([name], action)
            return chunk, None
        if self.record(upload_id) is None:
            # Aborted or expired while the chunk arrived: no upload, and no
            # object left behind for nobody.
            self._delete([name], action)
            raise KeyError(upload_id)
        return chunk, None

    def _chunk(self, name: str, offset: int, action: str) -> Chunk | None:
        with self._errors(action):
            blob = self._bucket.get_blob(name, **self._storage._request)
        return None if blob is None else self._chunk_of(blob, offset)

    def _chunk_of(self, blob: Any, offset: int) -> Chunk:
        checksum = (blob.metadata or {}).get(CHECKSUM)
        if checksum is None:
            # Uploaded, and its checksum not added yet (a large stream's comes
            # by a metadata update after it): read it again.
            digest = Digest()
            with self._open(blob.name) as stream:
                for _ in iter_chunks(stream, digest):
                    pass
            checksum = digest.checksum
        return Chunk(offset, int(blob.size or 0), checksum)

    def chunks(self, upload_id: str) -> list[Chunk]:
        prefix = self._name(upload_id, _CHUNK)
        found = []
        for blob in self._list(prefix, f"listing the chunks of upload {upload_id}"):
            digits = blob.name[len(prefix) :]
            if digits.isdigit() and len(digits) == _OFFSET_DIGITS:
                found.append(self._chunk_of(blob, int(digits)))
        return sorted(found, key=lambda c: c.offset)

    def open_chunk(self, upload_id: str, chunk: Chunk) -> io.BufferedIOBase:
        return self._open(self._name(upload_id, f"{_CHUNK}{chunk.offset:0{_OFFSET_DIGITS}d}"))

    def _open(self, name: str) -> io.BufferedIOBase:
        reader: io.BufferedIOBase = self._bucket.blob(name).open(
            "rb", chunk_size=_READ_SIZE, raw_download=True, **self._storage._request
        )
        return reader

    def claim(self, upload_id: str, file_id: str) -> bool:
        name = self._name(upload_id, _CLAIM)
        action = f"claiming upload {upload_id} for its finalize"
        # Looked for first: the write alone decides on GCS, but not on a server
        # that ignores the precondition.
        if self._read(name, action) is not None:
            return False
        return self._create(name, file_id.encode(), action)

    def claimed(self, upload_id: str) -> str | None:
        data = self._read(self._name(upload_id, _CLAIM), f"reading the claim of {upload_id}")
        return None if data is None else data.decode("ascii", "replace")

    def release(self, upload_id: str) -> None:
        self._delete([self._name(upload_id, _CLAIM)], f"releasing upload {upload_id}")

    def finish(self, upload_id: str, file_id: str) -> None:
        record = self.record(upload_id)
        if record is None:
            # Aborted or expired while it was finalized: the file is stored, and
            # finalize() still gives its id.
            return
        record["file_id"] = file_id
        action = f"finishing upload {upload_id}"
        with self._errors(action):
            self._bucket.blob(self._name(upload_id, _RECORD)).upload_from_string(
                json.dumps(record).encode(), content_type=_JSON, **self._storage._request
            )
        chunks = self._list(self._name(upload_id, _CHUNK), action)
        self._delete([blob.name for blob in chunks], action)

    def remove(self, upload_id: str) -> None:
        found = self._list(self._name(upload_id), f"removing upload {upload_id}")
        # The record last: while it is there, the upload is seen, and removed again.
        found.sort(key=lambda blob: blob.name.endswith(_RECORD))
        self._delete([blob.name for blob in found], f"removing upload {upload_id}")

    def touched(self, upload_id: str) -> float | None:
        found = self._list(self._name(upload_id), f"reading upload {upload_id}")
        times = [blob.updated.timestamp() for blob in found if blob.updated is not None]
        return max(times) if times else None

    def idle(self) -> Iterator[tuple[str, float]]:
        latest: dict[str, float] = {}
        for blob in self._list(self._root, "listing uploads"):
            upload_id, slash, _ = blob.name[len(self._root) :].partition("/")
            if slash and blob.updated is not None:  # not a direct upload's object
                when = blob.updated.timestamp()
                latest[upload_id] = max(when, latest.get(upload_id, when))
        yield from latest.items()


class _Bounded:
    """A chunk's source read through once: its length and checksum, at most ``limit`` bytes.

    :raises OverflowError: from ``read()``, past ``limit``.
    """

    def __init__(self, source: Source, limit: int) -> None:
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = io.BytesIO(source)
        self._source = source
        self._limit = limit
        self._digest = Digest()

    def seekable(self) -> bool:
        return False  # read once, as it is counted

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(BLOCK_SIZE), b""))
        data = self._source.read(n)
        if not data:
            return b""
        self._digest.update(data)
        if self._digest.length > self._limit:
            raise OverflowError(self._limit)
        return bytes(data)

    def chunk(self, offset: int) -> Chunk:
        return Chunk(offset, self._digest.length, self._digest.checksum)
