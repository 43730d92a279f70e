"""Small helpers that filedepot 0.12 kept at this import path."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import quote

from anyascii import anyascii

from depot._headers import CONTROL_CHARS, safe_filename, shorten_filename

__all__ = ["make_content_disposition", "utcfromtimestamp_naive", "utcnow_naive"]

# RFC 8187 attr-char, less the ones quote() never encodes anyway.
_RFC8187_SAFE = "!#$&+-.^_`|~"
# Bounds on the two forms of the name, so that the whole header stays under
# 1 KB whatever was stored: clients refuse huge headers (a 20,000-character
# name made a 280 KB one), and percent-encoding can make a name 12 times longer.
_MAX_ENCODED = 540
_MAX_FALLBACK = 180  # before escaping, which can double it


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
       add a header; filedepot copied them through. It never fails: lone
       surrogates (names made by :func:`os.fsdecode`) become U+FFFD, and a
       long name is shortened, keeping its extension, so that the value stays
       under 1 KB.
    """
    name = safe_filename(fname)
    encoded = _rfc8187(name)
    while len(encoded) > _MAX_ENCODED:
        # Shrink in proportion; strictly shorter each time, so this ends.
        name = shorten_filename(name, len(name) * _MAX_ENCODED // len(encoded))
        encoded = _rfc8187(name)
    fallback = shorten_filename(CONTROL_CHARS.sub("", anyascii(name)), _MAX_FALLBACK)
    fallback = fallback.replace("\\", "\\\\").replace('"', '\\"')
    return f"{disposition};filename=\"{fallback}\";filename*=utf-8''{encoded}"


def _rfc8187(name: str) -> str:
    return quote(name, safe=_RFC8187_SAFE, encoding="utf-8", errors="strict")
