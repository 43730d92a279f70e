"""Find, and delete if asked, the files of a depot nothing refers to: :func:`collect_garbage`.

.. versionadded:: 1.0
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from depot.exceptions import StoredFileNotFoundError
from depot.manager import DepotManager
from depot.ops._runner import check_jobs, run_each, storage_of
from depot.ops.copy import FileResult
from depot.ops.progress import Progress, ProgressCallback
from depot.ops.references import Batch, Reference, Unreadable
from depot.utils import utcnow_naive

__all__ = ["GRACE", "GarbageSummary", "collect_garbage"]

#: How old an unreferenced file must be to be garbage: uploads in flight, and
#: rows not committed yet, are younger than this.
GRACE = timedelta(days=1)


@dataclass
class GarbageSummary:
    """What :func:`collect_garbage` found.

    ``garbage`` lists the unreferenced files older than the grace period
    (outcome ``'unreferenced'`` when listing, ``'deleted'`` or ``'failed'``
    when deleting); ``recent`` those younger, left alone.

    .. versionadded:: 1.0
    """

    garbage: list[FileResult] = field(default_factory=list)
    recent: list[FileResult] = field(default_factory=list)
    #: Files of the depot, when it was listed.
    files: int = 0
    #: Rows and documents read, and the references to this depot they hold.
    rows: int = 0
    references: int = 0
    #: Values whose files could not be told; while there are any, nothing is deleted.
    unreadable: list[Unreadable] = field(default_factory=list)
    #: References naming a depot that is not configured here, to a file this depot
    #: holds (ids are unique: most likely this depot under a name, an alias, this
    #: process lacks). Their files are kept.
    unconfigured: list[Reference] = field(default_factory=list)
    #: Why nothing was deleted although ``delete=True``, or ``None``.
    refused: str | None = None

    @property
    def deleted(self) -> list[FileResult]:
        return [result for result in self.garbage if result.outcome == "deleted"]

    @property
    def failed(self) -> list[FileResult]:
        return [result for result in self.garbage if result.outcome == "failed"]


def collect_garbage(
    depot: str,
    references: Iterable[Batch],
    *,
    delete: bool = False,
    grace: timedelta = GRACE,
    now: datetime | None = None,
    jobs: int = 4,
    progress: ProgressCallback | None = None,
    ignore_unreadable: bool = False,
    allow_no_references: bool = False,
) -> GarbageSummary:
    """List (or, with ``delete``, delete) the files of ``depot`` no reference names.

    The depot is listed first, then the references are read batch after batch
    and each one crosses its file off; memory holds the depot's ids and one
    batch, whatever the number of rows. What is left, and older than
    ``grace``, is garbage. A file whose age is unknown is never garbage.

    Give *every* place that refers to the depot's files: a model left out
    makes its files look unreferenced. Chain several sources with
    :func:`itertools.chain`::

        refs = itertools.chain(
            sqlalchemy_references(engine, [Document, Album]),
            ming_references(odm_session, [Attachment]),
        )
        summary = collect_garbage('media', refs)          # look first
        summary = collect_garbage('media', refs2, delete=True)

    :param depot: the configured name of the depot; references name depots so
        (an alias of it counts as it). A reference naming a depot that is not
        configured here keeps the file of this depot with its id, if there is
        one, and is listed in ``unconfigured``: configure the aliases the
        application has where this runs.
    :param references: :class:`~depot.ops.references.Batch` objects, as
        :func:`~depot.ops.references.sqlalchemy_references` and
        :func:`~depot.ops.references.ming_references` yield.
    :param delete: delete the garbage; by default it is only listed.
    :param grace: files modified more recently are kept (default a day), so
        uploads in flight and transactions not committed yet are safe.
    :param now: the time to measure ages from (naive UTC); by default now.
    :param jobs: files looked at (or deleted) at once.
    :param progress: called with phase ``'scan'`` per batch of references,
        then ``'age'`` (or ``'delete'``) per unreferenced file.
    :param ignore_unreadable: delete even though some values could not be
        read (their files, if any, may be deleted). By default any
        unreadable value makes a ``delete`` list only, with ``refused`` saying why.
    :param allow_no_references: delete even though no reference to the depot
        was read at all. By default that makes a ``delete`` list only: with the
        wrong database, or models that are not the ones referring to the depot,
        every old file would look like garbage.

    .. versionadded:: 1.0
    """
    if not isinstance(depot, str):
        raise TypeError(
            f"collect_garbage() takes the depot's configured name, got {type(depot).__name__}: "
            "references name depots, so the name is what they are matched by."
        )
    storage = storage_of(depot, "the")
    check_jobs(jobs)
    if not isinstance(grace, timedelta) or grace < timedelta(0):
        raise ValueError(
            f"grace={grace!r}: give a duration of zero or more, a timedelta (timedelta(hours=6))."
        )
    if now is not None and not isinstance(now, datetime):
        raise TypeError(f"collect_garbage(now={now!r}): give a naive UTC datetime, or None.")
    if now is not None and now.tzinfo is not None:
        raise ValueError(
            f"collect_garbage(now={now!r}): give a naive UTC datetime, as "
            "StoredFile.last_modified is (now.astimezone(timezone.utc).replace(tzinfo=None))."
        )
    report = progress or (lambda event: None)
    home = DepotManager.resolve_alias(depot)

    resolved: dict[str, str | None] = {}

    def ours(name: str) -> bool:
        if name not in resolved:
            resolved[name] = DepotManager.resolve_alias(name)
        return resolved[name] == home

    def configured(name: str) -> bool:
        return ours(name) or resolved[name] is not None

    summary = GarbageSummary()
    candidates = set(storage.list())
    summary.files = len(candidates)
    for batch in references:
        summary.rows += batch.rows
        summary.unreadable += batch.unreadable
        for ref in batch.references:
            if ours(ref.depot_name):
                summary.references += 1
                candidates.discard(ref.file_id)
            elif ref.file_id in candidates and not configured(ref.depot_name):
                candidates.discard(ref.file_id)
                summary.unconfigured.append(ref)
        report(Progress("scan", summary.rows, None))

    cutoff = (now or utcnow_naive()) - grace
    unreferenced = sorted(candidates)
    del candidates
    old: list[FileResult] = []
    looked = 0

    def age(file_id: str) -> FileResult:
        try:
            with storage.get(file_id) as stored:
                modified, size = stored.last_modified, stored.content_length
        except StoredFileNotFoundError:
            return FileResult(file_id, "gone", "deleted meanwhile")
        except Exception as exc:  # noqa: BLE001 - one file's fault must not stop the others
            return FileResult(file_id, "failed", f"cannot be read ({type(exc).__name__}: {exc})")
        if modified is None:
            return FileResult(file_id, "recent", "its age is unknown: kept", size)
        if modified.tzinfo is not None:  # a third-party backend's; depot's are naive UTC
            modified = modified.astimezone(timezone.utc).replace(tzinfo=None)
        if modified > cutoff:
            return FileResult(file_id, "recent", f"modified {modified}, within the grace", size)
        return FileResult(file_id, "unreferenced", f"no reference; modified {modified}", size)

    def aged(file_id: str, result: FileResult) -> None:
        nonlocal looked
        looked += 1
        if result.outcome == "recent":
            summary.recent.append(result)
        elif result.outcome != "gone":
            old.append(result)
        report(Progress("age", looked, len(unreferenced), file_id=file_id, outcome=result.outcome))

    run_each(unreferenced, age, jobs, aged, lambda: None)
    old.sort(key=lambda result: result.file_id)
    if not delete:
        summary.garbage = old
        return summary
    if summary.unreadable and not ignore_unreadable:
        summary.garbage = old
        summary.refused = (
            f"{len(summary.unreadable)} value(s) could not be read (first: "
            f"{summary.unreadable[0].where}: {summary.unreadable[0].problem}), so the files "
            "they name cannot be told: nothing was deleted. Repair those values, or pass "
            "ignore_unreadable=True."
        )
        return summary
    if old and not summary.references and not allow_no_references:
        summary.garbage = old
        summary.refused = (
            f"no reference to {depot!r} was read ({summary.rows} rows and documents), so "
            f"all {len(old)} old files look like garbage: nothing was deleted. Check that the "
            "database and the models are the ones that refer to this depot; if nothing "
            "refers to it any more, pass allow_no_references=True."
        )
        return summary
    doomed = [result for result in old if result.outcome == "unreferenced"]
    summary.garbage = [result for result in old if result.outcome != "unreferenced"]
    removed = 0

    def remove(result: FileResult) -> FileResult:
        try:
            storage.delete(result.file_id)
        except Exception as exc:  # noqa: BLE001 - one file's fault must not stop the others
            return FileResult(
                result.file_id, "failed", f"delete failed ({type(exc).__name__}: {exc})"
            )
        return FileResult(result.file_id, "deleted", result.reason, result.size)

    def removed_one(result: FileResult, outcome: FileResult) -> None:
        nonlocal removed
        removed += 1
        summary.garbage.append(outcome)
        report(
            Progress(
                "delete", removed, len(doomed), file_id=outcome.file_id, outcome=outcome.outcome
            )
        )

    run_each(doomed, remove, jobs, removed_one, lambda: None)
    summary.garbage.sort(key=lambda result: result.file_id)
    return summary
