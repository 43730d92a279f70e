"""Check that files exist and hold the bytes they recorded.

See :func:`verify_references` and :func:`verify_depot`.

.. versionadded:: 1.0
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from depot.exceptions import CorruptMetadataError, InvalidFileIdError, StoredFileNotFoundError
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from depot.ops._runner import ByteCounter, check_jobs, run_each, storage_of
from depot.ops.copy import FileResult, hash_file
from depot.ops.progress import Progress, ProgressCallback
from depot.ops.references import Batch, Reference, Unreadable

__all__ = ["VerifySummary", "verify_depot", "verify_references"]


@dataclass
class VerifySummary:
    """What a verification found, file by file.

    Each list holds :class:`~depot.ops.copy.FileResult` objects whose
    ``file_id`` is the ``'<depot>/<id>'`` path (for :func:`verify_depot`, the
    id) and whose ``reason`` says what is wrong, and where it is referenced.

    .. versionadded:: 1.0
    """

    #: Files present whose bytes match their recorded size and checksum.
    ok: int = 0
    #: Files present that recorded no checksum (written by filedepot): size only.
    unchecked: list[FileResult] = field(default_factory=list)
    missing: list[FileResult] = field(default_factory=list)
    corrupt: list[FileResult] = field(default_factory=list)
    #: Files that could not be checked (a backend down, a read that failed):
    #: nothing is known of them, so they are not called corrupt.
    failed: list[FileResult] = field(default_factory=list)
    #: Values whose files could not be told.
    unreadable: list[Unreadable] = field(default_factory=list)

    @property
    def problems(self) -> list[FileResult]:
        """The missing and corrupt files."""
        return self.missing + self.corrupt


def _check(storage: FileStorage, file_id: str, label: str, counter: ByteCounter) -> FileResult:
    try:
        with storage.get(file_id) as stored:
            recorded_size, recorded = stored.content_length, stored.checksum
            size, checksum = hash_file(stored, counter)
    except StoredFileNotFoundError:
        return FileResult(label, "missing", "not in its depot")
    except InvalidFileIdError as exc:
        return FileResult(label, "missing", f"names no file its depot can hold ({exc})")
    except CorruptMetadataError as exc:
        return FileResult(label, "corrupt", f"its metadata is damaged ({exc})")
    except Exception as exc:  # noqa: BLE001 - one file's fault must not stop the others
        # A backend down, a connection lost: the file may be fine. Called
        # corrupt, it could be deleted by someone acting on the list.
        reason = f"could not be checked ({type(exc).__name__}: {exc}); run verify again"
        return FileResult(label, "failed", reason)
    if recorded_size is not None and size != recorded_size:
        return FileResult(label, "corrupt", f"holds {size} bytes, records {recorded_size}", size)
    if recorded is None:
        return FileResult(label, "unchecked", "records no checksum; its size matches", size)
    if checksum != recorded:
        return FileResult(label, "corrupt", f"bytes hash to {checksum}, records {recorded}", size)
    return FileResult(label, "ok", "matches", size)


def _tally(summary: VerifySummary, result: FileResult) -> None:
    if result.outcome == "ok":
        summary.ok += 1
    else:
        getattr(summary, result.outcome).append(result)


def verify_references(
    references: Iterable[Batch],
    *,
    jobs: int = 4,
    progress: ProgressCallback | None = None,
) -> VerifySummary:
    """Check that every referenced file exists, and hash it against its recorded checksum.

    Each file is read whole (in blocks); a file referenced by several rows is
    checked once per reference. References are consumed as the checks go, so
    memory stays bounded.

    :param references: batches from :func:`~depot.ops.references.sqlalchemy_references`
        or :func:`~depot.ops.references.ming_references`.
    :param jobs: files read at once.
    :param progress: called with phase ``'verify'`` after each file.

    .. versionadded:: 1.0
    """
    check_jobs(jobs)
    summary = VerifySummary()
    report = progress or (lambda event: None)
    counter = ByteCounter()
    done = 0

    def each() -> Iterator[Reference]:
        for batch in references:
            summary.unreadable += batch.unreadable
            yield from batch.references

    def check(ref: Reference) -> FileResult:
        storage = DepotManager.get(ref.depot_name)
        if storage is None:
            return FileResult(ref.path, "missing", f"its depot is not configured ({ref.where})")
        result = _check(storage, ref.file_id, ref.path, counter)
        if result.outcome == "ok":
            return result
        return FileResult(ref.path, result.outcome, f"{result.reason} ({ref.where})", result.size)

    def checked(ref: Reference, result: FileResult) -> None:
        nonlocal done
        done += 1
        _tally(summary, result)
        report(Progress("verify", done, None, counter.value, None, ref.path, result.outcome))

    def tick() -> None:
        report(Progress("verify", done, None, counter.value))

    run_each(each(), check, jobs, checked, tick)
    return summary


def verify_depot(
    depot: FileStorage | str,
    *,
    jobs: int = 4,
    progress: ProgressCallback | None = None,
) -> VerifySummary:
    """Hash every file of ``depot`` against its recorded size and checksum.

    :param depot: a storage, or a configured depot name.

    .. versionadded:: 1.0
    """
    storage = storage_of(depot, "the")
    check_jobs(jobs)
    summary = VerifySummary()
    report = progress or (lambda event: None)
    counter = ByteCounter()
    ids = storage.list()
    done = 0

    def checked(file_id: str, result: FileResult) -> None:
        nonlocal done
        done += 1
        _tally(summary, result)
        report(Progress("verify", done, len(ids), counter.value, None, file_id, result.outcome))

    run_each(
        ids,
        lambda file_id: _check(storage, file_id, file_id, counter),
        jobs,
        checked,
        lambda: report(Progress("verify", done, len(ids), counter.value)),
    )
    return summary
