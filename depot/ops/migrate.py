"""Move the files models refer to into another depot: :class:`MigrationPlan`, :func:`migrate`.

Where :func:`~depot.ops.copy.copy_depot` copies a whole depot, a migration
copies only what the file columns of given SQLAlchemy models and the file
properties of given Ming classes refer to (thumbnails included: a value lists
every file its filters stored), and can rewrite those values to name the new
depot, so that the old one can be retired without reconfiguring its name.

As in SQLAlchemy-ImageAttach, a plan is run either by iterating it (each step
is a :class:`~depot.ops.progress.Progress` event) or by :meth:`MigrationPlan.execute`
with a callback.

.. versionadded:: 1.0
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from depot.fields._tracking import follow_moved_paths
from depot.fields.upload import value_problem
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from depot.ops._runner import check_jobs, storage_of
from depot.ops.copy import Compare, CopySummary, FileResult, copy_depot
from depot.ops.progress import Progress, ProgressCallback
from depot.ops.references import (
    BATCH_SIZE,
    Batch,
    Unreadable,
    _connection,
    _raw_rows,
    _value_paths,
    ming_collection,
    ming_file_properties,
    ming_references,
    sqlalchemy_references,
)

__all__ = ["MigrationPlan", "MigrationSummary", "migrate"]


@dataclass
class MigrationSummary:
    """What a migration did.

    .. versionadded:: 1.0
    """

    #: The copy of the referenced files, all source depots together.
    copy: CopySummary = field(default_factory=CopySummary)
    #: Rows and documents read while looking for references.
    rows: int = 0
    #: Rows and documents whose values now name the target depot.
    rewritten: int = 0
    #: Rows left naming their old depot, with why (a file of theirs failed to
    #: copy, or the value is not one the field reads).
    left: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.copy.ok and not self.left


class _Stop(Exception):
    """The iteration of a plan was abandoned: the work stops at the next event."""


class MigrationPlan:
    """Copy the files of ``models`` (and Ming ``classes``) to ``target``; rewrite them if asked.

    :param target: the configured name of the depot to copy into.
    :param bind: the database of ``models``: an Engine (the rewrite commits in
        a transaction of its own), a Connection or a Session (the rewrite
        runs in its transaction, which the caller commits or rolls back).
    :param models: SQLAlchemy mapped classes; their file columns are found
        by type (:func:`~depot.ops.references.file_columns`).
    :param ming_session: the Ming ``ODMSession`` of ``ming_classes``.
    :param ming_classes: Ming mapped classes with
        :class:`~depot.fields.ming.UploadedFileProperty` properties.
    :param sources: the depots whose files move; by default every depot the
        values name, except ``target``.
    :param rewrite: after the copy, make the values name ``target``
        (``depot_name``, ``files``, ``path`` and each ``<name>_path``, and the
        public URLs, from the target; a stored ``<name>_url`` follows its
        path). A value is rewritten only if every file it names was copied
        and verified; the others, and values the field would not read, are
        listed in :attr:`MigrationSummary.left`. Rows are rewritten with Core
        statements, not through the ORM: objects already loaded in a Session
        are stale afterwards (``session.expire_all()``), and no file is
        deleted. Ming documents are updated one by one, outside any
        transaction (MongoDB's writes here are not transactional).
    :param jobs: files copied at once.
    :param batch_size: rows read per query.
    :param compare: passed to :func:`~depot.ops.copy.copy_depot`.

    .. versionadded:: 1.0
    """

    #: The summary of the last run through iteration.
    summary: MigrationSummary | None = None

    def __init__(
        self,
        target: str,
        *,
        bind: Any = None,
        models: Sequence[Any] = (),
        ming_session: Any = None,
        ming_classes: Sequence[Any] = (),
        sources: Iterable[str] | None = None,
        rewrite: bool = False,
        jobs: int = 4,
        batch_size: int = BATCH_SIZE,
        compare: Compare = "metadata",
    ) -> None:
        if not isinstance(target, str):
            raise TypeError(
                f"MigrationPlan takes the target depot's configured name, got "
                f"{type(target).__name__}: the rewritten values name it."
            )
        self.target = target
        self._storage = storage_of(target, "target")
        if models and bind is None:
            raise ValueError("MigrationPlan: models given without bind; pass their database.")
        if ming_classes and ming_session is None:
            raise ValueError("MigrationPlan: ming_classes given without ming_session.")
        self.bind = bind
        self.models = list(models)
        self.ming_session = ming_session
        self.ming_classes = list(ming_classes)
        self.sources = None if sources is None else set(sources)
        home = DepotManager.resolve_alias(target)
        for name in self.sources or ():
            if DepotManager.resolve_alias(name) == home:
                same = "" if name == target else f" ({name!r} is an alias of it)"
                raise ValueError(
                    f"MigrationPlan: {target!r} is both a source and the target{same}; "
                    "leave it out of sources."
                )
        self.rewrite = rewrite
        self.jobs = check_jobs(jobs)
        self.batch_size = batch_size
        self.compare = compare

    def _moves(self, name: str) -> bool:
        if self.sources is not None:
            return name in self.sources
        return DepotManager.resolve_alias(name) != DepotManager.resolve_alias(self.target)

    def _batches(self) -> Iterator[Batch]:
        if self.models:
            yield from sqlalchemy_references(self.bind, self.models, self.batch_size)
        if self.ming_classes:
            yield from ming_references(self.ming_session, self.ming_classes, self.batch_size)

    def execute(self, progress: ProgressCallback | None = None) -> MigrationSummary:
        """Run the plan: find the references, copy their files, rewrite the values if asked.

        :param progress: called with phase ``'scan'`` per batch of rows, then
            the ``'copy'`` events of each source depot's copy,
            then ``'rewrite'`` per batch of rows.
        """
        report = progress or (lambda event: None)
        summary = MigrationSummary()
        wanted: dict[str, set[str]] = {}
        for batch in self._batches():
            summary.rows += batch.rows
            summary.unreadable += batch.unreadable
            for ref in batch.references:
                if self._moves(ref.depot_name):
                    wanted.setdefault(ref.depot_name, set()).add(ref.file_id)
            report(Progress("scan", summary.rows, None))
        there: dict[str, set[str]] = {}
        for name in sorted(wanted):
            source = DepotManager.get(name)
            if source is None:
                for file_id in sorted(wanted[name]):
                    summary.copy.failed.append(_unconfigured(file_id, name))
                continue
            copied = copy_depot(
                source,
                self._storage,
                jobs=self.jobs,
                progress=report,
                ids=sorted(wanted[name]),
                compare=self.compare,
            )
            summary.copy.merge(copied)
            there[name] = wanted[name] - {r.file_id for r in copied.failed}
        if self.rewrite:
            self._rewrite(there, summary, report)
        return summary

    def __iter__(self) -> Iterator[Progress]:
        """Run the plan, yielding its progress; the summary is :attr:`summary` at the end.

        Leaving the loop early stops the work at its next event.
        """
        events: queue.Queue[Progress | BaseException | None] = queue.Queue(maxsize=64)
        abandoned = threading.Event()

        def forward(event: Progress) -> None:
            if abandoned.is_set():
                raise _Stop
            events.put(event)

        def run() -> None:
            try:
                self.summary = self.execute(forward)
            except _Stop:
                pass
            except BaseException as exc:  # handed to the iterating thread, raised there
                events.put(exc)
                return
            events.put(None)

        worker = threading.Thread(target=run, name="depot-migrate", daemon=True)
        worker.start()
        try:
            while True:
                item = events.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            abandoned.set()
            while worker.is_alive():
                with contextlib.suppress(queue.Empty):  # drained, so the worker never blocks
                    events.get(timeout=0.1)
            worker.join()

    def _rewrite(
        self, there: dict[str, set[str]], summary: MigrationSummary, report: ProgressCallback
    ) -> None:
        target = self._storage

        def copied(name: str, file_id: str) -> bool:
            return file_id in there.get(name, ())

        if self.models:
            import sqlalchemy as sa

            with _transaction(self.bind) as conn:
                for model, rows in _raw_rows(conn, self.models, self.batch_size):
                    mapper = sa.inspect(model)
                    pk = list(mapper.primary_key)
                    for key, texts, where in rows:
                        # By table: a subclass of a joined-table inheritance has
                        # file columns in two, each updated by its own key columns.
                        changes: dict[Any, dict[Any, Any]] = {}
                        for column, text in texts.items():
                            spot = f"{where}.{column}"
                            new = self._rewritten_text(text, spot, copied, target, summary)
                            if new is not None:
                                col = mapper.columns[column]
                                changes.setdefault(col.table, {})[col] = sa.type_coerce(
                                    new, sa.Text()
                                )
                        for table, values in changes.items():
                            condition = sa.and_(
                                *(
                                    _key_column(mapper, c, table) == v
                                    for c, v in zip(pk, key, strict=True)
                                )
                            )
                            conn.execute(sa.update(table).where(condition).values(values))
                        if changes:
                            summary.rewritten += 1
                    report(Progress("rewrite", summary.rewritten, None))
        for cls in self.ming_classes:
            names = ming_file_properties(cls)
            collection = ming_collection(self.ming_session, cls)
            for document in collection.find({}, {name: 1 for name in names}).sort("_id", 1):
                where = f"{collection.name}(_id={document.get('_id')!r})"
                updates = {}
                for name in names:
                    value = document.get(name)
                    if value is None:
                        continue
                    spot = f"{where}.{name}"
                    new_value = self._rewritten_value(value, spot, copied, target, summary)
                    if new_value is not None:
                        updates[name] = new_value
                if updates:
                    collection.update_one({"_id": document["_id"]}, {"$set": updates})
                    summary.rewritten += 1
            report(Progress("rewrite", summary.rewritten, None))

    def _rewritten_text(
        self,
        text: Any,
        where: str,
        copied: Callable[[str, str], bool],
        target: FileStorage,
        summary: MigrationSummary,
    ) -> str | None:
        if not text:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None  # reported as unreadable by the scan; left as it is
        new = self._rewritten_value(value, where, copied, target, summary)
        return None if new is None else json.dumps(new)

    def _rewritten_value(
        self,
        value: Any,
        where: str,
        copied: Callable[[str, str], bool],
        target: FileStorage,
        summary: MigrationSummary,
    ) -> Any:
        """``value`` naming the target, or ``None`` if it names no moving file (or cannot)."""
        moving = []
        for item in value if isinstance(value, list) else [value]:
            problem = value_problem(item)
            if problem is not None:
                # Which files it means is unknown, so none can be said to be in the target.
                summary.left.append((where, f"not a file value: {problem}"))
                return None
            for path in _value_paths(item):
                name, _, file_id = path.partition("/")
                if self._moves(name):
                    if not copied(name, file_id):
                        summary.left.append(
                            (where, f"{path} is not in {self.target!r}: not copied")
                        )
                        return None
                    moving.append(path)
        if not moving:
            return None
        return _renamed(value, self._moves, self.target, target)


def _renamed(value: Any, moves: Callable[[str], bool], new_name: str, target: FileStorage) -> Any:
    if isinstance(value, list):
        return [_renamed(item, moves, new_name, target) for item in value]
    if not isinstance(value, dict):
        return value

    def moved(path: Any) -> Any:
        if isinstance(path, str):
            name, slash, file_id = path.partition("/")
            if slash and moves(name):
                return f"{new_name}/{file_id}"
        return path

    new = dict(value)
    if isinstance(new.get("depot_name"), str) and moves(new["depot_name"]):
        new["depot_name"] = new_name
    if isinstance(new.get("files"), list):
        new["files"] = [moved(path) for path in new["files"]]
    for key in list(new):
        if key == "path" or key.endswith("_path"):
            new[key] = moved(new[key])
    follow_moved_paths(value, new)
    # Public URLs are the backend's own: the new backend's, or none.
    for key in list(new):
        if key == "_public_url":
            path_key = "path"
        elif key.startswith("_") and key.endswith("_public_url"):
            path_key = key[1 : -len("_public_url")] + "_path"
        else:
            continue
        path = new.get(path_key)
        if isinstance(path, str) and path.startswith(new_name + "/"):
            with target.get(path.partition("/")[2]) as stored:
                new[key] = stored.public_url
    return new


def _key_column(mapper: Any, column: Any, table: Any) -> Any:
    """The column of ``table`` that holds the mapper's primary key ``column``."""
    if column.table is table:
        return column
    for candidate in mapper.get_property_by_column(column).columns:
        if candidate.table is table:
            return candidate
    raise ValueError(  # pragma: no cover - a mapper's tables all carry its key
        f"{mapper.class_.__name__}: table {table.name} holds no column of its key {column.key}."
    )


def _unconfigured(file_id: str, name: str) -> FileResult:
    return FileResult(
        file_id,
        "failed",
        f"its depot {name!r} is not configured: configure it to migrate its files",
    )


class _transaction:  # noqa: N801 - used as a function, a context manager
    """A connection in a transaction: an Engine's own (committed at the end), or the caller's."""

    def __init__(self, bind: Any) -> None:
        self.bind = bind
        self._context: Any = None

    def __enter__(self) -> Any:
        import sqlalchemy as sa

        if isinstance(self.bind, sa.engine.Engine):
            self._context = self.bind.begin()
            return self._context.__enter__()
        self._context = _connection(self.bind)
        return self._context.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._context.__exit__(*exc)


def migrate(
    target: str,
    *,
    bind: Any = None,
    models: Sequence[Any] = (),
    ming_session: Any = None,
    ming_classes: Sequence[Any] = (),
    sources: Iterable[str] | None = None,
    rewrite: bool = False,
    jobs: int = 4,
    batch_size: int = BATCH_SIZE,
    compare: Compare = "metadata",
    progress: ProgressCallback | None = None,
) -> MigrationSummary:
    """Run a :class:`MigrationPlan` made of these arguments; return its summary.

    .. versionadded:: 1.0
    """
    plan = MigrationPlan(
        target,
        bind=bind,
        models=models,
        ming_session=ming_session,
        ming_classes=ming_classes,
        sources=sources,
        rewrite=rewrite,
        jobs=jobs,
        batch_size=batch_size,
        compare=compare,
    )
    return plan.execute(progress)
