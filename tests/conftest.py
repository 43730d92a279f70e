"""Fixtures shared by every test module.

``storage`` is the backend under test: the contract suite and the middleware
tests run once per backend. A backend joins by adding one entry to
``STORAGE_FACTORIES``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from depot.io.interfaces import FileStorage
from depot.manager import DepotManager


def _memory(tmp_path: Path) -> FileStorage:
    from depot.io.memory import MemoryFileStorage

    return MemoryFileStorage()


def _local(tmp_path: Path) -> FileStorage:
    from depot.io.local import LocalFileStorage

    return LocalFileStorage(str(tmp_path / "files"))


STORAGE_FACTORIES: dict[str, Callable[[Path], FileStorage]] = {
    "memory": _memory,
    "local": _local,
}


@pytest.fixture(params=sorted(STORAGE_FACTORIES))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> FileStorage:
    return STORAGE_FACTORIES[request.param](tmp_path)


@pytest.fixture(autouse=True)
def _fresh_manager() -> Iterator[None]:
    DepotManager._clear()
    yield
    DepotManager._clear()
