"""A session joined to a transaction it does not control (issue 12, finding 2).

SQLAlchemy's recipe for test suites: ``Session(bind=connection,
join_transaction_mode=...)`` on a connection already in a transaction. The
session's ``commit()`` is then not the database's: files are deleted only once
the connection's own transaction commits, and the files stored for it go if it
rolls back, in every ``join_transaction_mode``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.engine import Engine

from depot.fields._tracking import paths_of
from tests.fields.files import all_exist, exists, none_exist
from tests.fields.models import Document
from tests.fields.rows import add_document

pytestmark = pytest.mark.usefixtures("depot")

Maker = orm.sessionmaker[orm.Session]

MODES = ["conditional_savepoint", "create_savepoint", "rollback_only", "control_fully"]


@dataclass
class Committed:
    """The database under test, holding one committed document; what the tests check on it."""

    Session: Maker
    #: The committed document's value (its content: ``b"first"``).
    first: Any

    @property
    def engine(self) -> Engine:
        bind = self.Session.kw["bind"]
        assert isinstance(bind, Engine)
        return bind

    def row_file(self) -> Any:
        """The document's value as the database holds it now."""
        with self.Session() as s:
            return s.scalars(sa.select(Document)).one().attachment

    def assert_undone(self, new: list[str]) -> None:
        """The replacement was rolled back: the first file is the row's, the new one went."""
        assert all_exist(self.first)
        assert not any(exists(p) for p in new), "the file stored for the rolled-back row stayed"
        assert self.row_file().file.read() == b"first"

    def assert_replaced(self, new: list[str]) -> None:
        """The replacement was committed: the new file is the row's, the first one went."""
        assert none_exist(self.first)
        assert all(exists(p) for p in new)
        assert self.row_file().file.read() == b"second"


@pytest.fixture
def db(Session: Maker) -> Committed:  # noqa: N803
    return Committed(Session, add_document(Session))


@contextmanager
def outer_transaction(engine: Engine) -> Iterator[tuple[sa.Connection, sa.RootTransaction]]:
    """A connection and the transaction begun on it, which the test (not the session) ends."""
    with engine.connect() as connection:
        yield connection, connection.begin()


def joined_session(connection: sa.Connection, mode: str = "create_savepoint") -> orm.Session:
    return orm.Session(bind=connection, join_transaction_mode=mode)  # type: ignore[arg-type]


def replace_in_joined_session(connection: sa.Connection, mode: str) -> list[str]:
    """Replace the document's file in a session joined to ``connection``; commit the session."""
    with joined_session(connection, mode) as s:
        doc = s.scalars(sa.select(Document)).one()
        doc.attachment = b"second"
        new = paths_of(doc.attachment)
        s.commit()
    return new


@pytest.mark.parametrize("mode", MODES)
def test_outer_rollback_keeps_the_replaced_file(db: Committed, mode: str) -> None:
    with outer_transaction(db.engine) as (connection, outer):
        new = replace_in_joined_session(connection, mode)
        if mode == "control_fully":
            # The session committed the connection's transaction itself.
            assert not connection.in_transaction()
            assert none_exist(db.first)
            return
        assert all_exist(db.first), "deleted by a commit that was not the database's"
        outer.rollback()
    db.assert_undone(new)


@pytest.mark.parametrize("mode", MODES)
def test_outer_commit_deletes_the_replaced_file(db: Committed, mode: str) -> None:
    with outer_transaction(db.engine) as (connection, outer):
        new = replace_in_joined_session(connection, mode)
        if mode != "control_fully":
            assert all_exist(db.first)
            outer.commit()
    db.assert_replaced(new)


@pytest.mark.parametrize("mode", ["create_savepoint", "conditional_savepoint"])
def test_outer_savepoint_rolled_back_then_outer_commit(db: Committed, mode: str) -> None:
    """The session works inside a savepoint the test opened, which the test then rolls back."""
    with outer_transaction(db.engine) as (connection, outer):
        savepoint = connection.begin_nested()
        new = replace_in_joined_session(connection, mode)
        savepoint.rollback()
        outer.commit()
    db.assert_undone(new)


def test_several_sessions_in_one_outer_transaction(db: Committed) -> None:
    """One session lets go of the file, the next one takes it back: it is kept."""
    with outer_transaction(db.engine) as (connection, outer):
        with joined_session(connection) as s:
            doc = s.scalars(sa.select(Document)).one()
            kept = doc.attachment
            doc.attachment = None
            s.commit()
        with joined_session(connection) as s:
            s.add(Document(name="again", attachment=kept))
            s.commit()
        outer.commit()
    assert all_exist(db.first)


def test_connection_already_in_a_transaction_default_mode(db: Committed) -> None:
    """The default mode on a connection in a transaction: the session never commits it."""
    with db.engine.connect() as connection:
        connection.execute(sa.select(1))  # autobegins the connection's transaction
        with orm.Session(bind=connection) as s:
            s.scalars(sa.select(Document)).one().attachment = None
            s.commit()
        assert all_exist(db.first)
        connection.rollback()
    assert all_exist(db.first)
    assert db.row_file().file.read() == b"first"


def test_deleted_row_in_a_rolled_back_test_transaction(db: Committed) -> None:
    with outer_transaction(db.engine) as (connection, outer):
        with joined_session(connection) as s:
            s.delete(s.scalars(sa.select(Document)).one())
            s.commit()
        outer.rollback()
    assert all_exist(db.first)


def test_connection_closed_without_commit(db: Committed) -> None:
    with outer_transaction(db.engine) as (connection, _):
        new = replace_in_joined_session(connection, "create_savepoint")
    db.assert_undone(new)


def test_a_later_savepoint_rolled_back_leaves_the_session_commit(db: Committed) -> None:
    with outer_transaction(db.engine) as (connection, outer):
        new = replace_in_joined_session(connection, "create_savepoint")
        later = connection.begin_nested()
        connection.execute(sa.select(1))
        later.rollback()
        assert all_exist(db.first)
        outer.commit()
    db.assert_replaced(new)
