"""UploadedImageWithThumb: the image stored with its thumbnail, checked before storing."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from depot.exceptions import (
    FileTooLargeError,
    ImageTooLargeError,
    NotAnImageError,
    ValidationError,
)
from depot.fields.specialized.image import UploadedImageWithThumb
from depot.io.interfaces import FileStorage
from depot.io.utils import FileIntent
from depot.validators import MaxSize, validate
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
from tests.reference import UPLOADED_FILE_KEYS
from tests.streams import OneWayStream

REPO = Path(__file__).resolve().parents[2]

FILEDEPOT_KEYS = [
    *UPLOADED_FILE_KEYS,
    "thumb_id",
    "thumb_path",
    "_thumb_public_url",
]


def test_keys_are_filedepots_then_width_and_height(depot: FileStorage) -> None:
    value = UploadedImageWithThumb(FileIntent(encode(halves((300, 200)), "PNG"), "a.png", None))
    assert list(value) == [*FILEDEPOT_KEYS, "width", "height"]
    assert value.files == [value.path, value.thumb_path]
    assert value.thumb_path == f"default/{value.thumb_id}"
    assert (value.width, value.height) == (300, 200)
    assert (value.filename, value.content_type) == ("a.png", "image/png")
    assert json.loads(value.encode()) == value


def test_thumbnail_fits_the_box_and_is_a_png(depot: FileStorage) -> None:
    value = UploadedImageWithThumb(encode(halves((300, 200)), "JPEG"))
    thumb = opened(value.thumb_file)
    assert (thumb.format, thumb.size) == ("PNG", (128, 85))
    assert near(colour_at(thumb, 0.1, 0.5), RED)
    assert near(colour_at(thumb, 0.9, 0.5), BLUE)
    with value.thumb_file as stored:
        assert (stored.filename, stored.content_type) == ("thumb.png", "image/png")


def test_thumbnail_is_upright_and_carries_no_metadata(depot: FileStorage) -> None:
    upload = camera_jpeg((300, 200))
    original = Image.open(io.BytesIO(upload))
    assert metadata_of(original)["gps"]  # the test picture does carry them
    assert {"exif", "icc_profile", "comment"} <= set(original.info)

    value = UploadedImageWithThumb(upload)

    thumb = opened(value.thumb_file)
    # Turned a quarter clockwise: the stored left half (red) is now on top.
    assert thumb.size == (85, 128)
    assert near(colour_at(thumb, 0.5, 0.1), RED)
    assert near(colour_at(thumb, 0.5, 0.9), BLUE)
    assert metadata_of(thumb) == {"exif": {}, "gps": {}, "info": {}}
    # As displayed: 200 wide, 300 high.
    assert (value.width, value.height) == (200, 300)


def test_a_small_image_is_stored_as_uploaded(depot: FileStorage) -> None:
    upload = camera_jpeg((300, 200))
    value = UploadedImageWithThumb(FileIntent(upload, "photo.jpg", "image/jpeg"))
    with value.file as stored:
        assert stored.read() == upload
        assert (stored.filename, stored.content_type) == ("photo.jpg", "image/jpeg")


def test_a_large_image_is_stored_shrunk_upright_and_without_metadata(depot: FileStorage) -> None:
    value = UploadedImageWithThumb(FileIntent(camera_jpeg((1600, 1200)), "big.jpg", None))
    stored = opened(value.file)
    assert (stored.format, stored.size) == ("JPEG", (768, 1024))
    assert (value.width, value.height) == (768, 1024)
    assert near(colour_at(stored, 0.5, 0.1), RED)
    assert metadata_of(stored) == {"exif": {}, "gps": {}, "info": {}}
    with value.file as f:
        assert (f.filename, f.content_type) == ("big.jpg", "image/jpeg")
    assert opened(value.thumb_file).size == (96, 128)


def test_max_size_none_stores_every_image_as_uploaded(depot: FileStorage) -> None:
    class Original(UploadedImageWithThumb):
        max_size = None

    upload = encode(halves((1600, 1200)), "PNG")
    value = Original(upload)
    with value.file as stored:
        assert stored.read() == upload
    assert (value.width, value.height) == (1600, 1200)


def test_a_stream_that_cannot_seek_is_checked_then_stored(depot: FileStorage) -> None:
    upload = camera_jpeg((300, 200))
    value = UploadedImageWithThumb(FileIntent(OneWayStream(upload), "photo.jpg", None))
    with value.file as stored:
        assert stored.read() == upload
    assert opened(value.thumb_file).size == (85, 128)


def test_an_open_file_is_read_from_its_start(depot: FileStorage, tmp_path: Any) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(encode(halves((300, 200)), "PNG"))
    with path.open("rb") as f:
        f.read(10)
        value = UploadedImageWithThumb(f)
    assert value.filename == "photo.png"
    with value.file as stored:
        assert stored.read() == path.read_bytes()


@pytest.mark.parametrize("declared", [None, "application/octet-stream"])
def test_the_type_is_the_detected_one_when_none_is_given(
    depot: FileStorage, declared: str | None
) -> None:
    value = UploadedImageWithThumb(FileIntent(encode(halves((30, 20)), "GIF"), None, declared))
    assert value.content_type == "image/gif"


def test_a_declared_type_is_kept(depot: FileStorage) -> None:
    value = UploadedImageWithThumb(
        FileIntent(encode(halves((30, 20)), "PNG"), "a.png", "image/x-png")
    )
    assert value.content_type == "image/x-png"


class JpegThumb(UploadedImageWithThumb):
    thumbnail_format = "JPEG"
    thumbnail_size = (64, 64)


@pytest.mark.parametrize(
    ("label", "picture", "fmt", "corner"),
    [
        ("RGBA", Image.new("RGBA", (40, 40), (255, 0, 0, 0)), "PNG", (255, 0, 0, 0)),
        ("palette", halves((40, 40), "P"), "GIF", RED),
        ("CMYK", Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG", RED),
        ("16-bit grey", Image.new("I;16", (40, 40), 32896), "PNG", 128),
        ("float grey", Image.new("F", (40, 40), 0.5), "TIFF", 127),
        ("bilevel", Image.new("1", (40, 40), 1), "BMP", 255),
        ("grey and alpha", Image.new("LA", (40, 40), (0, 255)), "PNG", (0, 255)),
        ("WebP", Image.new("RGB", (40, 40), BLUE), "WEBP", BLUE),
    ],
)
def test_every_mode_gives_png_and_jpeg_thumbnails(
    depot: FileStorage, label: str, picture: Image.Image, fmt: str, corner: Any
) -> None:
    upload = encode(picture, fmt)
    png = opened(UploadedImageWithThumb(upload).thumb_file)
    assert png.format == "PNG"
    assert png.mode in ("L", "LA", "RGB", "RGBA")
    assert _close(png.getpixel((0, 0)), corner), label
    jpeg = opened(JpegThumb(upload).thumb_file)
    assert (jpeg.format, jpeg.size) == ("JPEG", (40, 40))
    assert jpeg.mode in ("L", "RGB")


def test_transparency_is_white_in_a_jpeg_thumbnail(depot: FileStorage) -> None:
    upload = encode(Image.new("RGBA", (40, 40), (255, 0, 0, 0)), "PNG")
    thumb = opened(JpegThumb(upload).thumb_file)
    assert near(colour_at(thumb, 0.5, 0.5), (255, 255, 255))


def _close(pixel: Any, expected: Any, tolerance: int = 4) -> bool:
    if isinstance(expected, int):
        expected = (expected,)
    if isinstance(pixel, int):
        pixel = (pixel,)
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


REFUSED = [
    pytest.param(b"Hello, I am not an image", NotAnImageError, "not an image", id="text"),
    pytest.param(b"<html><body>cat</body></html>", NotAnImageError, "not an image", id="html"),
    pytest.param(b"", NotAnImageError, "not an image", id="empty"),
    pytest.param(
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
        NotAnImageError,
        "JPEG, PNG",
        id="eps, not accepted",
    ),
    pytest.param(
        camera_jpeg((300, 200))[:2000], NotAnImageError, "damaged or incomplete", id="cut jpeg"
    ),
    pytest.param(
        encode(halves((300, 200)), "PNG")[:-200],
        NotAnImageError,
        "damaged or incomplete",
        id="cut png",
    ),
    pytest.param(
        png_header(50_000, 50_000), ImageTooLargeError, "too many pixels", id="bomb, error"
    ),
    pytest.param(
        png_header(10_000, 10_000), ImageTooLargeError, "too many pixels", id="bomb, warning"
    ),
]


@pytest.mark.parametrize(("content", "error", "message"), REFUSED)
def test_refused_before_anything_is_stored(
    depot: FileStorage, content: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        UploadedImageWithThumb(FileIntent(content, "picture.jpg", "image/jpeg"))
    assert isinstance(caught.value, ValidationError)
    assert "Upload" in str(caught.value)  # says what to do
    assert depot.list() == []


@pytest.mark.parametrize(("content", "error", "message"), REFUSED)
def test_refused_from_a_stream_that_cannot_seek(
    depot: FileStorage, content: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        UploadedImageWithThumb(OneWayStream(content))
    assert depot.list() == []


def test_max_pixels_is_checked_from_the_header(depot: FileStorage) -> None:
    class Small(UploadedImageWithThumb):
        max_pixels = 10_000

    with pytest.raises(ImageTooLargeError, match=r"300 × 200 pixels .*at most 0.01 megapixels"):
        Small(encode(halves((300, 200)), "PNG"))
    assert depot.list() == []
    assert Small(encode(halves((100, 100)), "PNG")).width == 100


def test_pillows_own_limit_is_honoured(depot: FileStorage, monkeypatch: Any) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)
    with pytest.raises(ImageTooLargeError, match="at most 0.005 megapixels"):
        UploadedImageWithThumb(encode(halves((100, 100)), "PNG"))
    assert depot.list() == []


def test_image_formats_can_be_narrowed(depot: FileStorage) -> None:
    class PngOnly(UploadedImageWithThumb):
        image_formats = ("PNG",)

    with pytest.raises(NotAnImageError, match=r"format accepted here \(PNG\)"):
        PngOnly(encode(halves((30, 20)), "JPEG"))
    assert depot.list() == []


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("thumbnail_format", "NOPE", "cannot write images in the format 'NOPE'"),
        ("thumbnail_size", (128,), r"two positive ints such as \(128, 128\), not \(128,\)"),
        ("thumbnail_size", (0, 10), "two positive ints"),
    ],
)
def test_a_bad_class_attribute_says_how_to_fix_it(
    depot: FileStorage, attribute: str, value: Any, message: str
) -> None:
    bad = type("Bad", (UploadedImageWithThumb,), {attribute: value})
    with pytest.raises(ValueError, match=message) as caught:
        bad(encode(halves((30, 20)), "PNG"))
    assert f"Bad.{attribute}" in str(caught.value)
    assert depot.list() == []


def test_thumb_url_is_the_middlewares(depot: FileStorage, middleware: Any) -> None:
    value = UploadedImageWithThumb(encode(halves((30, 20)), "PNG"))
    assert value.thumb_url == f"/depot/default/{value.thumb_id}"
    assert value.url == f"/depot/default/{value.file_id}"


def test_thumb_url_is_the_public_one_when_the_backend_has_it(depot: FileStorage) -> None:
    value = UploadedImageWithThumb(encode(halves((30, 20)), "PNG"))
    row = dict(value, _thumb_public_url="https://cdn.example/t.png")
    assert UploadedImageWithThumb(row).thumb_url == "https://cdn.example/t.png"


def test_a_value_is_rebuilt_from_its_json(depot: FileStorage) -> None:
    value = UploadedImageWithThumb(encode(halves((300, 200)), "PNG"))
    loaded = UploadedImageWithThumb.decode(value.encode())
    assert loaded == value
    assert loaded.original_content is None
    assert (loaded.width, loaded.height) == (300, 200)
    assert opened(loaded.thumb_file).size == (128, 85)


def test_a_size_limit_stops_spooling_a_one_way_upload(depot: FileStorage) -> None:
    # What a field with validators=[MaxSize(...)] hands to its upload_type.
    upload = encode(Image.effect_noise((300, 300), 60).convert("RGB"), "PNG")
    limited = validate(OneWayStream(upload), [MaxSize(10_000)])
    with pytest.raises(FileTooLargeError):
        UploadedImageWithThumb(limited)
    assert depot.list() == []


def test_an_image_open_in_text_mode_says_to_open_it_rb(depot: FileStorage, tmp_path: Path) -> None:
    # filedepot's docs: UploadedImageWithThumb(open('cat.jpg')).
    path = tmp_path / "cat.jpg"
    path.write_bytes(encode(Image.new("RGB", (8, 8)), "JPEG"))
    with (
        open(path) as text,  # noqa: PTH123 (the newcomer's call)
        pytest.raises(TypeError, match=r"text mode.*open\(path, 'rb'\)") as raised,
    ):
        UploadedImageWithThumb(text)
    assert "damaged" not in str(raised.value)
    assert depot.list() == []


def test_missing_pillow_names_the_public_module() -> None:
    child = (
        "import sys; sys.modules['PIL'] = None\n"
        "try:\n"
        "    import depot.fields.specialized.image\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert "depot.fields.specialized.image needs the 'Pillow' package" in out
    assert "'images' extra" in out
    assert "_images" not in out
