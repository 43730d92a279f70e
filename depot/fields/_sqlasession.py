"""The events of a session's transactions, which decide when their files are garbage.

Each transaction and savepoint gets its :class:`~depot.fields._sqlatracking.Changes`
when something first needs them; a savepoint released passes them to its
parent, one rolled back deletes what was stored for it; the root transaction,
once it ended, deletes what no row refers to after its commit, or what was
stored for it after its rollback. A session joined to an external transaction hands its
changes to that connection instead (:mod:`depot.fields._sqlaconnection`).
:func:`install` listens to every session, once, when
:mod:`depot.fields.sqlalchemy` is imported.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, SessionTransaction

from depot.fields._sqlabulk import bulk_statement
from depot.fields._sqlaconnection import (
    commit_failed,
    commit_sent,
    defer,
    in_transaction,
    watch_connection,
)
from depot.fields._sqlashared import loaded_paths, unshared
from depot.fields._sqlatracking import (
    INFO_KEY,
    Changes,
    SessionFiles,
    claim_held,
    current_changes,
    delete_abandoned,
    delete_garbage,
    delete_now,
    log,
    session_files,
    writers_of,
)
from depot.fields._tracking import paths_of


def install() -> None:
    """Listen to every session's transactions."""
    event.listen(Session, "after_transaction_create", _transaction_created)
    event.listen(Session, "after_begin", _began)
    event.listen(Session, "after_commit", _committed)
    event.listen(Session, "after_transaction_end", _transaction_ended)
    event.listen(Session, "before_attach", _attached)
    event.listen(Session, "do_orm_execute", bulk_statement)


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
            claim_held(state, changes)


def _attached(session: Session, instance: Any) -> None:
    state = inspect(instance)
    if INFO_KEY not in state.info:
        return
    changes = current_changes(session)
    if changes is not None:
        claim_held(state, changes)
    else:
        session_files(session).holding.append(state)


def _began(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    root = transaction
    while root.parent is not None:
        root = root.parent
    connections = session_files(session).connections.setdefault(root, [])
    if connection not in connections:
        connections.append(connection)
    commit_sent.discard(connection)
    watch_connection(connection)


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
    if transaction is not None and transaction.parent is None:
        for connection in files.connections.get(transaction, ()):
            commit_sent.discard(connection)
        if changes is not None and (changes.references or changes.stored):
            # Now, while the objects still hold what was loaded (a commit expires them next).
            changes.kept |= loaded_paths(session, changes.bulk_changed)


def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    files = session.info.get(INFO_KEY)
    if files is None:
        delete_abandoned()
        return
    changes = files.changes.pop(transaction, None)
    connections = files.connections.pop(transaction, [])
    if changes is None:
        delete_abandoned()
        return
    if transaction.nested and changes.committed:
        # Released: its files now stand or fall with the enclosing transaction.
        parent = _boundary(transaction.parent)
        assert parent is not None  # a savepoint always has one
        files.changes.setdefault(parent, Changes()).absorb(changes)
    elif transaction.nested:
        _savepoint_rolled_back(files, transaction, changes)
    elif changes.committed:
        # Connections still in a transaction once the session committed are in
        # someone else's: the database commits when that one does.
        outer = [connection for connection in connections if in_transaction(connection)]
        if not outer:
            garbage = unshared(session, changes.garbage_after_commit())
            delete_garbage(garbage, "no row refers to it after the commit")
        elif len(outer) == 1:
            defer(outer[0], changes)
        else:
            log.warning(
                "A session committed into transactions of %d connections it does not "
                "control; the files it replaced or stored stay in their depots: %s",
                len(outer),
                ", ".join(sorted(changes.garbage_after_commit())),
            )
    elif any(connection in commit_sent for connection in connections):
        for connection in connections:
            commit_sent.discard(connection)
        commit_failed(changes)
    else:
        delete_garbage(changes.garbage_after_rollback(), "its transaction was rolled back")
    delete_abandoned()


def _savepoint_rolled_back(
    files: SessionFiles, transaction: SessionTransaction, changes: Changes
) -> None:
    garbage = changes.garbage_after_rollback()
    writers = writers_of(set(garbage))
    if writers:
        # An object outside the savepoint holds the value: the enclosing
        # transaction may write it, and answers for it now.
        parent = _boundary(transaction.parent)
        assert parent is not None  # a savepoint always has one
        kept = {path for _, item in writers for path in paths_of(item)}
        files.changes.setdefault(parent, Changes()).add_stored(p for p in garbage if p in kept)
        garbage = [path for path in garbage if path not in kept]
    delete_now(garbage, "its savepoint was rolled back")


def _boundary(transaction: SessionTransaction | None) -> SessionTransaction | None:
    """The savepoint or root transaction ``transaction`` is part of."""
    while transaction is not None and not (transaction.nested or transaction.parent is None):
        transaction = transaction.parent
    return transaction
