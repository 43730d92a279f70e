"""The SQL backend, once per database of ``tests/databases.py``: SQLite, PostgreSQL, MariaDB.

``BACKENDS`` lists it as ``sql-sqlite``, ``sql-postgresql`` and ``sql-mariadb``;
each test gets tables of its own (a fresh prefix) in the test session's
database on that server, dropped afterwards. A server is skipped only when
nothing answers on its port, as the ORM tests do.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.databases import TestDatabase, Unreachable, open_database


@pytest.fixture(scope="session")
def sql_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The session's database on each server, opened on first use (or why it cannot be)."""
    opened: dict[str, Any] = {}
    yield opened
    for db in opened.values():
        if isinstance(db, TestDatabase):
            db.drop()


def sql_database(opened: dict[str, Any], name: str, tmp: Path) -> TestDatabase:
    """The session's database ``name``; skips the test if its server does not answer."""
    if name not in opened:
        try:
            opened[name] = open_database(name, tmp)
        except Unreachable as exc:
            opened[name] = f"{name}: {exc}"
    db = opened[name]
    if not isinstance(db, TestDatabase):
        pytest.skip(db)
    return db


def sql_settings_on(
    name: str, opened: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    db = sql_database(opened, name, tmp_path_factory.getbasetemp())
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    yield {"depot.backend": "sql", "depot.engine": db.engine, "depot.prefix": prefix}
    drop_tables(db, prefix)


def drop_tables(db: TestDatabase, prefix: str) -> None:
    """Drop the tables a test's storage made (nothing if it made none)."""
    import sqlalchemy as sa

    from depot.io.sql import define_tables

    metadata = sa.MetaData()
    define_tables(metadata, prefix=prefix)
    with db.engine.begin() as conn:
        metadata.drop_all(conn, checkfirst=True)


@pytest.fixture
def sql_sqlite_settings(
    sql_databases: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    yield from sql_settings_on("sqlite", sql_databases, tmp_path_factory)


@pytest.fixture
def sql_postgresql_settings(
    sql_databases: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    yield from sql_settings_on("postgresql", sql_databases, tmp_path_factory)


@pytest.fixture
def sql_mariadb_settings(
    sql_databases: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    yield from sql_settings_on("mariadb", sql_databases, tmp_path_factory)
