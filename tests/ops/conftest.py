"""Fixtures of the operations tests: depots on real backends, databases from tests/databases.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from tests.databases import database, engine

__all__ = ["database", "engine"]

#: The time the source files of the tests were stored at: long ago, so a copy
#: that records "now" instead is seen.
OLD = "2020-02-03 04:05:06"


@pytest.fixture
def frozen_old() -> Iterator[None]:
    """Files stored meanwhile record :data:`OLD` as their last_modified."""
    with mock.patch("depot.io.utils.timestamp", return_value=OLD):
        yield


def configured(name: str, settings: dict[str, Any]) -> FileStorage:
    return DepotManager.configure(name, settings)


@pytest.fixture
def local_fast(tmp_path: Any) -> dict[str, Any]:
    """A local depot without fsync: the tests store thousands of files."""
    return {
        "depot.backend": "local",
        "depot.storage_path": str(tmp_path / "fast"),
        "depot.fsync": "false",
    }
