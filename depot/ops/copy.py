"""Copy the files of one depot to another, keeping their ids and metadata: :func:`copy_depot`.

Each file keeps its id, name, content type, modification time and checksum,
so rows that refer to ``'<depot>/<id>'`` keep working once the depot's name
is configured with the new backend. Every copy is verified: the bytes are
counted and hashed as they stream, and must match what the source recorded
and what the target recorded. Running the copy again copies only what is
missing from the target or differs there, so a copy stopped half-way (killed,
a server gone) is finished by running it again.

.. versionadded:: 1.0
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from depot.exceptions import DepotError, StoredFileNotFoundError
from depot.io._chunks import BLOCK_SIZE, Digest
from depot.io.interfaces import FileStorage, StoredFile
from depot.io.utils import keeping_last_modified
from depot.ops._runner import ByteCounter, check_jobs, run_each, storage_of
from depot.ops.progress import Progress, ProgressCallback

__all__ = ["CopySummary", "FileResult", "copy_depot"]

#: What :func:`copy_depot` compares to tell a file in the target is the same.
Compare = Literal["metadata", "content"]


@dataclass(frozen=True)
class FileResult:
    """What an operation did with one file, and why.

    :param file_id: the file.
    :param outcome: ``'copied'``, ``'skipped'`` or ``'failed'`` for a copy.
    :param reason: why, in words: ``'missing in target'``, ``'already in
        target (same size and checksum)'``, what failed and what to do.
    :param size: its size in bytes, when known.
    :param last_modified_kept: for a copied file, whether the target recorded
        the source's ``last_modified`` (``False``: the target's backend sets
        its own time; ``reason`` says so).

    .. versionadded:: 1.0
    """

    file_id: str
    outcome: str
    reason: str
    size: int | None = None
    last_modified_kept: bool = True


@dataclass
class CopySummary:
    """What :func:`copy_depot` did: how many files it copied and skipped, which failed and why.

    Files that went well are counted; the ones that need attention are listed
    with their reason, so the summary of a copy of millions of files stays
    small. A caller that wants each file's outcome gets it from the
    ``progress`` events (``file_id`` and ``outcome``).

    .. versionadded:: 1.0
    """

    #: Files copied to the target and verified.
    copied: int = 0
    #: Files already in the target, the same (size, checksum, name and type).
    skipped: int = 0
    #: Files not copied, or not verified, each with what went wrong and what to do.
    failed: list[FileResult] = field(default_factory=list)
    #: The bytes written to the target.
    bytes_copied: int = 0
    #: Copied files whose target recorded another time than the source's (its
    #: backend sets its own), with the two times in the reason; counted in ``copied``.
    last_modified_not_kept: list[FileResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every file is in the target, verified."""
        return not self.failed

    def add(self, result: FileResult) -> None:
        """Count or list one file's result."""
        if result.outcome == "copied":
            self.copied += 1
            self.bytes_copied += result.size or 0
            if not result.last_modified_kept:
                self.last_modified_not_kept.append(result)
        elif result.outcome == "skipped":
            self.skipped += 1
        else:
            self.failed.append(result)

    def merge(self, other: CopySummary) -> None:
        """Add the results of ``other`` (another run, another depot) to these."""
        self.copied += other.copied
        self.skipped += other.skipped
        self.failed += other.failed
        self.bytes_copied += other.bytes_copied
        self.last_modified_not_kept += other.last_modified_not_kept


@dataclass(frozen=True)
class _Facts:
    """What a depot records of a file, to compare two copies without reading them."""

    filename: str | None
    content_type: str | None
    last_modified: datetime | None
    size: int | None
    checksum: str | None

    @classmethod
    def of(cls, stored: StoredFile) -> _Facts:
        return cls(
            stored.filename,
            stored.content_type,
            stored.last_modified,
            stored.content_length,
            stored.checksum,
        )


@dataclass(frozen=True)
class _Plan:
    """What to do with one file: ``'copy'``, ``'check'`` (hash the source first), or done."""

    action: Literal["copy", "check", "done"]
    source: _Facts | None
    result: FileResult | None = None
    why: str = ""
    #: The target's version was modified after the source's.
    target_newer: bool = False
    target_modified: datetime | None = None


class _SourceCorrupt(DepotError, ValueError):
    """The bytes read from the source are not what the source recorded."""


class _VerifiedReader(StoredFile):
    """A source file as the target reads it: counted, hashed, checked at its end.

    Handed to ``target.replace(reader, reader)``, filedepot's way of storing a
    file under its own id whether or not the target has it. The end of the
    bytes raises if they disagree with the size or checksum the source
    recorded: the target's write fails whole, so no corrupt copy is stored.
    """

    def __init__(self, source: StoredFile, counter: ByteCounter) -> None:
        super().__init__(
            source.file_id,
            source.filename,
            source.content_type,
            source.last_modified,
            source.content_length,
            source.checksum,
        )
        self._source = source
        self._counter = counter
        self.digest = Digest()
        self._closed = False

    def read(self, n: int | None = -1) -> bytes:
        if n is not None and n >= 0:
            return self._read_block(n)
        # A caller asking for everything gets it, read block by block, still counted.
        blocks = []
        while block := self._read_block(BLOCK_SIZE):
            blocks.append(block)
        return b"".join(blocks)

    def _read_block(self, n: int) -> bytes:
        data = self._source.read(n)
        self.digest.update(data)
        self._counter.add(len(data))
        recorded = self._source.content_length
        if recorded is not None and self.digest.length > recorded:
            raise _SourceCorrupt(
                f"File {self.file_id}: the source gives more than the {recorded} bytes it "
                "records; its size or bytes are damaged. Restore it from a backup."
            )
        if not data and n:
            self._check_end()
        return data

    def _check_end(self) -> None:
        length, recorded = self.digest.length, self._source.content_length
        if recorded is not None and length != recorded:
            raise _SourceCorrupt(
                f"File {self.file_id}: the source gives {length} bytes but records "
                f"{recorded}; its bytes are damaged. Restore it from a backup."
            )
        checksum = self._source.checksum
        if checksum is not None and checksum != self.digest.checksum:
            raise _SourceCorrupt(
                f"File {self.file_id}: the source's bytes hash to {self.digest.checksum} but "
                f"it records {checksum}; they are damaged. Restore it from a backup."
            )

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed


def hash_file(stored: StoredFile, counter: ByteCounter | None = None) -> tuple[int, str]:
    """Read ``stored`` to its end; return its size and checksum (``'sha256:<hex>'``)."""
    digest = Digest()
    while True:
        data = stored.read(BLOCK_SIZE)
        if not data:
            return digest.length, digest.checksum
        digest.update(data)
        if counter is not None:
            counter.add(len(data))


def _differences(source: _Facts, target: _Facts) -> list[str]:
    names = ("size", "checksum", "filename", "content_type")
    return [name for name in names if getattr(source, name) != getattr(target, name)]


def _mismatch(file_id: str, what: str, expected: object, found: object) -> str:
    return f"the target records {what} {found!r} for {file_id} after the copy, not {expected!r}"


def copy_depot(
    source: FileStorage | str,
    target: FileStorage | str,
    *,
    jobs: int = 4,
    progress: ProgressCallback | None = None,
    ids: Iterable[str] | None = None,
    compare: Compare = "metadata",
    overwrite_newer: bool = False,
) -> CopySummary:
    """Copy every file of ``source`` (or those of ``ids``) to ``target``, under the same ids.

    A file is copied when the target lacks it or has it with another size,
    checksum, name or type; otherwise it is skipped. Each copy keeps the
    file's id, name, type and ``last_modified``, and is verified: the bytes
    read must match the size and checksum the source recorded (a damaged
    source file fails, and nothing of it is stored), and the target must
    record the same size and checksum: a target whose
    :attr:`~depot.io.interfaces.FileStorage.records_what_it_reads` is true
    (depot's memory, local and S3 backends) records those of the bytes it
    read, others are read back (their metadata, and their bytes if they record
    no checksum). A copy that fails verification is deleted from the target.
    The target's policy (``max_size``, allowed types) applies: a file it
    refuses fails with the reason.

    Running it again after a failure or a kill copies only what is missing or
    different: every backend stores a file whole or not at all. The target's
    ids are listed first (:meth:`~depot.io.interfaces.FileStorage.iter_ids`,
    up to :data:`LISTED_PER_FILE` times the files to copy plus
    :data:`LISTED_BEYOND`; a larger target is not listed), so a file it lacks
    is copied without being looked up there; a file written to the target
    meanwhile is copied over.

    :param source: the depot to copy from: a storage, or a configured name.
    :param target: the depot to copy to.
    :param jobs: files handled at once, each in a thread that looks the file
        up in both depots and copies it if needed; at most ``2 * jobs`` files
        are in flight, nothing is gathered per file but failures, and no file
        is ever held in memory whole (except by a backend that keeps files in
        memory).
    :param progress: called with a :class:`~depot.ops.progress.Progress` of
        phase ``'copy'`` after each file (with its ``file_id`` and
        ``outcome``) and while large files stream. ``files_total`` is the
        number of files to look at (``None`` for ``ids`` given as an
        iterator); ``bytes_total`` is a running total, the size of the files
        found so far to need reading, and ``bytes_done`` the bytes read of
        them. What it raises stops the copy and propagates.
    :param ids: copy only these files (duplicates are copied once), consumed
        as the copy goes; by default every file ``source.list()`` gives.
    :param compare: ``'metadata'`` (the default) takes a file for the same
        when both depots record the same size and checksum (and name and
        type); ``'content'`` also reads the target's copy and hashes it, to
        find copies damaged after they were written.
    :param overwrite_newer: replace a target file that differs even when the
        target's version is newer than the source's (``last_modified``). By
        default such a file fails, with both times in the reason, and is left
        as it is: it was changed in the target after it was copied (by an
        application already using the new backend), and the older bytes
        would replace the newer.
    :returns: a :class:`CopySummary`; failures do not raise, they are listed
        with their reason; the other files are counted.
    :raises ValueError: ``source`` and ``target`` are the same storage, or
        ``jobs`` is not a positive int.

    .. versionadded:: 1.0
    """
    src = storage_of(source, "source")
    dst = storage_of(target, "target")
    if src is dst:
        raise ValueError("copy_depot: source and target are the same storage; give two depots.")
    check_jobs(jobs)
    if compare not in ("metadata", "content"):
        raise ValueError(f"compare={compare!r}: choose 'metadata' or 'content'.")
    wanted: Iterable[str]
    if ids is None:
        wanted = src.list()  # a storage's ids are distinct
        files_total: int | None = len(wanted)
    else:
        wanted = _distinct(ids)
        files_total = len(set(ids)) if isinstance(ids, (list, tuple, set, frozenset)) else None
    summary = CopySummary()
    report = progress or (lambda event: None)
    # The bytes read from the sources of copies, and the size of the files found
    # to need a copy so far: each file is looked up, then copied at once by the
    # same thread, so no list of what is to be done is ever made.
    read_bytes, planned_bytes = ByteCounter(), ByteCounter()
    done = 0
    present = _listed(dst, files_total)

    def work(file_id: str) -> FileResult:
        return _copy_file(
            src, dst, file_id, compare, present, read_bytes, planned_bytes, overwrite_newer
        )

    def finished(file_id: str, result: FileResult) -> None:
        nonlocal done
        done += 1
        summary.add(result)
        report(
            Progress(
                "copy",
                done,
                files_total,
                read_bytes.value,
                planned_bytes.value,
                file_id,
                result.outcome,
            )
        )

    def tick() -> None:
        report(Progress("copy", done, files_total, read_bytes.value, planned_bytes.value))

    report(Progress("copy", 0, files_total, 0, 0))
    run_each(wanted, work, jobs, finished, tick)
    return summary


#: A copy lists the target's ids first, to copy the files it lacks without
#: looking each up (a HEAD on S3), unless the target holds more than this many
#: files beyond :data:`LISTED_PER_FILE` times the files to copy: a few files
#: copied into a large depot are looked up one by one instead.
LISTED_BEYOND = 10_000
LISTED_PER_FILE = 4


def _listed(dst: FileStorage, files_total: int | None) -> set[str] | None:
    """The ids the target has, or ``None``: look each file up."""
    if files_total is None:
        return None
    most = LISTED_PER_FILE * files_total + LISTED_BEYOND
    present: set[str] = set()
    try:
        for file_id in dst.iter_ids():
            if len(present) >= most:
                return None
            present.add(file_id)
    except Exception:  # noqa: BLE001 - only a shortcut: each file is then looked up, and fails
        return None
    return present


def _distinct(ids: Iterable[str]) -> Iterator[str]:
    """``ids`` without repeats, in their order."""
    # The ids seen are kept: the caller holds them all anyway, in most cases.
    seen: set[str] = set()
    for file_id in ids:
        if file_id not in seen:
            seen.add(file_id)
            yield file_id


def _copy_file(
    src: FileStorage,
    dst: FileStorage,
    file_id: str,
    compare: Compare,
    present: set[str] | None,
    read: ByteCounter,
    planned: ByteCounter,
    overwrite_newer: bool = False,
) -> FileResult:
    """Look ``file_id`` up in both depots and copy it if the target lacks it or differs.

    ``present``: the ids the target had when the copy started, if listed.
    """
    try:
        stored = src.get(file_id)
    except StoredFileNotFoundError:
        return FileResult(file_id, "failed", "not in the source depot; nothing to copy")
    except Exception as exc:  # noqa: BLE001 - one file's fault must not stop the others
        return FileResult(file_id, "failed", f"cannot be read from the source ({_describe(exc)})")
    with stored:
        facts = _Facts.of(stored)
        if present is not None and file_id not in present:
            plan = _Plan("copy", facts, why="missing in target")
        else:
            plan = _plan(dst, file_id, facts, compare, read, planned)
        if plan.result is not None:
            return plan.result
        if plan.target_newer and not overwrite_newer and plan.action == "copy":
            return _kept_newer(file_id, plan)
        try:
            if plan.action == "check":
                planned.add(facts.size or 0)
                found = hash_file(stored, read)
                if found == (facts.size, plan.why):
                    return FileResult(
                        file_id,
                        "skipped",
                        "already in target (same bytes, name and type)",
                        facts.size,
                    )
                if plan.target_newer and not overwrite_newer:
                    return _kept_newer(file_id, replace(plan, why="differs in target (checksum)"))
                planned.add(facts.size or 0)
                with src.get(file_id) as again:  # read to its end: from the start again
                    return _copy_verified(again, dst, file_id, "differs in target (checksum)", read)
            planned.add(facts.size or 0)
            return _copy_verified(stored, dst, file_id, plan.why, read)
        except _SourceCorrupt as exc:
            return FileResult(file_id, "failed", str(exc), facts.size)
        except Exception as exc:  # noqa: BLE001 - one file's fault must not stop the others
            return FileResult(file_id, "failed", f"copy failed: {_describe(exc)}", facts.size)


def _plan(
    dst: FileStorage,
    file_id: str,
    facts: _Facts,
    compare: Compare,
    read: ByteCounter,
    planned: ByteCounter,
) -> _Plan:
    """What to do with a file the source records as ``facts``, given what the target has."""
    try:
        with dst.get(file_id) as existing:
            there = _Facts.of(existing)
            same_so_far = not _differences(facts, there)
            if same_so_far and facts.checksum is None:
                # The source recorded no checksum (a file written by filedepot): only
                # its bytes tell, hashed next against the target's.
                recorded = there.checksum
                if recorded is None or compare == "content":
                    planned.add(there.size or 0)
                    recorded = hash_file(existing, read)[1]
                return _Plan("check", facts, why=recorded, **_newer(facts, there))
            if same_so_far and compare == "content":
                planned.add(there.size or 0)
                size, checksum = hash_file(existing, read)
                there = replace(there, size=size, checksum=checksum)
    except StoredFileNotFoundError:
        return _Plan("copy", facts, why="missing in target")
    except Exception as exc:  # noqa: BLE001 - a damaged target copy is copied over
        return _Plan("copy", facts, why=f"unreadable in target ({_describe(exc)})")
    differs = _differences(facts, there)
    if differs:
        why = f"differs in target ({', '.join(differs)})"
        return _Plan("copy", facts, why=why, **_newer(facts, there))
    reason = "already in target (same size, checksum, name and type)"
    if facts.last_modified != there.last_modified:
        reason += (
            f"; its last_modified differs (source {facts.last_modified}, target "
            f"{there.last_modified}), left as it is"
        )
    return _Plan("done", facts, FileResult(file_id, "skipped", reason, facts.size))


def _newer(source: _Facts, target: _Facts) -> dict[str, Any]:
    newer = (
        source.last_modified is not None
        and target.last_modified is not None
        and target.last_modified > source.last_modified
    )
    return {"target_newer": newer, "target_modified": target.last_modified}


def _kept_newer(file_id: str, plan: _Plan) -> FileResult:
    assert plan.source is not None
    return FileResult(
        file_id,
        "failed",
        f"{plan.why}, and newer there (target {plan.target_modified}, source "
        f"{plan.source.last_modified}): left as it is, since the older bytes would "
        "replace the newer; pass overwrite_newer=True (--overwrite-newer) to replace it",
        plan.source.size,
    )


def _copy_verified(
    stored: StoredFile, dst: FileStorage, file_id: str, why: str, counter: ByteCounter
) -> FileResult:
    """Store ``stored`` (not read yet) in ``dst`` under its id, checking its bytes as they go."""
    reader = _VerifiedReader(stored, counter)
    when = stored.last_modified
    try:
        with keeping_last_modified(when) if when is not None else nullcontext():
            dst.replace(reader, reader)
    except Exception as exc:
        # The reader's own complaint is clearer than whatever the backend wrapped it in.
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, _SourceCorrupt):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        raise
    reader._check_end()  # a backend that stopped reading at the recorded size
    length, checksum = reader.digest.length, reader.digest.checksum
    if dst.records_what_it_reads:
        # The target recorded the bytes just checked, and the time kept: reading
        # its copy back would cost a request per file (a HEAD on S3) and tell nothing.
        return FileResult(file_id, "copied", why, length)
    with dst.get(file_id) as copy:
        problem = None
        if copy.content_length != length:
            problem = _mismatch(file_id, "size", length, copy.content_length)
        elif copy.checksum is None:
            if hash_file(copy) != (length, checksum):
                problem = f"the bytes read back from the target for {file_id} differ"
        elif copy.checksum != checksum:
            problem = _mismatch(file_id, "checksum", checksum, copy.checksum)
        copy_facts = _Facts.of(copy)
    if problem is not None:
        dst.delete(file_id)
        return FileResult(
            file_id,
            "failed",
            f"{problem}; the copy was deleted from the target. Check the target "
            "backend, then run the copy again.",
            length,
        )
    kept = copy_facts.last_modified == when
    if not kept:
        why += (
            f"; last_modified not kept: the target records {copy_facts.last_modified}, "
            f"the source {when} (the target's backend sets its own time)"
        )
    return FileResult(file_id, "copied", why, length, kept)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
