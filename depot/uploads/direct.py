"""Uploads that go straight to the bucket: presigned, then checked and made a stored file.

``presign_upload()`` hands the client a presigned POST (or PUT) for one new
object, whose key, type and largest size are fixed by the signature, and a
token; the client sends the file to the bucket, then the application calls
``complete_upload(token)``. That checks what arrived (its size, its checksum
when one was given, its sniffed type against the depot's policy), writes the
metadata that makes it a stored file like any other, and deletes it and
refuses it otherwise. The app server never sees the bytes of the upload;
the check reads them once (the checksum and the sniffing).

A token is an HMAC-SHA256 of what was presigned, with the depot's first
``signing_keys`` entry (every key verifies, as for signed URLs), and it
expires with the presigned request.

.. versionadded:: 1.0
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from depot.exceptions import ConfigurationError, UploadNotFound

__all__ = ["DirectUpload", "make_token", "read_token"]

_CONTEXT = b"depot direct upload\0"
# What a token can be at most: a few fields of text, and no more is decoded.
_MAX_TOKEN = 4096


@dataclass(frozen=True)
class DirectUpload:
    """What a client needs to send one file to the bucket itself.

    :param method: ``"POST"`` (a form: send ``fields``, then the file as the
        field ``file``) or ``"PUT"`` (the file as the body, with ``headers``).
    :param url: where to send it.
    :param fields: the form fields of a POST, in order.
    :param headers: the headers a PUT must carry (its signature covers them).
    :param token: for ``complete_upload()`` once the client says it is sent.
    :param file_id: the id the file will have.
    :param expires_at: when the presigned request and the token expire (Unix time).
    """

    method: str
    url: str
    token: str
    file_id: str
    expires_at: int
    fields: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def make_token(keys: Sequence[bytes], payload: dict[str, Any]) -> str:
    """``payload`` (JSON-able) signed with the first of ``keys``."""
    if not keys:
        raise ConfigurationError(
            "Direct uploads need the depot's signing_keys, to sign the token the client "
            "brings back: set depot.signing_keys (make a key with: python -c "
            '"import secrets; print(secrets.token_urlsafe(32))").'
        )
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return f"{_b64(body)}.{_b64(_mac(keys[0], body))}"


def read_token(keys: Sequence[bytes], token: object, now: float | None = None) -> dict[str, Any]:
    """The payload of a token made by :func:`make_token` with one of ``keys``, not expired.

    :raises UploadNotFound: the token is malformed, altered, signed with a key
        no longer listed, or expired (all alike: a client learns nothing more).
    """
    refused = UploadNotFound(
        "This upload token is not valid, or has expired: ask for a new upload."
    )
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or token.count(".") != 1:
        raise refused
    encoded, signature = token.split(".")
    try:
        body, given = _unb64(encoded), _unb64(signature)
    except (binascii.Error, ValueError):
        raise refused from None
    if not any(hmac.compare_digest(_mac(key, body), given) for key in keys):
        raise refused
    payload: dict[str, Any] = json.loads(body)
    if (time.time() if now is None else now) >= payload["e"]:
        raise refused
    return payload


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, _CONTEXT + body, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text.isascii():
        raise ValueError(text)
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_arrived(
    policy: Sequence[Any],
    filename: str | None,
    content_type: str,
    head: bytes,
    size: int,
    limit: int | None,
) -> None:
    """Check an object that arrived against what was presigned and the depot's policy.

    :param head: its first bytes (up to :data:`depot.validators.SNIFF_BYTES`), to sniff.
    :raises UploadTooLarge: larger than ``limit`` or the policy's size.
    :raises ContentTypeNotAllowed: its sniffed (or declared) type is refused.
    :raises depot.exceptions.ValidationError: another check of the policy refuses it.
    """
    from depot.exceptions import (
        ContentTypeNotAllowed,
        ContentTypeNotAllowedError,
        FileTooLargeError,
        UploadTooLarge,
    )
    from depot.validators import Upload, sniff, too_large

    if limit is not None and size > limit:
        raise UploadTooLarge(str(too_large(limit)), limit)
    arrived = Upload(filename, content_type, sniff(head), head, size)
    for check in policy:
        try:
            check.check(arrived)
        except FileTooLargeError as exc:
            raise UploadTooLarge(str(exc), exc.max_size) from exc
        except ContentTypeNotAllowedError as exc:
            raise ContentTypeNotAllowed(str(exc)) from exc
