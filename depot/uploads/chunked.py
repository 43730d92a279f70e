"""Chunked uploads: reserve a file, send its chunks in any order and again, then finalize.

Every depot has this API (:class:`ChunkedUploadsMixin` is part of
:class:`~depot.io.interfaces.FileStorage`)::

    upload_id = depot.reserve(size, "sha256:<hex>", "video/mp4", "talk.mp4")
    depot.write_chunk(upload_id, 0, first_part)       # from any worker, in any order
    depot.write_chunk(upload_id, 8_388_608, second_part)
    depot.status(upload_id).missing                   # [] once everything is in
    file_id = depot.finalize(upload_id)               # checked, then stored

The reservation and its chunks live in the backend's
:class:`~depot.uploads.staging.Staging`, where every process serving the depot
sees them. A chunk repeated with the same bytes is accepted (a client that
lost the answer sends it again); one that differs from bytes already received
is refused. ``finalize()`` checks the size and the checksum, and the depot's
policy and the given validators, before the stored file exists; a repeated
``finalize()`` returns the same file id.

.. versionadded:: 1.0
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from depot.exceptions import (
    ChecksumMismatch,
    ContentTypeNotAllowed,
    ContentTypeNotAllowedError,
    FileTooLargeError,
    InvalidChunk,
    SizeMismatch,
    UploadNotFound,
    UploadTooLarge,
)
from depot.io._fileinfo import FileIntent, Source
from depot.io._ids import check_file_id, new_file_id
from depot.io._writing import NewVersion
from depot.uploads.staging import Chunk, Staging

if TYPE_CHECKING:
    from depot.validators import FileValidator

__all__ = ["ChunkedUploadsMixin", "UploadStatus", "DEFAULT_UPLOAD_EXPIRY"]

#: Seconds an upload may stay idle (no chunk written) before :meth:`expire_uploads` removes it.
DEFAULT_UPLOAD_EXPIRY = 24 * 3600

_CHECKSUM = re.compile(r"(sha256:[0-9a-f]{64}|md5:[0-9a-f]{32})")
_HASHES = {"sha256": hashlib.sha256, "md5": hashlib.md5}


@dataclass(frozen=True)
class UploadStatus:
    """Where a chunked upload stands.

    :param upload_id: its id.
    :param size: the size it reserved.
    :param offset: how many bytes from the start are in, without a gap: where
        a client sending in order goes on.
    :param received: the bytes received in all.
    :param missing: the ``(start, end)`` ranges not received yet, ends excluded.
    :param file_id: the stored file, once finalized; else ``None``.
    :param expires_at: when it is removed if nothing more is written (a Unix time).
    """

    upload_id: str
    size: int
    offset: int
    received: int
    missing: list[tuple[int, int]]
    file_id: str | None
    expires_at: float
    filename: str | None
    content_type: str | None
    metadata: dict[str, str]

    @property
    def complete(self) -> bool:
        """Whether every byte is in."""
        return not self.missing


class ChunkedUploadsMixin:
    """The chunked upload API of every :class:`~depot.io.interfaces.FileStorage`."""

    #: The keys that sign direct-upload tokens: the depot's ``signing_keys``.
    signing_keys: tuple[bytes, ...] = ()

    #: How long an upload may stay idle before :meth:`expire_uploads` removes it
    #: (seconds; the ``depot.upload_expiry`` setting).
    upload_expiry: float = DEFAULT_UPLOAD_EXPIRY

    def _staging(self) -> Staging:
        """The backend's staging; backends that support chunked uploads override this."""
        raise NotImplementedError(
            f"{type(self).__name__} does not support chunked uploads: use create() "
            "with a stream, or a depot on a backend that has them (memory, local, GridFS, "
            "S3, GCS, SQL)."
        )

    def presign_upload(self, *args: Any, **kwargs: Any) -> Any:
        """A presigned upload straight to the bucket (S3); other depots take tus or chunks."""
        raise NotImplementedError(
            f"{type(self).__name__} has no bucket for clients to send files to: take the "
            "upload with depot.uploads.tus (a TusWSGIApp or TusASGIApp) or the chunked "
            "upload API (reserve, write_chunk, finalize)."
        )

    def complete_upload(self, token: str) -> str:
        """Finish a presigned upload (S3); see :meth:`presign_upload`."""
        raise NotImplementedError(f"{type(self).__name__} takes no direct uploads.")

    def reserve(
        self,
        size: int,
        checksum: str | None,
        content_type: str | None = None,
        filename: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Reserve an upload of ``size`` bytes whose checksum is ``checksum``; return its id.

        :param checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"`` of the whole file;
            ``None`` when the client cannot know it (a tus upload, whose chunks
            carry checksums of their own): then only the size is checked.
        :param metadata: strings the application wants back with :meth:`status`.
        :raises UploadTooLarge: ``size`` is more than the depot's ``max_size``.
        :raises ContentTypeNotAllowed: the type, or the name's, is not allowed.
        :raises ValueError: a size or checksum that cannot be one.
        """
        from depot.io.interfaces import MAX_CONTENT_LENGTH, is_size

        if not is_size(size):
            raise ValueError(f"An upload's size is a number of bytes, 0 to {MAX_CONTENT_LENGTH}.")
        checksum = checksum.lower() if isinstance(checksum, str) else checksum
        if checksum is not None and (
            not isinstance(checksum, str) or not _CHECKSUM.fullmatch(checksum)
        ):
            raise ValueError(
                f"Cannot check an upload against {checksum!r}: give 'sha256:' and 64 hex "
                "digits, or 'md5:' and 32, of the whole file."
            )
        meta = dict(metadata or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise ValueError("An upload's metadata maps strings to strings.")
        self._check_reservation(size, filename, content_type)
        upload_id = new_file_id()
        record = {
            "size": size,
            "checksum": checksum,
            "content_type": content_type,
            "filename": filename,
            "metadata": meta,
            "created": time.time(),
        }
        self._staging().start(upload_id, record)
        return upload_id

    def write_chunk(self, upload_id: str, offset: int, data: Source) -> UploadStatus:
        """Store ``data`` (bytes or a stream) at ``offset`` of the upload; return its status.

        The same bytes at the same place again are accepted, so a client that
        lost an answer may send a chunk twice.

        :raises UploadNotFound: no such upload (or it was finalized or aborted).
        :raises InvalidChunk: past the reserved size, overlapping bytes already
            received, or different from the chunk already at ``offset``.
        """
        from depot.io.interfaces import is_size

        staging, record = self._reserved(upload_id)
        if record.get("file_id") is not None:
            raise UploadNotFound(
                f"Upload {upload_id} is finished; its file is {record['file_id']}."
            )
        size = record["size"]
        if not is_size(offset) or offset > size:
            raise InvalidChunk(
                f"A chunk of this upload starts between 0 and {size}, not at {offset!r}."
            )
        received = staging.chunks(upload_id)
        try:
            chunk, existing = staging.put_chunk(upload_id, offset, data, size - offset)
        except OverflowError:
            raise InvalidChunk(
                f"The chunk at {offset} goes past the upload's size ({size} bytes)."
            ) from None
        except KeyError:
            raise self._no_upload(upload_id) from None
        now = staging.record(upload_id)
        if now is None:
            raise self._no_upload(upload_id)
        if now.get("file_id") is not None:
            # Finalized while these bytes arrived (another writer sent the last
            # chunk): they are in no file, and the client must not be told so.
            raise UploadNotFound(
                f"Upload {upload_id} was finished while this chunk arrived; its file is "
                f"{now['file_id']}, without these bytes."
            )
        if existing is not None:
            if existing != chunk:
                raise InvalidChunk(
                    f"The {chunk.length} bytes sent at {offset} differ from the chunk "
                    f"received there before ({existing.length} bytes): send the same bytes, "
                    "or abort the upload and start again."
                )
            return self.status(upload_id)
        overlapping = [c for c in received if c.offset < chunk.end and chunk.offset < c.end]
        if overlapping:
            # Refused once stored (the bytes had to be read to know their length):
            # finalize() will refuse the upload unless the client aborts it.
            raise InvalidChunk(
                f"The chunk {offset}-{chunk.end - 1} overlaps bytes received before "
                f"({overlapping[0].offset}-{overlapping[0].end - 1}): send each byte in one "
                "chunk. Abort the upload and start again."
            )
        return self.status(upload_id)

    def status(self, upload_id: str) -> UploadStatus:
        """Where the upload stands: the offset to go on from, the ranges still missing.

        :raises UploadNotFound: no such upload.
        """
        staging, record = self._reserved(upload_id)
        return self._upload_status(upload_id, staging, record, staging.chunks(upload_id))

    def _upload_status(
        self, upload_id: str, staging: Staging, record: dict[str, Any], chunks: list[Chunk]
    ) -> UploadStatus:
        size = record["size"]
        missing, position, received = [], 0, 0
        for chunk in chunks:
            if chunk.offset > position:
                missing.append((position, chunk.offset))
            position = max(position, chunk.end)
            received += chunk.length
        if position < size:
            missing.append((position, size))
        if record.get("file_id"):
            missing, received = [], size
        touched = staging.touched(upload_id) or time.time()
        return UploadStatus(
            upload_id=upload_id,
            size=size,
            offset=missing[0][0] if missing else size,
            received=received,
            missing=missing,
            file_id=record.get("file_id"),
            expires_at=touched + self.upload_expiry,
            filename=record.get("filename"),
            content_type=record.get("content_type"),
            metadata=dict(record.get("metadata") or {}),
        )

    def finalize(self, upload_id: str, validators: Iterable[FileValidator] = ()) -> str:
        """Check the upload and store it as a file; return the file's id.

        The size and checksum are checked first, then the depot's policy and
        ``validators`` (a model field's): nothing is stored unless all pass.
        Finalizing a finished upload again returns the same id.

        :raises UploadNotFound: no such upload, or another finalize of it runs.
        :raises SizeMismatch: bytes are missing.
        :raises ChecksumMismatch: the bytes do not have the reserved checksum.
        :raises UploadTooLarge: over the depot's or a validator's size limit.
        :raises ContentTypeNotAllowed: a type the depot or a validator refuses.
        """
        return self._finalize(upload_id, validators)[0]

    def _finalize(self, upload_id: str, validators: Iterable[FileValidator]) -> tuple[str, bool]:
        """:meth:`finalize`, and whether this call recorded the file (``False``: an
        earlier call had), so that tus tells ``on_complete`` once, not on a retry."""
        staging, record = self._reserved(upload_id)
        if record.get("file_id"):
            return str(record["file_id"]), False
        planned: str = self._new_file_id()  # type: ignore[attr-defined]
        if not staging.claim(upload_id, planned):
            # A finalize killed after storing the file and before finish(): its
            # claim stays, and the file is in no record. Its id went with the
            # claim, and a file is stored whole or not at all: finish with it.
            earlier = staging.claimed(upload_id)
            if earlier is not None and self.exists(earlier):  # type: ignore[attr-defined]
                staging.finish(upload_id, earlier)
                return earlier, True
            if earlier is None or not staging.take_over(upload_id, earlier):
                raise UploadNotFound(
                    f"Upload {upload_id} is being finalized by another request; ask its "
                    "status in a moment."
                )
            # Its finalize died before storing the file (or, past the timeout,
            # is very slow): this one goes on under the same id, so the two can
            # never make two files of one upload.
            planned = earlier
        try:
            now = staging.record(upload_id)
            if now is not None and now.get("file_id"):
                # Another finalize stored the file and let its claim go between
                # the record read above and this claim: its file is the answer.
                return str(now["file_id"]), False
            chunks = staging.chunks(upload_id)
            for before, after in zip(chunks, chunks[1:], strict=False):
                if after.offset < before.end:
                    raise InvalidChunk(
                        f"Chunks {before.offset}-{before.end - 1} and {after.offset}-"
                        f"{after.end - 1} overlap: abort the upload and start again."
                    )
            status = self._upload_status(upload_id, staging, record, chunks)
            if status.missing:
                start, end = status.missing[0]
                raise SizeMismatch(
                    f"The upload is not complete: {record['size'] - status.received} of its "
                    f"{record['size']} bytes are missing, first {start}-{end - 1}."
                )
            file_id = self._store_reserved(
                upload_id, planned, staging, chunks, record, list(validators)
            )
            staging.finish(upload_id, file_id)
            return file_id, True
        finally:
            staging.release(upload_id)

    def _check_checksum(
        self, upload_id: str, staging: Staging, chunks: list[Chunk], checksum: str
    ) -> None:
        algorithm, expected = checksum.split(":")
        found = _HASHES[algorithm]()
        for block in staging.iter_bytes(upload_id, chunks):
            found.update(block)
        if found.hexdigest() != expected:
            raise ChecksumMismatch(
                f"The upload's bytes have the {algorithm} {found.hexdigest()}, not the "
                f"{expected} it was reserved with: a chunk was sent wrong. Abort it and "
                "upload again."
            )

    def abort(self, upload_id: str) -> None:
        """Forget the upload and the bytes it received; nothing happens if it is gone."""
        self._staging().remove(_checked_upload_id(upload_id))

    def expire_uploads(self, idle: float | None = None) -> list[str]:
        """Remove the uploads idle for more than ``idle`` seconds (:attr:`upload_expiry`).

        Finished uploads are removed too once idle, which ends the time a
        repeated ``finalize()`` returns their file id. Run it now and then
        (from a periodic job, or at start-up); returns the ids removed.
        """
        limit = self.upload_expiry if idle is None else idle
        staging = self._staging()
        now = time.time()
        listed = [upload_id for upload_id, touched in staging.idle() if now - touched > limit]
        expired = []
        for upload_id in listed:
            # Asked again just before removing: a chunk written since the listing
            # was acknowledged to its client, and must not vanish with the upload.
            touched = staging.touched(upload_id)
            if touched is not None and time.time() - touched > limit:
                staging.remove(upload_id)
                expired.append(upload_id)
        return expired

    def _reserved(self, upload_id: str) -> tuple[Staging, dict[str, Any]]:
        staging = self._staging()
        checked = _checked_upload_id(upload_id)
        record = staging.record(checked)
        if record is None:
            raise self._no_upload(upload_id)
        touched = staging.touched(checked)
        if touched is not None and time.time() - touched > self.upload_expiry:
            # Expired but not removed yet (expire_uploads() has not run): gone all the same.
            staging.remove(checked)
            raise self._no_upload(upload_id)
        return staging, record

    def _no_upload(self, upload_id: str) -> UploadNotFound:
        return UploadNotFound(
            f"No upload {upload_id} in this depot: it was never reserved, or was aborted or "
            "expired. Reserve a new one."
        )

    def _check_reservation(self, size: int, filename: str | None, content_type: str | None) -> None:
        """Refuse at once what the policy will refuse at the end, from what is declared.

        The bytes are not there yet: their sniffed type is checked by finalize().
        """
        from depot.validators import ContentTypes, Extensions, Upload

        policy: tuple[FileValidator, ...] = getattr(self, "policy", ())
        implied = mimetypes.guess_type(filename, strict=False)[0] if filename else None
        for check in policy:
            if check.max_size is not None and size > check.max_size:
                raise UploadTooLarge(str(_too_large(check.max_size)), check.max_size)
            if isinstance(check, ContentTypes):
                for declared in (content_type, implied):
                    if declared and not check.allows(declared):
                        raise ContentTypeNotAllowed(
                            f"Files of type {declared} are not accepted here (allowed: "
                            f"{', '.join(check.patterns)})."
                        )
            elif isinstance(check, Extensions):
                check.check(Upload(filename, content_type, (), b"", size))

    def _store_reserved(
        self,
        upload_id: str,
        file_id: str,
        staging: Staging,
        chunks: list[Chunk],
        record: dict[str, Any],
        validators: list[FileValidator],
    ) -> str:
        """Check the complete upload's bytes and store them as ``file_id``; return the id.

        The hook of a backend that assembles uploads itself (the parts of an S3
        multipart upload): this default reads the chunks from the staging twice,
        once for the reserved checksum, then into the new file, whose policy
        and ``validators`` check the bytes as they stream.
        """
        from depot.validators import validate

        if record["checksum"] is not None:
            self._check_checksum(upload_id, staging, chunks, record["checksum"])
        content: Any = _ChunkStream(staging.iter_bytes(upload_id, chunks))
        # The name and type are made safe by create(), as for any content.
        filename, ctype = record.get("filename"), record.get("content_type")
        try:
            if validators:
                content = validate(content, validators, filename, ctype)
            # As create() does, under the id the claim holds (see finalize()).
            new = NewVersion(FileIntent(content, filename, ctype), None, None, self.policy)  # type: ignore[attr-defined]
            self._write(file_id, new.keep_from(None))  # type: ignore[attr-defined]
            return file_id
        except FileTooLargeError as exc:
            raise UploadTooLarge(str(exc), exc.max_size) from exc
        except ContentTypeNotAllowedError as exc:
            if isinstance(exc, ContentTypeNotAllowed):
                raise
            raise ContentTypeNotAllowed(str(exc)) from exc


def _checked_upload_id(upload_id: object) -> str:
    try:
        return check_file_id(upload_id, "upload")
    except ValueError:
        raise UploadNotFound(
            f"{upload_id!r:.80} is not an upload id: pass the id reserve() returned."
        ) from None


def _too_large(limit: int) -> FileTooLargeError:
    from depot.validators import too_large

    return too_large(limit)


class _ChunkStream:
    """The upload's bytes as a stream that cannot seek, read block by block."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._left = b""

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return self._left + b"".join(self._blocks)
        while not self._left:
            block = next(self._blocks, None)
            if block is None:
                return b""
            self._left = bytes(block)
        piece, self._left = self._left[:n], self._left[n:]
        return piece
