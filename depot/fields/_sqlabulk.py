"""ORM-enabled bulk statements, which change rows without the flush.

``session.execute(insert(M))``, ``update(M)``, ``delete(M)``, ``query.update()``
and ``query.delete()`` run through the session's ``do_orm_execute`` event
(:func:`bulk_statement`): an ``UPDATE`` or ``DELETE`` reads the file columns
of the rows it matches before and after it runs, and records what they let go
of in the current transaction's changes, like a flushed row's; a value an
``INSERT`` or ``UPDATE`` writes as it is may be another row's, and is marked
shared (:mod:`depot.fields._sqlashared`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapper, ORMExecuteState

from depot.fields._sqlashared import note_copied
from depot.fields._sqlatracking import Changes, current_changes, file_keys, log
from depot.fields._tracking import paths_of
from depot.fields.interfaces import DepotFileInfo

#: How many primary keys one ``IN`` of the check after a bulk statement holds.
_IN_CHUNK = 500


def bulk_statement(orm_execute_state: ORMExecuteState) -> Any:
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
        changes = current_changes(session)
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
                note_copied(paths_of(item))


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
            note_copied(now)
        if changed:
            ident = mapper.identity_key_from_primary_key(identity)
            changes.bulk_changed.setdefault(ident, set()).update(changed)
