"""A Ming document class for the operations tests, on a session each test binds."""

from __future__ import annotations

from ming import schema as S
from ming.odm import FieldProperty, MappedClass, ODMSession

from depot.fields.ming import DepotExtension, UploadedFileProperty

ops_session = ODMSession(bind=None, extensions=[DepotExtension])


class Note(MappedClass):
    class __mongometa__:
        session = ops_session
        name = "depot_ops_notes"

    _id = FieldProperty(S.ObjectId)
    title = FieldProperty(str)
    file = UploadedFileProperty()
