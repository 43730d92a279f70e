"""Small helpers that filedepot 0.12 kept at this import path."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from urllib.parse import quote

from anyascii import anyascii

__all__ = ["make_content_disposition", "utcfromtimestamp_naive", "utcnow_naive"]

# RFC 8187 attr-char, less the ones quote() never encodes anyway.
_RFC8187_SAFE = "!#$&+-.^_`|~"
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def utcnow_naive() -> datetime:
    """Return the current UTC time as a naive datetime (how depot stores times)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def utcfromtimestamp_naive(ts: float) -> datetime:
    """Return the POSIX timestamp ``ts`` as a naive UTC datetime."""
    return datetime.fromtimestamp(ts, timezone.utc).replace(tzinfo=None)


def make_content_disposition(disposition: str, fname: str) -> str:
    """Build a ``Content-Disposition`` header value for a file named ``fname``.

    The value is ``<disposition>;filename="<ascii>";filename*=utf-8''<encoded>``,
    the format filedepot 0.12 produced: the RFC 8187 ``filename*`` carries the
    real name, the ASCII transliteration serves clients that ignore it.

    :param disposition: ``inline`` or ``attachment``.
    :param fname: the stored file name, any Unicode.

    .. versionchanged:: 1.0
       Control characters (CR, LF, ...) are dropped from the ASCII fallback and
       ``"`` and ``\\`` are escaped, so no file name can end the parameter or
       add a header; filedepot copied them through.
    """
    fallback = _CONTROL_CHARS.sub("", anyascii(fname))
    fallback = fallback.replace("\\", "\\\\").replace('"', '\\"')
    encoded = quote(fname, safe=_RFC8187_SAFE, encoding="utf-8", errors="strict")
    return f"{disposition};filename=\"{fallback}\";filename*=utf-8''{encoded}"
