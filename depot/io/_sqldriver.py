"""The SQL backend's hot statements, compiled once and run on the driver's cursor.

``get()``, a first ``read()`` and a small ``create()`` are one short statement each;
run through SQLAlchemy's ``Connection.execute()``, its Python costs more than the
statement (benchmarks/README.md, issue 15): on SQLite 30 us against 10 us for the
same SELECT through sqlite3, on PostgreSQL as much as a round trip on the same host,
most of it the checkout of a :class:`~sqlalchemy.engine.Connection` and, for an
``AUTOCOMMIT`` engine, setting and resetting the isolation level on each.
:class:`DriverStatement` runs the statement SQLAlchemy would send, with the same
parameters and the columns' own processors, on a DBAPI connection borrowed from the
engine's pool for that statement (so the pool, its events, ``pre_ping`` and
``recycle`` apply as before), or on SQLite one of the few :class:`Connections` keeps.

.. versionadded:: 1.0
"""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections import namedtuple
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["Connections", "DriverStatement", "listened"]

#: Rows of a SELECT, as namedtuples named by the selected columns' keys.
Rows = list[Any]


class DriverStatement:
    """One statement compiled for an engine's dialect, run on its DBAPI cursor.

    :param connections: where it borrows a connection for each run.
    :param autocommit: run it with the driver's autocommit on (PostgreSQL): a
        single statement is then atomic on its own, without the round trips of
        BEGIN and COMMIT (or of the ROLLBACK the pool sends when it takes the
        connection back). The connection goes back to the pool as it came
        (in autocommit still, if it came so).
    """

    def __init__(
        self, statement: sa.ClauseElement, connections: Connections, autocommit: bool
    ) -> None:
        engine = connections.engine
        dialect = engine.dialect
        # The schemas the engine's statements are sent to (a tenant's engine, made
        # with execution_options(schema_translate_map=...)), written in the SQL.
        translate = engine.get_execution_options().get("schema_translate_map")
        compiled = (
            statement.compile(
                dialect=dialect, schema_translate_map=translate, render_schema_translate=True
            )
            if translate
            else statement.compile(dialect=dialect)
        )
        assert isinstance(compiled, SQLCompiler)  # a statement's, not DDL's
        self.sql = compiled.string
        self.connections = connections
        self.dialect = dialect
        self.autocommit = autocommit
        self.error = dialect.loaded_dbapi.Error
        #: The parameters' names in their order, for the positional paramstyles.
        self.order: tuple[str, ...] | None = (
            tuple(compiled.positiontup or ()) if compiled.positional else None
        )
        binds = [(compiled.bind_names[b], b) for b in compiled.binds.values()]
        #: The values written in the statement (``n=0``), not given at each run.
        self.fixed = {name: b.effective_value for name, b in binds if not b.required}
        processors = [(n, b.type.dialect_impl(dialect).bind_processor(dialect)) for n, b in binds]
        #: What SQLAlchemy makes of a value before the driver gets it (SQLite's
        #: DATETIME as text, bytes wrapped as the driver's Binary).
        self.binds = [(name, p) for name, p in processors if p is not None]
        # What this runner does not do (escaped names, IN lists, literal rendering):
        # such a statement runs through SQLAlchemy.
        self.usable = not compiled.escaped_bind_names and not any(
            b.expanding or b.literal_execute for _, b in binds
        )
        self.row: Any = None
        self.results: list[tuple[int, Any]] = []
        if isinstance(statement, sa.Select):
            columns = list(statement.selected_columns)
            self.row = namedtuple("_Row", [c.key for c in columns])  # type: ignore[misc]
            types = [c.type.dialect_impl(dialect) for c in columns]
            results = [t.result_processor(dialect, None) for t in types]
            self.results = [(i, p) for i, p in enumerate(results) if p is not None]

    def arguments(self, params: dict[str, Any]) -> Any:
        """The parameters as the driver takes them: processed, in order if positional."""
        if self.fixed or self.binds:
            params = {**self.fixed, **params}
            for name, process in self.binds:
                params[name] = process(params[name])
        return params if self.order is None else tuple(params[k] for k in self.order)

    def run(self, params: dict[str, Any]) -> Rows:
        """Run it on a connection of the pool; the rows of a SELECT, else an empty list.

        A DBAPI error is raised as SQLAlchemy raises it (a dead connection
        invalidated, so that the pool lets it go), for the caller to translate.
        """
        args = self.arguments(params)
        fairy = self.connections.take()
        dbapi_conn: Any = fairy.dbapi_connection
        cursor = None
        switched = False
        kept = False
        try:
            # Only if off: on an engine made with isolation_level="AUTOCOMMIT" it is
            # on already, and the pool's next user relies on it staying on.
            if self.autocommit and not dbapi_conn.autocommit:
                dbapi_conn.autocommit = True
                switched = True
            cursor = dbapi_conn.cursor()
            cursor.execute(self.sql, args)
            rows = cursor.fetchall() if self.row is not None else []
            kept = True
        except self.error as exc:
            # As Connection.execute() does: a connection found dead leaves the pool.
            gone = self.dialect.is_disconnect(exc, dbapi_conn, cursor)
            if gone:
                switched = False
                fairy.invalidate(exc)
            raise sa.exc.DBAPIError.instance(
                self.sql,
                args,
                exc,
                self.error,
                connection_invalidated=gone,
                dialect=self.dialect,
            ) from exc
        finally:
            if cursor is not None:
                # Not contextlib.suppress(): an object more per statement, on the hot path.
                try:  # noqa: SIM105
                    cursor.close()
                except Exception:  # a cursor of a dead connection
                    pass
            if switched:
                # The pool's next user gets the connection as the pool gave it;
                # one that cannot be switched back is not given to anyone.
                try:
                    dbapi_conn.autocommit = False
                except self.error as exc:
                    kept = False
                    fairy.invalidate(exc)
            self.connections.give(fairy, kept)
        return self.rows(rows)

    def rows(self, fetched: list[Any]) -> Rows:
        """The driver's rows as namedtuples, through the columns' result processors."""
        if self.row is None:
            return []
        make, processors = self.row._make, self.results
        if not processors:
            return [make(r) for r in fetched]
        out = []
        for r in fetched:
            values = list(r)
            for i, process in processors:
                values[i] = process(values[i])
            out.append(make(values))
        return out


class Connections:
    """The DBAPI connections driver statements borrow from an engine's pool, one per run.

    Each goes back to the pool after its statement, but for SQLite's QueuePool
    (a file database) of 8 connections or more: there a checkout and return cost
    as much as the statement,
    and an idle sqlite3 connection holds nothing (no lock, no session a server
    would count, nothing to go stale), so up to :data:`KEEP` stay out of the pool
    between statements, for the next statement of any thread (one at a time
    each). They go back to the pool at :meth:`close`, when the owner is garbage
    collected, and after a failed statement; a forked child never uses its
    parent's, nor a statement after ``engine.dispose()`` those of the old pool.
    """

    #: How many idle connections SQLite's storage keeps at most.
    KEEP = 2

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        pool = engine.pool
        keep = False
        if engine.dialect.name == "sqlite" and type(pool) is sa.pool.QueuePool:
            # Never a pool's last connections: the application's and the storage's
            # own writes would wait for them (SQLite's default: 5, and 10 more).
            overflow = getattr(pool, "_max_overflow", 0)
            keep = overflow < 0 or pool.size() + overflow >= 4 * self.KEEP
        self._keep = self.KEEP if keep else 0
        self._idle = _Idle()
        if self._keep:
            weakref.finalize(self, _close_idle, self._idle)

    def take(self) -> PoolProxiedConnection:
        """A connection of the pool, for one statement; give it back with :meth:`give`."""
        idle = self._idle
        while idle:
            if idle.pid != _PROCESS[0]:
                self._idle = _Idle()  # the parent's: left to it, never closed here
                _ABANDONED.append(idle)
                break
            try:
                fairy = idle.pop()
            except IndexError:  # another thread took the last one
                break
            if _pool_of(fairy) is self.engine.pool:
                return fairy
            # Kept from before engine.dispose(): its pool is gone (a database file
            # restored or made anew): let go, as the pool does with one checked out.
            fairy.close()
        return self.engine.raw_connection()

    def give(self, fairy: PoolProxiedConnection, clean: bool) -> None:
        """Take back a connection: kept for the next statement, or returned to the pool.

        :param clean: its statement succeeded (a failed one's goes back to the pool,
            which rolls it back or lets it go).
        """
        idle = self._idle
        if (
            clean
            and len(idle) < self._keep
            and not getattr(fairy.dbapi_connection, "in_transaction", True)
            and idle.pid == _PROCESS[0]
            and _pool_of(fairy) is self.engine.pool
        ):
            idle.append(fairy)
            if len(idle) <= self._keep:
                return
            # Two threads gave one back at once: no more than KEEP stay.
            try:
                fairy = idle.pop()
            except IndexError:
                return
        fairy.close()

    def close(self) -> None:
        """Return the kept connections to the pool."""
        _close_idle(self._idle)


class _Idle(list[PoolProxiedConnection]):
    """Connections kept idle, and the process that took them from the pool."""

    def __init__(self) -> None:
        super().__init__()
        self.pid = _PROCESS[0]


#: Idle lists a forked child found in its parent's storages: kept from garbage
#: collection, whose return of their connections would touch the parent's.
_ABANDONED: list[_Idle] = []


#: This process's id, kept up to date in a forked child (os.getpid() is a system call).
_PROCESS = [os.getpid()]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _PROCESS.__setitem__(0, os.getpid()))


def _pool_of(fairy: PoolProxiedConnection) -> Any:
    """The pool ``fairy`` returns to; after ``engine.dispose()``, no longer the engine's."""
    return fairy._pool  # a _ConnectionFairy's (raw_connection())


def _close_idle(idle: _Idle) -> None:
    if idle.pid != _PROCESS[0]:
        return
    while idle:
        with contextlib.suppress(IndexError):
            idle.pop().close()


def listened(engine: Engine) -> bool:
    """Whether something watches the engine's statements: the DBAPI cursor would hide them.

    ``echo``, SQLAlchemy's logging, ``before_execute``, ``after_execute``,
    ``before_cursor_execute``, ``after_cursor_execute`` or ``handle_error``
    listeners: they see every statement, and error, as before.
    """
    dispatch = engine.dispatch
    return bool(
        dispatch.before_cursor_execute
        or dispatch.after_cursor_execute
        or dispatch.before_execute
        or dispatch.after_execute
        or engine.dialect.dispatch.handle_error  # a dialect's event since SQLAlchemy 2.0
        or engine.logger.isEnabledFor(logging.INFO)
    )
