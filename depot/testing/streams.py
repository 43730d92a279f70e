"""Contents for storage tests: streams that cannot seek, large files never kept in memory.

.. versionadded:: 1.0
"""

from __future__ import annotations

import hashlib
import io
import os

__all__ = ["MiB", "Generated", "OneWayStream", "sha256"]

#: A mebibyte, the unit the size tests count in.
MiB = 1024 * 1024


def sha256(data: bytes) -> str:
    """The checksum a depot backend records for ``data``: ``"sha256:<hex>"``.

    Computed here with :mod:`hashlib`, apart from the backends' own code, so
    that a test comparing the two checks the backend.
    """
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Generated:
    """``size`` random bytes made as they are read and never kept, hashed on the way.

    Stores a file larger than the test process should hold. After the upload,
    :attr:`checksum` is the checksum of what was read.

    :param size: how many bytes it gives.
    :param seekable: whether it can be rewound (``seek(0)`` only), like a file.
    """

    def __init__(self, size: int, seekable: bool = False) -> None:
        self.size = size
        #: How many bytes were read so far.
        self.sent = 0
        self._block = os.urandom(MiB)
        self._seekable = seekable
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        """Give the next ``n`` bytes (all that are left when ``n`` is negative)."""
        n = self.size - self.sent if n < 0 else min(n, self.size - self.sent)
        offset = self.sent % MiB
        data = (self._block[offset:] + self._block * (n // MiB + 1))[:n]
        self.sent += len(data)
        self.hash.update(data)
        return data

    def seekable(self) -> bool:
        """Whether it was made seekable."""
        return self._seekable

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Rewind to the start; any other move raises :class:`io.UnsupportedOperation`."""
        if not self._seekable or (offset, whence) != (0, io.SEEK_SET):
            raise io.UnsupportedOperation("seek")
        self.sent = 0
        self.hash = hashlib.sha256()
        return 0

    @property
    def checksum(self) -> str:
        """The checksum of the bytes read so far, in the form of :func:`sha256`."""
        return "sha256:" + self.hash.hexdigest()


class OneWayStream:
    """``data`` as a stream that cannot seek and gives at most ``piece`` bytes a read.

    What a request body or a pipe is: a backend has to take the bytes as they
    come, in short reads, and cannot go back.
    """

    def __init__(self, data: bytes, piece: int = 1000) -> None:
        self._data = io.BytesIO(data)
        self._piece = piece

    def read(self, n: int = -1) -> bytes:
        """Give up to ``n`` bytes, never more than ``piece``."""
        return self._data.read(self._piece if n < 0 else min(n, self._piece))

    def seekable(self) -> bool:
        """Never."""
        return False

    def seek(self, *args: object) -> int:
        """Raise :class:`io.UnsupportedOperation`."""
        raise io.UnsupportedOperation("seek")
