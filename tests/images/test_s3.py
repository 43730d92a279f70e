"""Images on S3 (moto's server): public URLs recorded, stored files read back over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from depot.exceptions import NotAnImageError
from depot.fields.filters.thumbnails import WithThumbnailFilter, WithThumbnailsFilter
from depot.fields.specialized.image import UploadedImageWithThumb
from depot.fields.upload import UploadedFile
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from tests.images.pictures import camera_jpeg, encode, halves, metadata_of, opened
from tests.streams import OneWayStream


@pytest.fixture
def s3(s3_settings: dict[str, Any]) -> FileStorage:
    """The default depot: a bucket whose files are public."""
    return DepotManager.configure("default", {**s3_settings, "depot.policy": "public-read"})


def test_image_and_thumbnail_have_public_urls(s3: FileStorage, middleware: Any) -> None:
    value = UploadedImageWithThumb(OneWayStream(camera_jpeg((300, 200))))
    assert value._thumb_public_url and value._public_url
    assert value.thumb_url == value._thumb_public_url
    assert value.thumb_url.endswith(value.thumb_id)
    thumb = opened(value.thumb_file)
    assert thumb.size == (85, 128)
    assert metadata_of(thumb) == {"exif": {}, "gps": {}, "info": {}}
    assert set(s3.list()) == {value.file_id, value.thumb_id}


def test_filters_read_the_stored_object_back(s3: FileStorage, middleware: Any) -> None:
    value = UploadedFile(OneWayStream(encode(halves((600, 400)), "PNG")))
    value._apply_filters([WithThumbnailFilter(), WithThumbnailsFilter({"small": (32, 32)})])
    assert opened(value.thumb_128x128_file).size == (128, 85)
    # filedepot's key holds the middleware's URL, which redirects to the object.
    assert value.thumb_128x128_url == f"/depot/default/{value.thumb_128x128_id}"
    assert value.small_url == value._small_public_url
    assert value.small_url.endswith(value.small_id)
    assert opened(value.small_file).size == (32, 21)


def test_refused_by_a_filter_leaves_the_bucket_empty(s3: FileStorage) -> None:
    value = UploadedFile(b"not an image")
    with pytest.raises(NotAnImageError):
        value._apply_filters([WithThumbnailsFilter({"small": (32, 32)})])
    assert s3.list() == []
