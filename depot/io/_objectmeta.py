"""The metadata filedepot keeps on each object of a bucket (S3, GCS), and depot's checksum.

filedepot 0.12 stores a file's name percent-encoded in ``x-depot-filename`` and
its upload time in ``x-depot-modified``; depot adds ``x-depot-checksum``. The
object's own Content-Type and Content-Disposition serve clients that fetch it
from the bucket (a public or signed URL).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote

from depot._headers import DEFAULT_CONTENT_TYPE, safe_content_type
from depot._http import DEFAULT_INLINE_TYPES, disposition_headers
from depot.exceptions import ConfigurationError, CorruptMetadataError
from depot.io.utils import parse_timestamp
from depot.utils import make_content_disposition

FILENAME, MODIFIED, CHECKSUM = "x-depot-filename", "x-depot-modified", "x-depot-checksum"
# What filedepot left unescaped in x-depot-filename (RFC 8187 attr-char).
_FILENAME_SAFE = "!#$&+-.^_`|~"
_CHECKSUM_TEXT = re.compile(r"sha256:[0-9a-f]{64}")
#: presign_ttl's bounds: S3 (SigV4) and GCS (V4) refuse signed URLs valid longer than 7 days.
MAX_PRESIGN_TTL = 7 * 24 * 3600


def quote_filename(filename: str) -> str:
    """``filename`` as filedepot wrote it in ``x-depot-filename``."""
    return quote(filename, safe=_FILENAME_SAFE, encoding="utf-8")


def header_content_type(content_type: object) -> str:
    """``content_type``, or ``application/octet-stream`` if it is not a safe media type.

    The bucket serves the type as a header, so the rule is the middleware's:
    :func:`depot._headers.safe_content_type`.
    """
    return safe_content_type(content_type) or DEFAULT_CONTENT_TYPE


def content_disposition(filename: str, content_type: str) -> str:
    """The middleware's choice of inline or attachment, for clients that fetch the
    object from the bucket itself (public and signed URLs).
    """
    headers = dict(disposition_headers(content_type, filename, DEFAULT_INLINE_TYPES))
    return headers["Content-Disposition"]


def response_disposition(filename: str, content_type: str, disposition: str | None) -> str:
    """The Content-Disposition a signed URL asks the bucket to answer with.

    :param disposition: ``'inline'``, ``'attachment'``, or ``None`` for the
        middleware's choice (:func:`content_disposition`).
    """
    if disposition is None:
        return content_disposition(filename, content_type)
    if disposition in ("inline", "attachment"):
        return make_content_disposition(disposition, filename)
    raise ValueError(f"disposition must be 'inline' or 'attachment', not {disposition!r}")


def presign_seconds(value: object) -> int | None:
    """The ``presign_ttl`` setting as seconds, ``None`` when not set."""
    if value is None or value == "":
        return None
    try:
        seconds = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        seconds = 0
    if not 1 <= seconds <= MAX_PRESIGN_TTL:
        raise ConfigurationError(
            f"presign_ttl must be a number of seconds from 1 to {MAX_PRESIGN_TTL} "
            f"(7 days, the longest a signed URL may last), not {value!r}."
        )
    return seconds


def read_metadata(
    metadata: Mapping[str, Any] | None,
    stored_at: datetime | None,
    file_id: str,
    key: str,
    where: str,
) -> dict[str, Any]:
    """``filename``, ``last_modified`` and ``checksum`` from an object's metadata.

    :param stored_at: the bucket's own time of the object, the ``last_modified``
        of objects put by other programs (no ``x-depot-modified``).
    :param key: the object's name, and ``where`` the bucket, for the error message.
    :raises CorruptMetadataError: a field depot cannot read back.
    """
    metadata = metadata or {}
    field = ""
    try:
        field = FILENAME
        quoted = metadata.get(FILENAME)
        filename = unquote(quoted, errors="strict") if quoted else "unnamed"
        field = MODIFIED
        modified = metadata.get(MODIFIED)
        if modified:
            last_modified = parse_timestamp(modified)
        elif stored_at is not None:
            last_modified = naive_utc(stored_at)
        else:
            raise ValueError("the object has no time")
        field = CHECKSUM
        checksum = metadata.get(CHECKSUM)
        if checksum is not None and not _CHECKSUM_TEXT.fullmatch(checksum):
            raise ValueError(f"{checksum!r} is not 'sha256:' and 64 hex digits")
    except (ValueError, TypeError) as exc:  # TypeError: a value that is not a string
        raise CorruptMetadataError(
            f"Invalid metadata {field} of file {file_id} (object {key!r}) in {where}: {exc}. "
            "Restore the file from a backup or delete it."
        ) from exc
    return {"filename": filename, "last_modified": last_modified, "checksum": checksum}


def naive_utc(value: datetime) -> datetime:
    """An aware datetime from a bucket's API as depot's naive UTC, to the second."""
    return value.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0)
