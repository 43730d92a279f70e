"""The Ming documents the tests use, mapped once on sessions the ``session`` fixture binds.

Ming maps a class to its session when the class is defined; the sessions start
unbound and each test binds them to a database of its own.
"""

from __future__ import annotations

from typing import Any

from ming import Session
from ming import schema as S
from ming.odm import FieldProperty, MappedClass, Mapper, ODMSession, ThreadLocalODMSession

from depot.fields.interfaces import FileFilter
from depot.fields.ming import DepotExtension, UploadedFileProperty
from depot.validators import ContentTypes, MaxSize

session = ODMSession(bind=None, extensions=[DepotExtension])
#: As TurboGears sets it up: one thread-local session per thread over one Ming session.
main_session = Session()
thread_session = ThreadLocalODMSession(main_session, extensions=[DepotExtension])
#: A session someone forgot to give the extension.
bare_session = ODMSession(bind=None)


class StoresACopy(FileFilter):
    """Stores a second file beside each file, as a thumbnail filter does."""

    def on_save(self, uploaded_file: Any) -> None:
        path, file_id = uploaded_file.store_content(
            uploaded_file.file.read() + b" (copy)", "copy.bin"
        )
        uploaded_file["copy_id"] = file_id
        uploaded_file["copy_path"] = path


class Fails(FileFilter):
    """Fails after the file was stored."""

    def on_save(self, uploaded_file: Any) -> None:
        uploaded_file.store_content(b"half done")
        raise RuntimeError("the filter failed")


class Attachment(MappedClass):
    class __mongometa__:
        session = session
        name = "attachments"

    _id = FieldProperty(S.ObjectId)
    name = FieldProperty(str)
    file = UploadedFileProperty()
    other = UploadedFileProperty(upload_storage="other")


class Copied(MappedClass):
    class __mongometa__:
        session = session
        name = "copied"

    _id = FieldProperty(S.ObjectId)
    file = UploadedFileProperty(filters=[StoresACopy()])


class FailingFilter(MappedClass):
    class __mongometa__:
        session = session
        name = "failing"

    _id = FieldProperty(S.ObjectId)
    file = UploadedFileProperty(filters=[Fails()])


class Validated(MappedClass):
    class __mongometa__:
        session = session
        name = "validated"

    _id = FieldProperty(S.ObjectId)
    file = UploadedFileProperty(validators=[MaxSize(100), ContentTypes("text/plain")])


class ThreadAttachment(MappedClass):
    class __mongometa__:
        session = thread_session
        name = "thread_attachments"

    _id = FieldProperty(S.ObjectId)
    file = UploadedFileProperty()


class BareAttachment(MappedClass):
    class __mongometa__:
        session = bare_session
        name = "bare_attachments"

    _id = FieldProperty(S.ObjectId)
    file = UploadedFileProperty()


Mapper.compile_all()
