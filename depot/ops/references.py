"""The files rows and documents refer to, read in batches.

See :func:`sqlalchemy_references` and :func:`ming_references`.

A file column keeps JSON naming ``'<depot>/<id>'`` paths: the file, and the
thumbnails or other files its filters stored (the ``files`` list). These
functions read those columns (:class:`~depot.fields.sqlalchemy.UploadedFileField`
and :class:`~depot.fields.sqlalchemy.UploadedFilesField`) and Ming's
:class:`~depot.fields.ming.UploadedFileProperty` documents a batch at a time,
so that millions of rows are read in bounded memory; no value is built and no
depot is touched.

SQL tables are read in primary key order, a batch per query
(``WHERE pk > last ORDER BY pk LIMIT n``) rather than through one streaming
cursor: the same connection can then write between batches, inside the same
transaction (MySQL's streaming cursors forbid that), as
:mod:`depot.ops.migrate` does.

.. versionadded:: 1.0
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from depot.fields._tracking import paths_of
from depot.fields.upload import value_problem

__all__ = [
    "Batch",
    "Reference",
    "Row",
    "Unreadable",
    "file_columns",
    "ming_references",
    "parse_paths",
    "sqlalchemy_references",
    "sqlalchemy_rows",
]

#: Rows read per query unless told otherwise.
BATCH_SIZE = 1000


@dataclass(frozen=True)
class Reference:
    """One ``'<depot>/<id>'`` path a row or document refers to.

    :param depot_name: the depot named in the path.
    :param file_id: the file's id in that depot.
    :param where: the table (or collection), column and key of the row, for messages.

    .. versionadded:: 1.0
    """

    depot_name: str
    file_id: str
    where: str

    @property
    def path(self) -> str:
        """``'<depot>/<id>'``, as :meth:`DepotManager.get_file` takes it."""
        return f"{self.depot_name}/{self.file_id}"


@dataclass(frozen=True)
class Unreadable:
    """A value whose files cannot be told: not JSON, not a file value, or a path without a depot.

    :param where: the table (or collection), column and key of the row.
    :param problem: what is wrong with it.

    .. versionadded:: 1.0
    """

    where: str
    problem: str


@dataclass
class Batch:
    """The references of a batch of rows, and the values among them that could not be read.

    .. versionadded:: 1.0
    """

    references: list[Reference] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    #: How many rows or documents this batch read.
    rows: int = 0


def parse_paths(value: Any, where: str, batch: Batch) -> None:
    """Add the references of one decoded column value (a dict, a list of them) to ``batch``.

    A value the fields would not read (see :func:`~depot.fields.upload.value_problem`)
    is :class:`Unreadable`: the files it means are unknown.
    """
    if value is None:
        return
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        problem = value_problem(item)
        if problem is not None:
            if isinstance(value, list):
                problem = f"item {index + 1} of {len(items)}: {problem}"
            batch.unreadable.append(Unreadable(where, f"not a file value: {problem}"))
            continue
        for path in _value_paths(item):
            depot_name, slash, file_id = path.partition("/")
            if not slash or not depot_name or not file_id:
                batch.unreadable.append(Unreadable(where, f"{path!r} is not a '<depot>/<id>' path"))
            else:
                batch.references.append(Reference(depot_name, file_id, where))


def _value_paths(item: dict[str, Any]) -> list[str]:
    """Every ``'<depot>/<id>'`` path one file value may stand for, each once.

    More than :func:`depot.fields._tracking.paths_of` (what a value owns, which
    the fields delete with it): here a file one key names and another does not
    must count as referenced, so ``files``, ``path``, ``depot_name`` with
    ``file_id`` (what :attr:`UploadedFile.file <depot.fields.upload.UploadedFile.file>`
    opens, even when ``path`` names a depot renamed since) and every
    ``<name>_path`` (thumbnails of values written before ``files`` existed).
    ``files`` and ``path`` must be paths; a ``<name>_path`` that is none (a
    filter's own key) is passed over.
    """
    paths = list(paths_of(item))
    path = item.get("path")
    if isinstance(path, str) and path:
        paths.append(path)
    depot_name, file_id = item.get("depot_name"), item.get("file_id")
    if isinstance(depot_name, str) and depot_name and isinstance(file_id, str) and file_id:
        paths.append(f"{depot_name}/{file_id}")
    for key, extra in item.items():
        if key.endswith("_path") and isinstance(extra, str):
            name, slash, extra_id = extra.partition("/")
            if slash and name and extra_id:
                paths.append(extra)
    return list(dict.fromkeys(paths))


def _decoded(text: Any, where: str, batch: Batch) -> Any:
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        batch.unreadable.append(Unreadable(where, f"the column's text is not JSON ({exc})"))
        return None


def file_columns(model: Any) -> list[str]:
    """The attribute names of the file columns of a mapped class (both field types).

    .. versionadded:: 1.0
    """
    import sqlalchemy as sa
    from sqlalchemy import orm

    from depot.fields.sqlalchemy import UploadedFileField, UploadedFilesField

    mapper = sa.inspect(model, raiseerr=False)
    if not isinstance(mapper, orm.Mapper):
        raise TypeError(
            f"{model!r} is not a mapped class: give the SQLAlchemy models (classes "
            "mapped with declarative_base() or registry()) whose file columns to read."
        )
    return [
        prop.key
        for prop in mapper.column_attrs
        if len(prop.columns) == 1
        and isinstance(prop.columns[0].type, (UploadedFileField, UploadedFilesField))
    ]


@dataclass
class Row:
    """One row of a model with its file columns' JSON, decoded (``None`` when empty).

    .. versionadded:: 1.0
    """

    model: Any
    key: tuple[Any, ...]
    values: dict[str, Any]
    where: str


@contextmanager
def _connection(bind: Any) -> Iterator[Any]:
    """A connection of ``bind``: an Engine's own (closed after), or a Session's or Connection's."""
    import sqlalchemy as sa
    from sqlalchemy import orm

    if isinstance(bind, orm.Session):
        yield bind.connection()
    elif isinstance(bind, sa.engine.Connection):
        yield bind
    elif isinstance(bind, sa.engine.Engine):
        with bind.connect() as conn:
            yield conn
    else:
        raise TypeError(
            f"{type(bind).__name__} is not a database: give an Engine, a Connection or a Session."
        )


def sqlalchemy_rows(
    bind: Any, models: Iterable[Any], batch_size: int = BATCH_SIZE
) -> Iterator[list[Row]]:
    """Yield the rows of ``models`` that have a file, ``batch_size`` rows at a time.

    Each row comes with its primary key and the decoded JSON of its file
    columns; a column whose text is not JSON is ``None`` in ``values`` and
    reported by :func:`sqlalchemy_references` as :class:`Unreadable`.

    :param bind: an Engine (a connection is opened and closed), a Connection
        or a Session (read in its transaction).
    :param models: mapped classes; those with no file column are passed over.

    .. versionadded:: 1.0
    """
    for model, rows in _raw_rows(bind, models, batch_size):
        yield [
            Row(model, key, {k: _decoded(v, where, Batch()) for k, v in texts.items()}, where)
            for key, texts, where in rows
        ]


def _raw_rows(
    bind: Any, models: Iterable[Any], batch_size: int
) -> Iterator[tuple[Any, list[tuple[tuple[Any, ...], dict[str, Any], str]]]]:
    import sqlalchemy as sa

    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: give the rows read per query, 1 or more.")
    with _connection(bind) as conn:
        for model in models:
            keys = file_columns(model)
            if not keys:
                continue
            mapper = sa.inspect(model)
            pk = list(mapper.primary_key)
            # The raw text: no value is built, and unreadable JSON is seen as it is.
            texts = [sa.type_coerce(mapper.columns[k], sa.Text()).label(k) for k in keys]
            table = mapper.local_table.name
            present = sa.or_(*(mapper.columns[k].isnot(None) for k in keys))
            last: tuple[Any, ...] | None = None
            while True:
                # From the mapper's tables joined: a subclass of a joined-table
                # inheritance has its columns in two tables, and selecting from
                # both unjoined would pair every row of one with every row of the other.
                query = (
                    sa.select(*pk, *texts)
                    .select_from(mapper.persist_selectable)
                    .where(present)
                    .order_by(*pk)
                    .limit(batch_size)
                )
                if last is not None:
                    if len(pk) == 1:
                        query = query.where(pk[0] > last[0])
                    else:
                        query = query.where(sa.tuple_(*pk) > sa.tuple_(*last))
                found = conn.execute(query).all()
                if not found:
                    break
                rows = []
                for row in found:
                    key = tuple(row[: len(pk)])
                    shown = ", ".join(f"{c.key}={v!r}" for c, v in zip(pk, key, strict=True))
                    values = dict(zip(keys, row[len(pk) :], strict=True))
                    rows.append((key, values, f"{table}({shown})"))
                yield model, rows
                last = tuple(found[-1][: len(pk)])
                if len(found) < batch_size:
                    break


def sqlalchemy_references(
    bind: Any, models: Iterable[Any], batch_size: int = BATCH_SIZE
) -> Iterator[Batch]:
    """Yield the files the file columns of ``models`` refer to, a :class:`Batch` per query.

    :param bind: an Engine, a Connection or a Session.
    :param models: mapped classes (their file columns are found by type).
    :param batch_size: rows read per query; memory holds one batch.

    .. versionadded:: 1.0
    """
    for _, rows in _raw_rows(bind, models, batch_size):
        batch = Batch(rows=len(rows))
        for _key, texts, where in rows:
            for column, text in texts.items():
                spot = f"{where}.{column}"
                parse_paths(_decoded(text, spot, batch), spot, batch)
        yield batch


def ming_file_properties(cls: Any) -> list[str]:
    """The names of the :class:`~depot.fields.ming.UploadedFileProperty` of a Ming class."""
    from ming.odm import mapper

    from depot.fields.ming import UploadedFileProperty

    return [p.name for p in mapper(cls).properties if isinstance(p, UploadedFileProperty)]


def ming_collection(session: Any, cls: Any) -> Any:
    """The pymongo collection a Ming mapped class is kept in."""
    from ming.odm import mapper

    document_class: Any = mapper(cls).collection
    return session.db[document_class.m.collection_name]


def ming_references(
    session: Any, classes: Sequence[Any], batch_size: int = BATCH_SIZE
) -> Iterator[Batch]:
    """Yield the files the file properties of Ming ``classes`` refer to, in batches.

    Documents are read straight from their collections (only the file
    properties), in ``_id`` order, ``batch_size`` at a time.

    :param session: the ``ODMSession`` (or thread-local one) the classes are mapped on.

    .. versionadded:: 1.0
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: give the documents read per query.")
    for cls in classes:
        names = ming_file_properties(cls)
        if not names:
            continue
        collection = ming_collection(session, cls)
        cursor = collection.find({}, {name: 1 for name in names}).sort("_id", 1)
        if hasattr(cursor, "batch_size"):  # pymongo's; Ming's in-memory mim has none
            cursor = cursor.batch_size(batch_size)
        batch = Batch()
        for document in cursor:
            batch.rows += 1
            for name in names:
                where = f"{collection.name}(_id={document.get('_id')!r}).{name}"
                parse_paths(document.get(name), where, batch)
            if batch.rows >= batch_size:
                yield batch
                batch = Batch()
        if batch.rows:
            yield batch
