"""The files of the example apps: one SQLAlchemy model, and what the apps do with it.

A :class:`Document` keeps its content in one of two columns: an image in
``image`` (an :class:`UploadedImageWithThumb`, stored with a thumbnail), any
other file in ``file``. The columns hold only what depot recorded (the stored
path, name, type, date); the bytes are in the depot. The columns are
transaction-aware: files replaced or deleted are removed from storage when the
session commits, files stored by a session that rolls back are removed too.

Nothing here knows a web framework: an upload is anything depot's ``create()``
accepts (a Flask/werkzeug ``FileStorage``, a webob upload, bytes, a file).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, Integer, create_engine, select
from sqlalchemy.orm import Session, declarative_base, sessionmaker

from depot.exceptions import NotAnImageError
from depot.fields.specialized.image import UploadedImageWithThumb
from depot.fields.sqlalchemy import UploadedFileField
from depot.fields.upload import UploadedFile
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager

from .settings import DEPOT_NAME, Settings

__all__ = [
    "Document",
    "Photo",
    "add",
    "add_all",
    "delete",
    "documents",
    "open_store",
    "refusal",
    "replace",
]

#: Types stored with a thumbnail.
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

Base: Any = declarative_base()


class Photo(UploadedImageWithThumb):
    """An image and its thumbnail (a PNG within 128x128 pixels).

    By default an image of 1024 pixels or more is stored shrunk; a file box
    gives back what it was given.
    """

    max_size = None


class Document(Base):
    """One uploaded file."""

    __tablename__ = "documents"

    id = Column(Integer, primary_key=True)
    #: Bytes, kept here so that a listing reads no file from the depot.
    size = Column(Integer, nullable=False, default=0)
    file = Column(UploadedFileField())
    image = Column(UploadedFileField(upload_type=Photo))

    @property
    def content(self) -> UploadedFile:
        """What depot recorded: ``filename``, ``content_type``, ``uploaded_at``, ``url``."""
        return self.image or self.file

    @property
    def thumb_url(self) -> str | None:
        return self.image.thumb_url if self.image else None

    def store(self, upload: Any) -> None:
        """Store ``upload`` as this document's content, in place of the current one.

        A file named or declared as an image must be one: a damaged or truncated
        image, or other bytes under an image's name, would be served as an image
        that no browser can show, so it is refused.

        :raises depot.exceptions.NotAnImageError: it is not a complete image
            (:class:`~depot.exceptions.ImageTooLargeError`: too many pixels);
            nothing was stored.
        """
        _, _, content_type = FileStorage.fileinfo(upload)
        if content_type in IMAGE_TYPES:
            # The column checks the whole image before it stores anything.
            self.image = upload
            self.file = None
            content = self.image
        else:
            self.file, self.image = upload, None
            content = self.file
        with content.file as stored:
            self.size = stored.content_length


def open_store(settings: Settings) -> sessionmaker[Session]:
    """Configure the depot and the database of ``settings``; return a session factory."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ignore = settings.data_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# Files and database of the example apps.\n*\n")
    DepotManager.configure(DEPOT_NAME, settings.depot)
    engine = create_engine(settings.database_url)
    Base.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)


def documents(session: Session) -> list[Document]:
    """All documents, the newest first."""
    return list(session.scalars(select(Document).order_by(Document.id.desc())))


def add(session: Session, upload: Any) -> Document:
    """Store ``upload`` as a new document.

    :raises depot.exceptions.NotAnImageError: see :meth:`Document.store`; the
        session is rolled back.
    """
    document = Document()
    # In the session first: if storing fails, the rollback removes what was stored.
    session.add(document)
    _store(session, document, upload)
    return document


def add_all(session: Session, uploads: Iterable[Any]) -> list[str]:
    """Store each upload as a new document; return why each refused one was refused.

    The uploads that are fine are stored even when others are refused.
    """
    refused = []
    for upload in uploads:
        try:
            add(session, upload)
        except NotAnImageError as exc:
            refused.append(refusal(upload, exc))
    return refused


def replace(session: Session, document_id: int, upload: Any) -> Document | None:
    """Give a document new content; its old files leave storage on commit.

    :raises depot.exceptions.NotAnImageError: see :meth:`Document.store`; the
        document keeps its content.
    """
    document = session.get(Document, document_id)
    if document is not None:
        _store(session, document, upload)
    return document


def refusal(upload: Any, error: NotAnImageError) -> str:
    """The sentence the page shows for ``upload``, refused with ``error``."""
    _, filename, _ = FileStorage.fileinfo(upload)
    return f"{filename} was not stored: {error}"


def _store(session: Session, document: Document, upload: Any) -> None:
    try:
        document.store(upload)
    except NotAnImageError:
        session.rollback()
        raise
    session.commit()


def delete(session: Session, document_id: int) -> bool:
    """Delete a document; its files leave storage on commit."""
    document = session.get(Document, document_id)
    if document is None:
        return False
    session.delete(document)
    session.commit()
    return True
