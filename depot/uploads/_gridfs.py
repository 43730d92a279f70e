"""Chunked uploads of a GridFS depot: three collections beside the depot's own.

For a depot on the GridFS collection ``<root>`` (``filedepot`` by default)::

    <root>.uploads        one document per upload: its record, when it was
                          last written, whether a finalize holds it
    <root>.uploads.parts  one document per chunk: upload, offset, length,
                          checksum, and the token of its data
    <root>.uploads.data   the chunks' bytes, in pieces under 16 MB (MongoDB's
                          largest document), each tagged with its chunk's token

A chunk's pieces are written first and its part document last, whose id (the
upload and the offset) is unique: of two writers of one offset exactly one
wins, in any process, and readers, who list parts only, never see a chunk
that is not whole. The pieces of a loser, or of a writer that died, belong
to no part and go with their upload.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from depot.io._chunks import Digest, iter_chunks
from depot.io._fileinfo import Source
from depot.uploads.staging import Chunk, Staging

__all__ = ["GridFSStaging"]

_PIECE = 255 * 1024  # GridFS's own chunk size: pieces the server stores well


class GridFSStaging(Staging):
    """The uploads of a GridFS depot, in collections beside ``root`` (a pymongo Collection).

    :param errors: a context manager factory turning server errors into depot's.
    """

    def __init__(self, root: Any, errors: Callable[[], contextlib.AbstractContextManager[Any]]):
        self._uploads = root["uploads"]
        self._parts = root["uploads"]["parts"]
        self._data = root["uploads"]["data"]
        self._errors = errors
        self._indexed = False

    def _ensure_indexes(self) -> None:
        if not self._indexed:
            self._parts.create_index([("upload", 1), ("offset", 1)])
            self._data.create_index([("token", 1), ("n", 1)])
            self._data.create_index([("upload", 1)])
            self._indexed = True

    def start(self, upload_id: str, record: dict[str, Any]) -> None:
        with self._errors():
            self._ensure_indexes()
            # As JSON text: its keys come from clients (tus metadata), and a
            # key like "$where" is no field name MongoDB takes.
            self._uploads.insert_one(
                {
                    "_id": upload_id,
                    "record": json.dumps(record),
                    "file_id": None,
                    "touched": time.time(),
                    "claimed": False,
                }
            )

    def record(self, upload_id: str) -> dict[str, Any] | None:
        with self._errors():
            found = self._uploads.find_one({"_id": upload_id})
        if found is None:
            return None
        record: dict[str, Any] = json.loads(found["record"])
        if found.get("file_id"):
            record["file_id"] = found["file_id"]
        return record

    def put_chunk(
        self, upload_id: str, offset: int, source: Source, limit: int
    ) -> tuple[Chunk, Chunk | None]:
        with self._errors():
            if self._uploads.find_one({"_id": upload_id}, projection={"_id": True}) is None:
                raise KeyError(upload_id)
            token = ObjectId()
            digest = Digest()
            try:
                for n, piece in enumerate(iter_chunks(source, digest, _PIECE)):
                    if digest.length > limit:
                        raise OverflowError(limit)
                    self._data.insert_one(
                        {"upload": upload_id, "token": token, "n": n, "data": bytes(piece)}
                    )
                chunk = Chunk(offset, digest.length, digest.checksum)
                if not chunk.length:
                    # Nothing to keep: an empty part would refuse the real chunk
                    # at its offset later as "different" (an empty tus PATCH).
                    return chunk, None
                try:
                    self._parts.insert_one(
                        {
                            "_id": f"{upload_id}:{offset}",
                            "upload": upload_id,
                            "offset": offset,
                            "length": chunk.length,
                            "checksum": chunk.checksum,
                            "token": token,
                        }
                    )
                except DuplicateKeyError:
                    found = self._parts.find_one({"_id": f"{upload_id}:{offset}"})
                    self._data.delete_many({"token": token})
                    return chunk, None if found is None else _chunk(found)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._data.delete_many({"token": token})
                raise
            touched = self._uploads.update_one(
                {"_id": upload_id}, {"$set": {"touched": time.time()}}
            )
            if not touched.matched_count:
                # Removed (aborted, expired) while the chunk arrived: remove() has
                # run already, so this part and its pieces would stay for ever.
                self._parts.delete_one({"_id": f"{upload_id}:{offset}", "token": token})
                self._data.delete_many({"token": token})
                raise KeyError(upload_id)
        return chunk, None

    def chunks(self, upload_id: str) -> list[Chunk]:
        with self._errors():
            found = self._parts.find({"upload": upload_id}).sort("offset", 1)
            return [_chunk(part) for part in found]

    def open_chunk(self, upload_id: str, chunk: Chunk) -> io.RawIOBase:
        with self._errors():
            part = self._parts.find_one({"_id": f"{upload_id}:{chunk.offset}"})
        if part is None:
            raise KeyError(upload_id)
        return _PiecesReader(self._data, part["token"], self._errors)

    def claim(self, upload_id: str, file_id: str) -> bool:
        with self._errors():
            done = self._uploads.update_one(
                {"_id": upload_id, "claimed": False},
                {"$set": {"claimed": True, "claimed_file": file_id, "claimed_at": time.time()}},
            )
        return bool(done.modified_count)

    def take_over(self, upload_id: str, file_id: str) -> bool:
        now = time.time()
        with self._errors():
            # One conditional update: of two takers, the second finds claimed_at new.
            done = self._uploads.update_one(
                {
                    "_id": upload_id,
                    "claimed": True,
                    "claimed_file": file_id,
                    "claimed_at": {"$lt": now - self.claim_timeout},
                },
                {"$set": {"claimed_at": now}},
            )
        return bool(done.modified_count)

    def claimed(self, upload_id: str) -> str | None:
        with self._errors():
            found = self._uploads.find_one(
                {"_id": upload_id, "claimed": True}, projection={"claimed_file": True}
            )
        return None if found is None else found.get("claimed_file")

    def release(self, upload_id: str) -> None:
        with self._errors():
            self._uploads.update_one({"_id": upload_id}, {"$set": {"claimed": False}})

    def finish(self, upload_id: str, file_id: str) -> None:
        with self._errors():
            self._uploads.update_one(
                {"_id": upload_id},
                {"$set": {"file_id": file_id, "touched": time.time()}},
            )
            self._parts.delete_many({"upload": upload_id})
            self._data.delete_many({"upload": upload_id})

    def remove(self, upload_id: str) -> None:
        with self._errors():
            # The record first: the upload is gone at once; its bytes follow.
            self._uploads.delete_one({"_id": upload_id})
            self._parts.delete_many({"upload": upload_id})
            self._data.delete_many({"upload": upload_id})

    def touched(self, upload_id: str) -> float | None:
        with self._errors():
            found = self._uploads.find_one({"_id": upload_id}, projection={"touched": True})
        return None if found is None else float(found["touched"])

    def idle(self) -> Iterator[tuple[str, float]]:
        with self._errors():
            found = list(self._uploads.find({}, projection={"touched": True}))
        for document in found:
            yield str(document["_id"]), float(document["touched"])


def _chunk(part: dict[str, Any]) -> Chunk:
    return Chunk(int(part["offset"]), int(part["length"]), str(part["checksum"]))


class _PiecesReader(io.RawIOBase):
    """A chunk's bytes, read piece by piece from the data collection."""

    def __init__(self, data: Any, token: ObjectId, errors: Callable[[], Any]) -> None:
        self._data = data
        self._token = token
        self._errors = errors
        self._next = 0
        self._left = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(_PIECE), b""))
        if not self._left:
            with self._errors():
                piece = self._data.find_one({"token": self._token, "n": self._next})
            if piece is None:
                return b""
            self._next += 1
            self._left = bytes(piece["data"])
        out, self._left = self._left[:n], self._left[n:]
        return out
