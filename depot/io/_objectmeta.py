"""The metadata filedepot keeps on each object of a bucket (S3, GCS), and depot's checksum.

filedepot 0.12 stores a file's name percent-encoded in ``x-depot-filename`` and
its upload time in ``x-depot-modified``; depot adds ``x-depot-checksum``. The
object's own Content-Type and Content-Disposition serve clients that fetch it
from the bucket (a public or signed URL).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple
from urllib.parse import quote, unquote

from depot._headers import DEFAULT_CONTENT_TYPE, DEFAULT_FILENAME, safe_content_type
from depot.exceptions import ConfigurationError, CorruptMetadataError
from depot.http.rules import DEFAULT_INLINE_TYPES, disposition_headers
from depot.io._chunks import is_checksum
from depot.io.utils import _modified_now, parse_timestamp
from depot.utils import make_content_disposition

log = logging.getLogger("depot.io")

FILENAME, MODIFIED, CHECKSUM = "x-depot-filename", "x-depot-modified", "x-depot-checksum"
# What filedepot left unescaped in x-depot-filename (RFC 8187 attr-char).
_FILENAME_SAFE = "!#$&+-.^_`|~"
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


class NewObject(NamedTuple):
    """The headers and depot's metadata of an object about to be written."""

    content_type: str
    content_disposition: str
    #: ``x-depot-filename`` and ``x-depot-modified`` (now); the checksum comes later.
    metadata: dict[str, str]


def new_object(filename: str, content_type: str) -> NewObject:
    """What an object storing a file named ``filename`` of ``content_type`` carries."""
    content_type = header_content_type(content_type)
    metadata = {FILENAME: quote_filename(filename), MODIFIED: _modified_now()[0]}
    return NewObject(content_type, content_disposition(filename, content_type), metadata)


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
    :raises CorruptMetadataError: a name or checksum depot cannot read back. An
        ``x-depot-modified`` that is not a time only gives ``last_modified = None``
        and a logged warning, as filedepot read it: a file that cannot be read
        is worse than one without a date.
    """
    metadata = metadata or {}
    field = ""
    try:
        field = FILENAME
        quoted = metadata.get(FILENAME)
        filename = unquote(quoted, errors="strict") if quoted else DEFAULT_FILENAME
        last_modified = _modified(metadata.get(MODIFIED), stored_at, file_id, key, where)
        field = CHECKSUM
        checksum = metadata.get(CHECKSUM)
        if checksum is not None and not is_checksum(checksum):
            raise ValueError(f"{checksum!r} is not 'sha256:' and 64 hex digits")
    except (ValueError, TypeError) as exc:  # TypeError: a value that is not a string
        raise CorruptMetadataError(
            f"Invalid metadata {field} of file {file_id} (object {key!r}) in {where}: {exc}. "
            "Restore the file from a backup or delete it."
        ) from exc
    return {"filename": filename, "last_modified": last_modified, "checksum": checksum}


def file_info(
    metadata: Mapping[str, Any] | None,
    stored_at: datetime | None,
    content_type: str | None,
    size: int | None,
    file_id: str,
    key: str,
    where: str,
) -> dict[str, Any]:
    """The :class:`~depot.io.interfaces.StoredFile` fields of an object: :func:`read_metadata`'s,
    and its ``content_type`` (``application/octet-stream`` when it has none) and ``content_length``.
    """
    # Objects put by other programs have no x-depot-modified: the bucket's time serves.
    info = read_metadata(metadata, stored_at, file_id, key, where)
    info["content_type"] = content_type or DEFAULT_CONTENT_TYPE
    info["content_length"] = size
    return info


def _modified(
    recorded: object, stored_at: datetime | None, file_id: str, key: str, where: str
) -> datetime | None:
    """``x-depot-modified`` as a datetime; the bucket's time when it is absent."""
    if not recorded:
        return naive_utc(stored_at) if stored_at is not None else None
    try:
        return parse_timestamp(recorded)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        log.warning(
            "File %s (object %r) in %s has an invalid %s (%s): its last_modified is None. "
            "Replace the file to record a new time.",
            file_id,
            key,
            where,
            MODIFIED,
            exc,
        )
        return None


def naive_utc(value: datetime) -> datetime:
    """An aware datetime from a bucket's API as depot's naive UTC, to the second."""
    return value.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0)
