"""Whether a value that several rows may share is still referred to, before its files go.

Two rows can hold the same value (``b.file = a.file``, a merge, a statement
writing a value as it is): one letting go of it must not delete what the other
still refers to. Two checks say so. :func:`loaded_paths` finds what the
session's loaded rows hold when it commits. Values assigned as they were are
remembered (:func:`mark_copied`, :func:`note_copied`); before their files are
deleted, :func:`unshared` asks the database whether a row still refers to them.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Text, inspect, literal, select, type_coerce
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from depot.fields._sqlatracking import file_keys, log
from depot.fields._tracking import paths_of


def loaded_paths(session: Session, bulk_changed: dict[Any, set[str]]) -> set[str]:
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


#: Paths of values assigned as they were (copied from another row, merged):
#: their rows may share them, which only the database can tell.
_copied: dict[str, None] = {}
_COPIED_LIMIT = 100_000


def mark_copied(value: Any) -> None:
    """``value`` was assigned without storing anything: another row may share its files."""
    note_copied(paths_of(value))


def note_copied(paths: Iterable[str]) -> None:
    """``paths`` were written as they were, by a statement or a copy: other rows may share them."""
    for path in paths:
        _copied.pop(path, None)
        _copied[path] = None
    while len(_copied) > _COPIED_LIMIT:
        # Oldest first: a copy made long ago is likely written or gone.
        del _copied[next(iter(_copied))]


def unshared(session: Session, paths: list[str]) -> list[str]:
    """``paths`` but those of copied values that a row in the database still refers to."""
    shared = [path for path in paths if path in _copied]
    if not shared:
        return paths
    still = _referenced_in_database(session, shared)
    for path in shared:
        if path not in still:
            _copied.pop(path, None)
    return [path for path in paths if path not in still]


def not_copied(paths: list[str]) -> list[str]:
    """``paths`` but those of copied values, without asking the database."""
    return [path for path in paths if path not in _copied]


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
