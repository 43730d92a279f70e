"""The databases the ORM tests run on: SQLite, PostgreSQL and MariaDB.

SQLite needs nothing; the two servers are the ones on 127.0.0.1 (PostgreSQL on
5432 as ``postgres`` without a password, MariaDB on 3306 as ``root`` without a
password), or those named by ``DEPOT_TEST_POSTGRESQL_URL`` and
``DEPOT_TEST_MARIADB_URL``. Each test session gets a database of its own on
each server, dropped at the end, so concurrent runs never see each other's
tables. A server is skipped only when nothing answers on its port, with the
reason in the test summary; any other failure is an error.

To run tests on every database, import the fixtures into a ``conftest.py``::

    from tests.databases import database, engine  # noqa: F401

``engine`` is then parametrised over :data:`DATABASES`. The hooks
:func:`tag_items` and :func:`summarize` count, at the end of the run, how many
tests ran, passed and were skipped on each database.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

__all__ = [
    "DATABASES",
    "TestDatabase",
    "Unreachable",
    "database",
    "engine",
    "open_database",
    "summarize",
    "tag_items",
]

#: The databases every ORM test runs on, in the order they run.
DATABASES = ("sqlite", "postgresql", "mariadb")

#: Where each server is, unless its environment variable names another URL.
SERVER_URLS = {
    "postgresql": (
        "DEPOT_TEST_POSTGRESQL_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    ),
    "mariadb": (
        "DEPOT_TEST_MARIADB_URL",
        "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4",
    ),
}

#: The user property naming the database a test ran on (see :func:`tag_items`).
PROPERTY = "database"


class Unreachable(Exception):
    """Nothing answers where the server should be; the message says where and why."""


@dataclass
class TestDatabase:
    """A database of this test session: its engine, and how to drop it."""

    __test__ = False  # not a test class, despite its name

    name: str
    engine: Engine
    _admin_url: URL | None = None
    _created: str | None = None

    def drop(self) -> None:
        """Close every connection and drop the session's database (SQLite: nothing to do)."""
        self.engine.dispose()
        if self._created is None:
            return
        assert self._admin_url is not None
        admin = sa.create_engine(self._admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {self._created}")
        finally:
            admin.dispose()


def open_database(name: str, directory: Path) -> TestDatabase:
    """A fresh, empty database on ``name`` (one of :data:`DATABASES`).

    :param directory: where the SQLite file goes.
    :raises Unreachable: the server's port does not answer.
    """
    if name == "sqlite":
        return TestDatabase(name, sqlite_engine(directory / "orm.sqlite"))
    if name not in SERVER_URLS:
        raise ValueError(f"Unknown test database {name!r}; choose one of {DATABASES}.")
    variable, default = SERVER_URLS[name]
    url = sa.engine.make_url(os.environ.get(variable) or default)
    probe(url, variable)
    created = f"depot_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {created}")
    finally:
        admin.dispose()
    return TestDatabase(name, sa.create_engine(url.set(database=created)), url, created)


def sqlite_engine(path: Path) -> Engine:
    """An engine on the SQLite file ``path`` on which SAVEPOINTs work.

    The sqlite3 module (before Python 3.12's ``autocommit``) opens and commits
    transactions on its own, which breaks SAVEPOINT; SQLAlchemy's documented
    fix is to let SQLAlchemy emit BEGIN itself.
    """
    engine = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def probe(url: URL, variable: str) -> None:
    """Raise :class:`Unreachable` unless something listens on the server's port."""
    if not url.host:
        return  # a Unix socket: let the driver say what is wrong
    port = url.port or {"postgresql": 5432, "mysql": 3306}.get(url.get_backend_name(), 0)
    try:
        socket.create_connection((url.host, port), timeout=3).close()
    except OSError as exc:
        raise Unreachable(
            f"no {url.get_backend_name()} server answers on {url.host}:{port} ({exc}); "
            f"start it, or set {variable} to the URL of one"
        ) from exc


@pytest.fixture(scope="session", params=DATABASES)
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestDatabase]:
    """This session's database on each of :data:`DATABASES` (skipped if its server is down)."""
    try:
        db = open_database(request.param, tmp_path_factory.mktemp(request.param))
    except Unreachable as exc:
        pytest.skip(f"{request.param}: {exc}")
    yield db
    db.drop()


@pytest.fixture
def engine(database: TestDatabase) -> Engine:
    """The engine of the database under test."""
    return database.engine


def tag_items(items: list[pytest.Item]) -> None:
    """Record on each test using :func:`database` which database it runs on.

    Call from ``pytest_collection_modifyitems``; the tag travels on the test's
    reports (``user_properties``), which :func:`summarize` counts.
    """
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if PROPERTY in params:
            item.user_properties.append((PROPERTY, params[PROPERTY]))


def summarize(terminalreporter: Any) -> None:
    """Print how many tests ran, passed, failed and were skipped on each database.

    Call from ``pytest_terminal_summary``.
    """
    outcomes: dict[str, dict[str, str]] = {}
    ranks = {"passed": 0, "xfailed": 0, "skipped": 1, "xpassed": 2, "failed": 3, "error": 3}
    for category, reports in terminalreporter.stats.items():
        if category not in ranks:
            continue
        for report in reports:
            where = dict(getattr(report, "user_properties", ())).get(PROPERTY)
            if where is None:
                continue
            seen = outcomes.setdefault(where, {})
            previous = seen.get(report.nodeid)
            # A test has up to three reports (setup, call, teardown): keep the worst.
            if previous is None or ranks[category] > ranks[previous]:
                seen[report.nodeid] = category
    if not outcomes:
        return
    terminalreporter.section("ORM tests per database")
    for name in sorted(outcomes, key=lambda n: DATABASES.index(n) if n in DATABASES else 99):
        counts = {"passed": 0, "skipped": 0, "failed": 0}
        for outcome in outcomes[name].values():
            key = {"xfailed": "passed", "xpassed": "failed", "error": "failed"}.get(
                outcome, outcome
            )
            counts[key] += 1
        ran = counts["passed"] + counts["failed"]
        terminalreporter.write_line(
            f"{name:<11} {ran} ran: {counts['passed']} passed, {counts['failed']} failed; "
            f"{counts['skipped']} skipped"
        )
