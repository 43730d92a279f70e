"""The bytes of an answer: a stored file read block by block, one range, or several.

Each body reads its first block when it is opened, before the status line is
sent (``HTTP.md``: once a Content-Length is out the body must follow, so a file
that cannot be read must be found out while a 404 or 503 can still be sent).
Each closes the stored file when the server closes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from depot.io._chunks import BLOCK_SIZE

if TYPE_CHECKING:
    from depot.io.interfaces import StoredFile

__all__ = ["BLOCK_SIZE", "FileIter", "MultipartRanges", "RangeIter"]


class FileIter:
    """Iterates a file in blocks and closes it when the server is done.

    :param first: the first block, already read (to know the file can be read
        before the status line is sent).
    :param length: the Content-Length sent: never more bytes than that are
        given, whatever the file holds (more would be read by the client as
        the start of the next answer on the connection).
    """

    def __init__(
        self, file: Any, block_size: int, first: bytes = b"", length: int | None = None
    ) -> None:
        self.file = file
        self.block_size = block_size
        self._first = first
        self._remaining = length

    def __iter__(self) -> Iterator[bytes]:
        first = self._first
        if first and self._remaining == len(first):
            # The whole file was read when this was opened (most files are
            # smaller than a block): the server iterates a tuple, in C.
            self._first, self._remaining = b"", 0
            return iter((first,))
        return self

    def __next__(self) -> bytes:
        remaining = self._remaining
        if self._first:
            data, self._first = self._first, b""
        elif remaining is None:
            data = self.file.read(self.block_size)
        elif remaining > 0:
            # No more than is left: no read past the end once all was sent.
            data = self.file.read(min(self.block_size, remaining))
        else:
            raise StopIteration
        if remaining is not None:
            data = data[:remaining]
            self._remaining = remaining - len(data)
        if not data:
            raise StopIteration
        return data

    def close(self) -> None:
        self.file.close()

    @classmethod
    def opened(cls, file: StoredFile, length: int, block_size: int = BLOCK_SIZE) -> FileIter:
        """The whole of ``file``, its first block read now."""
        return cls(file, block_size, file.read(min(block_size, length)), length)


class RangeIter:
    """Iterates the bytes ``[start, stop)`` of a stored file, reading only those.

    The range is opened, and its first block read, when this is made.
    """

    def __init__(self, stored: StoredFile, start: int, stop: int) -> None:
        self._stored = stored
        self._chunks = stored.iter_range(start, stop)
        self._first = next(self._chunks, b"")

    def __iter__(self) -> Iterator[bytes]:
        if self._first:
            yield self._first
        yield from self._chunks

    def close(self) -> None:
        self._stored.close()


class MultipartRanges:
    """The body of a ``multipart/byteranges`` answer, read range by range.

    Made from the plan the HTTP core computed (:class:`depot.http.answer.Multipart`);
    the first block of the first range is read when this is made.
    """

    def __init__(self, stored: StoredFile, parts: list[tuple[bytes, int, int]], closing: bytes):
        self._stored = stored
        self._parts = parts
        self._closing = closing
        _, start, stop = parts[0]
        chunks = stored.iter_range(start, stop)
        self._first = (next(chunks, b""), chunks)

    def __iter__(self) -> Iterator[bytes]:
        for index, (head, start, stop) in enumerate(self._parts):
            yield head
            if index == 0:
                first, chunks = self._first
                yield first
                yield from chunks
            else:
                yield from self._stored.iter_range(start, stop)
            yield b"\r\n"
        yield self._closing

    def close(self) -> None:
        self._stored.close()
