"""Files as properties of Ming documents: :class:`UploadedFileProperty` and :class:`DepotExtension`.

A property keeps the same subdocument filedepot 0.12 kept (the keys of
:class:`~depot.fields.upload.UploadedFile`), so documents either library wrote
load in the other. :class:`DepotExtension`, installed on the session, deletes
files no document refers to any more: replaced and removed ones once the flush
that wrote the change has finished, and the ones stored for documents the
session forgets (``clear()``, ``close()``) without ever writing them.
"""

from __future__ import annotations

import copy
import logging
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, overload

from depot._settings import missing_dependency_message
from depot.exceptions import StoredFileNotFoundError
from depot.fields._options import FieldOptions
from depot.fields._tracking import delete_files, paths_of
from depot.fields.interfaces import DepotFileInfo, FileFilter
from depot.fields.upload import UploadedFile
from depot.validators import FileValidator

try:
    from ming.odm import FieldProperty, SessionExtension, mapper, state
    from ming.odm.icollection import deinstrument
    from ming.schema import Anything
    from pymongo.errors import PyMongoError
except ModuleNotFoundError as exc:
    raise ImportError(missing_dependency_message(__name__, exc.name or "Ming")) from exc

__all__ = ["DepotExtension", "UploadedFileProperty"]

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    # Ming's stubs describe FieldProperty as the value it declares (str, int...)
    # for declarative models; subclassing that would give this property those
    # constructor overloads. The runtime class is a plain descriptor.
    _FieldProperty: Any = FieldProperty
    _SessionExtension: Any = SessionExtension
else:
    _FieldProperty = FieldProperty
    _SessionExtension = SessionExtension

#: The key of a document's file history in its Ming state's ``extra_state``.
_HISTORY = "depot.fields.ming"


class _UploadedFileSchema(Anything):
    """The schema of a file property: any subdocument, as filedepot 0.12 stored.

    Its own class (filedepot's name) so that form generators can map it to a
    file input: sprox looks widgets and validators up by schema type.
    """


class UploadedFileProperty(_FieldProperty):
    """A property of a Ming document holding a file stored in a depot.

    Assign what :meth:`~depot.io.interfaces.FileStorage.create` accepts (bytes,
    a file, a :class:`~depot.io.utils.FileIntent`, a ``cgi.FieldStorage``) and
    the content is stored at once; the document keeps an ``upload_type`` value
    (:class:`~depot.fields.upload.UploadedFile` by default) describing it,
    which reading the property returns. Assign ``None`` to remove the file.

    :param filters: :class:`~depot.fields.interfaces.FileFilter` objects run on
        each newly stored file, e.g. ``[WithThumbnailFilter((128, 128))]``.
    :param upload_type: the value kept, a subclass of
        :class:`~depot.fields.upload.UploadedFile` (``UploadedImageWithThumb``
        stores a thumbnail beside an image).
    :param upload_storage: the depot new files go to; the default depot if
        ``None``.
    :param validators: :class:`~depot.validators.FileValidator` objects checked
        before anything is stored (size, type, extension); a refused file
        raises a :class:`~depot.exceptions.ValidationError` and reaches no
        backend.

    Add :class:`DepotExtension` to the document's session: it deletes the files
    that replaced, removed and deleted values leave behind. Assigning
    ``doc_a.file`` to ``doc_b.file`` makes both refer to one file, kept while
    a document of the same session refers to it; assign ``doc_a.file.file``
    (the stored file) to give ``doc_b`` a copy of its own.

    .. versionadded:: 1.0
       ``validators``.
    """

    def __init__(
        self,
        filters: Iterable[FileFilter] = (),
        upload_type: type[DepotFileInfo] = UploadedFile,
        upload_storage: str | None = None,
        validators: Iterable[FileValidator] = (),
    ) -> None:
        super().__init__(_UploadedFileSchema())
        self._options = FieldOptions.checked(filters, upload_type, upload_storage, validators)
        # filedepot's names, which applications and form libraries read.
        self._upload_type = upload_type
        self._upload_storage = upload_storage

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> UploadedFileProperty: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> DepotFileInfo | None: ...

    def __get__(
        self, instance: object | None, owner: type | None = None
    ) -> UploadedFileProperty | DepotFileInfo | None:
        """The document's file, or ``None``; loading it does not touch the depot."""
        if instance is None:
            return self
        try:
            stored = _FieldProperty.__get__(self, instance, owner)
        except AttributeError:  # documents saved before the property existed
            return None
        if not stored:
            return None
        if not isinstance(stored, Mapping):
            raise TypeError(
                f"{type(instance).__name__}.{self.name} holds {stored!r}, which is not a "
                f"stored file's information; assign a file or None to it to repair it."
            )
        return self._upload_type(_plain(deinstrument(stored)))

    def __set__(self, instance: object, value: Any) -> None:
        """Store ``value`` (unless it is ``None`` or already a stored value) and keep it."""
        loaded_fields = state(instance).options.get("fields")
        if loaded_fields is not None and self.name not in loaded_fields:
            # Ming writes such a document back with only the fields it loaded:
            # the file would be stored and never saved.
            raise ValueError(
                f"{type(instance).__name__}.{self.name} was not loaded (the query asked only "
                f"for {sorted(loaded_fields)}), so a file assigned to it would never be "
                f"saved: load the document with {self.name!r} among its fields."
            )
        history = _history(instance, create=True)
        assert history is not None
        info, fresh = self._value_for(value)
        if not fresh:
            _FieldProperty.__set__(self, instance, _plain(info))
            return
        assert info is not None
        with info._cleanup_on_error():
            _FieldProperty.__set__(self, instance, _plain(info))
        history.stored |= _paths(info)
        _warn_if_untracked(instance, self.name)

    def __delete__(self, instance: object) -> None:
        """Remove the property, as Ming does; the file is deleted once that is written."""
        _history(instance, create=True)
        _FieldProperty.__delete__(self, instance)

    def _value_for(self, value: Any) -> tuple[DepotFileInfo | None, bool]:
        """The value to keep for ``value``, and whether it was stored just now."""
        if value is None:
            return None, False
        if isinstance(value, DepotFileInfo):
            # filedepot runs the filters on a value built by hand before assignment.
            value._apply_filters(self._options.filters)
            return value, value.original_content is not None
        if isinstance(value, Mapping):
            # A value read back (another document's, or decoded JSON): nothing to store.
            return self._upload_type(dict(value)), False
        return self._options.store(self._options.validate(value)), True


class DepotExtension(_SessionExtension):
    """A Ming session extension deleting the files documents no longer refer to.

    Install it on the session of the documents with file properties::

        session = ODMSession(bind=datastore, extensions=[DepotExtension])
        DBSession = ThreadLocalODMSession(mainsession, extensions=[DepotExtension])

    - Files that a document replaced or set to ``None``, and the files of a
      deleted document, are deleted after the flush that wrote the change
      succeeds, never before.
    - Files stored for a document that was never written are deleted when the
      session is cleared (``clear()``, ``close()``, which Ming's
      ``MingMiddleware`` calls when a request fails).
    - A file another document of the session still refers to is kept.
    - A deletion that fails (backend down, depot not configured) is logged on
      ``depot.fields.ming`` with the file's path and never raises: the
      documents are already written.

    Ming's ``remove()`` and ``update()`` queries bypass the unit of work:
    the files of the documents they change are not deleted.

    :param session: the :class:`ming.odm.ODMSession` it serves; Ming passes it.
    """

    def __init__(self, session: Any) -> None:
        super().__init__(session)
        #: Files that written documents let go of, deleted when the flush ends.
        self._unreferenced: set[str] = set()
        # Ming announces no event when a session forgets its documents; wrapping
        # this session's own clear() (close() calls it) is the only way to see it.
        forget = session.clear

        def clear() -> None:
            self._forget_unwritten()
            forget()

        session.clear = clear

    def before_insert(self, obj: Any, st: Any, **kwargs: Any) -> None:
        self._check_writable(obj)

    def before_update(self, obj: Any, st: Any, **kwargs: Any) -> None:
        self._check_writable(obj)

    def before_delete(self, obj: Any, st: Any, **kwargs: Any) -> None:
        if _file_fields(type(obj)):
            history = _history(obj, create=True)
            assert history is not None
            history.writing = True

    def after_insert(self, obj: Any, st: Any, **kwargs: Any) -> None:
        self._written(obj)

    def after_update(self, obj: Any, st: Any, **kwargs: Any) -> None:
        self._written(obj)

    def after_delete(self, obj: Any, st: Any, **kwargs: Any) -> None:
        if not _file_fields(type(obj)):
            return
        history = _history(obj, create=True)
        assert history is not None
        self._unreferenced |= history.saved | history.stored | _current_paths(obj)
        history.saved, history.stored, history.writing = set(), set(), False

    def after_flush(self, obj: Any = None) -> None:
        doomed, self._unreferenced = self._unreferenced, set()
        if doomed:
            kept = self._referenced(still_to_write=True)
            delete_files(sorted(doomed - kept), "no document refers to it after the flush", log)

    def _check_writable(self, obj: Any) -> None:
        history = _history(obj)
        if history is None:
            return
        gone = history.discarded & _current_paths(obj)
        if gone:
            path = sorted(gone)[0]
            depot_name, _, file_id = path.partition("/")
            raise StoredFileNotFoundError(
                file_id,
                f"depot {depot_name!r}: {type(obj).__name__} {state(obj).document.get('_id')} "
                f"refers to {path}, deleted when the session was cleared before the "
                f"document was flushed; assign the file again",
            )
        history.writing = True

    def _written(self, obj: Any) -> None:
        history = _history(obj)
        if history is None:
            return
        current = _current_paths(obj)
        self._unreferenced |= (history.saved | history.stored) - current
        history.saved, history.stored, history.writing = current, set(), False

    def _forget_unwritten(self) -> None:
        """Delete the files of changes the session is about to forget unwritten."""
        doomed = self._unreferenced
        self._unreferenced = set()
        for obj in self.session.uow:
            history = _history(obj)
            if history is None:
                continue
            if history.writing:
                # A write of this document failed part way: the database may or
                # may not hold it, so ask.
                in_database = self._paths_in_database(obj)
                if in_database is None:
                    continue  # keep every file: an orphan rather than a lost file
                unwritten = (history.saved | history.stored) - in_database
                history.saved, history.writing = in_database, False
            else:
                unwritten = history.stored - history.saved
            doomed |= unwritten
            history.discarded |= unwritten & history.stored
            history.stored = set()
        if doomed:
            delete_files(
                sorted(doomed - self._referenced(still_to_write=False)), "never written", log
            )

    def _referenced(self, still_to_write: bool) -> set[str]:
        """The files documents of the session refer to in the database.

        With ``still_to_write``, also those of changes not yet flushed.
        """
        paths: set[str] = set()
        for obj in self.session.uow:
            if not _file_fields(type(obj)):
                continue
            st = state(obj)
            history = _history(obj)
            if history is not None:
                paths |= history.saved
            elif st.status != st.new:
                paths |= _current_paths(obj)
            if still_to_write and st.status != st.deleted:
                paths |= _current_paths(obj)
        return paths

    def _paths_in_database(self, obj: Any) -> set[str] | None:
        """What the stored document refers to now, or ``None`` if that cannot be known."""
        fields = _file_fields(type(obj))
        doc_id = state(obj).document.get("_id")
        if doc_id is None:
            # pymongo gives the id to a copy of the document: a lost insert cannot be looked up.
            log.warning(
                "A %s without _id failed to be written; its files are kept: %s",
                type(obj).__name__,
                ", ".join(sorted(_current_paths(obj))),
            )
            return None
        document_class: Any = mapper(type(obj)).collection
        collection = self.session.db[document_class.m.collection_name]
        try:
            found = collection.find_one({"_id": doc_id}, {name: 1 for name in fields})
        except PyMongoError:
            log.warning(
                "Could not read %s %s back after a failed flush; its files are kept",
                type(obj).__name__,
                doc_id,
                exc_info=True,
            )
            return None
        paths: set[str] = set()
        for name in fields:
            paths |= _paths((found or {}).get(name))
        return paths


class _FileHistory:
    """What the extension knows of one document's files."""

    __slots__ = ("discarded", "saved", "stored", "writing")

    def __init__(self, saved: set[str]) -> None:
        #: Paths the database holds for the document, as last loaded or written.
        self.saved = saved
        #: Paths stored for it since, which no write has reached.
        self.stored: set[str] = set()
        #: Paths deleted when the session was cleared before they were written.
        self.discarded: set[str] = set()
        #: A write of the document started and has not been seen to finish.
        self.writing = False


def _history(obj: Any, create: bool = False) -> _FileHistory | None:
    """The file history of ``obj``; begun from what its properties hold if ``create``."""
    st = state(obj)
    history: _FileHistory | None = st.extra_state.get(_HISTORY)
    if history is None and create:
        # Begun before the first change, so the document still holds what was loaded.
        saved = set() if st.status == st.new else _current_paths(obj)
        history = st.extra_state[_HISTORY] = _FileHistory(saved)
    return history


def _file_fields(cls: type) -> list[str]:
    return [p.name for p in mapper(cls).properties if isinstance(p, UploadedFileProperty)]


def _current_paths(obj: Any) -> set[str]:
    document = state(obj).document or {}
    paths: set[str] = set()
    for name in _file_fields(type(obj)):
        paths |= _paths(document.get(name))
    return paths


def _paths(value: Any) -> set[str]:
    """The ``'<depot>/<id>'`` paths a stored value refers to; none for anything else."""
    if not isinstance(value, Mapping):
        return set()
    return {path for path in paths_of(value) if isinstance(path, str)}


def _plain(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A copy of ``value`` sharing nothing with it: a value and its document change apart."""
    return None if value is None else copy.deepcopy(dict(value))


#: Sessions already warned about: once each is enough.
_untracked_sessions: weakref.WeakSet[Any] = weakref.WeakSet()


def _warn_if_untracked(instance: object, name: str) -> None:
    # While Ming runs a document's __init__, the document is in no session yet.
    session: Any = state(instance).session or mapper(type(instance)).session
    if session is None or session in _untracked_sessions:
        return
    if any(isinstance(e, DepotExtension) for e in session.extensions):
        return
    _untracked_sessions.add(session)
    log.warning(
        "%s.%s stored a file in a session without DepotExtension: files it replaces or "
        "removes will stay in the depot. Create the session with extensions=[DepotExtension].",
        type(instance).__name__,
        name,
    )


def _register_with_sprox() -> None:
    # TurboGears' admin (sprox) picks form widgets by schema type: filedepot
    # registered a file input for this one, which its users' admin pages rely on.
    try:
        # sprox ships no type hints.
        from sprox.mg.validatorselector import MingValidatorSelector  # type: ignore[import-not-found]
        from sprox.mg.widgetselector import MingWidgetSelector  # type: ignore[import-not-found]
        from tw2.forms import FileField
    except ImportError:
        return
    from depot import validators

    MingWidgetSelector.default_widgets.setdefault(_UploadedFileSchema, FileField)
    tw2_validator: Callable[..., Any] | None = getattr(validators, "TW2FileIntentValidator", None)
    if tw2_validator is not None:
        MingValidatorSelector.default_validators.setdefault(_UploadedFileSchema, tw2_validator)


_register_with_sprox()
