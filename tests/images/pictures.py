"""Pictures for the image tests, made with Pillow, and ways to look at what was stored."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

from PIL import ExifTags, Image, ImageCms

RED = (255, 0, 0)
BLUE = (0, 0, 255)

#: EXIF Orientation 6: the camera was turned a quarter clockwise; the stored
#: pixels must be turned a quarter clockwise to show the scene upright.
ROTATED = 6

LATITUDE = (48.0, 51.0, 24.0)


def halves(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A picture whose left half is red and right half blue (in its stored pixels)."""
    image = Image.new("RGB", size, RED)
    image.paste(BLUE, (size[0] // 2, 0, size[0], size[1]))
    return image if mode == "RGB" else image.convert(mode)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    output = io.BytesIO()
    image.save(output, fmt, **options)
    return output.getvalue()


def camera_jpeg(size: tuple[int, int] = (300, 200), orientation: int = ROTATED) -> bytes:
    """A JPEG as a phone writes it: EXIF orientation and GPS position, ICC profile, comment."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "depot-test-camera"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = LATITUDE
    return encode(halves(size), "JPEG", exif=exif, icc_profile=srgb_profile(), comment=b"secret")


def srgb_profile() -> bytes:
    profile: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return profile


def png_header(width: int, height: int) -> bytes:
    """A PNG announcing ``width`` x ``height`` pixels, with almost no pixel data.

    The header is all a decompression bomb needs to be refused by: the data
    that would fill gigabytes is never read.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def opened(stored: Any) -> Image.Image:
    """The stored file (closed once read) as a loaded Pillow image."""
    with stored:
        image = Image.open(io.BytesIO(stored.read()))
        image.load()
    return image


def metadata_of(image: Image.Image) -> dict[str, Any]:
    """Everything but pixels a stored image carries: EXIF tags, GPS, info entries."""
    exif = image.getexif()
    return {
        "exif": dict(exif),
        "gps": dict(exif.get_ifd(ExifTags.IFD.GPSInfo)),
        # JFIF's own header fields (version, density) are not metadata of the picture.
        "info": {k: v for k, v in image.info.items() if not k.startswith("jfif")},
    }


def colour_at(image: Image.Image, x: float, y: float) -> tuple[int, ...]:
    """The colour at fractions ``x``, ``y`` of the width and height, as RGB."""
    rgb = image.convert("RGB")
    pixel = rgb.getpixel((int(x * (rgb.width - 1)), int(y * (rgb.height - 1))))
    assert isinstance(pixel, tuple)
    return pixel


def near(colour: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 16) -> bool:
    """Whether two colours differ by at most ``tolerance`` per channel (JPEG is lossy)."""
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))
