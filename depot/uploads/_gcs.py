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

``finalize()`` has GCS concatenate the chunk objects (``compose``, 32 at a
time, each source pinned to its generation) into ``assembled-<token>``, reads that
once (the checksum, the policy, the validators), and rewrites it, inside GCS,
as the file, as :mod:`depot.io._gcsdirect` does a direct upload: each byte is
sent to GCS once, and read back once. An upload of more chunks than a
composite object may hold (1024) is read back and written as ``create()``
does.

Not a resumable upload session, fed as chunks arrive: a session takes bytes
only at the offset it has reached, in multiples of 256 KiB, from one writer
at a time. Chunks that come in any order from any worker would need a lock
across workers (which a killed worker leaves held) and pieces kept aside
until the bytes before them arrive; composed objects need neither.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from google.api_core.exceptions import NotFound, PreconditionFailed

from depot.exceptions import UploadNotFound
from depot.io._chunks import BLOCK_SIZE, BytesReader, Digest, PartReader, iter_chunks
from depot.io._fileinfo import Source
from depot.io._gcserrors import gcs_errors
from depot.io._gcsupload import CHUNK_SIZE, upload
from depot.io._objectmeta import CHECKSUM
from depot.uploads.direct import STAGING
from depot.uploads.staging import Chunk, Staging

_LOST = (NotFound, PreconditionFailed)

if TYPE_CHECKING:
    from depot.io.gcs import GCSStorage
    from depot.validators import FileValidator

__all__ = ["GCSStaging"]

_RECORD = "record.json"
_CLAIM = "finalizing"
_CHUNK = "chunk-"
_OFFSET_DIGITS = 20
_JSON = "application/json"
_ASSEMBLED = "assembled"
#: GCS composes at most 32 objects in one request, into an object of at most
#: 1024 components (a composite of composites counts all of theirs).
_COMPOSE_SOURCES = 32
_MAX_COMPONENTS = 1024
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
        # The upload was looked up just before (write_chunk()), and is again after.
        existing = self._chunk(name, offset, action)
        counted = _Bounded(source, limit)
        if existing is not None:
            # Only its checksum is needed, to compare: the bytes go nowhere.
            for _ in iter_chunks(counted, Digest()):
                pass
            return counted.chunk(offset), existing
        # The chunk size google-cloud-storage sends a resumable upload in: one in memory.
        blob = self._bucket.blob(name, chunk_size=CHUNK_SIZE)
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

    def _open(self, name: str, generation: int | None = None) -> io.BufferedIOBase:
        blob = self._bucket.blob(name)
        pinned = {} if generation is None else {"if_generation_match": generation}
        reader = blob.open(
            "rb", chunk_size=_READ_SIZE, raw_download=True, **pinned, **self._storage._request
        )
        return _Reader(reader, self._storage._where, f"reading {name}")

    def claim(self, upload_id: str, file_id: str) -> bool:
        name = self._name(upload_id, _CLAIM)
        action = f"claiming upload {upload_id} for its finalize"
        # Looked for first: the write alone decides on GCS, but not on a server
        # that ignores the precondition.
        with self._errors(action):
            held = self._bucket.get_blob(name, **self._storage._request)
        if held is None:
            return self._create(name, _claim_of(file_id), action)
        # Held. By a finalize whose process was killed, if held for long: taken
        # over, or the upload could not be finalized until it expired. The
        # claim keeps its file id, which the new finalize stores under: with a
        # slow finalize that was not dead, the file is stored once (the copy to
        # the file's name is made only if there is none).
        found = self._read(name, action)
        if found is None:
            return False  # released just now: the caller says "try again"
        first, at = _claim_read(found)
        if time.time() - at <= self.claim_timeout:
            return False
        try:
            with self._errors(action, _LOST):
                self._bucket.blob(name).upload_from_string(
                    _claim_of(first), content_type=_JSON,
                    if_generation_match=held.generation, **self._storage._request,
                )  # fmt: skip
        except _LOST:
            return False  # another finalize took it over first, or it was released
        return True

    def claimed(self, upload_id: str) -> str | None:
        data = self._read(self._name(upload_id, _CLAIM), f"reading the claim of {upload_id}")
        return None if data is None else _claim_read(data)[0]

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


def _claim_of(file_id: str) -> bytes:
    return json.dumps({"file_id": file_id, "at": time.time()}).encode()


def _claim_read(data: bytes) -> tuple[str, float]:
    """The file id and the time of a claim."""
    try:
        found = json.loads(data)
        return str(found["file_id"]), float(found["at"])
    except (ValueError, KeyError, TypeError):
        return data.decode("ascii", "replace"), 0.0  # not depot's: as if abandoned


class _Bounded:
    """A chunk's source read through once: its length and checksum, at most ``limit`` bytes.

    Each ``read(n)`` is one read of ``n`` bytes from the source when it gives
    them (see :class:`~depot.io._chunks.PartReader`): an upload's part is in
    memory once.

    :raises OverflowError: from ``read()``, past ``limit``.
    :raises TypeError: from ``read()``, a source that gives text.
    """

    def __init__(self, source: Source, limit: int) -> None:
        self._digest = Digest()
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = BytesReader(source)  # read a part at a time, never copied whole
        self._parts = PartReader(source, self._digest)
        self._limit = limit

    def seekable(self) -> bool:
        return False  # read once, as it is counted

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(BLOCK_SIZE), b""))
        data = self._parts.read(n)
        if self._digest.length > self._limit:
            raise OverflowError(self._limit)
        return data

    def chunk(self, offset: int) -> Chunk:
        return Chunk(offset, self._digest.length, self._digest.checksum)


class _Reader(io.BufferedIOBase):
    """A google-cloud-storage ``BlobReader`` whose errors are depot's."""

    def __init__(self, reader: Any, where: str, action: str) -> None:
        self._reader = reader
        self._where = where
        self._action = action

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        with gcs_errors(self._where, self._action):
            data: bytes = self._reader.read(-1 if n is None else n)
        return data

    def close(self) -> None:
        self._reader.close()
        super().close()


def store_composed(
    storage: GCSStorage,
    upload_id: str,
    file_id: str,
    chunks: list[Chunk],
    record: dict[str, Any],
    validators: list[FileValidator],
) -> bool:
    """Store a complete upload as ``file_id`` by composing its chunks inside GCS.

    The chunk objects are concatenated by GCS (``compose``, 32 at a time), the
    result read once (its checksum, the policy's and ``validators``' checks)
    and rewritten, inside GCS, as the file (as a direct upload is: pinned to
    the generation read, and its CRC32C compared). No byte is sent to GCS again.

    :returns: ``False`` when GCS cannot compose the upload (no chunks, or more
        than a composite object holds): the caller reads the chunks back instead.
    """
    if not chunks or len(chunks) > _MAX_COMPONENTS:
        return False
    staging = GCSStaging(storage)
    action = f"assembling upload {upload_id}"
    listed = {blob.name: blob for blob in staging._list(staging._name(upload_id, _CHUNK), action)}
    sources = []
    for chunk in chunks:
        blob = listed.get(staging._name(upload_id, f"{_CHUNK}{chunk.offset:0{_OFFSET_DIGITS}d}"))
        if blob is None or int(blob.size or 0) != chunk.length:
            raise UploadNotFound(
                f"The chunks of upload {upload_id} changed while it was finalized (it was "
                "aborted or expired): reserve a new one."
            )
        sources.append(blob)
    made: list[Any] = []
    try:
        assembled = _compose(staging, upload_id, uuid.uuid4().hex, sources, made)
        _check_and_store(storage, upload_id, file_id, assembled, record, validators)
    finally:
        staging._delete([blob.name for blob in made], f"removing the assembly of {upload_id}")
    return True


def _compose(
    staging: GCSStaging, upload_id: str, token: str, sources: list[Any], made: list[Any]
) -> Any:
    """One object of ``sources`` in order, composed by GCS; every object made goes in ``made``.

    Its name holds ``token``, new for each finalize: one never reads what another made.
    """
    request = staging._storage._request
    level = 0
    while True:
        groups = [
            sources[i : i + _COMPOSE_SOURCES] for i in range(0, len(sources), _COMPOSE_SOURCES)
        ]
        composed = []
        for n, group in enumerate(groups):
            leaf = f"{_ASSEMBLED}-{token}" + ("" if len(groups) == 1 else f"-{level}-{n}")
            target = staging._bucket.blob(staging._name(upload_id, leaf))
            target.content_type = "application/octet-stream"
            made.append(target)
            with staging._errors(f"assembling upload {upload_id}"):
                # Each source pinned to the generation listed: chunks never
                # change, and a server that swapped one would refuse here.
                target.compose(
                    group, if_source_generation_match=[b.generation for b in group], **request
                )
            composed.append(target)
        if len(composed) == 1:
            return composed[0]
        sources, level = composed, level + 1


def _check_and_store(
    storage: GCSStorage,
    upload_id: str,
    file_id: str,
    assembled: Any,
    record: dict[str, Any],
    validators: list[FileValidator],
) -> None:
    from depot.exceptions import (
        ChecksumMismatch,
        ContentTypeNotAllowed,
        ContentTypeNotAllowedError,
        FileTooLargeError,
        UploadTooLarge,
    )
    from depot.io._fileinfo import FileIntent
    from depot.io._gcsdirect import CRCBytes, store_checked
    from depot.io._writing import NewVersion
    from depot.validators import validate

    staging = GCSStaging(storage)
    filename, ctype = record.get("filename"), record.get("content_type")
    algorithm, expected = (record["checksum"] or ":").split(":")
    found = hashlib.new(algorithm) if algorithm else None
    arrived = CRCBytes()
    version = assembled.generation, assembled.metageneration
    with staging._open(assembled.name, version[0]) as reader:
        try:
            # The checks create() makes (the policy) and the field's validators,
            # on the bytes as they are read, as the default path does.
            content = validate(reader, validators, filename, ctype) if validators else reader
            new = NewVersion(FileIntent(content, filename, ctype), None, None, storage.policy)
            source = new.keep_from(None).source
            for block in iter_chunks(source, Digest()):
                arrived.write(block)
                if found is not None:
                    found.update(block)
        except FileTooLargeError as exc:
            raise UploadTooLarge(str(exc), exc.max_size) from exc
        except ContentTypeNotAllowedError as exc:
            if isinstance(exc, ContentTypeNotAllowed):
                raise
            raise ContentTypeNotAllowed(str(exc)) from exc
    if found is not None and found.hexdigest() != expected:
        raise ChecksumMismatch(
            f"The upload's bytes have the {algorithm} {found.hexdigest()}, not the "
            f"{expected} it was reserved with: a chunk was sent wrong. Abort it and "
            "upload again."
        )
    changed = UploadNotFound(
        f"Upload {upload_id} changed while it was finalized: finalize it again."
    )
    try:
        copied = store_checked(
            storage, assembled, version, file_id, new.filename, new.content_type,
            arrived.checksum,
        )  # fmt: skip
    except (NotFound, PreconditionFailed):
        if storage._stat(file_id) is not None:
            # Stored by the finalize whose claim this one took over, from the
            # same chunks: the file is there, under the id the claim holds.
            return
        raise changed from None
    if int(copied.size or 0) != arrived.size or copied.crc32c != arrived.crc32c:
        storage._delete(file_id)
        raise changed
