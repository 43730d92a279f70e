"""Images through SQLAlchemy models, on SQLite, PostgreSQL and MariaDB.

UploadedImageWithThumb and the thumbnail filters in a column: stored on
assignment, refused before storing, loaded back with their thumbnails, and
every file of a value (image and thumbnails) deleted when the transaction
that replaced or dropped it commits, or that stored it rolls back.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from depot.exceptions import ImageTooLargeError, NotAnImageError
from depot.fields.filters.thumbnails import WithThumbnailFilter, WithThumbnailsFilter
from depot.fields.specialized.image import UploadedImageWithThumb
from depot.fields.sqlalchemy import UploadedFileField, UploadedFilesField
from depot.io.interfaces import FileStorage
from depot.io.utils import FileIntent
from depot.manager import DepotManager
from tests.images.pictures import (
    RED,
    camera_jpeg,
    colour_at,
    encode,
    halves,
    metadata_of,
    near,
    opened,
    png_header,
)
from tests.reference import REPO

FIXTURES = REPO / "tests" / "fixtures" / "filedepot_0_12"


class Base(DeclarativeBase):
    pass


class Photo(Base):
    __tablename__ = "depot_images_photo"

    id: Mapped[int] = mapped_column(primary_key=True)
    picture = mapped_column(UploadedFileField(upload_type=UploadedImageWithThumb))
    drawing = mapped_column(
        UploadedFileField(
            filters=[
                WithThumbnailFilter((64, 64)),
                WithThumbnailsFilter({"small": (32, 32), "large": (256, 256)}, format="JPEG"),
            ]
        )
    )
    album = mapped_column(UploadedFilesField(upload_type=UploadedImageWithThumb))


@pytest.fixture
def tables(engine: Engine) -> Iterator[Engine]:
    Base.metadata.create_all(engine)
    yield engine
    Base.metadata.drop_all(engine)


def stored(depot: FileStorage) -> set[str]:
    return {f"default/{file_id}" for file_id in depot.list()}


def add_photo(engine: Engine, **columns: Any) -> int:
    with Session(engine) as session:
        photo = Photo(**columns)
        session.add(photo)
        session.commit()
        return photo.id


def test_an_image_column_stores_loads_and_serves(
    tables: Engine, depot: FileStorage, middleware: Any
) -> None:
    photo_id = add_photo(tables, picture=FileIntent(camera_jpeg((300, 200)), "photo.jpg", None))
    with Session(tables) as session:
        photo = session.scalars(sa.select(Photo).where(Photo.id == photo_id)).one()
        picture = photo.picture
        assert isinstance(picture, UploadedImageWithThumb)
        assert (picture.width, picture.height) == (200, 300)
        assert picture.thumb_url == f"/depot/default/{picture.thumb_id}"
        thumb = opened(picture.thumb_file)
        assert thumb.size == (85, 128)
        assert near(colour_at(thumb, 0.5, 0.1), RED)
        assert metadata_of(thumb) == {"exif": {}, "gps": {}, "info": {}}
        assert stored(depot) == set(picture.files)
        raw = session.execute(
            sa.text("SELECT picture FROM depot_images_photo WHERE id = :id"), {"id": photo_id}
        ).scalar_one()
    assert list(json.loads(raw)) == [*json.loads(picture.encode())]
    assert json.loads(raw)["thumb_path"] == picture.thumb_path


def test_filters_in_a_column(tables: Engine, depot: FileStorage, middleware: Any) -> None:
    photo_id = add_photo(tables, drawing=encode(halves((600, 400)), "PNG"))
    with Session(tables) as session:
        photo = session.get(Photo, photo_id)
        assert photo is not None
        drawing = photo.drawing
        assert drawing.thumb_64x64_url == f"/depot/default/{drawing.thumb_64x64_id}"
        assert opened(drawing.thumb_64x64_file).size == (64, 43)
        assert opened(drawing.small_file).size == (32, 21)
        assert opened(drawing.large_file).format == "JPEG"
        assert drawing.large_url == f"/depot/default/{drawing.large_id}"
        assert len(drawing.files) == 4
        assert stored(depot) == set(drawing.files)


@pytest.mark.parametrize("column", ["picture", "drawing"])
def test_replacing_deletes_the_image_and_its_thumbnails_on_commit(
    tables: Engine, depot: FileStorage, column: str
) -> None:
    photo_id = add_photo(tables, **{column: encode(halves((300, 200)), "PNG")})
    with Session(tables) as session:
        photo = session.get(Photo, photo_id)
        old = set(getattr(photo, column).files)
        setattr(photo, column, encode(halves((200, 300)), "JPEG"))
        new = set(getattr(photo, column).files)
        assert stored(depot) == old | new  # nothing deleted before the commit
        session.commit()
    assert stored(depot) == new


@pytest.mark.parametrize("column", ["picture", "drawing"])
def test_clearing_deletes_every_file_on_commit(
    tables: Engine, depot: FileStorage, column: str
) -> None:
    photo_id = add_photo(tables, **{column: encode(halves((300, 200)), "PNG")})
    with Session(tables) as session:
        setattr(session.get(Photo, photo_id), column, None)
        session.commit()
    assert stored(depot) == set()


def test_deleting_the_row_deletes_every_file_on_commit(tables: Engine, depot: FileStorage) -> None:
    photo_id = add_photo(
        tables, picture=encode(halves((30, 20)), "PNG"), drawing=encode(halves((30, 20)), "PNG")
    )
    assert len(stored(depot)) == 2 + 4
    with Session(tables) as session:
        session.delete(session.get(Photo, photo_id))
        session.commit()
    assert stored(depot) == set()


def test_a_rollback_deletes_what_was_stored(tables: Engine, depot: FileStorage) -> None:
    with Session(tables) as session:
        session.add(
            Photo(picture=encode(halves((30, 20)), "PNG"), drawing=encode(halves((30, 20)), "PNG"))
        )
        session.flush()
        assert len(stored(depot)) == 6
        session.rollback()
    assert stored(depot) == set()


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"GIF89a but not really", NotAnImageError),
        (camera_jpeg((300, 200))[:2000], NotAnImageError),
        (png_header(50_000, 50_000), ImageTooLargeError),
    ],
)
@pytest.mark.parametrize("column", ["picture", "drawing"])
def test_refused_content_leaves_no_file_and_the_row_unchanged(
    tables: Engine, depot: FileStorage, column: str, content: bytes, error: type
) -> None:
    photo_id = add_photo(tables, **{column: encode(halves((30, 20)), "PNG")})
    before = stored(depot)
    with Session(tables) as session:
        photo = session.get(Photo, photo_id)
        kept = getattr(photo, column)
        with pytest.raises(error):
            setattr(photo, column, content)
        assert getattr(photo, column) == kept
        session.commit()
    assert stored(depot) == before


def test_a_list_of_images(tables: Engine, depot: FileStorage, middleware: Any) -> None:
    photo_id = add_photo(
        tables, album=[encode(halves((30, 20)), "PNG"), encode(halves((20, 30)), "PNG")]
    )
    with Session(tables) as session:
        photo = session.get(Photo, photo_id)
        assert photo is not None
        first, second = photo.album
        assert [opened(v.thumb_file).size for v in photo.album] == [(30, 20), (20, 30)]
        assert second.thumb_url == f"/depot/default/{second.thumb_id}"
        photo.album.remove(first)
        session.commit()
    assert stored(depot) == set(second.files)


def test_filedepots_rows_load_and_serve(tables: Engine, tmp_path: Path, middleware: Any) -> None:
    recorded = json.loads((FIXTURES / "images.json").read_text())
    values = {v["kind"]: v["json"] for v in recorded["values"]}
    shutil.copytree(FIXTURES / "images_local", tmp_path / "media")
    DepotManager.configure(recorded["depot"], {"depot.storage_path": str(tmp_path / "media")})
    with tables.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO depot_images_photo (id, picture, drawing) VALUES (1, :p, :d)"),
            {"p": values["image"], "d": values["filter"]},
        )
    with Session(tables) as session:
        photo = session.get(Photo, 1)
        assert photo is not None
        assert opened(photo.picture.thumb_file).format == "PNG"
        assert photo.picture.thumb_url == f"/depot/media/{photo.picture.thumb_id}"
        assert photo.drawing.thumb_64x64_url == f"/depot/media/{photo.drawing.thumb_64x64_id}"
        assert opened(photo.drawing.thumb_64x64_file).size == (64, 43)
        media = DepotManager.get("media")
        assert media is not None
        before = set(media.list())
        photo.picture = encode(halves((30, 20)), "PNG")
        replaced = json.loads(values["image"])["files"]
        session.commit()
    assert before - set(media.list()) == {path.partition("/")[2] for path in replaced}
