"""HTTP decisions for serving one stored file: validators, preconditions, ranges, safety.

webob parses the request headers (ETag lists, HTTP dates); this module decides
what to answer, in the order of RFC 9110 section 13.2.2. webob's
``conditional_response_app`` is not used for the decision because it has no
If-Match / If-Unmodified-Since (412) and silently serves only the first of
several ranges; with 412, 304, 206 and 416 decided in one place their order
cannot drift apart.
"""

from __future__ import annotations

import re
import time
from calendar import timegm
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from webob.datetime_utils import parse_date
from webob.etag import AnyETag, ETagMatcher

from depot.utils import make_content_disposition

if TYPE_CHECKING:
    from webob import Request

    from depot.io.interfaces import StoredFile

#: A Range header with more ranges than this is answered with the whole file.
MAX_RANGES = 100

#: Types a browser shows without running anything: raster images, audio, video,
#: PDF and plain text. Everything else is sent as an attachment. An entry
#: ending in ``/*`` stands for the whole family.
DEFAULT_INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "image/tiff",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "audio/*",
        "video/*",
        "application/pdf",
        "text/plain",
    }
)

_RANGE_SPEC = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*")


def etag_for(stored: StoredFile) -> str:
    """A strong ETag (without quotes) that changes whenever the stored bytes do."""
    checksum = stored.checksum
    if checksum:
        return checksum.partition(":")[2][:32]
    # Files written by filedepot have no checksum: their time and size tell
    # versions apart (to the second, as filedepot's own ETag did).
    when = int(timegm(stored.last_modified.timetuple())) if stored.last_modified else 0
    return f"{when}-{stored.content_length}"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(value: datetime) -> str:
    """Format a naive-UTC datetime as an HTTP-date (RFC 9110 §5.6.7 IMF-fixdate)."""
    # By hand: this runs twice per request, and email.utils.formatdate is the
    # slowest part of a 304; strftime would follow the process locale.
    return (
        f"{_DAYS[value.weekday()]}, {value.day:02d} {_MONTHS[value.month - 1]} {value.year:04d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} GMT"
    )


def expires_in(seconds: int) -> str:
    """The HTTP-date ``seconds`` from now; computed once per second."""
    now = int(time.time())
    cached = _expires_cache.get(seconds)
    if cached is None or cached[0] != now:
        cached = (now, http_date(datetime.fromtimestamp(now + seconds, timezone.utc)))
        _expires_cache[seconds] = cached
    return cached[1]


_expires_cache: dict[int, tuple[int, str]] = {}


def precondition_status(request: Request, etag: str, last_modified: datetime | None) -> int | None:
    """Return 412 or 304 when a conditional header says so, else None (RFC 9110 §13.2.2)."""
    environ = request.environ
    modified = _aware(last_modified)
    if environ.get("HTTP_IF_MATCH"):
        if etag not in ETagMatcher.parse(environ["HTTP_IF_MATCH"], strong=True):
            return 412
    elif environ.get("HTTP_IF_UNMODIFIED_SINCE"):
        since = request.if_unmodified_since  # None when not an HTTP-date: ignored
        if since is not None and (modified is None or modified > since):
            return 412
    if request.method not in ("GET", "HEAD"):
        return None
    if environ.get("HTTP_IF_NONE_MATCH"):
        if etag in request.if_none_match:  # weak comparison; '*' matches
            return 304
    elif environ.get("HTTP_IF_MODIFIED_SINCE"):
        since = request.if_modified_since
        if since is not None and modified is not None and modified <= since:
            return 304
    return None


def requested_ranges(
    request: Request, etag: str, last_modified: datetime | None, length: int
) -> list[tuple[int, int]] | None:
    """The byte ranges to send, as ``(start, stop)`` pairs; None for the whole file.

    An empty list means none of the ranges can be satisfied (416).
    """
    header = request.environ.get("HTTP_RANGE")
    if not header or request.method not in ("GET", "HEAD"):
        return None
    if_range = request.environ.get("HTTP_IF_RANGE")
    if if_range and not _if_range_matches(if_range, etag, last_modified):
        return None
    return parse_ranges(header, length)


def parse_ranges(header: str, length: int) -> list[tuple[int, int]] | None:
    """Parse a ``Range: bytes=...`` header against a file of ``length`` bytes.

    Returns None when the header is to be ignored (malformed, another unit, too
    many ranges, or ranges that would add up to more than the file), else the
    satisfiable ranges in the order asked for.
    """
    unit, equals, specs = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    parts = [part for part in specs.split(",") if part.strip()]
    if not parts or len(parts) > MAX_RANGES:
        return None
    ranges = []
    for part in parts:
        match = _RANGE_SPEC.fullmatch(part)
        if match is None or not (match[1] or match[2]):
            return None
        if match[1]:
            start = int(match[1])
            stop = int(match[2]) + 1 if match[2] else length
            if match[2] and stop <= start:
                return None  # an inverted range makes the header invalid
            if start < length:
                ranges.append((start, min(stop, length)))
        elif int(match[2]) > 0:  # a suffix: the last n bytes
            ranges.append((max(length - int(match[2]), 0), length))
    if sum(stop - start for start, stop in ranges) > length:
        return None  # overlapping ranges: never send more than the file
    return ranges


def disposition_headers(
    content_type: str, filename: str, inline_types: Iterable[str]
) -> list[tuple[str, str]]:
    """Content-Disposition (and a sandbox for what is not shown inline)."""
    if _is_inline(content_type, inline_types):
        return [("Content-Disposition", make_content_disposition("inline", filename))]
    # A browser would render or run this (HTML, SVG, XML, scripts, unknown):
    # from the application's own origin that is stored XSS. Download it instead,
    # and sandbox it should it be opened anyway.
    return [
        ("Content-Disposition", make_content_disposition("attachment", filename)),
        ("Content-Security-Policy", "sandbox"),
    ]


class MultipartRanges:
    """The body of a ``multipart/byteranges`` answer, read range by range."""

    def __init__(
        self, stored: StoredFile, ranges: list[tuple[int, int]], content_type: str, boundary: str
    ) -> None:
        self._stored = stored
        length = stored.content_length
        self._parts = [
            (
                (
                    f"--{boundary}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Range: bytes {start}-{stop - 1}/{length}\r\n\r\n"
                ).encode("latin-1"),
                start,
                stop,
            )
            for start, stop in ranges
        ]
        self._closing = f"--{boundary}--\r\n".encode("latin-1")
        self.content_length = sum(len(head) + stop - start + 2 for head, start, stop in self._parts)
        self.content_length += len(self._closing)

    def __iter__(self) -> Iterator[bytes]:
        for head, start, stop in self._parts:
            yield head
            yield from self._stored.iter_range(start, stop)
            yield b"\r\n"
        yield self._closing

    def close(self) -> None:
        self._stored.close()


def _is_inline(content_type: str, inline_types: Iterable[str]) -> bool:
    bare = content_type.partition(";")[0].strip().lower()
    family = bare.partition("/")[0] + "/*"
    return bare in inline_types or family in inline_types


def _if_range_matches(value: str, etag: str, last_modified: datetime | None) -> bool:
    # Only a strong, exact match allows a partial answer (RFC 9110 §13.1.5).
    value = value.strip()
    if value.startswith(('"', "W/")):
        matcher = ETagMatcher.parse(value, strong=True)
        return matcher is not AnyETag and etag in matcher
    date = parse_date(value)
    return date is not None and date == _aware(last_modified)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None else None
