"""The mapped classes the operations tests use, on a MetaData of their own."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from depot.fields.specialized.image import UploadedImageWithThumb
from depot.fields.sqlalchemy import UploadedFileField, UploadedFilesField
from depot.fields.upload import UploadedFile


class OpsBase(DeclarativeBase):
    pass


class Photo(OpsBase):
    """One image with its thumbnail (two files per row)."""

    __tablename__ = "depot_ops_photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    image: Mapped[UploadedImageWithThumb | None] = mapped_column(
        UploadedFileField(upload_type=UploadedImageWithThumb)
    )


class Folder(OpsBase):
    """A list of files per row, and a second file column; a key of two columns."""

    __tablename__ = "depot_ops_folders"

    owner: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    files: Mapped[list[UploadedFile] | None] = mapped_column(UploadedFilesField())
    cover: Mapped[UploadedFile | None] = mapped_column(UploadedFileField())


class Plain(OpsBase):
    """No file column: passed over."""

    __tablename__ = "depot_ops_plain"

    id: Mapped[int] = mapped_column(primary_key=True)


class Document(OpsBase):
    """The base of a joined-table inheritance: its file column is in its own table."""

    __tablename__ = "depot_ops_documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(10))
    file: Mapped[UploadedFile | None] = mapped_column(UploadedFileField())
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "document"}


class Report(Document):
    """A subclass with a file column of its own, in a second table."""

    __tablename__ = "depot_ops_reports"

    id: Mapped[int] = mapped_column(sa.ForeignKey("depot_ops_documents.id"), primary_key=True)
    appendix: Mapped[UploadedFile | None] = mapped_column(UploadedFileField())
    __mapper_args__ = {"polymorphic_identity": "report"}
