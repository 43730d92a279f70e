"""filedepot's S3 backend for boto 2, kept at its import path and served by :mod:`depot.io.boto3`.

Settings (filedepot's): ``access_key_id``, ``secret_access_key``, ``bucket``,
``host``, ``policy``, ``encrypt_key``, ``prefix``; and the boto3 backend's
``connect_timeout``, ``read_timeout``, ``max_attempts``. ``host`` becomes the
``endpoint_url`` (``https://<host>``, unless it names its scheme);
``encrypt_key`` has S3 encrypt new objects with its own keys (SSE-S3, AES256).
Objects are the same in both backends.

.. deprecated:: 1.0
   Use :class:`depot.io.boto3.S3Storage` (``depot.backend = s3``).
"""

from __future__ import annotations

import warnings
from typing import Any

from depot._settings import as_bool
from depot.io.boto3 import CANNED_ACL_PRIVATE, CANNED_ACL_PUBLIC_READ, S3StoredFile
from depot.io.boto3 import S3Storage as _S3Storage

__all__ = ["CANNED_ACL_PRIVATE", "CANNED_ACL_PUBLIC_READ", "S3Storage", "S3StoredFile"]

#: boto 2's default host: AWS itself.
_AWS_HOST = "s3.amazonaws.com"


class S3Storage(_S3Storage):
    """filedepot's boto 2 S3 storage, now :class:`depot.io.boto3.S3Storage` underneath.

    .. deprecated:: 1.0
       Use :class:`depot.io.boto3.S3Storage`; its ``endpoint_url`` replaces ``host``.
    """

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        bucket: str | None = None,
        host: str | None = None,
        policy: str | None = None,
        encrypt_key: bool | str = False,
        prefix: str = "",
        connect_timeout: float | str | None = None,
        read_timeout: float | str | None = None,
        max_attempts: int | str | None = None,
    ) -> None:
        warnings.warn(
            "depot.io.awss3.S3Storage is deprecated: use depot.io.boto3.S3Storage "
            "(depot.backend = s3), with endpoint_url instead of host.",
            DeprecationWarning,
            stacklevel=2,
        )
        self._encrypt_key = as_bool(encrypt_key, "encrypt_key")
        endpoint_url = None
        if host and host != _AWS_HOST:
            endpoint_url = host if "://" in host else f"https://{host}"
        super().__init__(
            access_key_id,
            secret_access_key,
            bucket=bucket,
            policy=policy,
            endpoint_url=endpoint_url,
            prefix=prefix,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
        )

    def _object_args(self, filename: str, content_type: str) -> dict[str, Any]:
        args = super()._object_args(filename, content_type)
        if self._encrypt_key:
            args["ServerSideEncryption"] = "AES256"
        return args
