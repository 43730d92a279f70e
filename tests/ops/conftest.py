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


@pytest.fixture(scope="session")
def _ops_schema(database: Any) -> Any:
    from tests.ops.models import OpsBase

    OpsBase.metadata.create_all(database.engine)
    return database


@pytest.fixture
def db(_ops_schema: Any) -> Any:
    """The engine of the database under test, its operations tables empty."""
    import sqlalchemy as sa

    from tests.ops.models import OpsBase

    with _ops_schema.engine.begin() as conn:
        for table in reversed(OpsBase.metadata.sorted_tables):
            conn.execute(sa.delete(table))
    return _ops_schema.engine


def png(color: str = "red", size: tuple[int, int] = (40, 30)) -> bytes:
    """A small PNG image."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()
