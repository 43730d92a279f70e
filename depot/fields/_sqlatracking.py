"""Which SQLAlchemy transaction each stored file belongs to, from session and flush events.

:mod:`depot.fields.sqlalchemy` converts assigned content into stored files and
tells this module about them (:func:`track_stored`, :func:`hold`); the flush
events here record what each written row refers to, and the session events
hand each transaction's :class:`~depot.fields._tracking.Changes` to its parent
when a savepoint is released, or delete its garbage when it ends.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import InstanceState, Mapper, Session, SessionTransaction
from sqlalchemy.orm.attributes import PASSIVE_NO_INITIALIZE, get_history

from depot.fields._tracking import (
    Changes,
    claim,
    delete_files,
    is_unclaimed,
    mark_unclaimed,
    paths_of,
)

#: The key under which depot keeps its bookkeeping in ``Session.info`` and
#: ``InstanceState.info``.
INFO_KEY = "depot.fields.sqlalchemy"

log = logging.getLogger("depot.fields.sqlalchemy")

#: The file attributes (inherited ones too) of each mapper that has some.
file_keys: weakref.WeakKeyDictionary[Mapper[Any], tuple[str, ...]] = weakref.WeakKeyDictionary()


def install() -> None:
    """Listen to every session's transactions."""
    event.listen(Session, "after_transaction_create", _transaction_created)
    event.listen(Session, "after_commit", _committed)
    event.listen(Session, "after_transaction_end", _transaction_ended)
    event.listen(Session, "before_attach", _attached)


def watch_mapper(mapper: Mapper[Any], keys: tuple[str, ...]) -> None:
    """At each flush, record what the rows of ``mapper`` refer to in its file attributes."""
    file_keys[mapper] = keys
    for name, handler in (
        ("after_insert", _after_insert),
        ("before_update", _before_update),
        ("before_delete", _before_delete),
    ):
        if not event.contains(mapper, name, handler):
            event.listen(mapper, name, handler)


def track_stored(state: InstanceState[Any], values: Sequence[Any]) -> None:
    """Files were just stored for the object of ``state``."""
    for value in values:
        mark_unclaimed(value)
    hold(state, values)


class _SessionFiles:
    """What a session's open transactions and savepoints did with files."""

    def __init__(self) -> None:
        self.changes: dict[SessionTransaction, Changes] = {}
        # Objects holding files stored while the session had no transaction:
        # the next transaction takes them (they are lost if it rolls back).
        self.holding: list[InstanceState[Any]] = []


def _session_files(session: Session) -> _SessionFiles:
    files = session.info.get(INFO_KEY)
    if files is None:
        files = session.info[INFO_KEY] = _SessionFiles()
    assert isinstance(files, _SessionFiles)
    return files


def _current_changes(session: Session | None) -> Changes | None:
    """The changes of the innermost savepoint or transaction of ``session``, if one is open."""
    if session is None:
        return None
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:
        return None
    return _session_files(session).changes.setdefault(transaction, Changes())


def hold(state: InstanceState[Any], values: Sequence[Any]) -> None:
    """Give ``values`` to the open transaction of the object's session, or keep them on it."""
    changes = _current_changes(state.session)
    if changes is not None:
        for value in values:
            claim(value, changes)
        return
    # No transaction to give them to: they wait on the object until it is
    # attached to a session, or its session begins a transaction.
    waiting = [value for value in values if is_unclaimed(value)]
    if not waiting:
        return
    state.info.setdefault(INFO_KEY, []).extend(waiting)
    if state.session is not None:
        _session_files(state.session).holding.append(state)


def _claim_held(state: InstanceState[Any], changes: Changes) -> None:
    for value in state.info.pop(INFO_KEY, ()):
        claim(value, changes)


def _transaction_created(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return
    files = session.info.get(INFO_KEY)
    if files is None or not files.holding:
        return
    holding, files.holding = files.holding, []
    changes = files.changes.setdefault(transaction, Changes())
    for state in holding:
        if state.session is session:
            _claim_held(state, changes)


def _attached(session: Session, instance: Any) -> None:
    state = inspect(instance)
    if INFO_KEY not in state.info:
        return
    changes = _current_changes(session)
    if changes is not None:
        _claim_held(state, changes)
    else:
        _session_files(session).holding.append(state)


def _committed(session: Session) -> None:
    files = session.info.get(INFO_KEY)
    if files is None:
        return
    # Savepoints commit innermost first, before their transaction: the one
    # committing now is the innermost still open.
    transaction = session.get_nested_transaction() or session.get_transaction()
    changes = files.changes.get(transaction)
    if changes is not None:
        changes.committed = True


def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    files = session.info.get(INFO_KEY)
    if files is None:
        return
    changes = files.changes.pop(transaction, None)
    if changes is None:
        return
    if transaction.nested and changes.committed:
        # Released: its files now stand or fall with the enclosing transaction.
        parent = _boundary(transaction.parent)
        assert parent is not None  # a savepoint always has one
        files.changes.setdefault(parent, Changes()).absorb(changes)
    elif transaction.nested:
        delete_files(changes.garbage_after_rollback(), "its savepoint was rolled back", log)
    elif changes.committed:
        delete_files(changes.garbage_after_commit(), "no row refers to it after the commit", log)
    else:
        delete_files(changes.garbage_after_rollback(), "its transaction was rolled back", log)


def _boundary(transaction: SessionTransaction | None) -> SessionTransaction | None:
    """The savepoint or root transaction ``transaction`` is part of."""
    while transaction is not None and not (transaction.nested or transaction.parent is None):
        transaction = transaction.parent
    return transaction


# -- what each written row refers to ----------------------------------------------------------


def _after_insert(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    state = inspect(target)
    changes = _flush_changes(state)
    for key in file_keys.get(mapper, ()):
        value = state.dict.get(key)
        _claim_value(value, changes)
        changes.add_references(paths_of(value), +1)


def _before_update(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    state = inspect(target)
    changes = _flush_changes(state)
    for key in file_keys.get(mapper, ()):
        history = get_history(target, key, passive=PASSIVE_NO_INITIALIZE)
        if not history.added:
            continue
        new = history.added[0]
        _claim_value(new, changes)
        # The value replaced is the one read from the row when it was loaded;
        # if it was not loaded, the row still holds it: ask the database.
        if history.deleted:
            old = history.deleted[0]
        else:
            old = _stored_value(mapper, connection, state, key)
        changes.add_references(paths_of(old), -1)
        changes.add_references(paths_of(new), +1)


def _before_delete(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    state = inspect(target)
    changes = _flush_changes(state)
    for key in file_keys.get(mapper, ()):
        history = get_history(target, key, passive=PASSIVE_NO_INITIALIZE)
        if history.deleted:
            old = history.deleted[0]
        elif history.unchanged:
            old = history.unchanged[0]
        else:
            old = _stored_value(mapper, connection, state, key)
        # SQLAlchemy 1.4 gives None rather than () for an attribute never loaded.
        for value in history.added or ():
            _claim_value(value, changes)
        changes.add_references(paths_of(old), -1)


def _flush_changes(state: InstanceState[Any]) -> Changes:
    changes = _current_changes(state.session)
    # A flush always runs inside a transaction.
    assert changes is not None
    _claim_held(state, changes)
    return changes


def _claim_value(value: Any, changes: Changes) -> None:
    for item in value if isinstance(value, list) else [value]:
        if item is not None:
            claim(item, changes)


def _stored_value(
    mapper: Mapper[Any], connection: Connection, state: InstanceState[Any], key: str
) -> Any:
    """The value of ``key`` the database holds for the row of ``state``."""
    assert state.key is not None  # only rows already in the database are updated or deleted
    column = mapper.get_property(key).columns[0]
    query = (
        select(column)
        .select_from(mapper.persist_selectable)
        .where(*(pk == value for pk, value in zip(mapper.primary_key, state.key[1], strict=True)))
    )
    return connection.execute(query).scalar()
