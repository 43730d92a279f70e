"""What every file field takes, checked once, and how a field stores what is assigned to it.

The SQLAlchemy columns and the Ming property take the same four options and
turn assigned content into a value the same way: validators first (nothing
reaches the backend if they refuse), then the value stores the content, then
the filters run on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from depot.fields.interfaces import DepotFileInfo, FileFilter
from depot.validators import FileValidator, validate


@dataclass(frozen=True)
class FieldOptions:
    """A field's ``filters``, ``upload_type``, ``upload_storage`` and ``validators``."""

    filters: tuple[FileFilter, ...]
    upload_type: type[DepotFileInfo]
    upload_storage: str | None
    validators: tuple[FileValidator, ...]

    @classmethod
    def checked(
        cls,
        filters: Iterable[FileFilter],
        upload_type: type[DepotFileInfo],
        upload_storage: str | None,
        validators: Iterable[FileValidator],
    ) -> FieldOptions:
        """The options, or a TypeError saying how to write the one that is wrong."""
        if not (isinstance(upload_type, type) and issubclass(upload_type, DepotFileInfo)):
            raise TypeError(
                "upload_type must be a subclass of UploadedFile, such as "
                f"UploadedImageWithThumb; got {upload_type!r}."
            )
        if upload_storage is not None and not isinstance(upload_storage, str):
            raise TypeError(
                "upload_storage is the name of a depot, such as 'media', or None for "
                f"the default depot; got {upload_storage!r}."
            )
        return cls(
            _list_of(filters, "filters", "on_save", "[WithThumbnailFilter((128, 128))]"),
            upload_type,
            upload_storage,
            _list_of(validators, "validators", "check", "[MaxSize('10 MB')]"),
        )

    def validate(self, content: Any) -> Any:
        """What to store in place of ``content``; raises ValidationError if it is refused."""
        return validate(content, self.validators)

    def store(self, content: Any) -> DepotFileInfo:
        """A new value storing ``content`` (already validated), its filters run."""
        info = self.upload_type(content, self.upload_storage)
        info._apply_filters(self.filters)
        return info


def _list_of(items: Any, name: str, method: str, example: str) -> tuple[Any, ...]:
    """``items`` as a tuple, if it is a list of objects with ``method``; else say what to write."""
    if hasattr(items, method) or isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(f"{name} takes a list, not {items!r}: write {name}={example}.")
    checked = tuple(items)
    for item in checked:
        if not callable(getattr(item, method, None)):
            raise TypeError(
                f"{name} holds {item!r}, which has no {method}() method: write {name}={example}."
            )
    return checked
