"""Images on Ming documents: UploadedImageWithThumb and WithThumbnailFilter, new and filedepot's."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PIL", reason="the 'images' extra is not installed")

from ming import schema as S  # noqa: E402  (after the skip)
from ming.odm import FieldProperty, MappedClass, Mapper, ODMSession  # noqa: E402
from PIL import Image  # noqa: E402
from webtest import TestApp  # noqa: E402

from depot.exceptions import NotAnImageError  # noqa: E402
from depot.fields.filters.thumbnails import WithThumbnailFilter  # noqa: E402
from depot.fields.ming import UploadedFileProperty  # noqa: E402
from depot.fields.specialized.image import UploadedImageWithThumb  # noqa: E402
from depot.io.interfaces import FileStorage  # noqa: E402
from depot.io.utils import FileIntent  # noqa: E402
from depot.manager import DepotManager  # noqa: E402
from tests.images.pictures import encode, halves  # noqa: E402
from tests.ming import models  # noqa: E402
from tests.ming.test_filedepot_compat import DUMP, copy_fixture, wrapped_app  # noqa: E402


class Photo(MappedClass):
    """The model filedepot's fixture documents were written with."""

    class __mongometa__:
        session = models.session
        name = "photos"

    _id = FieldProperty(S.ObjectId)
    label = FieldProperty(str)
    image = UploadedFileProperty(upload_type=UploadedImageWithThumb)
    picture = UploadedFileProperty(filters=[WithThumbnailFilter((64, 64), "PNG")])


Mapper.compile_all()


def png(size: tuple[int, int]) -> bytes:
    return encode(halves(size), "PNG")


def image_of(body: bytes) -> Image.Image:
    return Image.open(io.BytesIO(body))


@pytest.fixture
def app(session: ODMSession) -> TestApp:
    return TestApp(DepotManager.make_middleware(wrapped_app))


def test_an_image_is_stored_with_its_thumbnails(
    app: TestApp, session: ODMSession, depot: FileStorage
) -> None:
    photo = Photo(
        label="new",
        image=FileIntent(png((400, 300)), "photo.png", "image/png"),
        picture=FileIntent(png((200, 100)), "picture.png", "image/png"),
    )
    session.flush()
    session.clear()
    photo = Photo.query.get(label="new")
    assert (photo.image.width, photo.image.height) == (400, 300)
    thumbnail = image_of(app.get(photo.image.thumb_url).body)
    assert thumbnail.size == (128, 96)
    assert photo.picture.thumb_64x64_url == f"/depot/{photo.picture.thumb_64x64_path}"
    assert image_of(app.get(photo.picture.thumb_64x64_url).body).size == (64, 32)
    assert len(depot.list()) == 4


def test_thumbnails_go_with_their_image(session: ODMSession, depot: FileStorage) -> None:
    photo = Photo(label="replaced", image=png((300, 300)), picture=png((80, 80)))
    Photo(label="never saved", image=png((300, 300)))
    session.flush(photo)
    first = set(depot.list())
    assert len(first) == 6
    photo.image = png((200, 200))
    session.flush(photo)
    assert len(set(depot.list()) & first) == 4, "the old image and its thumbnail went"
    photo.delete()
    session.flush(photo)
    assert len(depot.list()) == 2
    session.clear()
    assert depot.list() == [], "the document never flushed took its thumbnail along"


def test_content_that_is_not_an_image_stores_nothing(
    session: ODMSession, depot: FileStorage
) -> None:
    photo = Photo(label="refused")
    with pytest.raises(NotAnImageError):
        photo.image = FileIntent(b"<html>not an image</html>", "cat.png", "image/png")
    with pytest.raises(NotAnImageError):
        photo.picture = FileIntent(b"<html>not an image</html>", "cat.png", "image/png")
    assert depot.list() == []
    assert photo.image is None and photo.picture is None


def test_filedepots_images_load_and_serve(tmp_path: Path, bound: ODMSession) -> None:
    media = copy_fixture(tmp_path, bound, {"photos": "photos"})
    app = TestApp(DepotManager.make_middleware(wrapped_app))
    photo = Photo.query.get(label="photo")
    served: dict[str, Any] = {
        photo.image.path: app.get(photo.image.url),
        photo.image.thumb_path: app.get(photo.image.thumb_url),
        photo.picture.path: app.get(photo.picture.url),
        photo.picture.thumb_64x64_path: app.get(photo.picture.thumb_64x64_url),
    }
    for path, response in served.items():
        assert hashlib.sha256(response.body).hexdigest() == DUMP["files"][path]["sha256"]
        assert response.content_type == "image/png"
    assert photo.image.width is None, "filedepot did not record it"
    # Replacing filedepot's image deletes it and its thumbnail after the flush.
    before = set(media.list())
    old = {photo.image.file_id, photo.image.thumb_id}
    photo.image = png((50, 50))
    bound.flush()
    assert set(media.list()) == (before - old) | {photo.image.file_id, photo.image.thumb_id}
