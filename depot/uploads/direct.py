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
import mimetypes
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from depot.exceptions import ChecksumMismatch, ConfigurationError, UploadNotFound

__all__ = ["DirectUpload", "make_token", "read_token"]

#: Where an upload waits, under the storage's prefix, until it is checked: a
#: "folder" that ``list()`` does not show and that no file id reaches.
STAGING = ".depot-uploads/"
#: The longest a presigned upload may last: S3 and GCS refuse V4 signatures over 7 days.
MAX_EXPIRES_IN = 7 * 24 * 3600

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


@dataclass(frozen=True)
class Planned:
    """What a presigned upload will be, checked before anything is signed.

    :param file_id: the id the file will have.
    :param content_type: the type the upload must be sent with (safe for a header).
    :param limit: the largest size accepted (the given ``max_size`` and the
        depot's), or ``None``.
    :param expires_at: when the signed request and the token expire (Unix time).
    """

    file_id: str
    content_type: str
    limit: int | None
    expires_at: int


def plan_upload(
    storage: Any,
    filename: str | None,
    content_type: str | None,
    max_size: int | None,
    checksum: str | None,
    expires_in: object,
) -> Planned:
    """Check what ``presign_upload()`` was asked, against the depot's policy too.

    :raises ValueError: an ``expires_in`` or ``checksum`` that cannot be one.
    :raises depot.exceptions.ContentTypeNotAllowed: the type, or the name's, is refused.
    """
    from depot._headers import DEFAULT_CONTENT_TYPE, safe_content_type
    from depot.io._chunks import is_checksum
    from depot.io._ids import new_file_id

    if not isinstance(expires_in, int) or not 1 <= expires_in <= MAX_EXPIRES_IN:
        raise ValueError(f"expires_in is 1 to {MAX_EXPIRES_IN} seconds, not {expires_in!r}.")
    if checksum is not None and not is_checksum(checksum):
        raise ValueError(f"checksum is 'sha256:' and 64 hex digits, not {checksum!r}.")
    ctype = content_type or (mimetypes.guess_type(filename, strict=False)[0] if filename else None)
    ctype = (safe_content_type(ctype) if ctype else None) or DEFAULT_CONTENT_TYPE
    limits = [c.max_size for c in storage.policy if c.max_size is not None]
    if max_size is not None:
        limits.append(max_size)
    storage._check_reservation(0, filename, ctype)  # the declared type and name
    return Planned(
        new_file_id(), ctype, min(limits) if limits else None, int(time.time()) + expires_in
    )


class ArrivedBytes:
    """The checksum, size and first bytes of an object, read through once.

    A file-like sink (``write``), for a download to go through block by block.
    """

    def __init__(self) -> None:
        from depot.validators import SNIFF_BYTES

        self._digest = hashlib.sha256()
        self._sniff = SNIFF_BYTES
        self.head = b""
        self.size = 0

    def write(self, block: bytes) -> int:
        if len(self.head) < self._sniff:
            self.head += bytes(block[: self._sniff - len(self.head)])
        self._digest.update(block)
        self.size += len(block)
        return len(block)

    @property
    def checksum(self) -> str:
        return f"sha256:{self._digest.hexdigest()}"


def check_size(payload: dict[str, Any], size: int) -> None:
    """Refuse an upload larger than its token allows, before a byte of it is read.

    A PUT's signature may not bound the size (S3's does not), and reading
    gigabytes to refuse them is for nothing.

    :raises UploadTooLarge: over the limit.
    """
    if payload["m"] is not None and size > payload["m"]:
        check_arrived((), None, payload["t"], b"", size, payload["m"])


def check_bytes(policy: Sequence[Any], payload: dict[str, Any], arrived: ArrivedBytes) -> None:
    """Check what arrived against the token's checksum, size and type, and the policy.

    :raises ChecksumMismatch: not the checksum the upload was presigned with.
    :raises depot.exceptions.ValidationError: refused by size, type or the policy.
    """
    if payload["c"] is not None and payload["c"] != arrived.checksum:
        raise ChecksumMismatch(
            f"The file that arrived has the checksum {arrived.checksum}, not the one the "
            "upload was presigned with: upload it again."
        )
    check_arrived(policy, payload["n"], payload["t"], arrived.head, arrived.size, payload["m"])
