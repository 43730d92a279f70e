"""The rules of serving one stored file: validators, preconditions, ranges, safety.

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
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from webob.datetime_utils import parse_date
from webob.etag import ETagMatcher

from depot.utils import make_content_disposition

if TYPE_CHECKING:
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

# ASCII digits and blanks only: \d and \s also match other scripts' digits
# (which int() would accept) and Unicode spaces.
_RANGE_SPEC = re.compile(r"[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*")

#: A byte position with more digits than this is past the end of any file:
#: it is read as "infinitely far" instead of converted (int() refuses more than
#: 4,300 digits, and there is no need to build such numbers at all).
_MAX_POSITION_DIGITS = 18
_FAR = 10**_MAX_POSITION_DIGITS

# One entity-tag (RFC 9110 §8.8.3): ``"`` etagc* ``"``, optionally weak.
_ENTITY_TAG = re.compile(r'(W/)?"[\x21\x23-\x7e\x80-\xff]*"')
# What an ETag built from a stored checksum may hold (etagc, ASCII only).
_ETAG_CHARS = re.compile(r"[\x21\x23-\x7e]+")


def etag_for(stored: StoredFile) -> str:
    """A strong ETag (without quotes) that changes whenever the stored bytes do."""
    checksum = stored.checksum
    tag = checksum.partition(":")[2][:32] if isinstance(checksum, str) else ""
    if _ETAG_CHARS.fullmatch(tag):
        return tag
    # Files written by filedepot have no checksum (and a checksum that could
    # not be sent in a header is no better): their time and size tell
    # versions apart (to the second, as filedepot's own ETag did).
    modified = stored.last_modified
    when = int(timegm(modified.timetuple())) if isinstance(modified, datetime) else 0
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


#: The longest max-age sent: RFC 9111 §1.2.2 has caches read any longer one
#: as 2**31 seconds (68 years); an Expires date that far is still a date.
MAX_AGE_LIMIT = 2**31


def max_age_seconds(value: int | str) -> int:
    """``value`` as the seconds of a ``max-age``: at most :data:`MAX_AGE_LIMIT`.

    :raises ValueError: a negative number, or not a number (``max-age=-1`` is
        no valid header, and a time before 1 AD or after 9999 has no date).
    """
    seconds = int(value)
    if seconds < 0:
        raise ValueError(
            f"cache_max_age must be a number of seconds, 0 or more, not {value!r}: "
            "0 lets browsers keep a file only while they check it has not changed."
        )
    return min(seconds, MAX_AGE_LIMIT)


def expires_in(seconds: int) -> str:
    """The HTTP-date ``seconds`` from now; computed once per second."""
    now = int(time.time())
    cached = _expires_cache.get(seconds)
    if cached is None or cached[0] != now:
        cached = (now, http_date(datetime.fromtimestamp(now + seconds, timezone.utc)))
        _expires_cache[seconds] = cached
    return cached[1]


_expires_cache: dict[int, tuple[int, str]] = {}


def precondition_status(
    headers: Mapping[str, str], method: str, etag: str, last_modified: datetime | None
) -> int | None:
    """Return 412 or 304 when a conditional header says so, else None (RFC 9110 §13.2.2).

    :param headers: the request's headers by lower-case name.
    """
    get = headers.get
    values = (
        get("if-match"),
        get("if-unmodified-since"),
        get("if-none-match"),
        get("if-modified-since"),
    )
    return preconditions_status(values, method, etag, last_modified)


def preconditions_status(
    values: tuple[str | None, str | None, str | None, str | None],
    method: str,
    etag: str,
    last_modified: datetime | None,
) -> int | None:
    """As :func:`precondition_status`, from the values of If-Match, If-Unmodified-Since,
    If-None-Match and If-Modified-Since (None when absent)."""
    if_match, if_unmodified_since, if_none_match, if_modified_since = values
    if not (if_match or if_unmodified_since or if_none_match or if_modified_since):
        return None
    if if_match:
        if etag not in ETagMatcher.parse(if_match, strong=True):
            return 412
    elif if_unmodified_since:
        since = header_date(if_unmodified_since)  # None: ignored
        modified = _aware(last_modified)
        if since is not None and (modified is None or modified > since):
            return 412
    if method not in ("GET", "HEAD"):
        return None
    if if_none_match:
        # The usual revalidation sends back exactly the tag it was given.
        if if_none_match == f'"{etag}"' or etag in ETagMatcher.parse(if_none_match, strong=False):
            return 304  # weak comparison; '*' matches
    elif if_modified_since:
        since = header_date(if_modified_since)
        modified = _aware(last_modified)
        if since is not None and modified is not None and modified <= since:
            return 304
    return None


def requested_ranges(
    headers: Mapping[str, str], method: str, etag: str, last_modified: datetime | None, length: int
) -> list[tuple[int, int]] | None:
    """The byte ranges to send, as ``(start, stop)`` pairs; None for the whole file.

    An empty list means none of the ranges can be satisfied (416).
    """
    header = headers.get("range")
    if not header or method not in ("GET", "HEAD"):
        return None
    if_range = headers.get("if-range")
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
    suffix = False  # a non-empty suffix range was asked for
    for part in parts:
        match = _RANGE_SPEC.fullmatch(part)
        if match is None or not (match[1] or match[2]):
            return None
        if match[1]:
            start = _position(match[1])
            stop = _position(match[2]) + 1 if match[2] else length
            if match[2] and stop <= start:
                return None  # an inverted range makes the header invalid
            if start < length:
                ranges.append((start, min(stop, length)))
        elif (count := _position(match[2])) > 0:  # a suffix: the last n bytes
            suffix = True
            if length:
                ranges.append((max(length - count, 0), length))
    if not length and suffix:
        # RFC 9110 §14.1.2: on an empty representation a suffix range is the
        # one satisfiable form, yet no Content-Range can describe zero bytes;
        # §14.2 lets a server ignore Range there: the whole (empty) file, 200.
        return None
    if sum(stop - start for start, stop in ranges) > length:
        return None  # overlapping ranges: never send more than the file
    return ranges


def header_date(value: str) -> datetime | None:
    """The moment an HTTP-date header names, or None when it names none that exists.

    webob parses dates that cannot be converted (year 10000, a 20-digit year,
    a zone offset of years) and then raises; RFC 9110 §13.1.3 says to ignore
    a date that is not valid, and these are not.
    """
    try:
        return parse_date(value)
    except (ValueError, OverflowError, OSError):
        return None


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


def _is_inline(content_type: str, inline_types: Iterable[str]) -> bool:
    bare = content_type.partition(";")[0].strip().lower()
    family = bare.partition("/")[0] + "/*"
    return bare in inline_types or family in inline_types


def _if_range_matches(value: str, etag: str, last_modified: datetime | None) -> bool:
    # Only one strong validator, matching exactly, allows a partial answer
    # (RFC 9110 §13.1.5): If-Range holds one entity-tag or one date, never a
    # list or "*"; a weak tag never matches.
    value = value.strip(" \t")
    if value.startswith(('"', "W/")):
        return _ENTITY_TAG.fullmatch(value) is not None and value == f'"{etag}"'
    date = header_date(value)
    return date is not None and date == _aware(last_modified)


def _position(digits: str) -> int:
    """A byte position of a Range header; a huge one is :data:`_FAR`, past any file."""
    digits = digits.lstrip("0")
    return _FAR if len(digits) > _MAX_POSITION_DIGITS else int(digits or "0")


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None else None
