"""Files as attributes of database rows and documents.

:mod:`depot.fields.upload` holds the value a field keeps (:class:`UploadedFile`),
:mod:`depot.fields.sqlalchemy` and :mod:`depot.fields.ming` the fields that keep
it, :mod:`depot.fields.filters` what runs on each stored file (thumbnails) and
:mod:`depot.fields.specialized` values for particular kinds of file (images).
"""
