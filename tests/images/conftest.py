"""Fixtures of the image tests: each runs on a memory depot and on a local one.

The ORM tests also run on each database of tests/databases.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from tests.databases import database, engine

__all__ = ["database", "engine"]

SETTINGS = {
    "memory": lambda tmp_path: {"depot.backend": "depot.io.memory.MemoryFileStorage"},
    "local": lambda tmp_path: {
        "depot.backend": "depot.io.local.LocalFileStorage",
        "depot.storage_path": str(tmp_path / "depot"),
    },
}


@pytest.fixture(params=sorted(SETTINGS))
def depot(request: pytest.FixtureRequest, tmp_path: Path) -> FileStorage:
    """The default depot: memory, then local."""
    settings: dict[str, Any] = SETTINGS[request.param](tmp_path)
    return DepotManager.configure("default", settings)


@pytest.fixture
def middleware() -> Any:
    """The registered middleware, so that URLs can be built."""
    return DepotManager.make_middleware(lambda environ, start_response: [])
