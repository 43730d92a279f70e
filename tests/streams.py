"""Streams for tests that store large files without keeping them in memory.

The ones the contract suite uses live in :mod:`depot.testing.streams` and are
imported from here too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from depot.testing.streams import Generated, MiB, OneWayStream, sha256

__all__ = ["FileStream", "Generated", "MiB", "OneWayStream", "random_file", "sha256"]


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
