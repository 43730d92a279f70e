"""The rules for stored values that end up in HTTP headers: content types and file names.

A stored file's type becomes a ``Content-Type`` header and its name a
``Content-Disposition`` parameter, sent by the middleware and, for S3 and GCS,
by the bucket itself (public and signed URLs). Each rule lives here once and is
applied twice: when a file is stored (so a bad value is never kept) and when it
is served (so values written by other programs, or by older versions, can never
break or inject a header).
"""

from __future__ import annotations

import re

__all__ = [
    "CONTROL_CHARS",
    "DEFAULT_CONTENT_TYPE",
    "DEFAULT_FILENAME",
    "MAX_CONTENT_TYPE_LENGTH",
    "MAX_FILENAME_LENGTH",
    "media_type",
    "safe_content_type",
    "safe_filename",
    "shorten_filename",
]

DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_FILENAME = "unnamed"

#: Longer content types are not kept (RFC 6838 bounds type and subtype names to
#: 127 characters each; parameters of real types are short).
MAX_CONTENT_TYPE_LENGTH = 256

#: File names are stored with at most this many characters (the extension kept),
#: and served with at most this many: a longer Content-Disposition is refused by
#: clients (a 20,000-character name made a 280 KB header).
MAX_FILENAME_LENGTH = 255

# RFC 9110 §5.6.2 token, §5.6.4 quoted-string (ASCII only: no obs-text), §8.3.1
# media-type with its parameters. Explicit classes, never \w or \s, which match
# Unicode letters and spaces (CR, LF, VT, \x1c-\x1f) in str patterns.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[ \t\x21\x23-\x5b\x5d-\x7e]|\\[ \t\x21-\x7e])*"'
_OWS = r"[ \t]*"
_MEDIA_TYPE = re.compile(
    rf"({_TOKEN})/({_TOKEN})((?:{_OWS};{_OWS}(?:{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))?)*)"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Characters no header value may carry (HTAB included: some servers split on it).
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def safe_content_type(value: object) -> str | None:
    """``value`` without surrounding blanks if it is a media type safe to send, else None.

    Safe means what RFC 9110 §8.3.1 allows, in ASCII: ``type/subtype`` tokens,
    then ``; name=value`` parameters whose value is a token or a quoted string.
    CR, LF and every other control character but tab, and any non-ASCII
    character, make the whole value unsafe, as does a length over
    :data:`MAX_CONTENT_TYPE_LENGTH`.
    """
    if not isinstance(value, str):
        return None
    value = value.strip(" \t")
    if len(value) > MAX_CONTENT_TYPE_LENGTH or not _MEDIA_TYPE.fullmatch(value):
        return None
    return value


def media_type(value: object) -> tuple[str, str] | None:
    """The ``(type, subtype)`` of a safe content type, lower-cased; None if it is not safe."""
    safe = safe_content_type(value)
    if safe is None:
        return None
    match = _MEDIA_TYPE.fullmatch(safe)
    assert match is not None
    return match[1].lower(), match[2].lower()


def safe_filename(value: str) -> str:
    """``value`` as a name that can be stored and always served.

    Lone surrogates (what :func:`os.fsdecode` makes of bytes that are not
    UTF-8) cannot be encoded, so they become U+FFFD; a name longer than
    :data:`MAX_FILENAME_LENGTH` is shortened, keeping its extension. Control
    characters are kept: serving escapes them (see
    :func:`depot.utils.make_content_disposition`).
    """
    return shorten_filename(_SURROGATE.sub("\ufffd", value)) or DEFAULT_FILENAME


def shorten_filename(name: str, limit: int = MAX_FILENAME_LENGTH) -> str:
    """``name`` cut to ``limit`` characters, keeping its extension when it has a short one."""
    if len(name) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and len(extension) < limit // 4:
        return stem[: limit - len(extension) - 1] + "." + extension
    return name[:limit]
