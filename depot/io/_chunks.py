"""Reading a source in blocks, and the checksum computed on the way."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from depot.io._fileinfo import Source

#: How much is read or written at once; large enough that per-call overhead
#: vanishes, small enough that memory never grows with the file.
BLOCK_SIZE = 256 * 1024

CHECKSUM_ALGORITHM = "sha256"


class Digest:
    """Counts and hashes the bytes of one file as they go by."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.length = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self._hash.update(chunk)
        self.length += len(chunk)

    @property
    def checksum(self) -> str:
        """The checksum in depot's ``"<algorithm>:<hex>"`` form."""
        return f"{CHECKSUM_ALGORITHM}:{self._hash.hexdigest()}"


def iter_chunks(source: Source, digest: Digest, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """Yield the bytes of ``source`` in blocks, feeding each to ``digest`` first.

    A seekable stream is read from its start, as filedepot did; a stream that
    cannot seek (a request body, a pipe) is read from where it stands, once.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        digest.update(source)
        if source:
            yield source  # type: ignore[misc]
        return
    rewind(source)
    read = source.read
    while True:
        chunk = read(block_size)
        if not chunk:
            return
        if isinstance(chunk, str):
            raise TypeError(
                "Only bytes can be stored, but this file gives str: open it in binary mode ('rb')."
            )
        digest.update(chunk)
        yield chunk


def read_ahead(chunks: Iterator[bytes], limit: int) -> tuple[list[bytes], bool]:
    """Read blocks until more than ``limit`` bytes came; return them and whether that was all."""
    head = []
    size = 0
    for chunk in chunks:
        head.append(chunk)
        size += len(chunk)
        if size > limit:
            return head, False
    return head, True


def rewind(stream: object) -> None:
    seekable = getattr(stream, "seekable", None)
    try:
        if seekable is not None:
            if seekable():
                stream.seek(0)  # type: ignore[attr-defined]
        elif hasattr(stream, "seek"):
            stream.seek(0)
    except OSError:  # io.UnsupportedOperation included
        # Some streams claim to seek and fail (a pipe wrapped as a file): read on.
        pass
