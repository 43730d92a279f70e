"""A database per test: on Ming's in-memory datastore, or on ``DEPOT_TEST_MONGODB_URI``'s MongoDB.

The same tests run on both: ``mim://`` by default, a real server when the
variable names one (each test gets a database of its own there, dropped
afterwards). Depots are memory and local ones, as ``default`` and ``other``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("ming", reason="the 'ming' extra is not installed")

from ming import create_datastore  # noqa: E402
from ming.datastore import DataStore  # noqa: E402

from depot.io.interfaces import FileStorage  # noqa: E402
from depot.manager import DepotManager  # noqa: E402
from tests.backends.gridfs import REAL_SERVER  # noqa: E402
from tests.ming import models  # noqa: E402


@pytest.fixture
def datastore(request: pytest.FixtureRequest) -> Iterator[DataStore]:
    """A Ming datastore on a new, empty database, dropped after the test."""
    database = f"depot_ming_{uuid.uuid4().hex[:12]}"
    if REAL_SERVER:
        problem = request.getfixturevalue("_real_server_problem")
        if problem:
            pytest.skip(problem)
        uri = urlsplit(REAL_SERVER)._replace(path="/" + database).geturl()
    else:
        uri = f"mim:///{database}"
    datastore = create_datastore(uri)
    try:
        yield datastore
    finally:
        datastore.conn.drop_database(database)
        if REAL_SERVER:
            datastore.conn.close()


@pytest.fixture(params=["memory", "local"])
def depot(request: pytest.FixtureRequest) -> FileStorage:
    """The default depot (and a second one, ``other``) of the backend under test."""
    settings: dict[str, Any] = request.getfixturevalue(f"{request.param}_settings")
    if request.param == "local":
        other = {**settings, "depot.storage_path": settings["depot.storage_path"] + "-other"}
    else:
        other = settings
    default = DepotManager.configure("default", settings)
    DepotManager.configure("other", other)
    return default


@pytest.fixture
def bound(datastore: DataStore) -> Iterator[Any]:
    """The models' sessions bound to this test's database; cleared after it."""
    sessions = [models.session.impl, models.main_session, models.bare_session.impl]
    for ming_session in sessions:
        ming_session.bind = datastore
    try:
        yield models.session
    finally:
        models.session.clear()
        models.thread_session.close()
        models.bare_session.clear()
        for ming_session in sessions:
            ming_session.bind = None


@pytest.fixture
def session(bound: Any, depot: FileStorage) -> Any:
    """The models' session, with the depots of the backend under test."""
    return bound
