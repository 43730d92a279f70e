"""Signed, expiring URLs: who holds one may read that one file until it expires.

``DepotManager.url_for(path, expires_in=300)`` appends
``?expires=<unix time>&signature=<HMAC>``. The signature is HMAC-SHA256, with
the depot's first signing key, over the depot name as written in the URL, the
file id and the expiry; it is sent as URL-safe base64 without padding. Every
key of the depot verifies, so keys rotate without breaking the links out
there: put the new key first, keep the old one after it until the longest
link made with it has expired, then drop it.

Parsing never raises: whatever the query string holds, the verdict is
absent, valid or invalid (with a reason for the log).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Literal
from urllib.parse import parse_qsl

__all__ = [
    "EXPIRES",
    "MIN_KEY_BYTES",
    "SIGNATURE",
    "ServingPolicy",
    "Signature",
    "check_signature",
    "sign_query",
]

#: The query parameters of a signed URL.
EXPIRES, SIGNATURE = "expires", "signature"

#: The shortest signing key accepted (the HMAC's security is the key's).
MIN_KEY_BYTES = 16

# A query string longer than this is not one depot made: not parsed.
_MAX_QUERY = 4096
_SIGNATURE_LENGTH = 43  # 32 bytes of SHA-256 in base64 without padding
_MAX_EXPIRY_DIGITS = 12  # year 33658: past any real expiry, within any int


class ServingPolicy:
    """How a depot's files may be served: private or not, and its signing keys.

    .. versionadded:: 1.0
    """

    __slots__ = ("keys", "private")

    def __init__(self, private: bool = False, keys: Sequence[bytes] = ()) -> None:
        self.private = private
        self.keys = tuple(keys)

    def __repr__(self) -> str:  # never the keys themselves
        return f"<ServingPolicy private={self.private} keys={len(self.keys)}>"


#: The policy of a depot configured without serving settings.
PUBLIC = ServingPolicy()


class Signature:
    """The verdict on the signature a URL carries.

    :ivar state: ``'absent'`` (no signature parameter), ``'valid'`` or ``'invalid'``.
    :ivar expires_at: a valid signature's expiry (unix seconds).
    :ivar reason: why an invalid one is (expired, tampered, malformed, ...).
    """

    __slots__ = ("expires_at", "reason", "state")

    def __init__(
        self,
        state: Literal["absent", "valid", "invalid"],
        expires_at: int | None = None,
        reason: str = "",
    ) -> None:
        self.state = state
        self.expires_at = expires_at
        self.reason = reason

    @property
    def absent(self) -> bool:
        return self.state == "absent"

    @property
    def valid(self) -> bool:
        return self.state == "valid"

    def __repr__(self) -> str:
        return f"<Signature {self.state} {self.reason or self.expires_at or ''}>".replace(" >", ">")


ABSENT = Signature("absent")


def sign_query(keys: Sequence[bytes], depot_name: str, file_id: str, expires_at: int) -> str:
    """The query string (without ``?``) that makes a depot URL valid until ``expires_at``.

    :param keys: the depot's signing keys; the first one signs.
    :param expires_at: unix seconds.
    """
    digest = _digest(keys[0], depot_name, file_id, expires_at)
    return f"{EXPIRES}={expires_at}&{SIGNATURE}={digest}"


def check_signature(
    keys: Sequence[bytes], depot_name: str, file_id: str, query_string: str, now: float
) -> Signature:
    """Check the signature of the URL of ``<depot_name>/<file_id>`` with ``query_string``.

    Other query parameters are ignored (a cache-busting ``?v=2``). A URL that
    carries one of the two signature parameters must carry both, once each.
    """
    if EXPIRES not in query_string and SIGNATURE not in query_string:
        return ABSENT
    if len(query_string) > _MAX_QUERY:
        return Signature("invalid", reason="query string too long")
    try:
        pairs = parse_qsl(query_string, keep_blank_values=True, errors="strict")
    except (ValueError, UnicodeDecodeError):
        return Signature("invalid", reason="malformed query string")
    expires = [value for name, value in pairs if name == EXPIRES]
    signatures = [value for name, value in pairs if name == SIGNATURE]
    if not expires and not signatures:
        return ABSENT
    if len(expires) != 1 or len(signatures) != 1:
        return Signature("invalid", reason="expected one expires and one signature")
    expires_text, given = expires[0], signatures[0]
    if not (
        expires_text.isascii()
        and expires_text.isdigit()
        and len(expires_text) <= _MAX_EXPIRY_DIGITS
    ):
        return Signature("invalid", reason="malformed expiry")
    if len(given) != _SIGNATURE_LENGTH or not given.isascii():
        return Signature("invalid", reason="malformed signature")
    expires_at = int(expires_text)
    if not any(
        hmac.compare_digest(_digest(key, depot_name, file_id, expires_at), given) for key in keys
    ):
        return Signature("invalid", reason="signature does not match")
    if now >= expires_at:
        return Signature("invalid", expires_at, reason="expired")
    return Signature("valid", expires_at)


def parse_keys(value: object, setting: str) -> tuple[bytes, ...]:
    """Signing keys from a setting: a list of keys, or one string of them separated
    by whitespace or commas (as a config file gives it).

    :raises ValueError: a key shorter than :data:`MIN_KEY_BYTES`, or not text/bytes.
    """
    if value is None or value == "":
        return ()
    if isinstance(value, (str, bytes)):
        text = value.decode("utf-8") if isinstance(value, bytes) else value
        items: list[object] = list(text.replace(",", " ").split())
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError(
            f"{setting} must be a list of keys or a string of keys separated by spaces, "
            f"not {type(value).__name__}."
        )
    keys = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            item = item.encode("utf-8")
        if not isinstance(item, bytes):
            raise ValueError(f"{setting}: key {index + 1} is a {type(item).__name__}, not text.")
        if len(item) < MIN_KEY_BYTES:
            raise ValueError(
                f"{setting}: key {index + 1} is {len(item)} bytes; a signing key needs at least "
                f'{MIN_KEY_BYTES}. Make one with: python -c "import secrets; '
                'print(secrets.token_urlsafe(32))"'
            )
        keys.append(item)
    return tuple(keys)


def _digest(key: bytes, depot_name: str, file_id: str, expires_at: int) -> str:
    # JSON makes the message unambiguous: no name or id can be cut and
    # moved to make another file's message. surrogateescape: a path may
    # hold bytes that are not UTF-8 (request_path keeps them so).
    message = json.dumps(["depot-url-1", depot_name, file_id, expires_at]).encode(
        "utf-8", "surrogateescape"
    )
    mac = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")
