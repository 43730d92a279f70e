"""Uploads in several requests: the chunked upload API and where its state is kept.

:mod:`depot.uploads.chunked` holds the API every depot has (``reserve()``,
``write_chunk()``, ``status()``, ``finalize()``, ``abort()``,
``expire_uploads()``); :mod:`depot.uploads.staging` the storage of uploads
in progress, one per backend.

.. versionadded:: 1.0
"""

from depot.uploads.chunked import DEFAULT_UPLOAD_EXPIRY, UploadStatus

__all__ = ["DEFAULT_UPLOAD_EXPIRY", "UploadStatus"]
