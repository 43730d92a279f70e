"""Files as columns of SQLAlchemy models: :class:`UploadedFileField`, :class:`UploadedFilesField`.

A column of either type keeps JSON text: the keys of
:class:`~depot.fields.upload.UploadedFile` for one file, exactly as filedepot
0.12 stored them, or a JSON array of such objects for a list of files. The
files themselves live in a depot, and follow the transaction of the row:

* files stored for a transaction that rolls back are deleted, and so are
  files stored inside a savepoint that rolls back, but never while an object
  that may still write them holds them (a retry writes them);
* once the database committed, files its rows stopped referring to
  (replaced, set to ``None``, removed from a list, or of a deleted row) are
  deleted, but not those a loaded row of the session still refers to; a
  session joined to a transaction it does not control leaves the decision to
  that transaction's connection; a ``COMMIT`` that fails deletes nothing;
* a deletion that fails (backend down) is logged with the file's path on the
  ``depot.fields.sqlalchemy`` logger; it never raises into the committed transaction.

The rules are in :mod:`depot.fields._sqlatracking` and in ``docs/models.rst``.

ORM-enabled bulk statements run by a session (``query.delete()``,
``query.update()``, ``session.execute(delete(M))`` and ``update(M)``) are
followed too: the file columns of the rows they match are read before they
run, and what those rows let go of is deleted after the commit. Core
statements on a ``Connection``, raw SQL and ``ON DELETE CASCADE`` in the
database bypass the session: the files of the rows they change stay.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from typing import Any, ClassVar

from depot._settings import missing_dependency_message
from depot.exceptions import ValidationError
from depot.fields._options import FieldOptions
from depot.fields._tracking import delete_files, paths_of
from depot.fields.interfaces import DepotFileInfo, FileFilter
from depot.fields.upload import UnreadableValue, UploadedFile, value_problem
from depot.validators import FileValidator

try:
    from sqlalchemy import event, inspect, types
    from sqlalchemy.engine import Dialect
    from sqlalchemy.ext.mutable import MutableList
    from sqlalchemy.orm import ColumnProperty, Mapper
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(missing_dependency_message(__name__, exc.name or "SQLAlchemy")) from exc

from depot.fields._sqlaflush import watch_mapper
from depot.fields._sqlasession import install
from depot.fields._sqlashared import mark_copied
from depot.fields._sqlatracking import (
    assigned,
    disown,
    hold,
    log,
    mark_unclaimed,
    track_stored,
)

__all__ = ["UploadedFileField", "UploadedFileList", "UploadedFilesField"]


class _FileColumn(types.TypeDecorator):
    """What both file column types share: how values are built from content."""

    impl = types.Text

    def __init__(
        self,
        filters: Iterable[FileFilter] = (),
        upload_type: type[DepotFileInfo] = UploadedFile,
        upload_storage: str | None = None,
        *args: Any,
        validators: Iterable[FileValidator] = (),
        **kwargs: Any,
    ) -> None:
        if args or kwargs:
            # filedepot accepted and ignored them (its column was VARCHAR(4000)
            # whatever they said); keep accepting them so its models still import.
            warnings.warn(
                f"{type(self).__name__}() ignores the extra arguments {args or ''}"
                f"{kwargs or ''}, as filedepot did: remove them.",
                DeprecationWarning,
                stacklevel=2,
            )
        super().__init__()
        self._options = FieldOptions.checked(filters, upload_type, upload_storage, validators)
        #: The class of the values: :class:`~depot.fields.upload.UploadedFile` or a subclass.
        self.upload_type = upload_type
        #: The depot new files go to; ``None`` for the default depot at the time.
        self.upload_storage = upload_storage

    # filedepot's names, which applications and form libraries read.
    @property
    def _upload_type(self) -> type[DepotFileInfo]:
        return self.upload_type

    @property
    def _upload_storage(self) -> str | None:
        return self.upload_storage

    def _coerce(self, value: Any) -> tuple[DepotFileInfo, bool]:
        """The value to keep for ``value`` (not None), and whether it was stored just now."""
        if isinstance(value, DepotFileInfo):
            # Kept as it is, even of another upload type: filedepot did, and the
            # flush refuses a value that is not an ``upload_type`` (process_bind_param).
            return value, False
        if isinstance(value, dict):
            raise self._dict_refused(value)
        return self._options.store(self._options.validate(value)), True

    def _dict_refused(self, value: dict[Any, Any]) -> ValueError:
        # A dict is not content, and taking it for a value would write whatever
        # keys it has (a form's fields, {}) as if they named stored files.
        name = self.upload_type.__name__
        return ValueError(
            f"{type(self).__name__} cannot keep a dict ({_shorten(value)}): assign the "
            "content to store (bytes, a file opened in binary mode, an upload), a "
            f"{name} value (another row's, or {name}(data) for one decoded from the "
            "column's JSON), or None."
        )

    def _type_refused(self, value: DepotFileInfo) -> ValueError:
        name = self.upload_type.__name__
        return ValueError(
            f"{type(self).__name__}(upload_type={name}) stores {name} values, got "
            f"{type(value).__name__} {value.get('path')!r}: assign its content to store "
            f"it as a {name} (row.attribute = value.file), or declare the column with "
            f"upload_type={type(value).__name__}."
        )

    def _decode_one(self, data: str) -> DepotFileInfo | UnreadableValue:
        """The value for the column's text: an ``upload_type`` value or an :class:`UnreadableValue`.

        A row whose text is not a value still loads, so that it can be repaired
        or deleted; the problem is raised when the value is used.
        """
        try:
            loaded = json.loads(data)
        except ValueError as exc:
            return UnreadableValue(data, f"it is not JSON ({exc})")
        return self._value_of(data, loaded)

    def _value_of(self, data: str, loaded: Any) -> DepotFileInfo | UnreadableValue:
        problem = value_problem(loaded)
        if problem is not None:
            return UnreadableValue(data, problem)
        return self.upload_type(loaded)


class UploadedFileField(_FileColumn):
    """A column holding one file stored in a depot, as an :class:`UploadedFile`.

    Assign it anything :meth:`FileStorage.create` accepts (bytes, an open
    binary file, an upload from a web framework, a
    :class:`~depot.io.utils.FileIntent`): the content is checked by the
    ``validators``, stored, and the ``filters`` run on it, all at assignment.
    Assign an ``upload_type`` value to keep it as it is, or ``None`` to clear
    the column. Reading the attribute gives the value back; a row whose file has
    gone missing still loads, only opening the file raises.

    The column is text on every database. Tables filedepot created have
    ``VARCHAR(4000)``, which keeps working while the JSON fits in it; new tables
    get ``TEXT``, for values with many thumbnails.

    :param filters: :class:`~depot.fields.interfaces.FileFilter` objects run on
        each newly stored file, which may store more files (thumbnails).
    :param upload_type: the class of the values.
    :param upload_storage: the depot new files go to; the default depot at the
        time of the assignment if ``None``.
    :param validators: :class:`~depot.validators.FileValidator` objects checking
        the content before any byte of it is stored; a refusal raises a
        :class:`~depot.exceptions.ValidationError` from the assignment.

    .. versionchanged:: 1.0
       ``validators``; ``TEXT`` instead of ``VARCHAR(4000)``; the transaction
       rules in :mod:`depot.fields.sqlalchemy` are exact (savepoints, expired
       and detached objects, failed flushes).
    """

    # SQL and result processing depend only on the class and ``upload_type``,
    # a public attribute and so part of the cache key; filters and validators
    # run on assignment, outside SQL, and need not be hashable.
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if isinstance(value, self.upload_type):
            # Written: whatever happens to its object, a row may now refer to its files.
            disown(value)
            return value.encode()
        if isinstance(value, UnreadableValue):
            return value.encode()
        if isinstance(value, DepotFileInfo):
            # As filedepot: the flush fails (SQLAlchemy wraps it in a StatementError).
            raise self._type_refused(value)
        raise ValueError(
            f"UploadedFileField stores {self.upload_type.__name__} values, got "
            f"{type(value).__name__}: assign the content to the mapped attribute "
            "(document.attachment = content), which stores it and tracks it. Core "
            "statements and ORM bulk operations do not store content."
        )

    def process_result_value(
        self, value: Any, dialect: Dialect
    ) -> DepotFileInfo | UnreadableValue | None:
        if not value:
            return None
        return self._decode_one(value)

    def _assigned(self, value: Any) -> tuple[Any, list[DepotFileInfo]]:
        """The value to keep for an assignment, and the values stored for it."""
        if value is None or isinstance(value, UnreadableValue):
            # An unreadable value moves as it is (a merge, a copy): it names no file.
            return value, []
        info, stored = self._coerce(value)
        return info, [info] if stored else []


class UploadedFilesField(_FileColumn):
    """A column holding a list of files stored in a depot.

    The value is an :class:`UploadedFileList` of ``upload_type`` values. Assign
    a list (any iterable) of what :class:`UploadedFileField` accepts, or
    ``None``; change it in place with ``append``, ``extend``, ``insert``,
    ``remove``, ``del``, ``pop``, item assignment: each file follows the
    transaction as a single file column's would.

    The column keeps a JSON array of the objects :class:`UploadedFileField`
    keeps for one file (``[]`` for an empty list, ``NULL`` for ``None``); a
    single object, as an :class:`UploadedFileField` column holds, reads as a
    list of one file, so a column can change from one type to the other
    without migrating its rows. It is ``MEDIUMTEXT`` on MySQL and MariaDB,
    ``TEXT`` elsewhere.

    Takes the arguments of :class:`UploadedFileField`. The validators check
    every file of an assignment before any is stored.

    .. versionadded:: 1.0
    """

    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            # TEXT holds 64 KB there: a few hundred files' JSON.
            from sqlalchemy.dialects.mysql import MEDIUMTEXT

            return MEDIUMTEXT()
        return types.Text()

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if isinstance(value, UnreadableValue):
            return value.encode()
        if isinstance(value, (list, tuple)) and all(isinstance(v, DepotFileInfo) for v in value):
            for item in value:
                if not isinstance(item, self.upload_type):
                    raise self._type_refused(item)
            for item in value:
                disown(item)
            return json.dumps([json.loads(v.encode()) for v in value])
        raise ValueError(
            f"UploadedFilesField stores lists of {self.upload_type.__name__} values, got "
            f"{type(value).__name__}: assign the files to the mapped attribute "
            "(album.photos = [content, ...]), which stores and tracks them. Core "
            "statements and ORM bulk operations do not store content."
        )

    def process_result_value(
        self, value: Any, dialect: Dialect
    ) -> UploadedFileList | UnreadableValue | None:
        if not value:
            return None
        try:
            items = json.loads(value)
        except ValueError as exc:
            return UnreadableValue(value, f"it is not JSON ({exc})")
        if isinstance(items, dict):
            # What an UploadedFileField column holds: a list of that one file.
            items = [items]
        if not isinstance(items, list):
            return UnreadableValue(value, "it must be a JSON array of file values")
        values = []
        for index, item in enumerate(items):
            item_value = self._value_of(value, item)
            if isinstance(item_value, UnreadableValue):
                problem = f"item {index + 1} of {len(items)}: {item_value.problem}"
                return UnreadableValue(value, problem)
            values.append(item_value)
        return UploadedFileList(values)

    def _assigned(self, value: Any) -> tuple[Any, list[DepotFileInfo]]:
        if value is None or isinstance(value, UnreadableValue):
            return value, []
        values, stored = self._coerce_many(value)
        return UploadedFileList(values), stored

    def _coerce_many(self, items: Any) -> tuple[list[DepotFileInfo], list[DepotFileInfo]]:
        """The values for ``items``, and the ones stored for them.

        Every item is validated before any is stored, and if storing one fails
        the ones stored before it are deleted: an assignment stores all or nothing.
        """
        items = _as_list(items)
        checked: list[tuple[Any, bool]] = []
        for index, item in enumerate(items):
            if item is None:
                raise TypeError(
                    f"A list of files cannot hold None (item {index}): leave the item out."
                )
            if isinstance(item, DepotFileInfo):
                checked.append((item, False))
                continue
            if isinstance(item, dict):
                exc = self._dict_refused(item)
                if len(items) > 1:
                    exc.args = (f"File {index + 1} of {len(items)}: {exc}",)
                raise exc
            try:
                checked.append((self._options.validate(item), True))
            except ValidationError as exc:
                if len(items) > 1:
                    exc.args = (f"File {index + 1} of {len(items)}: {exc}", *exc.args[1:])
                raise
        values: list[DepotFileInfo] = []
        stored: list[DepotFileInfo] = []
        try:
            for item, to_store in checked:
                if to_store:
                    values.append(self._options.store(item))
                    stored.append(values[-1])
                else:
                    values.append(self._coerce(item)[0])
        except BaseException:
            delete_files(paths_of(stored), "storing another file of the same list failed", log)
            raise
        return values, stored


class UploadedFileList(MutableList):
    """The value of an :class:`UploadedFilesField`: a list of stored files.

    Changes made in place are seen by the session (the row is written at the
    next flush) and content added in place is stored at once, with the
    column's validators and filters, as an assignment would store it.

    .. versionadded:: 1.0
    """

    def append(self, x: Any) -> None:
        super().append(self._stored([x])[0])

    def extend(self, x: Iterable[Any]) -> None:
        super().extend(self._stored(x))

    def __iadd__(self, x: Iterable[Any]) -> UploadedFileList:  # type: ignore[misc]
        self.extend(x)
        return self

    def insert(self, i: Any, x: Any) -> None:
        super().insert(i, self._stored([x])[0])

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            super().__setitem__(index, self._stored(value))
        else:
            super().__setitem__(index, self._stored([value])[0])

    @classmethod
    def coerce(cls, key: str, value: Any) -> Any:
        if value is None or isinstance(value, (cls, UnreadableValue)):
            # An unreadable value is loaded as it is, to be repaired or deleted.
            return value
        if isinstance(value, list):
            return cls(value)
        raise ValueError(
            f"{key!r} holds a list of files, not a {type(value).__name__}: assign a list."
        )

    def _stored(self, items: Iterable[Any]) -> list[Any]:
        """``items`` as values of the column this list belongs to, storing content."""
        for state, key in list(self._parents.items()):
            column = _file_column(state.mapper, key)
            assert isinstance(column, UploadedFilesField)
            values, stored = column._coerce_many(items)
            track_stored(state, stored)
            return values
        # Not attached to a row yet: the assignment that attaches it stores them.
        return _as_list(items)


class _SQLAMutationTracker:
    """Connects the file columns to the ORM: assignments, flushes and transactions.

    filedepot's name; applications reach :attr:`mapped_entities` (the
    ``UploadedFileField`` attributes of each mapped class) and
    :meth:`_field_set` (the conversion of an assigned value), which keep
    their meaning.
    """

    #: ``{mapped class: [attribute names]}`` of the UploadedFileField columns.
    mapped_entities: ClassVar[dict[type, list[str]]] = {}

    @classmethod
    def _field_set(cls, target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
        """Turn the value assigned to a file attribute into the value to keep."""
        state = inspect(target)
        column = _file_column(state.mapper, initiator.key)
        kept, stored = column._assigned(value)
        for info in stored:
            mark_unclaimed(info)
        if kept is not None and not isinstance(kept, UnreadableValue):
            assigned(state)
            for item in list(kept) if isinstance(kept, list) else [kept]:
                if not any(item is info for info in stored):
                    mark_copied(item)
            # Besides the files just stored, a value built for another object (a
            # merge, a copy) that no transaction took yet becomes this object's.
            hold(state, list(kept) if isinstance(kept, list) else [kept])
        return kept

    @classmethod
    def _mapper_configured(cls, mapper: Mapper[Any], class_: type) -> None:
        keys = _file_keys(mapper)
        if not keys:
            return
        for key in keys:
            prop = mapper.get_property(key)
            if isinstance(prop.columns[0].type, UploadedFileField):
                cls.mapped_entities.setdefault(class_, []).append(key)
            # An inherited property is listened to on the class that defines it
            # (propagate=True reaches subclasses); listening again would convert twice.
            if not event.contains(prop, "set", cls._field_set):
                event.listen(prop, "set", cls._field_set, retval=True, propagate=True)
                if isinstance(prop.columns[0].type, UploadedFilesField):
                    # After ours, so that it sees the UploadedFileList ours returns.
                    UploadedFileList.associate_with_attribute(getattr(prop.parent.class_, key))
        watch_mapper(mapper, keys)

    @classmethod
    def setup(cls) -> None:
        event.listen(Mapper, "mapper_configured", cls._mapper_configured)
        install()


# -- what the mapped classes hold -------------------------------------------------------------


def _file_keys(mapper: Mapper[Any]) -> tuple[str, ...]:
    """The attributes of ``mapper`` (inherited ones too) that are file columns."""
    found = []
    for prop in mapper.column_attrs:
        for index, column in enumerate(prop.columns):
            if isinstance(getattr(column, "type", None), _FileColumn):
                if index > 0:
                    raise TypeError(
                        f"{mapper.class_.__name__}.{prop.key} maps several columns, and "
                        "a file column is not the first: map the file column on its own."
                    )
                found.append(prop.key)
    return tuple(found)


def _file_column(mapper: Mapper[Any], key: str) -> _FileColumn:
    prop = mapper.get_property(key)
    assert isinstance(prop, ColumnProperty)
    column_type = prop.columns[0].type
    assert isinstance(column_type, _FileColumn)
    return column_type


def _as_list(items: Any) -> list[Any]:
    if isinstance(items, (str, bytes, bytearray, memoryview, dict)) or not isinstance(
        items, Iterable
    ):
        raise TypeError(
            f"A list of files is expected, not {type(items).__name__}: to store one file, "
            "put it in a list ([content])."
        )
    if hasattr(items, "read"):
        raise TypeError(
            "A list of files is expected, not a file: to store one file, put it in a "
            "list ([content])."
        )
    return list(items)


def _shorten(data: Any) -> str:
    text = repr(data)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _register_with_sprox() -> None:
    # TurboGears' admin (sprox) picks form widgets and validators by column
    # type; filedepot registered a file input for its field, which admin pages rely on.
    try:
        # sprox ships no type hints.
        from sprox.sa.validatorselector import SAValidatorSelector  # type: ignore[import-not-found]
        from sprox.sa.widgetselector import SAWidgetSelector  # type: ignore[import-not-found]
        from tw2.forms import FileField
    except ImportError:
        return
    from depot import validators

    SAWidgetSelector.default_widgets.setdefault(UploadedFileField, FileField)
    tw2_validator = getattr(validators, "TW2FileIntentValidator", None)
    if tw2_validator is not None:
        SAValidatorSelector.default_validators.setdefault(UploadedFileField, tw2_validator)


_SQLAMutationTracker.setup()
_register_with_sprox()
