"""Alembic support for the file columns: autogenerate hooks and migration helpers.

In ``env.py``, hand the two hooks to ``context.configure()``::

    from depot.fields import alembic as depot_alembic

    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=depot_alembic.render_item,
        compare_type=depot_alembic.compare_type,
    )

:func:`render_item` makes ``alembic revision --autogenerate`` write
``depot.fields.sqlalchemy.UploadedFileField()`` and ``import
depot.fields.sqlalchemy`` in the script; without it Alembic writes the same
expression but no import, and the script fails with a ``NameError``: Alembic
has no way for a type to add an import of its own. :func:`compare_type` keeps
filedepot's ``VARCHAR(4000)`` columns from being reported as changed at every
autogenerate; :func:`widen_file_columns` turns them into ``TEXT`` when you
choose to. :func:`move_column_files` moves the files of a column to another depot.

.. versionadded:: 1.0
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from depot._settings import missing_dependency_message
from depot.exceptions import (
    DepotError,
    InvalidFileIdError,
    StoredFileNotFoundError,
    ValidationError,
)
from depot.fields._tracking import follow_moved_paths, paths_of
from depot.fields.sqlalchemy import _FileColumn
from depot.fields.upload import value_problem
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager

try:
    import sqlalchemy as sa
    from alembic.operations import Operations
    from sqlalchemy.dialects import mysql
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(missing_dependency_message(__name__, exc.name or "alembic")) from exc

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.engine import Connection

__all__ = [
    "MovedFiles",
    "compare_type",
    "move_column_files",
    "render_item",
    "widen_file_columns",
]

log = logging.getLogger(__name__)

#: The text types of MySQL and MariaDB by what they hold, smallest first.
_MYSQL_TEXT_SIZES = ("TINYTEXT", "TEXT", "MEDIUMTEXT", "LONGTEXT")


# -- autogenerate ------------------------------------------------------------------------------


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Alembic's ``render_item`` hook: write file column types with their import.

    Renders an :class:`~depot.fields.sqlalchemy.UploadedFileField` as
    ``depot.fields.sqlalchemy.UploadedFileField()`` (a subclass by its own
    module and name) and adds the module's import to the script. Anything else
    is left to Alembic (``False``), so an ``env.py`` with a hook of its own
    calls this one first::

        def render_item(type_, obj, autogen_context):
            rendered = depot_alembic.render_item(type_, obj, autogen_context)
            if rendered is not False:
                return rendered
            ...  # the application's own rendering

    The arguments (``upload_storage``, filters, validators) are not written:
    they act on assignment, not on the schema, and a migration must not
    depend on the application's depots or filters of the day.

    .. versionadded:: 1.0
    """
    if type_ != "type" or not isinstance(obj, _FileColumn):
        return False
    module = type(obj).__module__
    if autogen_context.imports is not None:
        autogen_context.imports.add(f"import {module}")
    if getattr(obj, "_variant_mapping", None):
        # with_variant(): Alembic writes the variants; the import above is what it lacks.
        return False
    return f"{module}.{type(obj).__name__}()"


def compare_type(
    context: MigrationContext,
    inspected_column: sa.Column[Any],
    metadata_column: sa.Column[Any],
    inspected_type: sa.types.TypeEngine[Any],
    metadata_type: sa.types.TypeEngine[Any],
) -> bool | None:
    """Alembic's ``compare_type`` hook: no false change for file columns.

    A file column in a text column that holds at least what the field would
    create is unchanged, and so is one in a ``VARCHAR`` of any length
    (filedepot's ``VARCHAR(4000)``): widening it rewrites the table on SQLite
    and MySQL, so it is a step you take with :func:`widen_file_columns`, not
    one autogenerate slips into a migration. A text column smaller than the
    field's (``TEXT`` for an :class:`~depot.fields.sqlalchemy.UploadedFilesField`
    on MariaDB, which creates ``MEDIUMTEXT``) is reported; so is a column that
    is not text. Other columns are left to Alembic's comparison (``None``).

    .. versionadded:: 1.0
    """
    if not isinstance(metadata_type, _FileColumn):
        return None
    if not _is_text(inspected_type):
        return True
    if _bounded(inspected_type):
        return False
    dialect = context.dialect
    if dialect.name not in ("mysql", "mariadb"):
        return False
    wanted = metadata_type.dialect_impl(dialect).compile(dialect=dialect)
    found = inspected_type.compile(dialect=dialect)
    return _mysql_rank(found) < _mysql_rank(wanted)


def _is_text(column_type: sa.types.TypeEngine[Any]) -> bool:
    # An ENUM is a String to SQLAlchemy, but holds no JSON.
    return isinstance(column_type, sa.String) and not isinstance(column_type, sa.Enum)


def _bounded(column_type: sa.types.TypeEngine[Any]) -> bool:
    """Whether a reflected text type has a length (VARCHAR(n), CHAR(n))."""
    return _is_text(column_type) and not isinstance(column_type, sa.Text)


def _mysql_rank(compiled: str) -> int:
    name = compiled.split("(")[0].split()[0].upper()
    # An unknown text type is taken for the largest: reporting it would propose shrinking it.
    return _MYSQL_TEXT_SIZES.index(name) if name in _MYSQL_TEXT_SIZES else len(_MYSQL_TEXT_SIZES)


# -- widening filedepot's columns --------------------------------------------------------------


def widen_file_columns(
    op: Operations, table: str, *columns: str, schema: str | None = None
) -> list[str]:
    """Turn file columns that are ``VARCHAR(n)`` (filedepot's ``VARCHAR(4000)``) into text.

    For a migration's ``upgrade()``::

        from depot.fields.alembic import widen_file_columns

        def upgrade():
            widen_file_columns(op, "documents", "attachment", "copied")

    Each column becomes ``TEXT``, what an
    :class:`~depot.fields.sqlalchemy.UploadedFileField` creates. Its data,
    nullability, default, comment and (on MySQL and MariaDB) charset and
    collation are kept. Columns that already are text are left alone, so the
    migration can run on databases where some were widened by hand.

    * PostgreSQL: ``ALTER COLUMN ... TYPE TEXT``, which rewrites nothing.
    * MySQL and MariaDB: ``MODIFY``, which copies the table (once per column).
    * SQLite: Alembic's batch mode, which copies the table into a new one.
      With foreign keys enforced (``PRAGMA foreign_keys=ON``), dropping the
      old table would delete (or fail on) the rows of tables that refer to
      it, so a table that others refer to is refused: turn foreign keys off
      for the migration first.

    :param op: the migration's ``alembic.op``.
    :param table: the table's name.
    :param columns: the file columns to widen.
    :param schema: the table's schema, if not the default one.
    :returns: the columns that were widened.
    :raises DepotError: a column is missing or is not text; the migration
        runs offline (``--sql``) on a database other than PostgreSQL; a
        refused SQLite table.

    .. versionadded:: 1.0
    """
    if not columns:
        raise TypeError(
            f"widen_file_columns(op, {table!r}) names no column: add the file columns "
            f"to widen, widen_file_columns(op, {table!r}, 'attachment')."
        )
    context = op.get_context()
    dialect = context.dialect
    if context.as_sql:
        if dialect.name != "postgresql":
            raise DepotError(
                f"widen_file_columns reads {table!r} from the database to keep each column's "
                f"nullability and default, which an offline migration (--sql) cannot do on "
                f"{dialect.name}: run this migration online."
            )
        for name in columns:
            op.alter_column(table, name, type_=sa.Text(), schema=schema)
        return list(columns)
    bind = op.get_bind()
    found = _reflected_columns(bind, table, schema)
    narrow = []
    for name in columns:
        if name not in found:
            raise DepotError(
                f"widen_file_columns: table {table!r} has no column {name!r} (it has "
                f"{', '.join(sorted(found))}); name the file columns to widen."
            )
        column_type = found[name]["type"]
        if not _is_text(column_type):
            raise DepotError(
                f"widen_file_columns: {table}.{name} is {column_type}, not text: a file "
                "column holds JSON text, so this is not one; leave it out."
            )
        if _bounded(column_type):
            narrow.append(name)
    if not narrow:
        return []
    if dialect.name == "sqlite":
        _refuse_referenced_sqlite_table(bind, table, schema)
        _refuse_leftover_batch_copy(bind, table, schema)
        with op.batch_alter_table(table, schema=schema) as batch:
            for name in narrow:
                batch.alter_column(name, type_=sa.Text(), **_existing(found[name]))
        return narrow
    for name in narrow:
        op.alter_column(
            table,
            name,
            type_=_text_type(dialect.name, found[name]),
            schema=schema,
            **_existing(found[name]),
        )
    return narrow


def _reflected_columns(bind: Connection, table: str, schema: str | None) -> dict[str, Any]:
    inspector = sa.inspect(bind)
    if not inspector.has_table(table, schema=schema):
        where = f" in schema {schema!r}" if schema else ""
        tables = sorted(inspector.get_table_names(schema=schema))
        shown = ", ".join(tables[:10]) + (
            f" and {len(tables) - 10} more" if len(tables) > 10 else ""
        )
        raise DepotError(
            f"There is no table {table!r}{where}: name a table of the database "
            f"({shown or 'it has none'})."
        )
    return {column["name"]: column for column in inspector.get_columns(table, schema=schema)}


def _existing(column: dict[str, Any]) -> dict[str, Any]:
    """What ALTER must say again of a column so that only its type changes (MySQL's MODIFY)."""
    default = column.get("default")
    return {
        "existing_type": column["type"],
        "existing_nullable": column["nullable"],
        # Reflected as SQL ('{}' with its quotes): a plain string would be quoted again.
        "existing_server_default": sa.text(default) if isinstance(default, str) else default,
        "existing_comment": column.get("comment"),
    }


def _text_type(dialect_name: str, column: dict[str, Any]) -> sa.types.TypeEngine[Any]:
    if dialect_name in ("mysql", "mariadb"):
        # MODIFY takes the table's charset unless told: keep the column's own.
        reflected = column["type"]
        return mysql.TEXT(
            charset=getattr(reflected, "charset", None),
            collation=getattr(reflected, "collation", None),
        )
    return sa.Text()


def _refuse_leftover_batch_copy(bind: Connection, table: str, schema: str | None) -> None:
    # Alembic's name for its copy (alembic.operations.batch). SQLite's driver
    # commits DDL on its own, so a batch that failed or was killed can leave it.
    copy = f"_alembic_tmp_{table}"[:50]
    if sa.inspect(bind).has_table(copy, schema=schema):
        raise DepotError(
            f"widen_file_columns: the table {copy!r}, the copy Alembic's batch mode makes of "
            f"{table!r}, already exists: an earlier attempt stopped half-way. Check that "
            f"{table!r} holds all its rows, then DROP TABLE {copy} and run the migration again."
        )


def _refuse_referenced_sqlite_table(bind: Connection, table: str, schema: str | None) -> None:
    enforced = bind.exec_driver_sql("PRAGMA foreign_keys").scalar()
    if not enforced:
        return
    inspector = sa.inspect(bind)
    referring = sorted(
        other
        for other in inspector.get_table_names(schema=schema)
        if any(fk["referred_table"] == table for fk in inspector.get_foreign_keys(other, schema))
    )
    if referring:
        raise DepotError(
            f"widen_file_columns: SQLite recreates {table!r} to change a column's type, and "
            f"with foreign keys on, dropping the old table deletes or refuses the rows of "
            f"{', '.join(referring)} that refer to it. Turn foreign keys off for the "
            "migration: in env.py, before context.configure(), run "
            "connection.exec_driver_sql('PRAGMA foreign_keys=OFF') then connection.commit() "
            "(inside a transaction SQLite ignores the pragma)."
        )


# -- moving a column's files -------------------------------------------------------------------


@dataclass
class MovedFiles:
    """What :func:`move_column_files` did.

    .. versionadded:: 1.0
    """

    #: Rows whose value was rewritten.
    rows: int = 0
    #: Files copied to the target depot.
    files: int = 0
    #: Paths whose file was missing (with ``missing="rewrite"``), as they were.
    missing: list[str] = field(default_factory=list)
    #: Primary keys of rows whose text is not a file value, left as they were.
    unreadable: list[tuple[Any, ...]] = field(default_factory=list)


def move_column_files(
    op: Operations,
    table: str,
    column: str,
    to: str,
    *,
    source: str | None = None,
    schema: str | None = None,
    missing: Literal["error", "rewrite"] = "error",
    batch_size: int = 100,
) -> MovedFiles:
    """Copy the files a column refers to into the depot ``to`` and rewrite the column.

    Each file (and each file a filter added, a thumbnail) is streamed into
    ``to`` under the same id, and the row's value is rewritten to name ``to``
    (its ``depot_name``, ``files``, ``path``, every ``<name>_path``, the
    public URLs, and each ``<name>_url`` a filter stored). Rows are read
    ``batch_size`` at a time, in the order of their primary key. The depots
    must be configured where the migration runs (``DepotManager.configure()``
    in ``env.py``).

    The files stay in their old depot: deleting them before the migration
    commits would leave the rows of a rolled-back migration without files.
    Delete them once it committed. Running the migration again is safe: a
    copied file is copied over, a rewritten row is left alone. Stop the
    application (or point its column's ``upload_storage`` at ``to`` first), or
    rows it writes meanwhile keep the old depot.

    This is a loop for one column inside a migration, kept small on purpose;
    it is not a tool for copying whole depots.

    :param op: the migration's ``alembic.op``.
    :param table: the table's name.
    :param column: the file column (either field type) whose files move.
    :param to: the name of the depot to move the files into.
    :param source: move only the files of this depot; by default every
        depot's but ``to``'s.
    :param missing: ``"error"`` raises when a file is not in its depot;
        ``"rewrite"`` rewrites its path anyway and lists it in
        :attr:`MovedFiles.missing`.
    :param schema: the table's schema, if not the default one.
    :param batch_size: how many rows are read at a time.
    :returns: what was moved, and what was left as it was.
    :raises DepotError: the table has no such column or no primary key, a
        depot is not configured, or a file is missing (``missing="error"``).
    :raises ValidationError: the target depot's policy refuses a file; the
        message names the row.

    .. versionadded:: 1.0
    """
    if missing not in ("error", "rewrite"):
        raise ValueError(f"missing must be 'error' or 'rewrite', not {missing!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size!r}.")
    target = _depot(to, f"Moving the files of {table}.{column}")
    if op.get_context().as_sql:
        raise DepotError(
            "move_column_files copies files as it reads the rows, which an offline "
            "migration (--sql) cannot do: run this migration online."
        )
    bind = op.get_bind()
    columns = _reflected_columns(bind, table, schema)  # says which tables there are
    if column not in columns:
        raise DepotError(
            f"move_column_files: table {table!r} has no column {column!r} (it has "
            f"{', '.join(sorted(columns))})."
        )
    reflected = sa.Table(table, sa.MetaData(), autoload_with=bind, schema=schema)
    keys = list(reflected.primary_key.columns)
    if not keys:
        raise DepotError(
            f"move_column_files: table {table!r} has no primary key, so its rows cannot be "
            "updated one by one: add one first."
        )
    mover = _Mover(to, target, source, missing)
    report = MovedFiles()
    for row in _rows(bind, reflected, keys, reflected.c[column], batch_size):
        key: tuple[Any, ...] = tuple(row[:-1])
        text = row[-1]
        where = f"{table} row {key if len(key) > 1 else key[0]!r}"
        rewritten = mover.rewrite(text, where, report)
        if rewritten is None:
            report.unreadable.append(key)
            log.warning("%s: %s is not a file value; left as it is", where, column)
        elif rewritten != text:
            condition = sa.and_(*(k == v for k, v in zip(keys, key, strict=True)))
            bind.execute(reflected.update().where(condition).values({column: rewritten}))
            report.rows += 1
    return report


def _rows(
    bind: Connection,
    table: sa.Table,
    keys: Sequence[sa.Column[Any]],
    column: sa.Column[Any],
    batch_size: int,
) -> Iterator[Sequence[Any]]:
    """The rows' keys and texts, a batch at a time: keyset pagination, not a cursor
    held open (MySQL cannot update while one streams) nor OFFSET (slower each batch)."""
    last: tuple[Any, ...] | None = None
    key = sa.tuple_(*keys) if len(keys) > 1 else keys[0]
    while True:
        query = sa.select(*keys, column).where(column.is_not(None)).order_by(*keys)
        if last is not None:
            query = query.where(key > (sa.tuple_(*last) if len(keys) > 1 else last[0]))
        rows = bind.execute(query.limit(batch_size)).all()
        yield from rows
        if len(rows) < batch_size:
            return
        last = tuple(rows[-1][: len(keys)])


def _all_paths(item: dict[str, Any]) -> list[str]:
    """The paths a value names: its ``files``, and every ``path`` and ``<name>_path``."""
    # Filters record their files as '<name>_path'; values from before 'files'
    # existed may name them only there.
    named = [v for k, v in item.items() if k.endswith("path") and isinstance(v, str)]
    return list(dict.fromkeys(paths_of(item) + named))


def _depot(name: str, action: str) -> FileStorage:
    storage = DepotManager.get(DepotManager._require(name, action))
    assert storage is not None  # _require raised otherwise
    return storage


class _Mover:
    """Copies the files of values into the target depot and rewrites the values."""

    def __init__(self, to: str, target: FileStorage, source: str | None, missing: str) -> None:
        self.to = to
        self.target = target
        self.source = source
        self.missing = missing

    def rewrite(self, text: Any, where: str, report: MovedFiles) -> str | None:
        """The value's new text (``text`` itself if nothing moves), or None if unreadable."""
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            return None
        items = value if isinstance(value, list) else [value]
        if any(value_problem(item) is not None for item in items):
            return None
        try:
            moved = {path: self._copy(path, where, report) for path in self._to_move(items)}
        except InvalidFileIdError:
            # A path no depot could have written ('media/../x'): the row is not a value.
            return None
        if not moved:
            return text
        for item in items:
            self._rewrite_value(item, moved)
        return json.dumps(value)

    def _to_move(self, items: list[dict[str, Any]]) -> list[str]:
        paths = [path for item in items for path in _all_paths(item)]
        wanted = []
        for path in dict.fromkeys(paths):
            depot_name, slash, _ = path.partition("/")
            # A key that names no depot ('/home/ann/a.png', a filter's own) moves nothing.
            if not (slash and depot_name):
                continue
            if depot_name != self.to and self.source in (None, depot_name):
                wanted.append(path)
        return wanted

    def _copy(self, path: str, where: str, report: MovedFiles) -> str:
        depot_name, _, file_id = path.partition("/")
        source = _depot(depot_name, f"Moving {path} ({where})")
        try:
            stored = source.get(file_id)
        except StoredFileNotFoundError as exc:
            if self.missing == "error":
                raise StoredFileNotFoundError(
                    f"{where} refers to {path}, which is not in depot {depot_name!r}: "
                    "restore it, or pass missing='rewrite' to move the row's value anyway."
                ) from exc
            report.missing.append(path)
            return f"{self.to}/{file_id}"
        with stored:
            try:
                # replace(f, f) stores a file read elsewhere under its own id, streaming it.
                self.target.replace(stored, stored)
            except ValidationError as exc:
                # The target depot's policy (max_size, allowed_types) refuses it.
                exc.args = (f"{where}: moving {path} to depot {self.to!r}: {exc}", *exc.args[1:])
                raise
        report.files += 1
        return f"{self.to}/{file_id}"

    def _rewrite_value(self, item: dict[str, Any], moved: dict[str, str]) -> None:
        before = dict(item)
        if isinstance(item.get("files"), list):
            item["files"] = [moved.get(path, path) for path in item["files"]]
        for key, path in list(item.items()):
            if not (key == "path" or key.endswith("_path")) or path not in moved:
                continue
            item[key] = moved[path]
            url_key = "_public_url" if key == "path" else f"_{key[: -len('_path')]}_public_url"
            if url_key in item:
                item[url_key] = self._public_url(moved[path])
        follow_moved_paths(before, item)
        # The value opens '<depot_name>/<file_id>': it names the new depot once
        # none of its files is left in the old one.
        old = f"{item.get('depot_name')}/"
        if any(path.startswith(old) for path in moved) and not any(
            path.startswith(old) for path in _all_paths(item)
        ):
            item["depot_name"] = self.to

    def _public_url(self, path: str) -> str | None:
        try:
            with self.target.get(path.partition("/")[2]) as stored:
                url: str | None = stored.public_url
                return url
        except StoredFileNotFoundError:
            return None
