"""What a field stores and what runs on it: the contracts of depot's model layer.

A field (SQLAlchemy column, Ming property) keeps a :class:`DepotFileInfo`: a
dict of what was stored, which encodes to the JSON text in the database row.
Building one from content stores the content; building one from a dict (a row
read back) only loads the information. :class:`FileFilter` objects run on each
newly stored value, to add files such as thumbnails.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any

from depot.fields._tracking import delete_files
from depot.manager import DepotManager

__all__ = ["DepotFileInfo", "FileFilter"]


class FileFilter(metaclass=ABCMeta):
    """Runs on every file a field stores, after it is stored.

    A filter may store more files (a thumbnail, a preview) and record them in
    the value: ``uploaded_file['thumb_id'] = ...``. Files it stores must be
    added to ``uploaded_file['files']`` (a list of ``'<depot>/<id>'`` paths),
    so that they are deleted with the value.
    """

    @abstractmethod
    def on_save(self, uploaded_file: DepotFileInfo) -> None:
        """Process ``uploaded_file``, just stored; it can be written to during this call."""


class DepotFileInfo(dict, metaclass=ABCMeta):
    """What a field knows of a file it stored: a dict with attribute access.

    :param content: what to store (anything :meth:`FileStorage.create` accepts),
        or a dict read back from the database, which is loaded without touching
        the depot.
    :param depot_name: the depot to store into; the default depot if ``None``.

    The keys ``depot_name`` and ``files`` (every path stored for this value)
    are always set; :meth:`process_content` sets the rest. Once built the value
    is read-only: assign a new value to the field to change its file.

    If storing fails part way (a filter raising after the file was stored), the
    files already stored for this value are deleted before the error propagates.
    """

    #: The content this value was built from; ``None`` for one loaded from a dict.
    original_content: Any

    def __init__(self, content: Any, depot_name: str | None = None) -> None:
        super().__init__()
        self._thaw()
        if isinstance(content, dict):
            object.__setattr__(self, "original_content", None)
            self.update(content)
        else:
            object.__setattr__(self, "original_content", content)
            self["depot_name"] = DepotManager._require(depot_name, "Storing a file")
            self["files"] = []
            with self._cleanup_on_error():
                self.process_content(content)
        self._freeze()

    @abstractmethod
    def process_content(
        self, content: Any, filename: str | None = None, content_type: str | None = None
    ) -> None:
        """Store ``content`` in this value's depot and record what was stored."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} has no attribute or key {name!r}"
            ) from None

    def __setitem__(self, key: str, value: Any) -> None:
        self._check_writable()
        super().__setitem__(key, value)

    __setattr__ = __setitem__

    def __delitem__(self, key: str) -> None:
        self._check_writable()
        super().__delitem__(key)

    def __delattr__(self, name: str) -> None:
        self._check_writable()
        try:
            super().__delitem__(name)
        except KeyError:
            raise AttributeError(name) from None

    def __reduce__(self) -> tuple[Any, ...]:
        # copy and pickle rebuild the value from its dict, as a row is loaded:
        # dict's default would write the keys into a value already frozen.
        return (type(self), (dict(self),))

    def _apply_filters(self, filters: Any) -> None:
        """Run ``filters`` on a value just stored (not on one loaded from a dict)."""
        if self.original_content is None:
            return
        self._thaw()
        try:
            with self._cleanup_on_error():
                for file_filter in filters:
                    file_filter.on_save(self)
        finally:
            self._freeze()

    def _cleanup_on_error(self) -> _DeleteStoredOnError:
        return _DeleteStoredOnError(self)

    def _check_writable(self) -> None:
        if object.__getattribute__(self, "_frozen"):
            raise TypeError(
                "Already saved files are immutable: assign a new file to the field to change it."
            )

    def _freeze(self) -> None:
        object.__setattr__(self, "_frozen", True)

    def _thaw(self) -> None:
        object.__setattr__(self, "_frozen", False)


class _DeleteStoredOnError:
    """Deletes what a value stored if the block it guards raises."""

    def __init__(self, info: DepotFileInfo) -> None:
        self._info = info

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            # The error that got us here is the one to raise: failed deletions are logged.
            delete_files(dict.get(self._info, "files", ()), "storing its value failed")
