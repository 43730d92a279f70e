"""WithThumbnailFilter (filedepot's) and WithThumbnailsFilter (several named sizes)."""

from __future__ import annotations

from typing import Any

import pytest

from depot.exceptions import ConfigurationError, ImageTooLargeError, NotAnImageError
from depot.fields.filters.thumbnails import WithThumbnailFilter, WithThumbnailsFilter
from depot.fields.interfaces import FileFilter
from depot.fields.specialized.image import UploadedImageWithThumb
from depot.fields.upload import UploadedFile
from depot.io.interfaces import FileStorage
from depot.io.utils import FileIntent
from depot.manager import DepotManager
from tests.images.pictures import (
    BLUE,
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
from tests.streams import OneWayStream


def stored_with(content: Any, *filters: FileFilter, upload_type: type = UploadedFile) -> Any:
    """Store ``content`` as a field does: build the value, then run its filters."""
    value = upload_type(content)
    value._apply_filters(filters)
    return value


def test_filedepots_keys_for_the_default_size(depot: FileStorage, middleware: Any) -> None:
    value = stored_with(encode(halves((300, 200)), "PNG"), WithThumbnailFilter())
    added = list(value)[list(value).index("_public_url") + 1 :]
    assert added == ["thumb_128x128_id", "thumb_128x128_path", "thumb_128x128_url"]
    assert value.thumb_128x128_path == f"default/{value.thumb_128x128_id}"
    assert value.thumb_128x128_url == f"/depot/default/{value.thumb_128x128_id}"
    assert value.files == [value.path, value.thumb_128x128_path]
    with value.thumb_128x128_file as stored:
        assert (stored.filename, stored.content_type) == ("thumb_128x128.png", "image/png")
    thumb = opened(value.thumb_128x128_file)
    assert (thumb.format, thumb.size) == ("PNG", (128, 85))


def test_size_and_format(depot: FileStorage, middleware: Any) -> None:
    value = stored_with(encode(halves((300, 200)), "PNG"), WithThumbnailFilter((64, 32), "JPEG"))
    assert "thumb_64x32_url" in value
    with value.thumb_64x32_file as stored:
        assert (stored.filename, stored.content_type) == ("thumb_64x32.jpeg", "image/jpeg")
    thumb = opened(value.thumb_64x32_file)
    assert (thumb.format, thumb.size) == ("JPEG", (48, 32))


def test_without_a_middleware_the_url_is_worked_out_later(depot: FileStorage) -> None:
    value = stored_with(encode(halves((300, 200)), "PNG"), WithThumbnailFilter())
    assert "thumb_128x128_url" not in value
    DepotManager.make_middleware(lambda environ, start_response: [])
    assert value.thumb_128x128_url == f"/depot/default/{value.thumb_128x128_id}"


def test_thumbnail_is_upright_and_carries_no_metadata(depot: FileStorage) -> None:
    value = stored_with(
        camera_jpeg((300, 200)),
        WithThumbnailFilter(),
        WithThumbnailsFilter({"small": (64, 64)}, format="JPEG"),
    )
    for thumb in (opened(value.thumb_128x128_file), opened(value.small_file)):
        assert thumb.width < thumb.height
        assert near(colour_at(thumb, 0.5, 0.1), RED)
        assert near(colour_at(thumb, 0.5, 0.9), BLUE)
        assert metadata_of(thumb) == {"exif": {}, "gps": {}, "info": {}}


def test_several_named_sizes(depot: FileStorage, middleware: Any) -> None:
    sizes = WithThumbnailsFilter({"small": (64, 64), "large": (512, 512)})
    value = stored_with(FileIntent(encode(halves((1200, 800)), "PNG"), "p.png", None), sizes)
    added = list(value)[list(value).index("_public_url") + 1 :]
    assert added == [
        *["small_id", "small_path", "_small_public_url", "small_width", "small_height"],
        *["large_id", "large_path", "_large_public_url", "large_width", "large_height"],
    ]
    assert value.files == [value.path, value.small_path, value.large_path]
    assert (value.small_width, value.small_height) == (64, 43)
    assert (value.large_width, value.large_height) == (512, 341)
    assert opened(value.small_file).size == (64, 43)
    assert opened(value.large_file).size == (512, 341)
    assert value.small_url == f"/depot/default/{value.small_id}"
    assert value.large_url == f"/depot/default/{value.large_id}"
    with value.large_file as stored:
        assert (stored.filename, stored.content_type) == ("large.png", "image/png")
    # What a row holds brings them back.
    loaded = UploadedFile.decode(value.encode())
    assert opened(loaded.small_file).size == (64, 43)
    assert loaded.large_url == value.large_url


def test_a_thumbnail_is_never_enlarged(depot: FileStorage) -> None:
    value = stored_with(encode(halves((30, 20)), "PNG"), WithThumbnailsFilter({"big": (512, 512)}))
    assert (value.big_width, value.big_height) == (30, 20)


def test_filters_run_on_an_image_value_too(depot: FileStorage, middleware: Any) -> None:
    value = stored_with(
        encode(halves((300, 200)), "PNG"),
        WithThumbnailFilter((64, 64)),
        WithThumbnailsFilter({"small": (32, 32)}),
        upload_type=UploadedImageWithThumb,
    )
    assert len(value.files) == 4
    assert opened(value.thumb_file).size == (128, 85)
    assert opened(value.thumb_64x64_file).size == (64, 43)
    assert opened(value.small_file).size == (32, 21)


def test_the_content_given_may_be_a_stream_already_read(depot: FileStorage) -> None:
    # The filter reads the stored file back: the one-way stream is spent.
    upload = encode(halves((300, 200)), "PNG")
    value = stored_with(OneWayStream(upload), WithThumbnailFilter())
    assert opened(value.thumb_128x128_file).size == (128, 85)


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"not an image at all", NotAnImageError, "not an image"),
        (camera_jpeg((300, 200))[:2000], NotAnImageError, "damaged or incomplete"),
        (png_header(50_000, 50_000), ImageTooLargeError, "too many pixels"),
    ],
)
@pytest.mark.parametrize(
    "image_filter",
    [WithThumbnailFilter(), WithThumbnailsFilter({"small": (64, 64), "large": (256, 256)})],
    ids=repr,
)
def test_refused_content_leaves_nothing_in_the_depot(
    depot: FileStorage, image_filter: FileFilter, content: bytes, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        stored_with(content, image_filter)
    assert depot.list() == []


def test_a_name_taken_by_the_value_is_refused_and_nothing_is_left(depot: FileStorage) -> None:
    with pytest.raises(ConfigurationError, match="'thumb' would overwrite the key 'thumb_id'"):
        stored_with(
            encode(halves((30, 20)), "PNG"),
            WithThumbnailsFilter({"thumb": (64, 64)}),
            upload_type=UploadedImageWithThumb,
        )
    assert depot.list() == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: WithThumbnailFilter((128,)), r"two positive ints such as \(128, 128\)"),
        (lambda: WithThumbnailFilter("128x128"), "two positive ints"),
        (lambda: WithThumbnailFilter(format="XYZ"), "cannot write images in the format 'XYZ'"),
        (lambda: WithThumbnailsFilter({}), "needs the sizes by name"),
        (lambda: WithThumbnailsFilter([(64, 64)]), "needs the sizes by name"),
        (lambda: WithThumbnailsFilter({"my small": (64, 64)}), "Python identifier"),
        (lambda: WithThumbnailsFilter({"_small": (64, 64)}), "not starting with '_'"),
        (lambda: WithThumbnailsFilter({"file": (64, 64)}), "cannot be named 'file'"),
        (lambda: WithThumbnailsFilter({"small": (64, -1)}), "size 'small'"),
        (lambda: WithThumbnailsFilter({"small": (64, 64)}, "XYZ"), "format 'XYZ'"),
    ],
)
def test_bad_arguments_say_how_to_fix_them(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_a_value_without_a_stored_file_is_refused(depot: FileStorage) -> None:
    class Nothing(UploadedFile):
        def process_content(self, content: Any, filename: Any = None, ctype: Any = None) -> None:
            pass

    with pytest.raises(TypeError, match="records no 'path': use it with UploadedFile"):
        stored_with(b"x", WithThumbnailFilter(), upload_type=Nothing)


def test_repr() -> None:
    assert repr(WithThumbnailFilter()) == "WithThumbnailFilter((128, 128), 'PNG')"
    assert repr(WithThumbnailsFilter({"s": (1, 2)}, "jpeg")) == (
        "WithThumbnailsFilter({'s': (1, 2)}, 'JPEG')"
    )
