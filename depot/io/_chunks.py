"""Reading a source in blocks, and the checksum computed on the way."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from depot.io._fileinfo import Source, SupportsRead, byte_view

#: How much is read or written at once; large enough that per-call overhead
#: vanishes, small enough that memory never grows with the file.
BLOCK_SIZE = 256 * 1024

CHECKSUM_ALGORITHM = "sha256"

# What Digest.checksum writes; anything else read back is not a checksum.
_CHECKSUM_TEXT = re.compile(rf"{CHECKSUM_ALGORITHM}:[0-9a-f]{{64}}")


def is_checksum(value: object) -> bool:
    """Whether ``value`` is a checksum in the form depot writes: ``"sha256:<64 hex>"``."""
    return isinstance(value, str) and _CHECKSUM_TEXT.fullmatch(value) is not None


class Digest:
    """Counts and hashes the bytes of one file as they go by."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.length = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self._hash.update(chunk)
        # In bytes, whatever the items of a view are.
        self.length += chunk.nbytes if isinstance(chunk, memoryview) else len(chunk)

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
        chunk = _checked(read(block_size))
        if not chunk:
            return
        if isinstance(chunk, memoryview):  # backends count and slice bytes
            chunk = byte_view(chunk)
        digest.update(chunk)
        yield chunk


def recut(blocks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Yield the bytes of ``blocks`` in pieces of exactly ``size`` (the last may be shorter)."""
    pending = bytearray()
    for block in blocks:
        if not pending and len(block) == size and type(block) is bytes:
            yield block  # a read of exactly one piece, as most are: not copied
            continue
        view = memoryview(block)
        if pending:
            taken = view[: size - len(pending)]
            pending += taken
            view = view[len(taken) :]
            if len(pending) < size:
                continue
            yield bytes(pending)
            pending.clear()
        while len(view) >= size:
            yield bytes(view[:size])
            view = view[size:]
        pending += view
    if pending:
        yield bytes(pending)


def read_blocks(read: Callable[[int], bytes], count: int, block_size: int) -> Iterator[bytes]:
    """Yield the next ``count`` bytes that ``read(n)`` gives, in blocks of ``block_size`` at most.

    Stops early at the end (an empty read): a range of a file read as it streams.
    """
    left = count
    while left > 0:
        block = read(min(left, block_size))
        if not block:
            return
        left -= len(block)
        yield block


def read_part(read: Callable[[int], Any], size: int, digest: Digest | None = None) -> bytes:
    """Read ``size`` bytes (fewer only at the end) with ``read``, and feed them to ``digest``.

    A file gives them in one call, so in one buffer that is never copied; a
    stream that gives less per call (a pipe, a request body) is read again and
    the pieces joined.
    """
    data = _checked(read(size))
    if data and len(data) < size:
        pieces = [data]
        got = len(data)
        while got < size:
            more = _checked(read(size - got))
            if not more:
                break
            pieces.append(more)
            got += len(more)
        data = b"".join(pieces)
    data = data if type(data) is bytes else bytes(data)
    if digest is not None:
        digest.update(data)
    return data


class PartReader:
    """A stream over ``source`` whose ``read(n)`` returns exactly ``n`` bytes
    until the end, each fed to ``digest``: what an upload in parts reads.

    S3 refuses parts under 5 MiB but the last, and a GCS resumable upload ends
    at its first short chunk, so neither can take the short reads a request
    body gives. Each part is one ``read()`` of the source when it can, so it is
    in memory once, and only while it is sent.

    :param source: the stream, at the position to read from.
    :param digest: fed the bytes read from ``source``.
    :param head: bytes read from ``source`` before (and fed to ``digest``),
        given out first; uncopied if a read asks for all of them.
    """

    def __init__(self, source: SupportsRead, digest: Digest, head: bytes = b"") -> None:
        self._read = source.read
        self._digest = digest
        self._head = head

    def read(self, n: int | None = -1) -> bytes:
        head, self._head = self._head, b""
        if n is None or n < 0:
            pieces = [head]
            while block := read_part(self._read, BLOCK_SIZE, self._digest):
                pieces.append(block)
            return b"".join(pieces)
        if len(head) >= n:
            self._head = head[n:]
            return head[:n]  # head itself when n is its length
        rest = read_part(self._read, n - len(head), self._digest)
        return head + rest if head else rest


class BytesReader:
    """A seekable stream over content held in memory, which it never copies whole.

    ``io.BytesIO`` copies a ``bytearray`` or a ``memoryview`` it is given (it
    shares only ``bytes``): for an upload of content given in memory, that
    is the file twice in memory. Here each read copies just the bytes it
    returns, a part or a chunk of an upload.

    :param data: the content; a view of wider items is read as its bytes.
    """

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = byte_view(memoryview(data))
        self._pos = 0

    def read(self, n: int | None = -1) -> bytes:
        start = self._pos
        end = len(self._view) if n is None or n < 0 else min(len(self._view), start + n)
        self._pos = max(start, end)
        return bytes(self._view[start:end])

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self._view)


def _checked(chunk: Any) -> Any:
    if isinstance(chunk, str):
        raise TypeError(
            "Only bytes can be stored, but this file gives str: open it in binary mode ('rb')."
        )
    return chunk


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
