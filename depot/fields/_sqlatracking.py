"""Which database transaction each stored file belongs to, and when its garbage may go.

:mod:`depot.fields.sqlalchemy` converts assigned content into stored files and
tells this module about them (:func:`track_stored`, :func:`hold`). The flush
events here record what each written row refers to in a :class:`Changes` per
session transaction and savepoint; the session events hand a savepoint's
changes to its parent when it is released.

Three rules decide what is deleted, and when:

* **Only after the database committed.** A session's commit is the database's
  commit only if no transaction stays open on its connection; a session joined
  to an external transaction (``Session(bind=connection)``, any
  ``join_transaction_mode``) hands its changes to that connection, whose own
  ``commit`` and ``rollback`` decide. A ``COMMIT`` that fails leaves its outcome
  unknown (the server may have applied it): nothing is deleted, the files
  stored for it stay (orphans at worst, never a row pointing at nothing).
* **Never while an object may still write it.** An object that holds a value
  it would write at its next flush (a new or rolled-back object, one expunged
  with a change not flushed) keeps the value's files: they wait on the object
  for the next transaction that writes it, and are deleted if the object is
  dropped without that (the value is garbage collected; see :func:`_abandon`).
* **Never while a loaded row of the session refers to it** (two rows sharing a
  value, one of them letting go of it).
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Text, event, inspect, literal, select, tuple_, type_coerce
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import InstanceState, Mapper, ORMExecuteState, Session, SessionTransaction
from sqlalchemy.orm.attributes import PASSIVE_NO_INITIALIZE, get_history
from sqlalchemy.sql.expression import SavepointClause

from depot.fields._tracking import delete_files, paths_of
from depot.fields.interfaces import DepotFileInfo
from depot.fields.upload import UnreadableValue

#: The key under which depot keeps its bookkeeping in ``Session.info``,
#: ``InstanceState.info`` and ``Connection.info``.
INFO_KEY = "depot.fields.sqlalchemy"

log = logging.getLogger("depot.fields.sqlalchemy")

#: The file attributes (inherited ones too) of each mapper that has some.
file_keys: weakref.WeakKeyDictionary[Mapper[Any], tuple[str, ...]] = weakref.WeakKeyDictionary()


class Changes:
    """The file facts of one transaction or savepoint.

    * a file was *stored* for it (a field built a value from content);
    * a row it wrote *references* a file (+1: inserted, or updated to it) or
      stops referencing it (-1: updated away from it, deleted);
    * a file is *kept* whatever the counts say: a loaded row of the session
      referred to it when the session committed.

    Counting references rather than remembering "old" and "new" values keeps
    a file that one row dropped and another took (``b.file = a.file; a.file = other``).
    """

    __slots__ = ("bulk_changed", "committed", "kept", "references", "stored")

    def __init__(self) -> None:
        self.stored: dict[str, None] = {}
        self.references: Counter[str] = Counter()
        self.kept: set[str] = set()
        self.committed = False
        # Identity keys of rows a bulk statement changed, with the file
        # attributes it changed: a loaded object of such a row may hold what
        # the row no longer holds (synchronize_session=False).
        self.bulk_changed: dict[Any, set[str]] = {}

    def add_stored(self, paths: Iterable[str]) -> None:
        self.stored.update(dict.fromkeys(paths))

    def add_references(self, paths: Iterable[str], change: int) -> None:
        for path in paths:
            self.references[path] += change

    def absorb(self, released: Changes) -> None:
        """Take over the facts of a savepoint released (or a session committed) into this one."""
        self.stored.update(released.stored)
        for path, change in released.references.items():
            self.references[path] += change
        self.kept |= released.kept
        for identity, keys in released.bulk_changed.items():
            self.bulk_changed.setdefault(identity, set()).update(keys)

    def garbage_after_commit(self) -> list[str]:
        """Files that no row refers to any more once this transaction committed."""
        dropped = [path for path, change in self.references.items() if change < 0]
        unused = [path for path in self.stored if self.references[path] <= 0]
        return [path for path in dict.fromkeys(dropped + unused) if path not in self.kept]

    def garbage_after_rollback(self) -> list[str]:
        """Files stored for this transaction, which no row can refer to after its rollback."""
        return list(self.stored)


# -- values no transaction has taken yet ------------------------------------------------------

#: Values built from content that no transaction has taken yet, by ``id()``:
#: a field filled while its object was in no session (or in one with no
#: transaction) stores the file at once; the transaction that first writes or
#: receives the value takes it over (see :func:`claim`).
_unclaimed: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()

#: For each unclaimed value, what deletes its files if it is dropped unclaimed.
_finalizers: dict[int, weakref.finalize[Any, Any]] = {}

#: Paths of unclaimed values that were garbage collected: deleted at the next
#: end of a transaction (never from the collector, which may run anywhere).
_abandoned: deque[str] = deque()


def mark_unclaimed(value: Any) -> None:
    """``value`` holds files that no transaction is responsible for yet."""
    ident = id(value)
    _unclaimed[ident] = value
    if ident not in _finalizers:
        finalizer = weakref.finalize(value, _abandon, ident, paths_of(value))
        # At exit nothing deletes them anyway: no transaction ends after it.
        finalizer.atexit = False
        _finalizers[ident] = finalizer


def is_unclaimed(value: Any) -> bool:
    return _unclaimed.get(id(value)) is value


def claim(value: Any, changes: Changes) -> None:
    """Make the files of ``value`` part of ``changes`` if no transaction took them yet."""
    # A live object's id cannot belong to another live object, so the entry
    # found under it is this value or nothing.
    if _unclaimed.pop(id(value), None) is value:
        disown(value)
        changes.add_stored(paths_of(value))


def disown(value: Any) -> None:
    """Never delete the files of ``value`` for being dropped: it was written somewhere."""
    finalizer = _finalizers.pop(id(value), None)
    if finalizer is not None:
        finalizer.detach()


def _abandon(ident: int, paths: list[str]) -> None:
    # Called by the garbage collector: only record, deletion waits for a safe place.
    _finalizers.pop(ident, None)
    _abandoned.extend(paths)


def _delete_abandoned() -> None:
    paths = []
    while _abandoned:
        paths.append(_abandoned.popleft())
    if paths:
        _delete(paths, "the object holding it was dropped before any transaction wrote it")


# -- objects that may still write a value -----------------------------------------------------

#: Every live object a file value was assigned to.
_assigned: weakref.WeakSet[InstanceState[Any]] = weakref.WeakSet()
_assigned_lock = threading.Lock()


def _may_write(state: InstanceState[Any], key: str) -> bool:
    """Whether the next flush of the object of ``state`` can write its ``key`` attribute."""
    if state.deleted or state.was_deleted:
        return False
    if state.key is None:
        # New, or back to new after a rollback: an INSERT writes every attribute.
        return True
    return key in state.committed_state


def _writers(paths: set[str]) -> list[tuple[InstanceState[Any], Any]]:
    """The objects that may still write one of ``paths``, with the value item holding it."""
    if not paths:
        return []
    with _assigned_lock:
        states = list(_assigned)
    found = []
    for state in states:
        for key in file_keys.get(state.mapper, ()):
            value = state.dict.get(key)
            if value is None or not _may_write(state, key):
                continue
            for item in value if isinstance(value, list) else [value]:
                if paths.intersection(paths_of(item)):
                    found.append((state, item))
    return found


def _delete(paths: list[str], why: str) -> None:
    """Delete ``paths`` but those an object may still write, which wait on it instead."""
    writers = _writers(set(paths))
    kept: set[str] = set()
    for state, item in writers:
        kept.update(paths_of(item))
        mark_unclaimed(item)
        _wait_on(state, [item])
    delete_files([path for path in paths if path not in kept], why, log)


# -- the transactions of a session ------------------------------------------------------------


def install() -> None:
    """Listen to every session's transactions."""
    event.listen(Session, "after_transaction_create", _transaction_created)
    event.listen(Session, "after_begin", _began)
    event.listen(Session, "after_commit", _committed)
    event.listen(Session, "after_transaction_end", _transaction_ended)
    event.listen(Session, "before_attach", _attached)
    event.listen(Session, "do_orm_execute", _bulk_statement)


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
    for instance_event in ("load", "refresh"):
        if not event.contains(mapper, instance_event, _loaded):
            event.listen(mapper, instance_event, _loaded)


def assigned(state: InstanceState[Any]) -> None:
    """A file value was assigned to the object of ``state``."""
    with _assigned_lock:
        _assigned.add(state)


def track_stored(state: InstanceState[Any], values: Sequence[Any]) -> None:
    """Files were just stored for the object of ``state``."""
    for value in values:
        mark_unclaimed(value)
    assigned(state)
    hold(state, values)


class _SessionFiles:
    """What a session's open transactions and savepoints did with files."""

    def __init__(self) -> None:
        self.changes: dict[SessionTransaction, Changes] = {}
        # Objects holding files stored while the session had no transaction:
        # the next transaction takes them (they are lost if it rolls back).
        self.holding: list[InstanceState[Any]] = []
        # The connections each root transaction used, to find where it committed.
        self.connections: dict[SessionTransaction, list[Connection]] = {}


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
    _wait_on(state, [value for value in values if is_unclaimed(value)])


def _wait_on(state: InstanceState[Any], values: Sequence[Any]) -> None:
    if not values:
        return
    state.info.setdefault(INFO_KEY, []).extend(values)
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


def _began(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    root = transaction
    while root.parent is not None:
        root = root.parent
    connections = _session_files(session).connections.setdefault(root, [])
    if connection not in connections:
        connections.append(connection)
    _commit_sent.discard(connection)
    _watch_connection(connection)


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
            _commit_sent.discard(connection)
        if changes is not None and (changes.references or changes.stored):
            # Now, while the objects still hold what was loaded (a commit expires them next).
            changes.kept |= _loaded_paths(session, changes.bulk_changed)


def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    files = session.info.get(INFO_KEY)
    if files is None:
        _delete_abandoned()
        return
    changes = files.changes.pop(transaction, None)
    connections = files.connections.pop(transaction, [])
    if changes is None:
        _delete_abandoned()
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
        outer = [connection for connection in connections if _in_transaction(connection)]
        if not outer:
            garbage = _unshared(session, changes.garbage_after_commit())
            _delete(garbage, "no row refers to it after the commit")
        elif len(outer) == 1:
            _defer(outer[0], changes)
        else:
            log.warning(
                "A session committed into transactions of %d connections it does not "
                "control; the files it replaced or stored stay in their depots: %s",
                len(outer),
                ", ".join(sorted(changes.garbage_after_commit())),
            )
    elif any(connection in _commit_sent for connection in connections):
        for connection in connections:
            _commit_sent.discard(connection)
        _commit_failed(changes)
    else:
        _delete(changes.garbage_after_rollback(), "its transaction was rolled back")
    _delete_abandoned()


def _savepoint_rolled_back(
    files: _SessionFiles, transaction: SessionTransaction, changes: Changes
) -> None:
    garbage = changes.garbage_after_rollback()
    writers = _writers(set(garbage))
    if writers:
        # An object outside the savepoint holds the value: the enclosing
        # transaction may write it, and answers for it now.
        parent = _boundary(transaction.parent)
        assert parent is not None  # a savepoint always has one
        kept = {path for _, item in writers for path in paths_of(item)}
        files.changes.setdefault(parent, Changes()).add_stored(p for p in garbage if p in kept)
        garbage = [path for path in garbage if path not in kept]
    delete_files(garbage, "its savepoint was rolled back", log)


def _commit_failed(changes: Changes) -> None:
    stored = changes.garbage_after_rollback()
    if stored:
        log.warning(
            "COMMIT failed, so whether the database applied it is unknown; the files "
            "stored for the transaction stay in their depots (orphans if it was not "
            "applied): %s",
            ", ".join(stored),
        )


def _boundary(transaction: SessionTransaction | None) -> SessionTransaction | None:
    """The savepoint or root transaction ``transaction`` is part of."""
    while transaction is not None and not (transaction.nested or transaction.parent is None):
        transaction = transaction.parent
    return transaction


def _loaded_paths(session: Session, bulk_changed: dict[Any, set[str]]) -> set[str]:
    """Every path the file attributes of the session's loaded rows refer to.

    Attributes that a bulk statement changed in the database are left out:
    the object may still hold what the row held before.
    """
    paths: set[str] = set()
    for state in session.identity_map.all_states():
        if state.deleted or state.was_deleted:
            continue
        changed = bulk_changed.get(state.key, ())
        for key in file_keys.get(state.mapper, ()):
            if key not in changed:
                paths.update(paths_of(state.dict.get(key)))
    return paths


# -- values shared by several rows ------------------------------------------------------------

#: Paths of values assigned as they were (copied from another row, merged):
#: their rows may share them, which only the database can tell.
_copied: dict[str, None] = {}
_COPIED_LIMIT = 100_000


def mark_copied(value: Any) -> None:
    """``value`` was assigned without storing anything: another row may share its files."""
    _note_copied(paths_of(value))


def _note_copied(paths: Iterable[str]) -> None:
    for path in paths:
        _copied.pop(path, None)
        _copied[path] = None
    while len(_copied) > _COPIED_LIMIT:
        # Oldest first: a copy made long ago is likely written or gone.
        del _copied[next(iter(_copied))]


def _unshared(session: Session, paths: list[str]) -> list[str]:
    """``paths`` but those of copied values that a row in the database still refers to."""
    shared = [path for path in paths if path in _copied]
    if not shared:
        return paths
    still = _referenced_in_database(session, shared)
    for path in shared:
        if path not in still:
            _copied.pop(path, None)
    return [path for path in paths if path not in still]


#: The file column tables found in each engine's database (only those found:
#: a table missing now may be created later).
_tables_found: weakref.WeakKeyDictionary[Engine, set[Any]] = weakref.WeakKeyDictionary()


def _has_table(engine: Engine, connection: Connection, table: Any) -> bool:
    found = _tables_found.setdefault(engine, set())
    if table in found:
        return True
    if inspect(connection).has_table(table.name, schema=table.schema):
        found.add(table)
        return True
    return False


def _referenced_in_database(session: Session, paths: list[str]) -> set[str]:
    """Which of ``paths`` a file column of some row refers to (all of them if unsure)."""
    found: set[str] = set()
    seen: set[Any] = set()
    try:
        for mapper, keys in list(file_keys.items()):
            for key in keys:
                column = mapper.get_property(key).columns[0]
                if column in seen:
                    continue
                seen.add(column)
                text = type_coerce(column, Text())
                # A connection of its own: the session's, or one it was bound to,
                # must not be left in a transaction it did not begin.
                engine = session.get_bind(mapper=mapper).engine
                with engine.connect() as connection:
                    if not _has_table(engine, connection, column.table):
                        # A model of another database: no row of this one is there.
                        continue
                    for path in paths:
                        if path in found:
                            continue
                        query = (
                            select(literal(1))
                            .select_from(column.table)
                            .where(text.contains(json.dumps(path), autoescape=True))
                            .limit(1)
                        )
                        if connection.execute(query).first() is not None:
                            found.add(path)
                if len(found) == len(paths):
                    return found
    except SQLAlchemyError:
        log.warning(
            "Could not ask the database whether other rows share %s; they stay in their depots",
            ", ".join(paths),
            exc_info=True,
        )
        return set(paths)
    return found


# -- the database transaction of a connection -------------------------------------------------

#: Connections on which a COMMIT was sent and not yet known to have succeeded.
_commit_sent: weakref.WeakSet[Connection] = weakref.WeakSet()


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


def _in_transaction(connection: Connection) -> bool:
    return not connection.closed and connection.in_transaction()


#: Engines whose connections' COMMITs and errors are listened to.
_watched_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _watch_connection(connection: Connection) -> None:
    engine = connection.engine
    if engine in _watched_engines:
        return
    # On the engine, once: its connections, existing ones too, dispatch to it.
    event.listen(engine, "commit", _connection_commit)
    event.listen(engine, "handle_error", _connection_error)
    _watched_engines.add(engine)


def _defer(connection: Connection, changes: Changes) -> None:
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
    _commit_sent.add(connection)
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
            _delete(changes.garbage_after_rollback(), "its savepoint was rolled back")


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
        garbage = [path for path in changes.garbage_after_commit() if path not in _copied]
        _delete(garbage, "no row refers to it after the commit")
    elif deferred.committing is not None:
        _commit_failed(changes)
    elif rolled_back:
        _delete(changes.garbage_after_rollback(), "its transaction was rolled back")
    _delete_abandoned()


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


def _loaded(target: Any, *args: Any) -> None:
    """Name the row and column in the value of a column whose text could not be read."""
    state = inspect(target)
    for key in file_keys.get(state.mapper, ()):
        value = state.dict.get(key)
        if isinstance(value, UnreadableValue):
            object.__setattr__(value, "where", f"{_row_name(state)}.{key}")


def _row_name(state: InstanceState[Any]) -> str:
    mapper = state.mapper
    identity = state.identity or ()
    pairs = zip(mapper.primary_key, identity, strict=False)
    columns = ", ".join(f"{column.key}={value!r}" for column, value in pairs)
    return f"{mapper.class_.__name__}({columns})"


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


# -- ORM-enabled bulk UPDATE and DELETE -------------------------------------------------------

#: How many primary keys one ``IN`` of the check after a bulk statement holds.
_IN_CHUNK = 500


def _bulk_statement(orm_execute_state: ORMExecuteState) -> Any:
    """Record the files that an ORM-enabled ``UPDATE`` or ``DELETE`` makes rows let go of.

    ``session.execute(delete(M).where(...))``, ``update(M).values(file=...)``,
    ``query.delete()`` and ``query.update()`` change rows without the unit of
    work. Before running the statement, the file columns of the rows its WHERE
    matches are read (``SELECT ... FOR UPDATE``, in the same transaction);
    after it, the same rows are read again by primary key, so that only rows
    really deleted or changed count, whatever other ``do_orm_execute`` hooks
    added to the statement. What they let go of is then a change of the
    current transaction or savepoint, like a flushed row's: deleted once the
    database committed, forgotten if it rolls back.
    """
    if orm_execute_state.is_insert:
        _note_inserted(orm_execute_state.statement, orm_execute_state.parameters)
        return None
    if not (orm_execute_state.is_delete or orm_execute_state.is_update):
        return None
    mapper = orm_execute_state.bind_mapper
    if mapper is None or not file_keys.get(mapper):
        return None
    deleting = orm_execute_state.is_delete
    statement = orm_execute_state.statement
    params = orm_execute_state.parameters
    columns = _bulk_columns(mapper, statement, params, deleting)
    if not columns:
        return None
    session = orm_execute_state.session
    if session.autoflush and orm_execute_state.execution_options.get("autoflush", True):
        # SQLAlchemy autoflushes after this hook: the rows the flush writes are
        # matched by the statement, so they must be read before it.
        session.flush()
    table = mapper.local_table
    primary_key = list(table.primary_key)
    connection = session.connection(bind_arguments=orm_execute_state.bind_arguments)
    try:
        query = _matched_rows(mapper, statement, params, primary_key, columns)
        # Compiled apart so that a WHERE no SELECT can take fails before the
        # database sees anything: the statement then runs as it would have.
        query.compile(dialect=connection.dialect)
    except (SQLAlchemyError, KeyError, TypeError):
        log.warning(
            "Could not read the rows that %s changes; the files they let go of stay in "
            "their depots",
            statement,
            exc_info=True,
        )
        return None
    query_params = params if isinstance(params, dict) else {}
    before = _rows_read(connection.execute(query, query_params), len(primary_key))
    result = orm_execute_state.invoke_statement()
    if before:
        after = _rows_by_key(connection, primary_key, columns, list(before))
        changes = _current_changes(session)
        # The statement ran, in a transaction of this session.
        assert changes is not None
        _record_bulk(mapper, columns, before, after, deleting, changes)
    return result


def _note_inserted(statement: Any, params: Any) -> None:
    """Values an ``INSERT`` writes as they are may be another row's: mark them shared."""
    candidates: list[Any] = list((getattr(statement, "_values", None) or {}).values())
    for row in getattr(statement, "_multi_values", None) or ():
        for values in row:
            candidates += list(values.values()) if isinstance(values, dict) else list(values)
    for parameters in params if isinstance(params, list) else [params or {}]:
        if isinstance(parameters, dict):
            candidates += list(parameters.values())
    for value in candidates:
        value = getattr(value, "value", value)  # a bound parameter holds the value given
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, DepotFileInfo):
                _note_copied(paths_of(item))


def _bulk_columns(
    mapper: Mapper[Any], statement: Any, params: Any, deleting: bool
) -> list[tuple[str, Any]]:
    """``(attribute, column)`` of the file columns the statement changes on its table."""
    table = mapper.local_table
    found = []
    for key in file_keys.get(mapper, ()):
        column = mapper.get_property(key).columns[0]
        if column.table is table:
            found.append((key, column))
    if deleting or not found:
        return found
    names = _set_names(statement, params)
    if names is None:
        return found
    return [(key, column) for key, column in found if {key, column.key, column.name} & names]


def _set_names(statement: Any, params: Any) -> set[str] | None:
    """The names of what an ``UPDATE`` sets, or ``None`` if they cannot be told."""
    names: set[str] = set()
    # The statement's SET, resolved by SQLAlchemy to columns (or left as names).
    keys = list(getattr(statement, "_values", None) or ())
    keys += [pair[0] for pair in getattr(statement, "_ordered_values", None) or ()]
    for parameters in params if isinstance(params, list) else [params or {}]:
        if not isinstance(parameters, dict):
            return None
        keys += list(parameters)
    for key in keys:
        name = key if isinstance(key, str) else getattr(key, "key", None)
        if not isinstance(name, str):
            return None
        names.add(name)
    return names


def _matched_rows(
    mapper: Mapper[Any],
    statement: Any,
    params: Any,
    primary_key: list[Any],
    columns: list[tuple[str, Any]],
) -> Any:
    """The ``SELECT ... FOR UPDATE`` of the primary key and file columns of the matched rows."""
    query = select(*primary_key, *(column for _, column in columns)).select_from(mapper.local_table)
    if statement.whereclause is not None:
        query = query.where(statement.whereclause)
    if isinstance(params, list):
        # ORM bulk UPDATE by primary key: one parameter set per row.
        keys = [mapper.get_property_by_column(column).key for column in mapper.primary_key]
        if len(keys) != len(primary_key):
            raise TypeError(f"{mapper} has a primary key of another length than its table")
        identities = [tuple(parameters[key] for key in keys) for parameters in params]
        query = query.where(_key_in(primary_key, identities))
    # Locked, so that the statement changes the values read here.
    return query.with_for_update()


def _key_in(primary_key: list[Any], identities: list[tuple[Any, ...]]) -> Any:
    if len(primary_key) == 1:
        return primary_key[0].in_([identity[0] for identity in identities])
    return tuple_(*primary_key).in_(identities)


def _rows_read(result: Any, key_length: int) -> dict[tuple[Any, ...], list[list[str]]]:
    """``{primary key: [paths of each file column]}`` of the rows of ``result``."""
    rows = {}
    for row in result:
        rows[tuple(row[:key_length])] = [paths_of(value) for value in row[key_length:]]
    return rows


def _rows_by_key(
    connection: Connection,
    primary_key: list[Any],
    columns: list[tuple[str, Any]],
    identities: list[tuple[Any, ...]],
) -> dict[tuple[Any, ...], list[list[str]]]:
    """The rows of ``identities`` still in the table, with the paths of their file columns."""
    rows: dict[tuple[Any, ...], list[list[str]]] = {}
    for start in range(0, len(identities), _IN_CHUNK):
        chunk = identities[start : start + _IN_CHUNK]
        query = select(*primary_key, *(column for _, column in columns)).where(
            _key_in(primary_key, chunk)
        )
        rows.update(_rows_read(connection.execute(query), len(primary_key)))
    return rows


def _record_bulk(
    mapper: Mapper[Any],
    columns: list[tuple[str, Any]],
    before: dict[tuple[Any, ...], list[list[str]]],
    after: dict[tuple[Any, ...], list[list[str]]],
    deleting: bool,
    changes: Changes,
) -> None:
    for identity, old in before.items():
        new = after.get(identity)
        if deleting and new is not None:
            continue  # not deleted after all (another hook's criteria, a trigger)
        if not deleting and new is None:
            # Gone from its key (the UPDATE changed the primary key): what the
            # row holds now is unknown, so its files stay.
            continue
        changed = set()
        for index, (key, _) in enumerate(columns):
            now = [] if new is None else new[index]
            if old[index] == now:
                continue
            changed.add(key)
            changes.add_references(old[index], -1)
            changes.add_references(now, +1)
            # Set by a statement: other rows may hold the same value.
            _note_copied(now)
        if changed:
            ident = mapper.identity_key_from_primary_key(identity)
            changes.bulk_changed.setdefault(ident, set()).update(changed)
