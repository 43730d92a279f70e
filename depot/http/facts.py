"""What the HTTP core needs to know of a stored file, and the headers that follow from it.

Computed once per file version: the ETag, the dates and the Content-Disposition
of a file are the same for every request for it, so they are kept (a small
cache keyed by the metadata they come from) instead of being formatted again.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING

from depot._headers import DEFAULT_CONTENT_TYPE, DEFAULT_FILENAME, safe_content_type
from depot.exceptions import CorruptMetadataError
from depot.http.rules import disposition_headers, etag_for, http_date
from depot.io.interfaces import is_size

if TYPE_CHECKING:
    from depot.io.interfaces import StoredFile

__all__ = ["FileFacts"]


class FileFacts:
    """The facts of one stored file version that an answer depends on.

    :ivar etag: the strong ETag, without quotes.
    :ivar last_modified: naive UTC, to the second, or None.
    :ivar length: the Content-Length of the whole file.
    :ivar content_type: the type sent (safe, or ``application/octet-stream``).
    :ivar headers: ETag, Last-Modified, Content-Type, Content-Disposition (and
        the sandbox of what is not shown inline), in that order.
    :ivar seekable: whether the file can go back (for several ranges).
    """

    __slots__ = (
        "answered",
        "content_type",
        "etag",
        "headers",
        "last_modified",
        "length",
        "seekable",
    )

    @classmethod
    def of(cls, stored: StoredFile, inline_types: frozenset[str]) -> FileFacts:
        """The facts of ``stored``, made once per version and kept (see the module's doc)."""
        key = (
            stored.file_id,
            stored.checksum,
            stored.last_modified,
            stored.content_length,
            stored.content_type,
            stored.filename,
            stored.seekable(),
            inline_types,
        )
        try:
            facts = _kept.get(key)
        except TypeError:  # a value that cannot be a key: made each time
            return cls(stored, inline_types)
        if facts is None:
            facts = cls(stored, inline_types)
            if len(_kept) >= _KEPT:
                _kept.clear()  # simpler than LRU, and a full cache is rebuilt in one pass
            _kept[key] = facts
        return facts

    def __init__(self, stored: StoredFile, inline_types: frozenset[str]) -> None:
        length = stored.content_length
        if not is_size(length):
            # Sent as Content-Length and used to check ranges: a missing or
            # invalid one would mean a broken answer, so the file is not served.
            raise CorruptMetadataError(
                f"Stored file {stored.file_id} has an invalid content_length {length!r}: "
                "restore its metadata from a backup or delete it."
            )
        self.length = length
        self.last_modified = to_the_second(stored.last_modified)
        self.etag = etag_for(stored)
        filename = stored.filename
        self.content_type, self.headers = _file_headers(
            self.etag,
            self.last_modified,
            stored.content_type,
            filename if isinstance(filename, str) and filename else DEFAULT_FILENAME,
            inline_types,
        )
        self.seekable = stored.seekable()
        #: The last (Cache-Control, Expires, 304 headers, 200 headers) answered
        #: (:func:`depot.http.answer.answer_file`); replaced whole, never changed.
        self.answered: (
            tuple[str, str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] | None
        ) = None


#: How many versions' facts are kept (each is a few hundred bytes).
_KEPT = 4096
_kept: dict[tuple[object, ...], FileFacts] = {}


@lru_cache(maxsize=_KEPT)
def _file_headers(
    etag: str,
    last_modified: datetime | None,
    stored_type: object,
    filename: str,
    inline_types: frozenset[str],
) -> tuple[str, tuple[tuple[str, str], ...]]:
    # The same rule as when storing: files written by other programs or older
    # versions may hold anything, and a CR or LF here would end the headers
    # and let the body render as HTML.
    content_type = safe_content_type(stored_type) or DEFAULT_CONTENT_TYPE
    headers = [("ETag", f'"{etag}"')]
    if last_modified is not None:
        headers.append(("Last-Modified", http_date(last_modified)))
    headers.append(("Content-Type", content_type))
    headers += disposition_headers(content_type, filename, inline_types)
    return content_type, tuple(headers)


def to_the_second(value: object) -> datetime | None:
    """A stored time as HTTP sees it: naive UTC, without a fraction of a second.

    depot's backends store times so, but any StoredFile can be served: a
    fraction would make the file look newer than its own Last-Modified (412
    for If-Unmodified-Since, never 304 or 206 by date), and an aware time in
    another zone would be sent as if it were UTC.
    """
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.replace(microsecond=0)
