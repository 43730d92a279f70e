"""The transaction of a connection a session joined, which decides for the session.

A session bound to a connection already in a transaction (an external
transaction, any ``join_transaction_mode``) commits nothing when it commits:
its :class:`~depot.fields._sqlatracking.Changes` wait on the connection
(:func:`defer`) for the connection's own ``commit``, ``rollback`` or return to
the pool, and the savepoints opened on it since are followed by name. Every
connection a session used is also watched for a ``COMMIT`` sent
(:data:`commit_sent`) and one that fails, whose outcome is unknown: its files
then stay (:func:`commit_failed`).
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.expression import SavepointClause

from depot.fields._sqlashared import not_copied
from depot.fields._sqlatracking import (
    INFO_KEY,
    Changes,
    delete_abandoned,
    delete_garbage,
    log,
)

#: Connections on which a COMMIT was sent and not yet known to have succeeded.
commit_sent: weakref.WeakSet[Connection] = weakref.WeakSet()


class _Deferred:
    """The changes of sessions that committed into a transaction of a connection they joined.

    Each session's changes are an entry, with the savepoints the connection
    opened since (by name): releasing or rolling back one of those leaves the
    entry as it was; rolling back any other savepoint (the one the session
    worked in, or one around it) undoes the entry's rows.
    """

    def __init__(self) -> None:
        self.entries: list[tuple[Changes, list[str]]] = []
        # The connection's transaction being committed, while COMMIT is under way.
        self.committing: Any = None
        self.failed = False

    def savepoint_ended(self, name: str, rolled_back: bool) -> list[Changes]:
        """A savepoint was released or rolled back; the entries it undid."""
        undone = []
        for changes, opened in list(self.entries):
            if name in opened:
                del opened[opened.index(name) :]
            elif rolled_back:
                undone.append(changes)
                self.entries.remove((changes, opened))
        return undone

    def merged(self) -> Changes:
        changes = Changes()
        for entry, _ in self.entries:
            changes.absorb(entry)
        return changes


def in_transaction(connection: Connection) -> bool:
    """Whether ``connection`` is open and in a transaction (its own or one a session joined)."""
    return not connection.closed and connection.in_transaction()


def commit_failed(changes: Changes) -> None:
    """A ``COMMIT`` failed: its outcome is unknown, so the files stored for it stay, logged."""
    stored = changes.garbage_after_rollback()
    if stored:
        log.warning(
            "COMMIT failed, so whether the database applied it is unknown; the files "
            "stored for the transaction stay in their depots (orphans if it was not "
            "applied): %s",
            ", ".join(stored),
        )


#: Engines whose connections' COMMITs and errors are listened to.
_watched_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def watch_connection(connection: Connection) -> None:
    """Follow each ``COMMIT`` and error of ``connection`` (listened to on its engine, once)."""
    engine = connection.engine
    if engine in _watched_engines:
        return
    # On the engine, once: its connections, existing ones too, dispatch to it.
    event.listen(engine, "commit", _connection_commit)
    event.listen(engine, "handle_error", _connection_error)
    _watched_engines.add(engine)


def defer(connection: Connection, changes: Changes) -> None:
    """Leave ``changes`` to the transaction ``connection`` is in: its end decides."""
    deferred = connection.info.get(INFO_KEY)
    if not isinstance(deferred, _Deferred):
        deferred = connection.info[INFO_KEY] = _Deferred()
    deferred.entries.append((changes, []))
    for name, handler in (
        ("begin", _connection_begin),
        ("rollback", _connection_rollback),
        ("before_execute", _savepoint_begun),
        ("release_savepoint", _savepoint_released),
        ("rollback_savepoint", _savepoint_rolled_back_on),
    ):
        if not event.contains(connection, name, handler):
            event.listen(connection, name, handler)
    pool = connection.engine.pool
    if not event.contains(pool, "checkin", _connection_checkin):
        event.listen(pool, "checkin", _connection_checkin)


def _connection_commit(connection: Connection) -> None:
    # Sent before the COMMIT: it succeeded only if nothing fails after this.
    commit_sent.add(connection)
    deferred = connection.info.get(INFO_KEY)
    if isinstance(deferred, _Deferred):
        deferred.committing = connection.get_transaction()


def _connection_error(context: Any) -> None:
    connection = context.connection
    if connection is None:
        return
    deferred = connection.info.get(INFO_KEY)
    if isinstance(deferred, _Deferred) and deferred.committing is not None:
        deferred.failed = True


def _savepoint_begun(connection: Connection, statement: Any, *args: Any) -> None:
    # The "savepoint" event comes before a generated name is chosen; the
    # statement that opens the savepoint carries it.
    if not isinstance(statement, SavepointClause):
        return
    deferred = connection.info.get(INFO_KEY)
    if isinstance(deferred, _Deferred):
        for _, opened in deferred.entries:
            opened.append(statement.ident)


def _savepoint_released(connection: Connection, name: str, context: Any) -> None:
    deferred = connection.info.get(INFO_KEY)
    if isinstance(deferred, _Deferred):
        deferred.savepoint_ended(name, rolled_back=False)


def _savepoint_rolled_back_on(connection: Connection, name: str, context: Any) -> None:
    deferred = connection.info.get(INFO_KEY)
    if isinstance(deferred, _Deferred):
        for changes in deferred.savepoint_ended(name, rolled_back=True):
            delete_garbage(changes.garbage_after_rollback(), "its savepoint was rolled back")


def _connection_begin(connection: Connection) -> None:
    _settle(connection.info, rolled_back=False)


def _connection_rollback(connection: Connection) -> None:
    _settle(connection.info, rolled_back=True)


def _connection_checkin(dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        # Returned to the pool: its open transaction, if any, is rolled back.
        _settle(record.info, rolled_back=True)


def _settle(info: dict[Any, Any], rolled_back: bool) -> None:
    """The transaction the deferred changes waited for is over: act on how it ended."""
    deferred = info.get(INFO_KEY)
    if not isinstance(deferred, _Deferred):
        return
    del info[INFO_KEY]
    changes = deferred.merged()
    if deferred.committing is not None and not deferred.failed:
        # Asking the database from inside the connection's events could wait for
        # a pooled connection forever: files known to be shared stay instead.
        garbage = not_copied(changes.garbage_after_commit())
        delete_garbage(garbage, "no row refers to it after the commit")
    elif deferred.committing is not None:
        commit_failed(changes)
    elif rolled_back:
        delete_garbage(changes.garbage_after_rollback(), "its transaction was rolled back")
    delete_abandoned()
