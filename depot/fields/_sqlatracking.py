"""Which database transaction each stored file belongs to, and when its garbage may go.

:mod:`depot.fields.sqlalchemy` converts assigned content into stored files and
tells this module about them (:func:`track_stored`, :func:`hold`). Each
session transaction and savepoint records what its written rows refer to in a
:class:`Changes`; a savepoint's changes pass to its parent when it is released.

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

This module holds what the others share: the :class:`Changes` of each
transaction and where a session keeps them, the values no transaction has
claimed yet, the objects that may still write a value, and the deletion that
spares those (every deletion goes through :func:`delete_now`). The events that
fill and act on it each have a module, which imports this one (never the
reverse, so that none imports another in a circle):

* :mod:`~depot.fields._sqlasession`: the session's transactions (begin, commit,
  end, savepoints, objects attached), and :func:`~depot.fields._sqlasession.install`;
* :mod:`~depot.fields._sqlaflush`: what each row a flush writes refers to;
* :mod:`~depot.fields._sqlabulk`: ORM-enabled bulk ``INSERT``, ``UPDATE`` and
  ``DELETE`` statements, which bypass the flush;
* :mod:`~depot.fields._sqlaconnection`: the commit, rollback and savepoints of a
  connection a session joined, which decide for it;
* :mod:`~depot.fields._sqlashared`: whether a value another row may share is
  still referred to (the session's loaded rows, the database).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import InstanceState, Mapper, Session, SessionTransaction

from depot.fields._tracking import delete_files, paths_of

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


def delete_abandoned() -> None:
    paths = []
    while _abandoned:
        paths.append(_abandoned.popleft())
    if paths:
        delete_garbage(paths, "the object holding it was dropped before any transaction wrote it")


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


def writers_of(paths: set[str]) -> list[tuple[InstanceState[Any], Any]]:
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


def delete_garbage(paths: list[str], why: str) -> None:
    """Delete ``paths`` but those an object may still write, which wait on it instead."""
    writers = writers_of(set(paths))
    kept: set[str] = set()
    for state, item in writers:
        kept.update(paths_of(item))
        mark_unclaimed(item)
        _wait_on(state, [item])
    delete_now([path for path in paths if path not in kept], why)


def delete_now(paths: list[str], why: str) -> None:
    """Delete ``paths``, failures logged on the fields' logger.

    Every deletion of the SQLAlchemy fields goes through here, so that one
    name (this module's ``delete_files``) reaches them all: a test that
    replaces it (``tests/reliability/test_transactions.py``) stops every one.
    """
    delete_files(paths, why, log)


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


# -- where a session keeps its transactions' changes ------------------------------------------


class SessionFiles:
    """What a session's open transactions and savepoints did with files."""

    def __init__(self) -> None:
        self.changes: dict[SessionTransaction, Changes] = {}
        # Objects holding files stored while the session had no transaction:
        # the next transaction takes them (they are lost if it rolls back).
        self.holding: list[InstanceState[Any]] = []
        # The connections each root transaction used, to find where it committed.
        self.connections: dict[SessionTransaction, list[Connection]] = {}


def session_files(session: Session) -> SessionFiles:
    """The record of ``session``, made at its first use."""
    files = session.info.get(INFO_KEY)
    if files is None:
        files = session.info[INFO_KEY] = SessionFiles()
    assert isinstance(files, SessionFiles)
    return files


def current_changes(session: Session | None) -> Changes | None:
    """The changes of the innermost savepoint or transaction of ``session``, if one is open."""
    if session is None:
        return None
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:
        return None
    return session_files(session).changes.setdefault(transaction, Changes())


def hold(state: InstanceState[Any], values: Sequence[Any]) -> None:
    """Give ``values`` to the open transaction of the object's session, or keep them on it."""
    changes = current_changes(state.session)
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
        session_files(state.session).holding.append(state)


def claim_held(state: InstanceState[Any], changes: Changes) -> None:
    """Give ``changes`` the values that wait on the object of ``state``."""
    for value in state.info.pop(INFO_KEY, ()):
        claim(value, changes)
