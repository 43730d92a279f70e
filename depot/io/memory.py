"""A storage that keeps files in a dict: for test suites and caches.

Settings: none. Other settings are accepted and ignored, so that a test
configuration can switch ``depot.backend`` to ``memory`` and leave the rest of
the production settings alone.
"""

from __future__ import annotations

import io
from typing import Any

from depot.exceptions import CorruptMetadataError, StoredFileNotFoundError
from depot.io._ids import check_file_id
from depot.io.interfaces import FileStorage, NewVersion, StoredFile
from depot.io.utils import _modified_now
from depot.uploads.staging import MemoryStaging

__all__ = ["MemoryFileStorage", "MemoryStoredFile"]

_BACKEND = "MemoryFileStorage"
_FIELDS = {"filename", "content_type", "content_length", "last_modified", "checksum"}


class MemoryStoredFile(StoredFile):
    """A file of a :class:`MemoryFileStorage`; seekable."""

    def __init__(self, files: dict[str, dict[str, Any]], file_id: str, file_data: dict[str, Any]):
        check_file_id(file_id, _BACKEND)
        self._files = files
        self._data = file_data
        self._stream: io.BytesIO | None = None
        self._closed = False
        super().__init__(file_id=file_id, **_metadata(file_id, file_data))

    def _follow_replace(self) -> None:
        # replace() puts a new entry in the dict; a deleted file reads what it had.
        newest = self._files.get(self.file_id)
        if newest is not None and newest is not self._data:
            self._set_metadata(**_metadata(self.file_id, newest))
            self._data = newest

    def _open(self) -> io.BytesIO:
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        if self._stream is None:
            self._first_read()
            # This version's bytes, whatever replace() does next.
            self._stream = io.BytesIO(self._data["data"])
        return self._stream

    def read(self, n: int | None = -1) -> bytes:
        return self._open().read(n)

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._open().seek(offset, whence)

    def tell(self) -> int:
        return self._open().tell()

    def close(self) -> None:
        self._closed = True
        if self._stream is not None:
            self._stream.close()

    @property
    def closed(self) -> bool:
        return self._closed


def _metadata(file_id: str, file_data: dict[str, Any]) -> dict[str, Any]:
    metadata = file_data.get("metadata")
    if not isinstance(metadata, dict) or not metadata.keys() <= _FIELDS:
        raise CorruptMetadataError(
            f"Invalid metadata of file {file_id} ({_BACKEND}): {metadata!r:.100} is not "
            f"a dict of {', '.join(sorted(_FIELDS))}. Restore the file from a backup or "
            "delete it."
        )
    return {field: metadata.get(field) for field in _FIELDS}


class MemoryFileStorage(FileStorage):
    """Keeps files in memory, in :attr:`files`; they are gone when the process ends."""

    records_what_it_reads = True  # the digest of the bytes written, the time of timestamp()

    def __init__(self, **ignored_settings: Any) -> None:
        #: ``{file_id: {'data': bytes, 'metadata': {...}}}``, as in filedepot.
        self.files: dict[str, dict[str, Any]] = {}

    def get(self, file_or_id: StoredFile | str) -> MemoryStoredFile:
        fileid = self._checked_id(file_or_id)
        try:
            file_data = self.files[fileid]
        except KeyError:
            raise StoredFileNotFoundError(fileid, _BACKEND) from None
        return MemoryStoredFile(self.files, fileid, file_data)

    def delete(self, file_or_id: StoredFile | str) -> None:
        fileid = self._checked_id(file_or_id)
        self.files.pop(fileid, None)

    def exists(self, file_or_id: StoredFile | str) -> bool:
        fileid = self._checked_id(file_or_id)
        return fileid in self.files

    def list(self) -> list[str]:
        return list(self.files)

    def _staging(self) -> MemoryStaging:
        # Made on first use: a storage that never takes chunks holds none of it.
        staging: MemoryStaging | None = self.__dict__.get("_uploads")
        if staging is None:
            staging = self.__dict__.setdefault("_uploads", MemoryStaging())
        return staging

    def _write(self, fileid: str, new: NewVersion) -> None:
        data = b"".join(new.chunks())
        # One assignment: readers see the old entry or the new one, never a mix.
        self.files[fileid] = {
            "data": data,
            "metadata": {
                "filename": new.filename,
                "content_type": new.content_type,
                "content_length": new.digest.length,
                "last_modified": _modified_now()[1],
                "checksum": new.digest.checksum,
            },
        }
