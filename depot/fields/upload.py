"""The value a file field keeps: :class:`UploadedFile`."""

from __future__ import annotations

import json
import weakref
from typing import Any

from depot.exceptions import CorruptColumnError, StoredFileNotFoundError
from depot.fields.interfaces import DepotFileInfo
from depot.io.interfaces import FileStorage, StoredFile
from depot.manager import DepotManager
from depot.utils import utcnow_naive

__all__ = ["CorruptColumnError", "UnreadableValue", "UploadedFile", "value_problem"]

#: How ``uploaded_at`` is written: the stored file's last modification, in UTC.
UPLOADED_AT_FORMAT = "%Y-%m-%d %H:%M:%S"


class UploadedFile(DepotFileInfo):
    """A file stored in a depot by a field, as the field's row or document keeps it.

    Assigning content to a field builds one, which stores the content. Its keys,
    also readable as attributes, are the ones filedepot 0.12 wrote, so rows
    written by either load in the other:

    ``depot_name``
        the depot holding the file;
    ``files``
        every ``'<depot>/<id>'`` path stored for this value (the file, and
        thumbnails or other files added by filters), deleted together;
    ``file_id``, ``path``
        the file's id, and ``'<depot>/<id>'`` for :meth:`DepotManager.get_file`;
    ``filename``, ``content_type``
        as stored;
    ``uploaded_at``
        when it was stored, ``'YYYY-MM-DD HH:MM:SS'`` in UTC;
    ``_public_url``
        the backend's public URL, or ``None``.

    Loading a row does not touch the depot: a row whose file has gone missing
    loads, and only :attr:`file` raises.

    A filter that stores another file records its path as ``'<name>_path'``
    (``thumb_128x128_path``, ``small_path``); the value then also offers
    ``<name>_file``, that file opened, and ``<name>_url``, its public URL
    (``'_<name>_public_url'``) or else the middleware's, unless a key of that
    name was stored.

    .. versionchanged:: 1.0
       ``<name>_file`` and ``<name>_url`` for every ``<name>_path`` key.
    """

    def __getattr__(self, name: str) -> Any:
        # Derived from the stored path rather than stored, so that a value loaded
        # from a row offers them without knowing which filters wrote it.
        prefix, _, kind = name.rpartition("_")
        if kind in ("file", "url") and prefix and name not in self and f"{prefix}_path" in self:
            return self._extra_file(prefix) if kind == "file" else self._extra_url(prefix)
        return super().__getattr__(name)

    def process_content(
        self, content: Any, filename: str | None = None, content_type: str | None = None
    ) -> None:
        """Store ``content`` and record the standard keys.

        Subclasses that store more (thumbnails, previews) call this first.
        """
        file_path, file_id = self.store_content(content, filename, content_type)
        self["file_id"] = file_id
        self["path"] = file_path
        with self.depot.get(file_id) as stored:
            self["filename"] = stored.filename
            self["content_type"] = stored.content_type
            modified = stored.last_modified or utcnow_naive()
            self["uploaded_at"] = modified.strftime(UPLOADED_AT_FORMAT)
            self["_public_url"] = stored.public_url

    def store_content(
        self, content: Any, filename: str | None = None, content_type: str | None = None
    ) -> tuple[str, str]:
        """Store ``content`` in this value's depot; return its ``(path, file_id)``.

        The path is added to ``files``, so the file is deleted with the value.
        """
        file_id = self.depot.create(content, filename, content_type)
        file_path = f"{self.depot_name}/{file_id}"
        self["files"].append(file_path)
        return file_path, file_id

    def encode(self) -> str:
        """The JSON text kept in the database, in filedepot's format."""
        return json.dumps(self)

    @classmethod
    def decode(cls, data: str | bytes) -> UploadedFile:
        """Load a value from the JSON text :meth:`encode` wrote; nothing is stored.

        :raises ValueError: the text is not JSON, or not a JSON object with the
            keys a value has (see :func:`value_problem`).

        .. versionchanged:: 1.0
           JSON that is not an object raises ``ValueError``; filedepot took
           ``5`` or ``"x"`` for content to store.
        """
        loaded = json.loads(data)
        problem = value_problem(loaded)
        if problem is not None:
            raise ValueError(problem)
        return cls(loaded)

    @property
    def url(self) -> str:
        """The file's public URL if the backend has one, else the middleware's URL for it."""
        return self._url_of("path", "_public_url")

    @property
    def depot(self) -> FileStorage:
        """The depot holding the file."""
        name = DepotManager._require(self["depot_name"], f"Opening file {self.get('path')}")
        storage = DepotManager.get(name)
        assert storage is not None  # _require checked it
        return storage

    @property
    def file(self) -> StoredFile:
        """The stored file, open for reading (close it when done).

        Raises :class:`~depot.exceptions.StoredFileNotFoundError`, naming the
        path, if it is no longer in the depot.
        """
        # filedepot opened depot_name/file_id, not path: a value whose depot was
        # renamed (and its depot_name edited) still opens.
        return self._open(f"{self['depot_name']}/{self['file_id']}", "path")

    def _extra_url(self, prefix: str) -> str:
        """The URL of the file recorded under ``'<prefix>_path'``."""
        return self._url_of(f"{prefix}_path", f"_{prefix}_public_url")

    def _extra_file(self, prefix: str) -> StoredFile:
        """The file recorded under ``'<prefix>_path'``, open for reading."""
        return self._open(self[f"{prefix}_path"], f"{prefix}_path")

    def _url_of(self, path_key: str, public_url_key: str) -> str:
        public_url: str | None = self.get(public_url_key)
        if public_url:
            return public_url
        return DepotManager.url_for(self[path_key])

    def _open(self, path: str, path_key: str) -> StoredFile:
        try:
            return DepotManager.get_file(path)
        except StoredFileNotFoundError as exc:
            depot_name, _, file_id = path.partition("/")
            raise StoredFileNotFoundError(
                file_id,
                f"depot {depot_name!r}: {path} ({path_key}) was deleted or never stored; "
                "assign a new file or None to the field that refers to it",
            ) from exc


def value_problem(data: Any) -> str | None:
    """Why ``data`` (decoded JSON) cannot be a file value, or ``None`` if it can.

    A value is a JSON object whose ``files`` (if present) is a list of
    ``'<depot>/<id>'`` strings and whose ``depot_name``, ``file_id`` and
    ``path`` (if present) are strings: anything else would be taken for
    content to store, or would name files to delete that no one stored.

    .. versionadded:: 1.0
    """
    if not isinstance(data, dict):
        return f"it is a JSON {_json_kind(data)}, not an object"
    files = data.get("files")
    if files is not None and (
        not isinstance(files, list) or not all(isinstance(path, str) for path in files)
    ):
        return f"its 'files' must be a list of '<depot>/<id>' strings, not {_shorten(files)}"
    for key in ("depot_name", "file_id", "path"):
        if data.get(key) is not None and not isinstance(data[key], str):
            return f"its {key!r} must be a string, not {_shorten(data[key])}"
    return None


class UnreadableValue:
    """What a file attribute holds when its column's text is not a file value.

    The row still loads, and can be updated, cleared (assign ``None`` or a new
    file) and deleted; nothing is deleted from any depot for it, since which
    files it meant is unknown. Using it as a file (any attribute, item, or
    iteration) raises :class:`CorruptColumnError` naming the row, the column
    and the problem. Written back unchanged, it keeps the row's text as it is.

    .. versionadded:: 1.0
    """

    def __init__(self, text: Any, problem: str, where: str = "a file column") -> None:
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "problem", problem)
        object.__setattr__(self, "where", where)
        # SQLAlchemy's mutable-list tracking records the rows holding the value here.
        object.__setattr__(self, "_parents", weakref.WeakKeyDictionary())

    def error(self) -> CorruptColumnError:
        """The error raised when the value is used."""
        return CorruptColumnError(
            f"{self.where} holds {_shorten(self.text)}, which is not a file value: "
            f"{self.problem}. Assign a new file or None to it to repair the row."
        )

    def encode(self) -> str:
        """The row's text, unchanged."""
        return str(self.text)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise self.error()

    def __setattr__(self, name: str, value: Any) -> None:
        raise self.error()

    def __getitem__(self, key: Any) -> Any:
        raise self.error()

    def __iter__(self) -> Any:
        raise self.error()

    def __len__(self) -> int:
        raise self.error()

    def __bool__(self) -> bool:
        # A column holding something: ``if row.file:`` goes on to use it, which says what is wrong.
        return True

    def __repr__(self) -> str:
        return f"<unreadable file value in {self.where}: {self.problem}>"


def _json_kind(data: Any) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "boolean"
    if isinstance(data, (int, float)):
        return "number"
    if isinstance(data, str):
        return "string"
    return "array"


def _shorten(data: Any) -> str:
    text = repr(data)
    return text if len(text) <= 80 else f"{text[:77]}..."
