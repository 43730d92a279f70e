"""A storage in a directory of the local disk.

Settings: ``storage_path`` (required), ``fsync`` (default true).

The layout is filedepot 0.12's, so either library reads what the other wrote::

    <storage_path>/<file id>/file            the bytes
    <storage_path>/<file id>/metadata.json   filename, content_type, content_length, last_modified
    <storage_path>/<file id>/checksum        "sha256:<hex>" (depot only; filedepot ignores it)

Writes are atomic. ``create()`` fills a hidden temporary directory and renames it
into place. ``replace()`` writes ``file.new``, ``checksum.new`` and
``metadata.json.new`` beside the current files, then renames them over the old
ones; renaming ``file.new`` is the commit point. A reader that finds
``metadata.json.new`` but no ``file.new`` knows the new bytes are in place and
reads the new metadata, so a crash at any step leaves the old file or the new
one, never a mix. With ``fsync`` on, data and directories are flushed to disk
before each rename, so this holds across a power cut too.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from typing import Any

from depot._settings import as_bool
from depot.exceptions import CorruptMetadataError, StoredFileNotFoundError
from depot.io._chunks import Digest, iter_chunks
from depot.io._ids import check_file_id, new_file_id
from depot.io.interfaces import FileContent, FileStorage, StoredFile
from depot.io.utils import TIMESTAMP_FORMAT, parse_timestamp
from depot.utils import utcnow_naive

try:
    import fcntl
except ImportError:  # Windows: replace() and delete() are then not serialised.
    fcntl = None  # type: ignore[assignment]

__all__ = ["LocalFileStorage", "LocalStoredFile"]

_BACKEND = "LocalFileStorage"
_DATA, _METADATA, _CHECKSUM = "file", "metadata.json", "checksum"
_PENDING = ".new"
_TEMP_PREFIX, _TRASH_PREFIX = ".depot-tmp-", ".depot-trash-"
#: Leftovers of a crashed write are removed by list() once they are this old, so
#: that a write still running in another process is never disturbed.
_STALE_AFTER = 3600.0
_CHECKSUM_TEXT = re.compile(r"sha256:[0-9a-f]{64}")


class LocalStoredFile(StoredFile):
    """A file of a :class:`LocalFileStorage`; seekable, opened on first read."""

    def __init__(self, file_id: str, local_path: str) -> None:
        check_file_id(file_id, _BACKEND)
        self._file_path = _join(local_path, _DATA)
        self._file: io.FileIO | None = None
        self._closed = False
        super().__init__(file_id, **_read_metadata(file_id, local_path))
        if self.content_length is None:  # written by a very old filedepot
            self.content_length = _size_or_none(self._file_path)

    def _open(self) -> io.FileIO:
        if self._file is None:
            if self._closed:
                raise ValueError("I/O operation on closed file.")
            try:
                # Held open across read() calls, closed by close(). Unbuffered:
                # reads are in large blocks, and it spares system calls per open.
                self._file = open(self._file_path, "rb", buffering=0)  # noqa: SIM115
            except FileNotFoundError:
                raise StoredFileNotFoundError(self.file_id, self._file_path) from None
        return self._file

    def read(self, n: int = -1) -> bytes:
        return self._open().read(n)

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        """The OS file descriptor, so that WSGI servers can ``sendfile()`` it."""
        return self._open().fileno()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._open().seek(offset, whence)

    def tell(self) -> int:
        return 0 if self._file is None else self._file.tell()

    def close(self) -> None:
        self._closed = True
        if self._file is not None:
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._closed


class LocalFileStorage(FileStorage):
    """Stores each file in a directory of its own under ``storage_path``.

    :param storage_path: the directory; created on the first write.
    :param fsync: flush every write to disk before it becomes visible (default).
        ``false`` is faster and still atomic against a crashed process, but a
        power cut may lose files written in the last seconds.

    .. versionchanged:: 1.0
       Writes are atomic and durable; ids are uuid4; ``fsync`` added.
    """

    def __init__(self, storage_path: str | os.PathLike[str], fsync: bool | str = True) -> None:
        self.storage_path = os.fspath(storage_path)
        self.fsync = as_bool(fsync, "fsync")

    def get(self, file_or_id: StoredFile | str) -> LocalStoredFile:
        fileid = check_file_id(self.fileid(file_or_id), _BACKEND)
        return LocalStoredFile(fileid, self._path(fileid))

    def create(
        self, content: FileContent, filename: str | None = None, content_type: str | None = None
    ) -> str:
        fileid = new_file_id()
        self._create(fileid, content, filename, content_type)
        return fileid

    def replace(
        self,
        file_or_id: StoredFile | str,
        content: FileContent,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        fileid = check_file_id(self.fileid(file_or_id), _BACKEND)
        folder = self._path(fileid)
        # replace(stored_file, stored_file) restores a file from another depot
        # under its own id, whether or not it exists here (as in filedepot).
        if file_or_id is content and not os.path.isdir(folder):
            self._create(fileid, content, filename, content_type)
            return fileid
        with _locked(folder, fileid):
            _finish_interrupted_replace(folder)
            existing = lambda: LocalStoredFile(fileid, folder)  # noqa: E731
            try:
                self._write_files(folder, _PENDING, content, filename, content_type, existing)
            except BaseException:
                _discard_pending(folder)
                raise
            os.replace(_join(folder, _DATA + _PENDING), _join(folder, _DATA))  # commit
            _finish_interrupted_replace(folder)
            self._sync_dir(folder)
        return fileid

    def delete(self, file_or_id: StoredFile | str) -> None:
        fileid = check_file_id(self.fileid(file_or_id), _BACKEND)
        folder = self._path(fileid)
        try:
            with _locked(folder, fileid):
                # Renamed away first, so the id vanishes at once and whole.
                trash = self._path(_TRASH_PREFIX + new_file_id())
                os.rename(folder, trash)
        except StoredFileNotFoundError:
            return
        self._sync_dir(self.storage_path)
        shutil.rmtree(trash, ignore_errors=True)

    def exists(self, file_or_id: StoredFile | str) -> bool:
        fileid = check_file_id(self.fileid(file_or_id), _BACKEND)
        return os.path.exists(_join(self._path(fileid), _METADATA))

    def list(self) -> list[str]:
        """Return the ids of the stored files; also removes stale leftovers of crashes."""
        try:
            entries = list(os.scandir(self.storage_path))
        except FileNotFoundError:
            return []
        ids = []
        for entry in entries:
            if entry.name.startswith((_TEMP_PREFIX, _TRASH_PREFIX)):
                self._remove_if_stale(entry)
                continue
            try:
                ids.append(check_file_id(entry.name, _BACKEND))
            except ValueError:
                continue
        return ids

    def _path(self, name: str) -> str:
        return _join(self.storage_path, name)

    def _create(
        self, fileid: str, content: FileContent, filename: str | None, content_type: str | None
    ) -> None:
        temp = self._path(_TEMP_PREFIX + fileid)
        try:
            os.mkdir(temp)
        except FileNotFoundError:  # the first write: storage_path is made on demand
            os.makedirs(self.storage_path, exist_ok=True)
            os.mkdir(temp)
        try:
            self._write_files(temp, "", content, filename, content_type, None)
            self._sync_dir(temp)
            os.rename(temp, self._path(fileid))
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        self._sync_dir(self.storage_path)

    def _write_files(
        self,
        folder: str,
        suffix: str,
        content: FileContent,
        filename: str | None,
        content_type: str | None,
        existing: Callable[[], StoredFile] | None,
    ) -> None:
        # The data first: metadata.json.new present without file.new means
        # "committed" to readers, so it must never exist before file.new does.
        source, filename, content_type = self.fileinfo(content, filename, content_type, existing)
        digest = Digest()
        _write_file(_join(folder, _DATA + suffix), iter_chunks(source, digest), self.fsync)
        metadata = {
            "filename": filename,
            "content_type": content_type,
            "content_length": digest.length,
            "last_modified": utcnow_naive().strftime(TIMESTAMP_FORMAT),
        }
        # The checksum is not flushed on its own: were it lost in a power cut
        # the file would read back with checksum None, like filedepot's files,
        # and it costs a whole fsync per write.
        _write_file(_join(folder, _CHECKSUM + suffix), [digest.checksum.encode()], False)
        _write_file(_join(folder, _METADATA + suffix), [json.dumps(metadata).encode()], self.fsync)

    def _sync_dir(self, path: str) -> None:
        if self.fsync and os.name == "posix":
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _remove_if_stale(self, entry: os.DirEntry[str]) -> None:
        try:
            if time.time() - entry.stat(follow_symlinks=False).st_mtime > _STALE_AFTER:
                shutil.rmtree(entry.path, ignore_errors=True)
        except FileNotFoundError:
            pass


def _join(folder: str, name: str) -> str:
    return folder + os.sep + name


# Plain descriptors rather than open(): creating a small file through the io
# stack costs several times the system calls themselves.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def _write_file(path: str, chunks: Iterable[bytes | bytearray | memoryview], fsync: bool) -> None:
    fd = os.open(path, _CREATE, 0o666)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _read_small(path: str) -> bytes:
    fd = os.open(path, _READ)
    try:
        parts = [os.read(fd, 65536)]
        while len(parts[-1]) == 65536:  # metadata this large is rare: read on
            parts.append(os.read(fd, 65536))
        return b"".join(parts)
    finally:
        os.close(fd)


def _read_metadata(file_id: str, folder: str) -> dict[str, Any]:
    metadata_path = _join(folder, _METADATA)
    checksum_path = _join(folder, _CHECKSUM)
    pending = _join(folder, _METADATA + _PENDING)
    if os.path.exists(pending) and not os.path.exists(_join(folder, _DATA + _PENDING)):
        # A replace() renamed its new data into place and has not yet (or, after
        # a crash, never) renamed the metadata: the pending one describes 'file'.
        metadata_path = pending
        if os.path.exists(checksum_path + _PENDING):
            checksum_path += _PENDING
    try:
        raw = _read_small(metadata_path)
    except (FileNotFoundError, NotADirectoryError):
        raise StoredFileNotFoundError(file_id, folder) from None
    try:
        stored = json.loads(raw)
        last_modified = stored.get("last_modified")
        info = {
            "filename": stored.get("filename") or "unnamed",
            "content_type": stored.get("content_type") or "application/octet-stream",
            "content_length": stored.get("content_length"),
            "last_modified": parse_timestamp(last_modified) if last_modified else None,
        }
    except (ValueError, AttributeError, TypeError) as exc:
        raise CorruptMetadataError(
            f"Invalid file metadata for {file_id} in {metadata_path}: {exc}. "
            "Restore the file from a backup or delete it."
        ) from exc
    info["checksum"] = _read_checksum(checksum_path)
    return info


def _read_checksum(path: str) -> str | None:
    try:
        text = _read_small(path).decode("ascii", "replace")
    except FileNotFoundError:
        return None  # written by filedepot, which records none
    # Empty or torn after a power cut (it is not fsynced): better none than wrong.
    return text if _CHECKSUM_TEXT.fullmatch(text) else None


def _size_or_none(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _finish_interrupted_replace(folder: str) -> None:
    """Complete a committed replace (rename the pending metadata) or drop an uncommitted one."""
    if os.path.exists(_join(folder, _DATA + _PENDING)):
        _discard_pending(folder)
        return
    for name in (_CHECKSUM, _METADATA):  # metadata last: it marks the replace as unfinished
        with contextlib.suppress(FileNotFoundError):
            os.replace(_join(folder, name + _PENDING), _join(folder, name))


def _discard_pending(folder: str) -> None:
    # metadata.json.new goes first and file.new last, so that no moment shows
    # the pending metadata without file.new, which would read as committed.
    for name in (_METADATA, _CHECKSUM, _DATA):
        with contextlib.suppress(FileNotFoundError):
            os.remove(_join(folder, name + _PENDING))


class _locked:
    """Hold an exclusive lock on a file's directory: one replace or delete at a time."""

    def __init__(self, folder: str, fileid: str) -> None:
        self._folder = folder
        self._fileid = fileid
        self._fd = -1

    def __enter__(self) -> None:
        try:
            self._fd = os.open(self._folder, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise StoredFileNotFoundError(self._fileid, self._folder) from None
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        # A delete() may have renamed the directory away while we waited.
        try:
            same = os.path.samestat(os.fstat(self._fd), os.stat(self._folder))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(self._fd)
            raise StoredFileNotFoundError(self._fileid, self._folder)

    def __exit__(self, *exc_info: object) -> None:
        os.close(self._fd)  # closing releases the lock
