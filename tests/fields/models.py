"""The mapped classes the SQLAlchemy field tests use, in both declaration styles.

All tables share one MetaData, created once per database and emptied before
each test (see ``conftest.py``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    declarative_base,
    mapped_column,
    relationship,
)

from depot.fields.interfaces import DepotFileInfo, FileFilter
from depot.fields.specialized.image import UploadedImageWithThumb
from depot.fields.sqlalchemy import UploadedFileField, UploadedFilesField
from depot.fields.upload import UploadedFile
from depot.validators import ContentTypes, MaxSize


class Base(DeclarativeBase):
    pass


# SQLAlchemy 1.4's style, on the same MetaData.
LegacyBase: Any = declarative_base(metadata=Base.metadata)


class WithCopy(FileFilter):
    """Stores a second file (a stand-in for a thumbnail) beside each stored one."""

    def on_save(self, uploaded_file: DepotFileInfo) -> None:
        copy_id = uploaded_file.depot.create(b"copy of " + uploaded_file.file.read(), "copy.txt")
        uploaded_file["copy_id"] = copy_id
        uploaded_file["copy_path"] = f"{uploaded_file['depot_name']}/{copy_id}"
        uploaded_file["files"].append(uploaded_file["copy_path"])


class WithManyCopies(FileFilter):
    """Stores 40 more files, so that the value's JSON is longer than 4000 characters."""

    def on_save(self, uploaded_file: DepotFileInfo) -> None:
        for n in range(40):
            copy_id = uploaded_file.depot.create(b"x", f"extra-{n}.txt")
            uploaded_file[f"extra{n}_path"] = f"{uploaded_file['depot_name']}/{copy_id}"
            uploaded_file["files"].append(uploaded_file[f"extra{n}_path"])


class Failing(FileFilter):
    def on_save(self, uploaded_file: DepotFileInfo) -> None:
        raise RuntimeError("the filter broke")


class Document(Base):
    __tablename__ = "depot_documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50), unique=True)
    attachment: Mapped[UploadedFile | None] = mapped_column(UploadedFileField())


class LegacyDocument(LegacyBase):
    __tablename__ = "depot_legacy_documents"

    id = sa.Column(sa.Integer, primary_key=True)
    name = sa.Column(sa.Unicode(50))
    content = sa.Column(UploadedFileField)


class Album(Base):
    __tablename__ = "depot_albums"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50), unique=True)
    photos: Mapped[list[UploadedFile] | None] = mapped_column(
        UploadedFilesField(validators=[MaxSize(100)])
    )


class Folder(Base):
    __tablename__ = "depot_folders"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    items: Mapped[list[Item]] = relationship(back_populates="folder", cascade="all, delete-orphan")


class Item(Base):
    __tablename__ = "depot_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    folder_id: Mapped[int] = mapped_column(sa.ForeignKey("depot_folders.id"))
    folder: Mapped[Folder] = relationship(back_populates="items")
    data: Mapped[UploadedFile | None] = mapped_column(UploadedFileField())


class Checked(Base):
    """Validators, filters and a named depot."""

    __tablename__ = "depot_checked"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[UploadedFile | None] = mapped_column(
        UploadedFileField(validators=[MaxSize(100), ContentTypes("text/plain")])
    )
    copied: Mapped[UploadedFile | None] = mapped_column(UploadedFileField(filters=[WithCopy()]))
    many: Mapped[UploadedFile | None] = mapped_column(UploadedFileField(filters=[WithManyCopies()]))
    broken: Mapped[UploadedFile | None] = mapped_column(UploadedFileField(filters=[Failing()]))
    elsewhere: Mapped[UploadedFile | None] = mapped_column(
        UploadedFileField(upload_storage="other")
    )


class Media(Base):
    """Joined-table inheritance: a file column on each table."""

    __tablename__ = "depot_media"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    file: Mapped[UploadedFile | None] = mapped_column(UploadedFileField())
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "media"}


class Video(Media):
    __tablename__ = "depot_videos"

    id: Mapped[int] = mapped_column(sa.ForeignKey("depot_media.id"), primary_key=True)
    poster: Mapped[UploadedFile | None] = mapped_column(UploadedFileField())
    __mapper_args__ = {"polymorphic_identity": "video"}


class Photo(Base):
    """Columns of another upload type than UploadedFile."""

    __tablename__ = "depot_photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    picture: Mapped[UploadedImageWithThumb | None] = mapped_column(
        UploadedFileField(upload_type=UploadedImageWithThumb)
    )
    pictures: Mapped[list[UploadedImageWithThumb] | None] = mapped_column(
        UploadedFilesField(upload_type=UploadedImageWithThumb)
    )
