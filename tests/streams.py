"""Streams for tests that store large files without keeping them in memory."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


def sha256(data: bytes) -> str:
    """depot's checksum of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Generated:
    """``size`` bytes made on the fly and never kept, hashed as they are read."""

    def __init__(self, size: int, seekable: bool = False) -> None:
        self.size = size
        self.sent = 0
        self._block = os.urandom(MiB)
        self._seekable = seekable
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.sent if n < 0 else min(n, self.size - self.sent)
        offset = self.sent % MiB
        data = (self._block[offset:] + self._block * (n // MiB + 1))[:n]
        self.sent += len(data)
        self.hash.update(data)
        return data

    def seekable(self) -> bool:
        return self._seekable

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if not self._seekable or (offset, whence) != (0, io.SEEK_SET):
            raise io.UnsupportedOperation("seek")
        self.sent = 0
        self.hash = hashlib.sha256()
        return 0

    @property
    def checksum(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class OneWayStream:
    """A stream that cannot seek, like a request body or a pipe."""

    def __init__(self, data: bytes, piece: int = 1000) -> None:
        self._data = io.BytesIO(data)
        self._piece = piece

    def read(self, n: int = -1) -> bytes:
        return self._data.read(self._piece if n < 0 else min(n, self._piece))

    def seekable(self) -> bool:
        return False

    def seek(self, *args: object) -> int:
        raise io.UnsupportedOperation("seek")


class FileStream:
    """An open file seen as a stream that cannot seek, like a request body."""

    def __init__(self, file: Any) -> None:
        self.read = file.read

    def seekable(self) -> bool:
        return False


def random_file(path: Path, mib: int) -> Path:
    """Write ``mib`` MiB of random bytes to ``path``, a MiB at a time."""
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MiB))
    return path
