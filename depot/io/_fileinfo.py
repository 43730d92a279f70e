"""What is being stored: the bytes' source, the file name and the content type.

``create()`` and ``replace()`` accept many kinds of content; this module turns
each into one readable source plus the name and type it carries, so that
backends deal with a single shape.
"""

from __future__ import annotations

import gzip
import io
import mimetypes
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from depot._headers import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_FILENAME,
    safe_content_type,
    safe_filename,
)

if TYPE_CHECKING:
    from depot.io.interfaces import StoredFile

__all__ = [
    "FileIntent",
    "Source",
    "SupportsRead",
    "byte_view",
    "resolve",
    "unwrap",
]


@runtime_checkable
class SupportsRead(Protocol):
    """A binary stream: an open file, a request body, a socket file..."""

    def read(self, size: int = -1, /) -> bytes: ...


class UploadWithFile(Protocol):
    """An upload object keeping its bytes in ``.file`` (cgi, webob, Starlette)."""

    filename: str | None
    file: SupportsRead


class UploadWithStream(Protocol):
    """An upload object keeping its bytes in ``.stream`` (werkzeug, Flask)."""

    filename: str | None
    stream: SupportsRead


BytesLike = bytes | bytearray | memoryview
#: A source of bytes once the content has been unwrapped.
Source = BytesLike | SupportsRead


class FileIntent:
    """Content to store together with the file name and type to store it under.

    Use it to name bytes or a stream that carry no name of their own::

        depot.create(FileIntent(b'%PDF-...', 'report.pdf', 'application/pdf'))

    :param fileobj: anything ``create()`` accepts.
    :param filename: the name to store; ``None`` takes the one ``fileobj`` carries.
    :param content_type: the type to store; ``None`` takes the one ``fileobj``
        carries, else a guess from the file name.
    """

    def __init__(self, fileobj: Any, filename: str | None, content_type: str | None) -> None:
        self._fileobj = fileobj
        self._filename = filename
        self._content_type = content_type

    @property
    def fileinfo(self) -> tuple[Any, str | None, str | None]:
        """The ``(fileobj, filename, content_type)`` this intent was made with."""
        return self._fileobj, self._filename, self._content_type

    def __repr__(self) -> str:
        return f"<FileIntent filename={self._filename!r} content_type={self._content_type!r}>"


def unwrap(content: Any) -> tuple[Source, str | None, str | None]:
    """Return ``(source, filename, content_type)`` for anything create() accepts.

    The name and type are the ones the content carries, ``None`` when it carries
    none. Raises TypeError, saying what to pass instead, for anything else.
    """
    if isinstance(content, FileIntent):
        inner, name, ctype = content.fileinfo
        source, inner_name, inner_type = unwrap(inner)
        return source, name or inner_name, ctype or inner_type
    if isinstance(content, memoryview):
        return byte_view(content), None, None
    if isinstance(content, (bytes, bytearray)):
        return content, None, None
    if isinstance(content, str):
        raise TypeError(_str_advice(content))
    stream = _upload_stream(content)
    if stream is None:
        raise TypeError(
            f"Cannot store a {type(content).__name__}: pass bytes, a file opened in "
            "binary mode, a FileIntent, or an upload object (with .file or .stream)."
        )
    if _is_text_stream(stream):
        # Found before the first read: reading a JPEG through a text stream
        # raises a bare UnicodeDecodeError, which says nothing of the cause.
        shown = _carried_name(content)
        raise TypeError(
            f"{'File ' + repr(shown) if shown else 'This file'} is open in text mode; only "
            "bytes can be stored. Open it in binary mode ('rb'): open(path, 'rb')."
        )
    return stream, _carried_name(content), _carried_type(content)


def byte_view(view: memoryview) -> memoryview | bytes:
    """``view`` as one flat run of bytes, so that its ``len()`` is its size in bytes.

    A view of wider items (``array('Q')``, a NumPy array) has a length in items:
    measured that way, 200 items of 8 bytes would be stored as 1600 bytes but
    recorded, and checked against ``MaxSize``, as 200. A view that is not
    contiguous cannot be cast, so it is copied.
    """
    if view.format == "B" and view.itemsize == 1 and view.ndim == 1 and view.c_contiguous:
        return view
    if view.c_contiguous:
        try:
            return view.cast("B")
        except (TypeError, ValueError):  # a format cast refuses (ctypes' structures)
            pass
    return view.tobytes()


def _str_advice(text: str) -> str:
    if _looks_like_a_path(text):
        return (
            f"Only bytes can be stored, not str: {text!r} looks like a file path, and a "
            f"path is not read. To store that file, pass it opened in binary mode ('rb'): "
            f"open({text!r}, 'rb'). "
            "(To store text itself, pass text.encode('utf-8').)"
        )
    return (
        "Only bytes can be stored, not str: pass text.encode('utf-8') to store the text, "
        "or, to store a file, the file opened in binary mode ('rb'): open(path, 'rb')."
    )


def _looks_like_a_path(text: str) -> bool:
    if not text or len(text) > 4096 or "\n" in text or "\0" in text:
        return False
    if os.sep in text or (os.altsep and os.altsep in text):
        return True
    base, ext = os.path.splitext(text)
    return bool(base) and 1 < len(ext) <= 6 and " " not in ext


def _is_text_stream(stream: object) -> bool:
    if isinstance(stream, io.TextIOBase):
        return True
    # Wrappers of a text file (tempfile's, Django's File) pass its encoding on;
    # binary files have none (or None: SpooledTemporaryFile in binary mode).
    try:
        encoding = getattr(stream, "encoding", None)
    except (AttributeError, ValueError):  # a proxy of a closed or binary file
        return False
    return isinstance(encoding, str)


def resolve(
    content: Any,
    filename: str | None = None,
    content_type: str | None = None,
    existing: StoredFile | Callable[[], StoredFile] | None = None,
) -> tuple[Source, str, str]:
    """Return ``(source, filename, content_type)`` with every default applied.

    Explicit arguments win over what the content carries; a missing type is
    guessed from the name. With ``existing`` (a replace), a content without a
    name keeps the existing file's name, and its type unless one is known.

    This is where every backend gets the name and type it stores, so the rules
    of :mod:`depot._headers` are applied here, once: a type that is not a safe
    media type (:func:`~depot._headers.safe_content_type`) is stored as
    ``application/octet-stream``, and the name as
    :func:`~depot._headers.safe_filename` makes it (lone surrogates replaced,
    at most 255 characters, extension kept).
    """
    source, own_name, own_type = unwrap(content)
    name = filename or own_name
    ctype = content_type or own_type
    if ctype is None and name:
        ctype = mimetypes.guess_type(name, strict=False)[0]
    if not name and existing is not None:
        current = existing() if callable(existing) else existing
        name = current.filename
        ctype = ctype or current.content_type
    # An unsafe type is not guessed again from the name: the caller said what
    # the bytes are, and whatever they are, they are not to be rendered.
    stored_type = DEFAULT_CONTENT_TYPE if ctype is None else safe_content_type(ctype)
    return source, safe_filename(name or DEFAULT_FILENAME), stored_type or DEFAULT_CONTENT_TYPE


def _upload_stream(obj: Any) -> SupportsRead | None:
    # cgi/webob FieldStorage, multipart, Starlette and Django uploads keep the
    # bytes in .file; werkzeug's FileStorage in .stream.
    if _upload_filename(obj) is not None:
        for attr in ("file", "stream"):
            inner = getattr(obj, attr, None)
            if inner not in (None, False) and callable(getattr(inner, "read", None)):
                return inner
    if callable(getattr(obj, "read", None)):
        return obj
    return None


def _upload_filename(obj: Any) -> Any:
    # GzipFile.filename is a deprecated alias of its compressed file's .name
    # (reading it warns), not the name of an upload.
    if isinstance(obj, gzip.GzipFile):
        return None
    return getattr(obj, "filename", None)


def _carried_name(obj: Any) -> str | None:
    name = _upload_filename(obj)
    if isinstance(name, str) and name:
        return name
    path = getattr(obj, "name", None)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    # '<stdin>' and the like are not file names; nor is the int of an fd-opened file.
    if isinstance(path, str) and path and not (path.startswith("<") and path.endswith(">")):
        return os.path.basename(path) or None
    return None


def _carried_type(obj: Any) -> str | None:
    for attr in ("content_type", "type"):
        value = getattr(obj, attr, None)
        if isinstance(value, str) and value:
            return value
    return None
