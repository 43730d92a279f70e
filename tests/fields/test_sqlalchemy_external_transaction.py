"""A session joined to a transaction it does not control (issue 12, finding 2).

SQLAlchemy's recipe for test suites: ``Session(bind=connection,
join_transaction_mode=...)`` on a connection already in a transaction. The
session's ``commit()`` is then not the database's: files are deleted only once
the connection's own transaction commits, and the files stored for it go if it
rolls back, in every ``join_transaction_mode``.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.engine import Engine

from depot.fields._tracking import paths_of
from tests.fields.files import all_exist, exists, none_exist
from tests.fields.models import Document

pytestmark = pytest.mark.usefixtures("depot")

Maker = orm.sessionmaker[orm.Session]

MODES = ["conditional_savepoint", "create_savepoint", "rollback_only", "control_fully"]


@pytest.fixture
def bound_engine(Session: Maker) -> Engine:  # noqa: N803
    """The engine of the database under test, its tables emptied."""
    bind = Session.kw["bind"]
    assert isinstance(bind, Engine)
    return bind


@pytest.fixture
def first(Session: Maker) -> Any:  # noqa: N803
    """A committed document's value."""
    with Session(expire_on_commit=False) as s:
        doc = Document(name="doc", attachment=b"first")
        s.add(doc)
        s.commit()
    return doc.attachment


def row_file(Session: Maker) -> Any:  # noqa: N803
    with Session() as s:
        return s.scalars(sa.select(Document)).one().attachment


def replace_in_joined_session(connection: sa.Connection, mode: str) -> list[str]:
    """Replace the document's file in a session joined to ``connection``; commit the session."""
    with orm.Session(bind=connection, join_transaction_mode=mode) as s:  # type: ignore[arg-type]
        doc = s.scalars(sa.select(Document)).one()
        doc.attachment = b"second"
        new = paths_of(doc.attachment)
        s.commit()
    return new


@pytest.mark.parametrize("mode", MODES)
def test_outer_rollback_keeps_the_replaced_file(
    bound_engine: Engine,
    Session: Maker,
    first: Any,
    mode: str,  # noqa: N803
) -> None:
    with bound_engine.connect() as connection:
        outer = connection.begin()
        new = replace_in_joined_session(connection, mode)
        if mode == "control_fully":
            # The session committed the connection's transaction itself.
            assert not connection.in_transaction()
            assert none_exist(first)
            return
        assert all_exist(first), "deleted by a commit that was not the database's"
        outer.rollback()
    assert all_exist(first)
    assert not any(exists(p) for p in new), "the file stored for the rolled-back row stayed"
    assert row_file(Session).file.read() == b"first"


@pytest.mark.parametrize("mode", MODES)
def test_outer_commit_deletes_the_replaced_file(
    bound_engine: Engine,
    Session: Maker,
    first: Any,
    mode: str,  # noqa: N803
) -> None:
    with bound_engine.connect() as connection:
        outer = connection.begin()
        new = replace_in_joined_session(connection, mode)
        if mode != "control_fully":
            assert all_exist(first)
            outer.commit()
    assert none_exist(first)
    assert all(exists(p) for p in new)
    assert row_file(Session).file.read() == b"second"


@pytest.mark.parametrize("mode", ["create_savepoint", "conditional_savepoint"])
def test_outer_savepoint_rolled_back_then_outer_commit(
    bound_engine: Engine,
    Session: Maker,
    first: Any,
    mode: str,  # noqa: N803
) -> None:
    """The session works inside a savepoint the test opened, which the test then rolls back."""
    with bound_engine.connect() as connection:
        outer = connection.begin()
        savepoint = connection.begin_nested()
        new = replace_in_joined_session(connection, mode)
        savepoint.rollback()
        outer.commit()
    assert row_file(Session).file.read() == b"first"
    assert all_exist(first)
    assert not any(exists(p) for p in new), "the file stored for the rolled-back row stayed"


def test_several_sessions_in_one_outer_transaction(
    bound_engine: Engine,
    Session: Maker,
    first: Any,  # noqa: N803
) -> None:
    """One session lets go of the file, the next one takes it back: it is kept."""
    with bound_engine.connect() as connection:
        outer = connection.begin()
        with orm.Session(bind=connection, join_transaction_mode="create_savepoint") as s:
            doc = s.scalars(sa.select(Document)).one()
            kept = doc.attachment
            doc.attachment = None
            s.commit()
        with orm.Session(bind=connection, join_transaction_mode="create_savepoint") as s:
            s.add(Document(name="again", attachment=kept))
            s.commit()
        outer.commit()
    assert all_exist(first)


def test_connection_already_in_a_transaction_default_mode(
    bound_engine: Engine,
    Session: Maker,
    first: Any,  # noqa: N803
) -> None:
    """The default mode on a connection in a transaction: the session never commits it."""
    with bound_engine.connect() as connection:
        connection.execute(sa.select(1))  # autobegins the connection's transaction
        with orm.Session(bind=connection) as s:
            s.scalars(sa.select(Document)).one().attachment = None
            s.commit()
        assert all_exist(first)
        connection.rollback()
    assert all_exist(first)
    assert row_file(Session).file.read() == b"first"


def test_deleted_row_in_a_rolled_back_test_transaction(
    bound_engine: Engine,
    Session: Maker,
    first: Any,  # noqa: N803
) -> None:
    with bound_engine.connect() as connection:
        outer = connection.begin()
        with orm.Session(bind=connection, join_transaction_mode="create_savepoint") as s:
            s.delete(s.scalars(sa.select(Document)).one())
            s.commit()
        outer.rollback()
    assert all_exist(first)


def test_connection_closed_without_commit(
    bound_engine: Engine,
    Session: Maker,
    first: Any,  # noqa: N803
) -> None:
    with bound_engine.connect() as connection:
        connection.begin()
        new = replace_in_joined_session(connection, "create_savepoint")
    assert all_exist(first)
    assert not any(exists(p) for p in new)


def test_a_later_savepoint_rolled_back_leaves_the_session_commit(
    bound_engine: Engine,
    Session: Maker,
    first: Any,  # noqa: N803
) -> None:
    with bound_engine.connect() as connection:
        outer = connection.begin()
        new = replace_in_joined_session(connection, "create_savepoint")
        later = connection.begin_nested()
        connection.execute(sa.select(1))
        later.rollback()
        assert all_exist(first)
        outer.commit()
    assert none_exist(first)
    assert all(exists(p) for p in new)
    assert row_file(Session).file.read() == b"second"
