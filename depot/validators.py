"""Checks on content before it is stored: size, type and extension.

A field given ``validators`` runs :func:`validate` on every value assigned to
it, before any byte reaches the backend::

    from depot.validators import ContentTypes, Extensions, MaxSize

    class Document(Base):
        attachment = Column(UploadedFileField(validators=[
            MaxSize('10 MB'),
            ContentTypes('application/pdf', 'image/*'),
            Extensions('.pdf', '.png', '.jpg', '.jpeg'),
        ]))

Types are checked against the declared content type, the type the file name
implies and the type the first bytes show (sniffed with :mod:`puremagic`), so a
page of HTML named ``cat.jpg`` and sent as ``image/jpeg`` is refused. Sizes are
checked up front when the size is known (bytes, files) and otherwise while the
content streams to the backend: the store fails as soon as the limit is
crossed, without buffering, and the backend keeps nothing of it.

Each refusal is a :class:`~depot.exceptions.ValidationError` subclass whose
message can be shown to the person who sent the file. The module keeps
filedepot's name; its ``TW2FileIntentValidator`` is here when ToscaWidgets 2
is installed.
"""

from __future__ import annotations

import importlib.util
import io
import mimetypes
import os
import re
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from depot._headers import media_type
from depot.exceptions import (
    ContentTypeNotAllowedError,
    ExtensionNotAllowedError,
    FileTooLargeError,
)
from depot.io._chunks import BLOCK_SIZE, read_part, rewind
from depot.io._fileinfo import FileIntent, Source, unwrap

__all__ = [
    "ContentTypes",
    "Extensions",
    "FileValidator",
    "MaxSize",
    "Upload",
    "validate",
]

#: How many leading bytes are read to sniff the content's type.
SNIFF_BYTES = 8192

# Types whose files always start with a signature puremagic knows: content
# that shows none cannot be one of them.
_SIGNED_PREFIXES = ("image/", "audio/", "video/", "application/pdf", "application/zip")
_UNSIGNED = ("image/svg+xml",)


@dataclass(frozen=True)
class Upload:
    """What validators see of the content being stored.

    :param filename: the name it carries or was given, if any.
    :param content_type: the type it was declared with, if any.
    :param sniffed_types: the types its first bytes match, most likely first;
        empty when they match none.
    :param head: its first bytes (up to :data:`SNIFF_BYTES`).
    :param size: its size in bytes, when known before it is read.
    """

    filename: str | None
    content_type: str | None
    sniffed_types: tuple[str, ...]
    head: bytes
    size: int | None


class FileValidator(ABC):
    """A check run on content before it is stored.

    :meth:`check` raises a :class:`~depot.exceptions.ValidationError` to refuse
    the content. A validator that also limits the size sets :attr:`max_size`;
    it is enforced while the content streams.
    """

    #: The largest size allowed, in bytes; ``None`` for no limit.
    max_size: int | None = None

    @abstractmethod
    def check(self, upload: Upload) -> None:
        """Raise a :class:`~depot.exceptions.ValidationError` if ``upload`` is refused."""


class MaxSize(FileValidator):
    """Refuse content larger than ``limit``.

    :param limit: bytes, as an int or a string with a unit: ``'512 KB'``,
        ``'10MB'``, ``'1.5 GiB'`` (KB, MB, GB are powers of 1000; KiB, MiB,
        GiB of 1024; K, M, G alone are taken as the latter).
    """

    def __init__(self, limit: int | str) -> None:
        self.max_size = parse_size(limit)

    def check(self, upload: Upload) -> None:
        if upload.size is not None and self.max_size is not None and upload.size > self.max_size:
            raise too_large(self.max_size)

    def __repr__(self) -> str:
        return f"MaxSize({self.max_size})"


class ContentTypes(FileValidator):
    """Allow only content of these types (``'image/png'``, or patterns: ``'image/*'``).

    A pattern is a media type without parameters, ``type/*`` for any subtype of
    a type, or ``*/*`` for any type; case is ignored. A type is allowed when it
    is a valid media type (:func:`depot._headers.media_type`) whose type and
    subtype equal a pattern's, parameters ignored: ``image/png, text/html`` or
    ``image/png/../x`` is no media type, so it matches nothing.

    The declared type, the type the file name implies and the sniffed type must
    each be allowed when known. Content whose first bytes match no known
    signature is refused when every allowed type is one that always has one
    (images, audio, video, PDF, ZIP): it cannot be what it claims.

    :raises ValueError: a pattern that is not one of these forms.

    .. versionchanged:: 1.0
       Patterns match the parsed type and subtype, not as shell wildcards.
    """

    def __init__(self, *patterns: str) -> None:
        if not patterns:
            raise ValueError("ContentTypes() needs at least one allowed type, e.g. 'image/*'.")
        self._parsed = tuple(_parse_pattern(p) for p in patterns)
        self.patterns = tuple(f"{t}/{s}" for t, s in self._parsed)

    def allows(self, content_type: str) -> bool:
        """Whether ``content_type`` (parameters ignored) matches an allowed pattern."""
        parsed = media_type(content_type)
        if parsed is None:
            return False
        kind, subtype = parsed
        return any(t == "*" or (t == kind and s in ("*", subtype)) for t, s in self._parsed)

    def check(self, upload: Upload) -> None:
        allowed = ", ".join(self.patterns)
        if upload.content_type and not self.allows(upload.content_type):
            raise ContentTypeNotAllowedError(
                f"Files of type {upload.content_type} are not accepted here (allowed: {allowed})."
            )
        implied = (
            mimetypes.guess_type(upload.filename, strict=False)[0] if upload.filename else None
        )
        if implied and not self.allows(implied):
            raise ContentTypeNotAllowedError(
                f"The name {upload.filename!r} is that of a {implied} file, which is not "
                f"accepted here (allowed: {allowed})."
            )
        if upload.sniffed_types:
            if not any(self.allows(t) for t in upload.sniffed_types):
                raise ContentTypeNotAllowedError(
                    f"The file's content is {upload.sniffed_types[0]}, which is not accepted "
                    f"here (allowed: {allowed})."
                )
        elif all(_always_signed(p) for p in self.patterns):
            raise ContentTypeNotAllowedError(
                f"The file's content is not of an accepted type (allowed: {allowed})."
            )

    def __repr__(self) -> str:
        return f"ContentTypes{self.patterns!r}"


class Extensions(FileValidator):
    """Allow only file names ending in one of these extensions (``'.pdf'``; case ignored)."""

    def __init__(self, *extensions: str) -> None:
        if not extensions:
            raise ValueError("Extensions() needs at least one allowed extension, e.g. '.pdf'.")
        self.extensions = tuple(
            e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions
        )

    def check(self, upload: Upload) -> None:
        allowed = ", ".join(self.extensions)
        name = upload.filename or ""
        if not name.lower().endswith(self.extensions):
            shown = f"The file name {name!r}" if name else "A file without a name"
            raise ExtensionNotAllowedError(
                f"{shown} is not accepted here: its name must end with one of {allowed}."
            )

    def __repr__(self) -> str:
        return f"Extensions{self.extensions!r}"


def validate(
    content: Any,
    validators: Iterable[FileValidator],
    filename: str | None = None,
    content_type: str | None = None,
) -> Any:
    """Run ``validators`` on ``content``; return what to store in its place.

    The result is ``content`` itself when there is nothing to check, else a
    :class:`~depot.io.utils.FileIntent` with the same bytes, name and type,
    whose stream raises :class:`~depot.exceptions.FileTooLargeError` as soon
    as more than the smallest ``max_size`` is read from it.

    :param filename: overrides the name the content carries.
    :param content_type: overrides the type the content carries.
    """
    validators = list(validators)
    if not validators:
        return content
    source, own_name, own_type = unwrap(content)
    name, ctype = filename or own_name, content_type or own_type
    limits = [v.max_size for v in validators if v.max_size is not None]
    limit = min(limits) if limits else None
    head, size, source = _peek(source)
    upload = Upload(name, ctype, sniff(head), head, size)
    for validator in validators:
        validator.check(upload)
    if limit is not None and not isinstance(source, (bytes, bytearray, memoryview)):
        # Counted even when the size was known: a file can grow before it is
        # stored, and a stream's own account of its size can be wrong.
        source = _LimitedStream(source, limit)
    return FileIntent(source, name, ctype)


def sniff(head: bytes) -> tuple[str, ...]:
    """The content types ``head`` (a file's first bytes) matches, most likely first."""
    import puremagic

    try:
        matches = puremagic.magic_string(head) if head else []
    except puremagic.PureError:
        return ()
    seen: dict[str, None] = {}
    for match in matches:
        if match.mime_type:
            seen.setdefault(match.mime_type.lower(), None)
    return tuple(seen)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)


def parse_size(limit: int | str) -> int:
    """Bytes from ``limit``: an int, or a string such as ``'10 MB'`` or ``'16MiB'``."""
    if isinstance(limit, bool) or not isinstance(limit, (int, str)):
        raise TypeError(f"A size is an int of bytes or a string like '10 MB', not {limit!r}.")
    if isinstance(limit, int):
        size = limit
    else:
        match = _SIZE.match(limit)
        if not match:
            raise ValueError(
                f"Cannot read the size {limit!r}: write it as bytes (10485760) or with "
                "a unit (10 MB, 10 MiB, 10M)."
            )
        number, unit, binary, byte = match.groups()
        # "10 MB" is decimal; "10 MiB" and a bare "10M" are binary.
        base = 1024 if (binary or not byte) else 1000
        power = " kmgt".index(unit.lower()) if unit else 0
        size = int(float(number) * base**power)
    if size < 0:
        raise ValueError(f"A size cannot be negative: {limit!r}.")
    return size


def format_size(size: int) -> str:
    """``size`` bytes for a person to read: ``'10 MB'``, ``'512 KB'``, ``'100 bytes'``."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def too_large(limit: int) -> FileTooLargeError:
    """The error for content over ``limit`` bytes."""
    return FileTooLargeError(
        f"The file is too large: at most {format_size(limit)} can be uploaded here.", limit
    )


def _parse_pattern(pattern: object) -> tuple[str, str]:
    """``(type, subtype)`` of a ContentTypes pattern, lower-cased; ``*`` stands for a whole part."""
    parsed = media_type(pattern) if isinstance(pattern, str) and ";" not in pattern else None
    if parsed is not None:
        kind, subtype = parsed
        whole = "*" not in kind and ("*" not in subtype or subtype == "*")
        if whole or parsed == ("*", "*"):
            return parsed
    raise ValueError(
        f"ContentTypes(): {pattern!r} is not a content type pattern: write 'type/subtype' "
        "('image/png'), 'type/*' ('image/*') or '*/*', without parameters."
    )


def _always_signed(pattern: str) -> bool:
    return pattern not in _UNSIGNED and pattern.startswith(_SIGNED_PREFIXES)


def _peek(source: Source) -> tuple[bytes, int | None, Source]:
    """Return the first bytes of ``source``, its size if known, and what to read it from.

    A seekable stream is measured and rewound; one that cannot seek is read from
    once, so the bytes read are put back in front of the rest.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:SNIFF_BYTES]), len(source), source
    if _can_seek(source):
        size = _seekable_size(source)
        head = read_part(source.read, SNIFF_BYTES)
        rewind(source)
        return head, size, source
    head = read_part(source.read, SNIFF_BYTES)
    return head, None, _Prefixed(head, source)


def _can_seek(stream: Any) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _seekable_size(stream: Any) -> int | None:
    """The size of a seekable stream, when its end says it and nothing contradicts it.

    A stream's descriptor is not always its data: ``gzip.open()`` gives the
    compressed file's, a wrapper another file's, and a device (``/dev/zero``)
    has no size at all. So the end is found by seeking, and a descriptor, when
    there is one, must be a regular file of exactly that size. The size only
    lets :class:`MaxSize` refuse early: the bytes read are counted anyway.
    """
    try:
        described = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation included
        described = None
    if described is not None and not stat.S_ISREG(described.st_mode):
        return None
    try:
        rewind(stream)
        start = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        rewind(stream)
    except (AttributeError, OSError, ValueError):  # gzip cannot seek from the end
        rewind(stream)
        return None
    if not isinstance(end, int) or start != 0 or end < 0:
        return None
    if described is not None and end != described.st_size:
        return None
    return end


class _Prefixed:
    """A stream that cannot seek, with bytes already read from it put back in front."""

    def __init__(self, head: bytes, stream: Any) -> None:
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        if self._head:
            piece = self._head if n < 0 else self._head[:n]
            self._head = self._head[len(piece) :]
            if n < 0:
                return bytes(piece) + self._stream.read()
            return bytes(piece)
        data: bytes = self._stream.read(n)
        return data


class _LimitedStream:
    """Passes reads through until more than ``limit`` bytes went by, then refuses.

    Backends may seek what they store (they rewind it, S3 reads a file twice,
    a retried upload goes back to a part's start), so the count follows the
    position: a seek that lands at ``p`` counts ``p`` bytes as if read, and
    each byte read after it adds one. But the position is the stream's word,
    and a stream may lie (a negative position would lift the limit) or not say
    (Python 2 style ``seek()`` returning ``None``). Its word is taken only when
    it is the one possible answer: a non-negative int, and for a seek from the
    start or from a known position, the very position asked for. From the first
    answer that is not, seeks no longer lower the count: every byte read
    counts, so the limit still bounds what a backend can store.
    """

    def __init__(self, stream: Any, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        #: Where the stream is, as far as it can be known.
        self._position = 0
        #: What the limit applies to: the position while the stream's word is
        #: trusted, then every byte read besides.
        self._counted = 0
        self._seekable = _can_seek(stream)
        self._trusted = self._seekable
        if self._seekable:
            try:
                start = stream.tell()
            except (AttributeError, OSError, ValueError):
                self._seekable = self._trusted = False
            else:
                if _is_position(start):
                    self._position = self._counted = start
                else:
                    self._trusted = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if not self._seekable:
            raise io.UnsupportedOperation("seek")
        result = self._stream.seek(offset, whence)
        if whence == os.SEEK_SET:
            expected: int | None = offset
        elif whence == os.SEEK_CUR and self._trusted:
            expected = self._position + offset
        else:
            expected = None
        if _is_position(result) and expected in (None, result):
            position: int = result
        else:
            self._trusted = False
            position = expected if expected is not None and expected >= 0 else self._position
        self._position = position
        if self._trusted:
            self._counted = position
        return position

    def tell(self) -> int:
        return self._position

    def read(self, n: int = -1) -> bytes:
        if n >= 0:
            return self._read_some(n)
        parts = []
        while chunk := self._read_some(BLOCK_SIZE):
            parts.append(chunk)
        return b"".join(parts)

    def _read_some(self, n: int) -> bytes:
        # Ask for one byte past the limit at most, so crossing it is seen at once.
        if self._counted > self._limit:  # sought past it
            raise too_large(self._limit)
        data: bytes = self._stream.read(min(n, self._limit - self._counted + 1))
        self._position += len(data)
        self._counted += len(data)
        if self._counted > self._limit:
            raise too_large(self._limit)
        return data


def _is_position(value: object) -> bool:
    """Whether ``value`` can be a stream's position: a non-negative int (not a bool)."""
    return type(value) is int and value >= 0


def _tw2_validator() -> type | None:
    try:
        import tw2.core
    except ImportError:
        return None

    class TW2FileIntentValidator(tw2.core.Validator):
        """ToscaWidgets 2 validator keeping an upload's name and type as a FileIntent.

        Sprox turns uploads into plain bytes; passing them through this validator
        keeps the file name and content type for the field that stores them.
        ``extension``, if set, is the ending the file name must have.
        """

        extension: str | None = None
        msgs = {
            "required": ("file_required", "Select a file"),
            "badext": "File name must have '$extension' extension",
        }

        def _convert_to_python(self, value: Any, state: Any = None) -> Any:
            if getattr(value, "filename", None) is not None and hasattr(value, "file"):
                if self.required and not value.filename:
                    raise tw2.core.ValidationError("required", self)
                if self.extension is not None and not value.filename.endswith(self.extension):
                    raise tw2.core.ValidationError("badext", self)
            elif value:
                raise tw2.core.ValidationError("corrupt", self)
            elif self.required:
                raise tw2.core.ValidationError("required", self)
            from depot.io.interfaces import FileStorage

            return FileIntent(*FileStorage.fileinfo(value))

    return TW2FileIntentValidator


def _has_tw2() -> bool:
    try:
        return importlib.util.find_spec("tw2.core") is not None
    except (ImportError, ValueError):
        return False


if _has_tw2():
    __all__ += ["TW2FileIntentValidator"]  # noqa: F822 - made by __getattr__ on first use


def __getattr__(name: str) -> Any:
    # ToscaWidgets is imported on first use, not with the module: tw2.core loads
    # pkg_resources, about 8 MiB in every process that configures a depot.
    if name == "TW2FileIntentValidator":
        validator = _tw2_validator()
        if validator is not None:
            globals()[name] = validator
            return validator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
