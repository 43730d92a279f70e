"""Helpers for backends and applications, at the import paths filedepot 0.12 used."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from tempfile import SpooledTemporaryFile
from typing import IO, Any

from depot.io._chunks import rewind
from depot.io._fileinfo import FileIntent, SupportsRead, unwrap
from depot.utils import utcnow_naive

__all__ = [
    "INMEMORY_FILESIZE",
    "TIMESTAMP_FORMAT",
    "FileIntent",
    "file_from_content",
    "keeping_last_modified",
    "timestamp",
]

#: Bytes given to :func:`file_from_content` stay in memory up to this size.
INMEMORY_FILESIZE = 1024 * 1024

#: How stored metadata writes times (UTC), as filedepot did.
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def timestamp() -> str:
    """Return the current UTC time in the metadata format, e.g. ``2024-05-01 12:00:00``."""
    # isoformat() writes TIMESTAMP_FORMAT for the years 1000-9999, several times
    # faster than strftime(): this runs on every create.
    return utcnow_naive().isoformat(" ", "seconds")


def _modified_now() -> tuple[str, datetime]:
    """The ``last_modified`` a backend records now: the text and the naive UTC datetime.

    Every backend calls this, and it calls :func:`timestamp` through this
    module's globals at call time: ``mock.patch('depot.io.utils.timestamp')``,
    how filedepot's suites (and the applications that copied them) freeze
    time, then sets the time of every file stored meanwhile, on every backend.
    Inside :func:`keeping_last_modified` it gives the time kept instead.
    """
    kept = _kept_modified.get()
    text = timestamp() if kept is None else kept.strftime(TIMESTAMP_FORMAT)
    return text, parse_timestamp(text)


#: The ``last_modified`` that writes in this context record instead of now.
_kept_modified: ContextVar[datetime | None] = ContextVar("depot_kept_modified", default=None)


@contextmanager
def keeping_last_modified(when: datetime) -> Iterator[None]:
    """Make the files this thread stores meanwhile record ``when`` as ``last_modified``.

    For copies between depots (:func:`depot.ops.copy_depot`), which keep each
    file's time. ``when`` is a naive UTC datetime, recorded to the second. It
    holds for the current thread (or asyncio task) only, and only for backends
    that take the time from :mod:`depot.io.utils` while writing, as all of
    depot's do; a backend whose server sets the time itself cannot keep it.

    .. versionadded:: 1.0
    """
    if when.tzinfo is not None:
        raise ValueError(
            f"keeping_last_modified({when!r}): give a naive UTC datetime, as "
            "StoredFile.last_modified is (when.astimezone(timezone.utc).replace(tzinfo=None))."
        )
    token = _kept_modified.set(when)
    try:
        yield
    finally:
        _kept_modified.reset(token)


def parse_timestamp(value: str) -> datetime:
    """Parse a :func:`timestamp` string back into a naive UTC datetime."""
    # fromisoformat reads this exact format several times faster than strptime,
    # which matters on every get(); anything else is rejected as strptime would.
    if len(value) != 19 or value[10] != " ":
        raise ValueError(f"{value!r} is not a time like '2024-05-01 12:00:00'")
    return datetime.fromisoformat(value)


def file_from_content(content: Any) -> tuple[bool, IO[bytes] | SupportsRead]:
    """Return ``(must_close, fileobj)``: a readable file for anything create() accepts.

    Bytes are copied into a temporary file, which the caller must close
    (``must_close`` is then ``True``); a stream is returned as it is, rewound to
    its start if it can seek.
    """
    source, _, _ = unwrap(content)
    if isinstance(source, (bytes, bytearray, memoryview)):
        spooled = SpooledTemporaryFile(INMEMORY_FILESIZE)  # noqa: SIM115 (the caller closes it)
        spooled.write(source)
        spooled.seek(0)
        return True, spooled
    rewind(source)
    return False, source
