"""Chunked uploads of an S3 depot: pieces in the bucket, then parts of one multipart upload.

Layout, under ``<prefix>.depot-uploads/<upload id>/`` (``list()`` of the depot skips it)::

    touched                  when a chunk was last written (its metadata), made first
    record                   the reservation (JSON), the multipart upload's id, its part size
    chunk/<offset>           a chunk's commit: created only if absent (If-None-Match), so
                             of two writers of one offset exactly one wins, on any host
    sum/<offset>-<length>-<token>-<checksum>
                             the chunk as chunks() lists it: one listing, no read per chunk
    piece/<start>-<token>    the chunk's bytes inside one part of the grid
    claim, target            the finalize that holds the upload; the file id it becomes

and ``<prefix>.depot-uploads/<upload id>``, the completed multipart upload, checked
there, then copied to the file's key.

The file is cut in a fixed grid of parts (8 MiB, or more when the file needs more
than S3's 10,000 parts). A writer stores its chunk as pieces, one per part it
touches, under a token of its own, and commits it last. Only then are parts made,
from committed pieces alone: a part covered by one piece is copied into the
multipart upload by S3 itself (UploadPartCopy); a part covered by several chunks
is put together (in a temporary file) once they are all committed, by the
writer that completes it. A writer that loses an offset, or dies, never wrote a
part, so nothing it sent can end in the file; two writers making the same part
send the same bytes. Whatever a dead writer left unmade, ``finalize()`` makes
before it completes the multipart upload.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from depot.exceptions import BackendUnavailableError, DepotError
from depot.io._chunks import Digest, iter_chunks
from depot.io._fileinfo import Source
from depot.io._s3errors import client_error_code, s3_errors
from depot.uploads.staging import Chunk, Staging

__all__ = ["S3Staging", "part_size"]

#: The part size of uploads up to 78 GiB; larger ones take parts as large as
#: S3's 10,000 parts require. S3 needs every part but the last to be >= 5 MiB.
PART_SIZE = 8 * 1024 * 1024
_MAX_PARTS = 10_000
#: A piece or part larger than this is held on disk until it is sent: a part in
#: memory raised a writer's peak RSS by 6 to 8 MiB (70 MiB storing 256 MiB,
#: against 64 MiB spooled; a 2 MiB upload peaks at 64 MiB either way).
_IN_MEMORY = 1 << 20
_DIGITS = 20
_GONE = ("NoSuchKey", "404")
_TAKEN = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


def part_size(size: int) -> int:
    """The grid of an upload of ``size`` bytes: 8 MiB, or whole MiB enough for 10,000 parts."""
    mib = 1024 * 1024
    return max(PART_SIZE, -(-size // (_MAX_PARTS * mib)) * mib)


@dataclass(frozen=True)
class _Listed:
    """A committed chunk as its ``sum/`` key tells it."""

    offset: int
    length: int
    token: str
    checksum: str

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def key_name(self) -> str:
        return f"{self.offset:0{_DIGITS}d}-{self.length:0{_DIGITS}d}-{self.token}-{self.checksum}"

    @classmethod
    def parse(cls, name: str) -> _Listed | None:
        try:
            offset, length, token, checksum = name.split("-", 3)
            return cls(int(offset), int(length), token, checksum)
        except ValueError:
            return None  # not one of ours


class S3Staging(Staging):
    """The uploads of an S3 depot, in ``bucket`` under ``base`` (``<prefix>.depot-uploads/``).

    :param client: the depot's boto3 client.
    :param where: the bucket and endpoint, for error messages.
    """

    def __init__(self, client: Any, bucket: str, base: str, where: str) -> None:
        self._client = client
        self._bucket = bucket
        self._base = base
        self._where = where

    # --- keys ---------------------------------------------------------------------

    def _key(self, upload_id: str, name: str) -> str:
        # Ids are checked by the caller (uuid4 text): no separator reaches here.
        return f"{self._base}{upload_id}/{name}"

    def staged_key(self, upload_id: str) -> str:
        """Where the completed multipart upload is, until it is checked and copied."""
        return f"{self._base}{upload_id}"

    # --- small objects ------------------------------------------------------------

    def _get(self, key: str, action: str) -> bytes | None:
        try:
            with s3_errors(self._where, action, passthrough=_GONE):
                body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"]
                try:
                    data: bytes = body.read()
                finally:
                    body.close()
        except DepotError:
            raise
        except ClientError:
            return None
        return data

    def _put(self, key: str, data: bytes, action: str, **args: Any) -> None:
        with s3_errors(self._where, action):
            self._client.put_object(Bucket=self._bucket, Key=key, Body=data, **args)

    def _create(self, key: str, data: bytes, action: str) -> bool:
        """Put ``key`` only if it does not exist; ``False`` if it did."""
        try:
            with s3_errors(self._where, action, passthrough=_TAKEN):
                self._client.put_object(Bucket=self._bucket, Key=key, Body=data, IfNoneMatch="*")
        except DepotError:
            raise
        except ClientError:
            return False
        return True

    def _delete(self, keys: list[str], action: str) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1,000 keys at most
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            with s3_errors(self._where, action):
                self._client.delete_objects(
                    Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True}
                )

    def _keys(self, prefix: str, action: str) -> Iterator[tuple[str, Any]]:
        paginator = self._client.get_paginator("list_objects_v2")
        with s3_errors(self._where, action):
            for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    yield item["Key"], item

    def _touch(self, upload_id: str) -> None:
        self._put(
            self._key(upload_id, "touched"),
            b"",
            f"recording activity on upload {upload_id}",
            Metadata={"t": repr(time.time())},
        )

    # --- the Staging contract -----------------------------------------------------

    def start(self, upload_id: str, record: dict[str, Any]) -> None:
        # touched first: an upload whose start() died has it, and expires.
        self._touch(upload_id)
        record = dict(record, part_size=part_size(record["size"]))
        if record["size"]:
            with s3_errors(self._where, f"starting upload {upload_id}"):
                started = self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self.staged_key(upload_id)
                )
            record["multipart"] = started["UploadId"]
        self._put(
            self._key(upload_id, "record"),
            json.dumps(record).encode(),
            f"starting upload {upload_id}",
        )

    def record(self, upload_id: str) -> dict[str, Any] | None:
        data = self._get(self._key(upload_id, "record"), f"reading upload {upload_id}")
        if data is None:
            return None
        found: dict[str, Any] = json.loads(data)
        return found

    def put_chunk(
        self, upload_id: str, offset: int, source: Source, limit: int
    ) -> tuple[Chunk, Chunk | None]:
        record = self.record(upload_id)
        if record is None:
            raise KeyError(upload_id)
        action = f"storing a chunk of upload {upload_id}"
        commit = self._key(upload_id, f"chunk/{offset:0{_DIGITS}d}")
        earlier = self._get(commit, action)
        if earlier is not None:
            # Taken: only the length and checksum of these bytes are wanted.
            digest = Digest()
            for _ in iter_chunks(source, digest):
                if digest.length > limit:
                    raise OverflowError(limit)
            return Chunk(offset, digest.length, digest.checksum), self._taken(upload_id, earlier)
        token = uuid.uuid4().hex
        pieces: list[str] = []
        try:
            chunk = self._store_pieces(upload_id, record, offset, source, limit, token, pieces)
            if not chunk.length:
                # Nothing to keep: a commit would refuse the real chunk at this
                # offset later as "different" (an empty tus PATCH).
                return chunk, None
            listed = _Listed(offset, chunk.length, token, chunk.checksum)
            if not self._create(commit, json.dumps(listed.__dict__).encode(), action):
                # Another writer of this offset committed first: these bytes go.
                earlier = self._get(commit, action)
                self._delete(pieces, action)
                if earlier is None:  # and was removed with the upload since
                    raise KeyError(upload_id)
                return chunk, self._taken(upload_id, earlier)
        except BaseException:
            with contextlib.suppress(Exception):
                self._delete(pieces, action)
            raise
        self._put(self._key(upload_id, f"sum/{listed.key_name}"), b"", action)
        if self.record(upload_id) is None:
            # Removed (aborted, expired) while the chunk arrived: remove() has run,
            # so what this writer stored would stay for ever.
            self._delete([commit, self._key(upload_id, f"sum/{listed.key_name}"), *pieces], action)
            raise KeyError(upload_id)
        self._touch(upload_id)
        # The chunk is stored (its pieces are committed): parts that cannot be
        # made now (S3 failing, the upload finalized meanwhile) are made by
        # finalize(), and the client is told its bytes are in.
        with contextlib.suppress(DepotError, KeyError):
            self._make_parts(upload_id, record, listed)
        return chunk, None

    def _taken(self, upload_id: str, earlier: bytes) -> Chunk:
        """The chunk committed at an offset, its ``sum/`` key put again.

        Its writer may have died between the commit and that key, and the
        chunk would be missing from :meth:`chunks` for ever.
        """
        found = _Listed(**json.loads(earlier))
        self._put(
            self._key(upload_id, f"sum/{found.key_name}"),
            b"",
            f"storing a chunk of upload {upload_id}",
        )
        return Chunk(found.offset, found.length, found.checksum)

    def _store_pieces(
        self,
        upload_id: str,
        record: dict[str, Any],
        offset: int,
        source: Source,
        limit: int,
        token: str,
        pieces: list[str],
    ) -> Chunk:
        """Read ``source`` and put it as pieces, one per part of the grid it touches."""
        grid = int(record["part_size"])
        digest = Digest()
        start = position = offset
        buffer = _buffer()
        try:
            for block in iter_chunks(source, digest):
                if digest.length > limit:
                    raise OverflowError(limit)
                view = memoryview(block)
                while view:
                    boundary = (position // grid + 1) * grid
                    taken = view[: boundary - position]
                    buffer.write(taken)
                    position += len(taken)
                    view = view[len(taken) :]
                    if position == boundary:
                        self._put_piece(upload_id, start, token, buffer, pieces)
                        buffer.close()
                        buffer, start = _buffer(), position
            if position > start:
                self._put_piece(upload_id, start, token, buffer, pieces)
        finally:
            buffer.close()
        return Chunk(offset, digest.length, digest.checksum)

    def _put_piece(
        self, upload_id: str, start: int, token: str, buffer: Any, pieces: list[str]
    ) -> None:
        key = self._key(upload_id, f"piece/{start:0{_DIGITS}d}-{token}")
        buffer.seek(0)
        with s3_errors(self._where, f"storing a chunk of upload {upload_id}"):
            self._client.put_object(Bucket=self._bucket, Key=key, Body=buffer)
        pieces.append(key)

    def _listed(self, upload_id: str) -> list[_Listed]:
        prefix = self._key(upload_id, "sum/")
        found = []
        for key, _ in self._keys(prefix, f"listing the chunks of upload {upload_id}"):
            listed = _Listed.parse(key[len(prefix) :])
            if listed is not None:
                found.append(listed)
        found.sort(key=lambda c: c.offset)
        return found

    def _make_parts(self, upload_id: str, record: dict[str, Any], chunk: _Listed) -> None:
        """Make the parts of the grid that ``chunk`` completes."""
        grid, size = int(record["part_size"]), int(record["size"])
        first, last = chunk.offset // grid, (chunk.end - 1) // grid
        whole = first * grid == chunk.offset and min((last + 1) * grid, size) == chunk.end
        # A chunk on the grid at both ends completes its parts alone: no listing.
        listed = [chunk] if whole else self._listed(upload_id)
        if any(c.offset < chunk.end and chunk.offset < c.end and c != chunk for c in listed):
            return  # overlapping chunks: finalize() refuses the upload
        for number in range(first, last + 1):
            self.make_part(upload_id, record, number, listed)

    def make_part(
        self, upload_id: str, record: dict[str, Any], number: int, listed: list[_Listed]
    ) -> dict[str, Any] | None:
        """Make part ``number`` (from 0) of the grid from committed pieces; return it for
        CompleteMultipartUpload, or ``None`` if its chunks are not all in yet."""
        grid, size = int(record["part_size"]), int(record["size"])
        low, high = number * grid, min((number + 1) * grid, size)
        sources, position = [], low
        for chunk in listed:
            if chunk.end <= low or chunk.offset >= high:
                continue
            if chunk.offset > position:
                return None  # a gap
            start = max(chunk.offset, low)
            if start != position:
                return None  # an overlap: refused at finalize
            sources.append(self._key(upload_id, f"piece/{start:0{_DIGITS}d}-{chunk.token}"))
            position = min(chunk.end, high)
        if position != high:
            return None
        action = f"making part {number + 1} of upload {upload_id}"
        target = {
            "Bucket": self._bucket,
            "Key": self.staged_key(upload_id),
            "UploadId": record["multipart"],
            "PartNumber": number + 1,
        }
        with s3_errors(self._where, action):
            if len(sources) == 1:
                # Copied by S3: the bytes do not come through here again.
                made = self._client.upload_part_copy(
                    CopySource={"Bucket": self._bucket, "Key": sources[0]}, **target
                )
                etag = made["CopyPartResult"]["ETag"]
            else:
                with _buffer() as buffer:
                    for key in sources:
                        body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"]
                        try:
                            while block := body.read(1 << 20):
                                buffer.write(block)
                        finally:
                            body.close()
                    buffer.seek(0)
                    etag = self._client.upload_part(Body=buffer, **target)["ETag"]
        # The part is made: its pieces are no longer needed. A writer that
        # completes the same part meanwhile finds a piece gone and stops.
        self._delete(sources, action)
        return {"PartNumber": number + 1, "ETag": etag}

    def complete(self, upload_id: str, record: dict[str, Any]) -> None:
        """Make the parts still missing and complete the multipart upload at :meth:`staged_key`.

        Nothing happens when it is completed already (by a finalize that
        failed after it): what is at the key is checked again by the caller.
        """
        key = self.staged_key(upload_id)
        action = f"completing upload {upload_id}"
        if not record["size"]:
            # S3 completes no multipart upload without parts: an empty file is put.
            self._create(key, b"", action)
            return
        made = self._parts_made(upload_id, record)
        if made is None:
            return  # completed before (or aborted: the caller finds nothing)
        grid = int(record["part_size"])
        count = -(-int(record["size"]) // grid)
        listed = None
        for number in range(count):
            if number + 1 in made:
                continue
            listed = listed if listed is not None else self._listed(upload_id)
            try:
                part = self.make_part(upload_id, record, number, listed)
            except BackendUnavailableError:
                part = None  # a piece gone: its writer may have made the part just now
            if part is None:
                made = self._parts_made(upload_id, record) or {}
                if number + 1 in made:
                    continue
                raise DepotError(
                    f"Part {number + 1} of upload {upload_id} is neither made nor in its "
                    f"chunks in the {self._where}: abort the upload and start again."
                )
            made[number + 1] = part["ETag"]
        parts = [{"PartNumber": n, "ETag": made[n]} for n in sorted(made) if n <= count]
        try:
            with s3_errors(self._where, action, passthrough=("NoSuchUpload", "404")):
                self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=record["multipart"],
                    MultipartUpload={"Parts": parts},
                )
        except DepotError:
            raise
        except ClientError:
            return  # completed by another call meanwhile

    def _parts_made(self, upload_id: str, record: dict[str, Any]) -> dict[int, str] | None:
        """The ETag of each part made, by number; ``None`` if the multipart upload is over."""
        made: dict[int, str] = {}
        key, multipart = self.staged_key(upload_id), record["multipart"]
        try:
            with s3_errors(self._where, f"completing upload {upload_id}", ("NoSuchUpload", "404")):
                paginator = self._client.get_paginator("list_parts")
                for page in paginator.paginate(Bucket=self._bucket, Key=key, UploadId=multipart):
                    for part in page.get("Parts", ()):
                        made[int(part["PartNumber"])] = part["ETag"]
        except DepotError:
            raise
        except ClientError:
            return None
        return made

    def target(self, upload_id: str, file_id: str) -> str:
        """The file id the upload becomes: ``file_id``, unless an earlier finalize chose one.

        Every finalize of one upload stores under one id, so a retry after a
        finalize that failed midway finds the file, not a second one.
        """
        key = self._key(upload_id, "target")
        action = f"finalizing upload {upload_id}"
        if self._create(key, file_id.encode(), action):
            return file_id
        found = self._get(key, action)
        return file_id if found is None else found.decode("ascii", "replace")

    def chunks(self, upload_id: str) -> list[Chunk]:
        return [Chunk(c.offset, c.length, c.checksum) for c in self._listed(upload_id)]

    def open_chunk(self, upload_id: str, chunk: Chunk) -> io.RawIOBase:
        raise NotImplementedError(
            "The chunks of an S3 upload become parts of a multipart upload as they "
            "arrive, and S3 does not read those back: finalize() checks the whole file."
        )

    def claim(self, upload_id: str, file_id: str) -> bool:
        if self.record(upload_id) is None:
            return False
        key, action = self._key(upload_id, "claim"), f"finalizing upload {upload_id}"
        mine = json.dumps({"file_id": file_id, "at": time.time()}).encode()
        if self._create(key, mine, action):
            return True
        # Held. By a finalize whose process was killed, if held for long: taken
        # over, or the upload could not be finalized until it expired. Taking
        # over a slow one is harmless: both store under the same id (target()).
        try:
            with s3_errors(self._where, action, passthrough=_GONE):
                found = self._client.get_object(Bucket=self._bucket, Key=key)
                held = _claim(found["Body"].read())
        except DepotError:
            raise
        except ClientError:
            return False  # released just now: the caller says "try again"
        if time.time() - held[1] <= self.claim_timeout:
            return False
        try:
            with s3_errors(self._where, action, passthrough=(*_TAKEN, *_GONE)):
                self._client.put_object(
                    Bucket=self._bucket, Key=key, Body=mine, IfMatch=found["ETag"]
                )
        except DepotError:
            raise
        except ClientError:
            return False  # another finalize took it over first, or it was released
        return True

    def claimed(self, upload_id: str) -> str | None:
        action = f"finalizing upload {upload_id}"
        found = self._get(self._key(upload_id, "claim"), action)
        if found is None:
            return None
        # The id the file is stored under, when a finalize got that far.
        target = self._get(self._key(upload_id, "target"), action)
        return target.decode("ascii", "replace") if target else _claim(found)[0]

    def release(self, upload_id: str) -> None:
        self._delete([self._key(upload_id, "claim")], f"finalizing upload {upload_id}")

    def finish(self, upload_id: str, file_id: str) -> None:
        action = f"finishing upload {upload_id}"
        record = self.record(upload_id)
        if record is None:
            # Aborted or expired while it was finalized: the file is stored, and
            # finalize() still gives its id.
            return
        record["file_id"] = file_id
        self._put(self._key(upload_id, "record"), json.dumps(record).encode(), action)
        self._touch(upload_id)
        keep = {self._key(upload_id, name) for name in ("record", "touched", "claim", "target")}
        left = [k for k, _ in self._keys(self._key(upload_id, ""), action) if k not in keep]
        self._delete(left, action)

    def remove(self, upload_id: str) -> None:
        action = f"removing upload {upload_id}"
        record = self.record(upload_id)
        # The multipart upload first (S3 lists it nowhere a later remove() would
        # find it), then the record: the upload is gone. Its bytes follow, and
        # touched last, so that what a remove() that died left still expires.
        if record is not None and record.get("multipart"):
            try:
                with s3_errors(self._where, action, passthrough=("NoSuchUpload", "404")):
                    self._client.abort_multipart_upload(
                        Bucket=self._bucket,
                        Key=self.staged_key(upload_id),
                        UploadId=record["multipart"],
                    )
            except DepotError:
                raise
            except ClientError:
                pass  # completed (by a finalize) or aborted already
        self._delete([self._key(upload_id, "record")], action)
        touched = self._key(upload_id, "touched")
        left = [k for k, _ in self._keys(self._key(upload_id, ""), action) if k != touched]
        self._delete([*left, self.staged_key(upload_id)], action)
        self._delete([touched], action)

    def touched(self, upload_id: str) -> float | None:
        try:
            with s3_errors(self._where, f"reading upload {upload_id}", passthrough=_GONE):
                head = self._client.head_object(
                    Bucket=self._bucket, Key=self._key(upload_id, "touched")
                )
        except DepotError:
            raise
        except ClientError as exc:
            if client_error_code(exc) in _GONE:
                return None
            raise
        try:
            return float(head.get("Metadata", {}).get("t", ""))
        except ValueError:
            # Not written by depot: its time in S3 will do.
            return float(head["LastModified"].timestamp())

    def idle(self) -> Iterator[tuple[str, float]]:
        paginator = self._client.get_paginator("list_objects_v2")
        found = []
        with s3_errors(self._where, "listing uploads"):
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._base, Delimiter="/"):
                for folder in page.get("CommonPrefixes", ()):
                    found.append(folder["Prefix"][len(self._base) :].rstrip("/"))
        for upload_id in found:
            touched = self.touched(upload_id)
            if touched is not None:
                yield upload_id, touched
                continue
            # No touched object: start() writes it first and remove() deletes it
            # last, so this is what a writer racing remove() put after it.
            action = f"removing what is left of upload {upload_id}"
            self._delete([k for k, _ in self._keys(self._key(upload_id, ""), action)], action)


def _claim(data: bytes) -> tuple[str, float]:
    """The file id and time of a claim."""
    try:
        found = json.loads(data)
        return str(found["file_id"]), float(found["at"])
    except (ValueError, KeyError, TypeError):
        return data.decode("ascii", "replace"), 0.0  # not depot's: as old as can be


def _buffer() -> Any:
    """Where one part is held until it is sent: in memory while small, then on disk."""
    return tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY)
