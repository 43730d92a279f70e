"""The GridFS backend: on mongomock, or on the MongoDB that ``DEPOT_TEST_MONGODB_URI`` names.

With mongomock, ``pymongo.MongoClient`` is replaced for the test by mongomock's
(``mongomock.patch``: clients of one address share their data), and pymongo's
GridFS classes are told to accept mongomock's collections; depot's code runs
unchanged, pymongo's GridFS reader included. With a real server each test gets
a database of its own, dropped afterwards.
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

#: e.g. ``mongodb://localhost:27017``; any database in it is replaced per test.
REAL_SERVER = os.environ.get("DEPOT_TEST_MONGODB_URI")
MOCK_SERVER = "mongodb://localhost:27017"


@pytest.fixture(scope="session")
def _real_server_problem() -> str | None:
    """Why the server of ``DEPOT_TEST_MONGODB_URI`` cannot be used; asked once."""
    pymongo = pytest.importorskip("pymongo")
    assert REAL_SERVER
    client = pymongo.MongoClient(REAL_SERVER, serverSelectionTimeoutMS=3000)
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError as exc:
        return f"DEPOT_TEST_MONGODB_URI: MongoDB unreachable: {str(exc)[:200]}"
    finally:
        client.close()
    return None


@pytest.fixture
def mongodb_uri(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[str]:
    """A MongoDB URI naming a fresh, empty database for this test."""
    pymongo = pytest.importorskip("pymongo")
    database = f"depot_test_{uuid.uuid4().hex[:12]}"
    if REAL_SERVER:
        problem = request.getfixturevalue("_real_server_problem")
        if problem:
            pytest.skip(problem)
        yield from _real_database(pymongo, monkeypatch, database)
        return
    mongomock = pytest.importorskip("mongomock")
    _let_gridfs_read_mongomock(monkeypatch, mongomock, pymongo)
    with mongomock.patch(servers=(("localhost", 27017),)):
        yield f"{MOCK_SERVER}/{database}"


@pytest.fixture
def gridfs_settings(mongodb_uri: str) -> dict[str, Any]:
    return {"depot.backend": "gridfs", "depot.mongouri": mongodb_uri}


def _real_database(pymongo: Any, monkeypatch: pytest.MonkeyPatch, database: str) -> Iterator[str]:
    assert REAL_SERVER
    uri = urlsplit(REAL_SERVER)._replace(path="/" + database).geturl()
    admin = pymongo.MongoClient(uri)
    # Storages are not closed by the tests that make them; close their clients
    # here, or pymongo warns about them (an error under filterwarnings=error).
    opened: list[Any] = []

    class ClosedAfterTheTest(pymongo.MongoClient):  # type: ignore[misc, name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            opened.append(self)

    monkeypatch.setattr(pymongo, "MongoClient", ClosedAfterTheTest)
    try:
        yield uri
    finally:
        for client in opened:
            client.close()
        admin.drop_database(database)
        admin.close()


def _let_gridfs_read_mongomock(
    monkeypatch: pytest.MonkeyPatch, mongomock: Any, pymongo: Any
) -> None:
    # What mongomock.gridfs.enable_gridfs_integration() does, undone after the
    # test: pymongo's GridFS classes check isinstance() against pymongo's
    # Database and Collection only.
    import gridfs
    from mongomock.gridfs import _create_grid_out_cursor

    module = importlib.import_module(gridfs.GridOut.__module__)
    monkeypatch.setattr(module, "Database", (pymongo.database.Database, mongomock.Database))
    monkeypatch.setattr(module, "Collection", (pymongo.collection.Collection, mongomock.Collection))
    monkeypatch.setattr(module, "GridOutCursor", _create_grid_out_cursor)
