"""Chunked uploads of a local depot: a directory per upload, a file per chunk.

Layout, under ``<storage_path>/.depot-uploads`` (``list()`` of the depot skips it)::

    <upload id>/record.json              the reservation
    <upload id>/<offset, 20 digits>      a chunk, made whole by a hard link
    <upload id>/<offset>.sha256          its checksum, written after it
    <upload id>/finalizing/file_id       present while a finalize runs: the id it stores
    <upload id>/.takeover                locked by a finalize taking over a dead one's claim

Each chunk is written to a temporary name, flushed, then linked to its
offset's name: ``link()`` fails if that name exists, so of two writers of one
offset exactly one wins, in any process, and a reader never sees half a
chunk. The directory's modification time is the upload's last activity.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

from depot.io._chunks import Digest, iter_chunks
from depot.io._fileinfo import Source
from depot.uploads.staging import Chunk, Staging

try:
    import fcntl
except ImportError:  # not POSIX: claims are never taken over (they expire with the upload)
    fcntl = None  # type: ignore[assignment]

__all__ = ["LocalStaging"]

_RECORD = "record.json"
_CLAIM = "finalizing"
_CLAIM_ID = "file_id"
_SUM = ".sha256"
_TEMP = ".tmp-"
_TAKEOVER = ".takeover"
_OFFSET_DIGITS = 20


class LocalStaging(Staging):
    """The uploads of a local depot, in ``root``, flushed to disk when ``fsync``."""

    def __init__(self, root: str, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync

    def _dir(self, upload_id: str) -> str:
        # Ids are checked by the caller (uuid4 text): no separator reaches here.
        return os.path.join(self.root, upload_id)

    def start(self, upload_id: str, record: dict[str, Any]) -> None:
        os.makedirs(self.root, exist_ok=True)
        temp = os.path.join(self.root, _TEMP + upload_id)
        os.mkdir(temp)
        try:
            self._write(os.path.join(temp, _RECORD), json.dumps(record).encode())
            self._sync_dir(temp)
            os.rename(temp, self._dir(upload_id))
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        self._sync_dir(self.root)

    def record(self, upload_id: str) -> dict[str, Any] | None:
        try:
            with open(os.path.join(self._dir(upload_id), _RECORD), "rb") as f:
                found: dict[str, Any] = json.loads(f.read())
        except (FileNotFoundError, NotADirectoryError):
            return None
        return found

    def put_chunk(
        self, upload_id: str, offset: int, source: Source, limit: int
    ) -> tuple[Chunk, Chunk | None]:
        folder = self._dir(upload_id)
        name = os.path.join(folder, f"{offset:0{_OFFSET_DIGITS}d}")
        temp = os.path.join(folder, f"{_TEMP}{uuid.uuid4().hex}")
        digest = Digest()
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:  # aborted or expired meanwhile
            raise KeyError(upload_id) from None
        try:
            with open(fd, "wb", closefd=True) as out:
                for block in iter_chunks(source, digest):
                    if digest.length > limit:
                        raise OverflowError(limit)
                    out.write(block)
                out.flush()
                if self.fsync:
                    os.fsync(out.fileno())
            chunk = Chunk(offset, digest.length, digest.checksum)
            if not chunk.length:
                # Nothing to keep: an empty file at the offset would refuse the
                # real chunk there later as "different" (an empty tus PATCH).
                return chunk, None
            try:
                os.link(temp, name)
                self._write(name + _SUM, chunk.checksum.encode())
            except FileExistsError:
                return chunk, self._chunk_at(folder, offset)
            except FileNotFoundError:
                # Aborted or expired while the chunk arrived (its directory was
                # moved away): no upload, not a storage failure (a tus 503).
                raise KeyError(upload_id) from None
            self._sync_dir(folder)
            return chunk, None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def chunks(self, upload_id: str) -> list[Chunk]:
        folder = self._dir(upload_id)
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return []
        offsets = sorted(int(n) for n in names if n.isdigit() and len(n) == _OFFSET_DIGITS)
        found = []
        for offset in offsets:
            with contextlib.suppress(FileNotFoundError):  # finished meanwhile
                found.append(self._chunk_at(folder, offset))
        return found

    def _chunk_at(self, folder: str, offset: int) -> Chunk:
        name = os.path.join(folder, f"{offset:0{_OFFSET_DIGITS}d}")
        length = os.stat(name).st_size
        try:
            with open(name + _SUM, "rb") as f:
                checksum = f.read().decode("ascii", "replace")
        except FileNotFoundError:
            # Linked, but its writer died before the checksum: it is read again.
            digest = Digest()
            with open(name, "rb") as f:
                for _ in iter_chunks(f, digest):
                    pass
            checksum = digest.checksum
        return Chunk(offset, length, checksum)

    def open_chunk(self, upload_id: str, chunk: Chunk) -> io.BufferedReader:
        return open(os.path.join(self._dir(upload_id), f"{chunk.offset:0{_OFFSET_DIGITS}d}"), "rb")

    def claim(self, upload_id: str, file_id: str) -> bool:
        # The claim appears with its file id in it: renamed into place whole
        # (rename() refuses a directory onto one that is not empty).
        folder = self._dir(upload_id)
        temp = os.path.join(folder, f"{_TEMP}{uuid.uuid4().hex}")
        try:
            os.mkdir(temp)
            self._write(os.path.join(temp, _CLAIM_ID), file_id.encode())
            os.rename(temp, os.path.join(folder, _CLAIM))
        except OSError:  # claimed already (ENOTEMPTY, EEXIST), or no upload
            shutil.rmtree(temp, ignore_errors=True)
            return False
        return True

    def claimed(self, upload_id: str) -> str | None:
        try:
            with open(os.path.join(self._dir(upload_id), _CLAIM, _CLAIM_ID), "rb") as f:
                return f.read().decode("ascii", "replace")
        except (FileNotFoundError, NotADirectoryError):
            return None

    def take_over(self, upload_id: str, file_id: str) -> bool:
        if fcntl is None:
            return False
        folder = self._dir(upload_id)
        claim = os.path.join(folder, _CLAIM)
        try:
            lock = os.open(os.path.join(folder, _TAKEOVER), os.O_RDWR | os.O_CREAT, 0o600)
        except (FileNotFoundError, NotADirectoryError):
            return False  # the upload is gone
        try:
            # Takers one at a time: each looks at the claim and moves it away
            # under the lock, so none can move away the claim another just made.
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                made = os.lstat(claim).st_mtime  # when its file id was written in it
            except FileNotFoundError:
                return False  # released meanwhile: the caller says "try again"
            if time.time() - made <= self.claim_timeout or self.claimed(upload_id) != file_id:
                return False
            stale = os.path.join(folder, f"{_TEMP}{uuid.uuid4().hex}")
            os.rename(claim, stale)
            shutil.rmtree(stale, ignore_errors=True)
            return self.claim(upload_id, file_id)
        finally:
            os.close(lock)

    def release(self, upload_id: str) -> None:
        shutil.rmtree(os.path.join(self._dir(upload_id), _CLAIM), ignore_errors=True)

    def finish(self, upload_id: str, file_id: str) -> None:
        folder = self._dir(upload_id)
        record = self.record(upload_id)
        if record is None:
            # Aborted or expired while it was finalized: the file is stored, and
            # finalize() still gives its id (a FileNotFoundError lost it).
            return
        record["file_id"] = file_id
        temp = os.path.join(folder, _TEMP + _RECORD)
        try:
            self._write(temp, json.dumps(record).encode())
            os.replace(temp, os.path.join(folder, _RECORD))
        except FileNotFoundError:  # removed just now: as above
            return
        self._sync_dir(folder)
        for name in os.listdir(folder):
            if name.isdigit() or name.endswith(_SUM):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))

    def remove(self, upload_id: str) -> None:
        trash = os.path.join(self.root, f"{_TEMP}{upload_id}-{uuid.uuid4().hex}")
        try:
            os.rename(self._dir(upload_id), trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def touched(self, upload_id: str) -> float | None:
        try:
            return os.stat(self._dir(upload_id)).st_mtime
        except FileNotFoundError:
            return None

    def idle(self) -> Iterator[tuple[str, float]]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                touched = entry.stat(follow_symlinks=False).st_mtime
                if entry.name.startswith(_TEMP):
                    # What a killed start() or remove() left: gone once idle too.
                    if time.time() - touched > 3600:
                        shutil.rmtree(entry.path, ignore_errors=True)
                    continue
                yield entry.name, touched

    def _write(self, path: str, data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())

    def _sync_dir(self, path: str) -> None:
        if self.fsync and os.name == "posix":
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
