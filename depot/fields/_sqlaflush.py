"""What each row a flush writes refers to, recorded in its transaction's changes.

The mapper events of every mapped class with file attributes
(:func:`watch_mapper`): an ``INSERT`` refers to the files of its values, an
``UPDATE`` moves a reference from the old value to the new, a ``DELETE`` drops
the old value's. A value a row takes is claimed by the transaction that writes
it. Rows loaded with a column whose text could not be read are named in the
value, for the error raised when it is used.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import InstanceState, Mapper
from sqlalchemy.orm.attributes import PASSIVE_NO_INITIALIZE, get_history

from depot.fields._sqlatracking import Changes, claim, claim_held, current_changes, file_keys
from depot.fields._tracking import paths_of
from depot.fields.upload import UnreadableValue


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
    changes = current_changes(state.session)
    # A flush always runs inside a transaction.
    assert changes is not None
    claim_held(state, changes)
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
