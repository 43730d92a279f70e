"""The errors depot raises.

Each one also subclasses the builtin exception filedepot 0.12 raised in the same
situation, so ``except IOError`` or ``except ValueError`` clauses written for
filedepot keep working.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "ChecksumMismatch",
    "ConfigurationError",
    "ContentTypeNotAllowed",
    "CorruptColumnError",
    "CorruptMetadataError",
    "ContentTypeNotAllowedError",
    "DepotError",
    "ExtensionNotAllowedError",
    "FileTooLargeError",
    "ImageTooLargeError",
    "InvalidChunk",
    "InvalidFileIdError",
    "NotAnImageError",
    "SizeMismatch",
    "StoredFileNotFoundError",
    "UnknownDepotError",
    "UploadNotFound",
    "UploadTooLarge",
    "ValidationError",
]


class DepotError(Exception):
    """Base class of every error depot raises on purpose.

    .. versionadded:: 1.0
    """


class StoredFileNotFoundError(DepotError, FileNotFoundError):
    """No file with this id exists in the depot.

    A :class:`FileNotFoundError`, hence an :class:`IOError`, as filedepot raised.

    .. versionadded:: 1.0
    """

    def __init__(self, file_id: object, where: str = "") -> None:
        self.file_id = file_id
        place = f" in {where}" if where else ""
        super().__init__(f"File {file_id} not existing{place}")


class InvalidFileIdError(DepotError, ValueError):
    """A file id that this backend could never have generated.

    Raised before any storage is touched, so a crafted id such as ``../../etc``
    never reaches a path or a query.

    .. versionadded:: 1.0
    """


class CorruptMetadataError(DepotError, ValueError):
    """A stored file's metadata cannot be read back.

    .. versionadded:: 1.0
    """


class CorruptColumnError(CorruptMetadataError):
    """A file column of a row holds text that is not a file value.

    A :class:`ValueError`, as filedepot raised for text that is not JSON.

    .. versionadded:: 1.0
    """


class BackendUnavailableError(DepotError, OSError):
    """The server holding the files cannot be reached, or refuses to work.

    An :class:`OSError`, like the connection errors it stands for, so the
    middleware answers 503 and ``except OSError`` clauses catch it. The message
    names the server and where on it the files are, never a password.

    .. versionadded:: 1.0
    """


class ConfigurationError(DepotError, RuntimeError, ValueError):
    """The depots are configured wrongly: a bad setting, or a misuse of DepotManager.

    filedepot raised :class:`RuntimeError` from some of these places and
    :class:`ValueError` from others; this subclasses both so that either clause
    still catches it.

    .. versionadded:: 1.0
    """


class UnknownDepotError(ConfigurationError, LookupError):
    """No depot (or alias) is configured under this name.

    .. versionadded:: 1.0
    """


class ValidationError(DepotError, ValueError):
    """Content refused before it was stored; nothing of it stays in the depot.

    Its message is written for the person who sent the file, so a web form can
    show ``str(error)`` as it is.

    .. versionadded:: 1.0
    """


class FileTooLargeError(ValidationError):
    """The content is larger than the ``max_size`` it was checked against.

    ``max_size`` holds the limit in bytes.

    .. versionadded:: 1.0
    """

    def __init__(self, message: str, max_size: int) -> None:
        super().__init__(message)
        self.max_size = max_size


class ContentTypeNotAllowedError(ValidationError):
    """The content's declared or sniffed type is not one of the allowed types.

    .. versionadded:: 1.0
    """


class ExtensionNotAllowedError(ValidationError):
    """The file name's extension is not one of the allowed extensions.

    .. versionadded:: 1.0
    """


class NotAnImageError(ValidationError):
    """An image field was given content that is not a complete image it can read.

    .. versionadded:: 1.0
    """


class ImageTooLargeError(NotAnImageError):
    """An image has more pixels than allowed: a decompression bomb, or simply too large.

    .. versionadded:: 1.0
    """


# The chunked upload API's errors keep the short names of tedious storage's
# API, which it follows; each subclasses what callers already catch.


class UploadNotFound(DepotError, LookupError):
    """No chunked upload has this id: never reserved, aborted, expired or finished.

    .. versionadded:: 1.0
    """


class InvalidChunk(ValidationError):
    """A chunk that cannot belong to its upload: past the reserved size, or
    different from bytes already received at the same place.

    .. versionadded:: 1.0
    """


class SizeMismatch(ValidationError):
    """The bytes received do not add up to the size the upload reserved.

    .. versionadded:: 1.0
    """


class ChecksumMismatch(ValidationError):
    """The bytes received do not have the checksum the upload reserved (or a chunk declared).

    .. versionadded:: 1.0
    """


class ContentTypeNotAllowed(ContentTypeNotAllowedError):
    """A chunked upload whose declared or sniffed type the depot does not accept.

    .. versionadded:: 1.0
    """


class UploadTooLarge(FileTooLargeError):
    """A chunked upload larger than the depot (or the field) accepts.

    .. versionadded:: 1.0
    """
