"""Fixtures of the model-field tests.

``engine`` runs each test on every database of ``tests/databases.py``; ``depot``
on the memory and the local backend, configured as the default depot.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from tests.databases import TestDatabase, database, engine
from tests.fields.models import Base

__all__ = ["database", "engine"]


@pytest.fixture(params=["memory", "local"])
def depot(request: pytest.FixtureRequest) -> FileStorage:
    """The default depot, on the backend under test; 'other' is a memory depot."""
    settings: dict[str, Any] = request.getfixturevalue(f"{request.param}_settings")
    storage = DepotManager.configure("default", settings)
    DepotManager.configure("other", {"depot.backend": "memory"})
    return storage


@pytest.fixture(scope="session")
def _schema(database: TestDatabase) -> TestDatabase:
    Base.metadata.create_all(database.engine)
    return database


@pytest.fixture
def Session(_schema: TestDatabase) -> orm.sessionmaker[orm.Session]:  # noqa: N802 - used as one
    """A sessionmaker on the database under test, whose tables are empty."""
    with _schema.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            # Core statements: the rows go without their files being touched.
            conn.execute(sa.delete(table))
    return orm.sessionmaker(bind=_schema.engine)


@pytest.fixture
def session(Session: orm.sessionmaker[orm.Session]) -> Iterator[orm.Session]:  # noqa: N803
    with Session() as s:
        yield s
