"""What ``create()`` and ``replace()`` hand a backend: the new version of a file.

:class:`NewVersion` is where the template methods of
:class:`~depot.io.interfaces.FileStorage` put every rule a store follows, so
that a backend only writes bytes: the content resolved to one source, a name
and a type (:func:`~depot.io._fileinfo.resolve`), the depot's policy checked
before the first byte is written and, for its size, while the bytes stream
(:func:`~depot.validators.validate`), and the length and checksum counted on
the way (:class:`~depot.io._chunks.Digest`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from depot.io._chunks import BLOCK_SIZE, Digest, iter_chunks
from depot.io._fileinfo import FileIntent, Source, resolve, unwrap

if TYPE_CHECKING:
    from depot.io.interfaces import StoredFile
    from depot.validators import FileValidator

    #: What a replace keeps the name and type of, when the content carries none.
    Existing: TypeAlias = Callable[[], StoredFile] | StoredFile | None

__all__ = ["NewVersion"]


class NewVersion:
    """The bytes, name and type being stored, checked against the depot's policy.

    A backend reads :attr:`filename` and :attr:`content_type`, writes the
    blocks :meth:`chunks` yields (or reads :attr:`source` itself, when a
    client library wants a stream), and then finds the size and checksum in
    :attr:`digest`. A backend that replaces a file calls :meth:`keep_from`
    first, with the file being replaced, so that a content without a name
    keeps that file's name and type; the policy is checked on the name and
    type that will be stored.

    :param content: anything ``create()`` accepts.
    :param filename: the name given to ``create()``, if any.
    :param content_type: the type given to ``create()``, if any.
    :param policy: the depot's checks (``FileStorage.policy``).

    .. versionadded:: 1.0
    """

    __slots__ = ("_content", "_filename", "_content_type", "_policy", "_resolved", "digest")

    def __init__(
        self,
        content: Any,
        filename: str | None = None,
        content_type: str | None = None,
        policy: Sequence[FileValidator] = (),
    ) -> None:
        self._content = content
        self._filename = filename
        self._content_type = content_type
        self._policy = policy
        self._resolved: tuple[Source, str, str] | None = None
        #: The length and checksum of the bytes :meth:`chunks` gave out.
        self.digest = Digest()

    def keep_from(self, existing: Existing) -> NewVersion:
        """Resolve the name and type against the file being replaced; return ``self``.

        ``existing`` is that file, or a function returning it (called only if
        the content carries no name), or ``None`` (a create, or a restore).

        :raises depot.exceptions.ValidationError: the policy refuses the content.
        """
        if self._resolved is None:
            source, name, ctype = resolve(
                self._content, self._filename, self._content_type, existing
            )
            if self._policy:
                from depot.validators import validate

                checked = validate(FileIntent(source, name, ctype), self._policy)
                source = unwrap(checked)[0]
            self._resolved = source, name, ctype
        return self

    @property
    def filename(self) -> str:
        """The name to store: safe, at most 255 characters, ``unnamed`` if none is known."""
        return self._resolve()[1]

    @property
    def content_type(self) -> str:
        """The type to store: a safe media type, ``application/octet-stream`` if none is."""
        return self._resolve()[2]

    @property
    def source(self) -> Source:
        """The bytes or stream to read, limited to the policy's size.

        A backend reading it itself feeds what it reads to :attr:`digest`.
        """
        return self._resolve()[0]

    def chunks(self, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
        """Yield the bytes, counted: blocks of ``block_size`` from a stream, bytes given whole."""
        return iter_chunks(self.source, self.digest, block_size)

    def _resolve(self) -> tuple[Source, str, str]:
        if self._resolved is None:
            self.keep_from(None)
        assert self._resolved is not None
        return self._resolved
