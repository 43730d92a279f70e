"""Pillow's part of the image fields: check an upload, decode it once, render copies.

:class:`~depot.fields.specialized.image.UploadedImageWithThumb` and the
thumbnail filters both go through here, so they refuse the same files with the
same messages and write thumbnails the same way:

* the content is opened from a seekable stream (one that cannot seek is
  spooled first), its format must be one of the accepted ones and the pixel
  count of each picture it holds, read from that picture's own header (an
  ICO's directory may claim 16 x 16 for a 9000 x 9000 PNG), must be within
  the limit: all before a single pixel is decoded and before anything is
  stored;
* it is decoded once (JPEG at a reduced scale when only smaller copies are
  needed), which also proves the file is complete;
* each copy is turned upright (EXIF orientation), converted to sRGB and to a
  mode its format can write, and saved without any metadata.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from tempfile import SpooledTemporaryFile
from typing import IO, Any

from depot._settings import missing_dependency_message
from depot.exceptions import ImageTooLargeError, NotAnImageError
from depot.io._chunks import Digest, iter_chunks, rewind
from depot.io._fileinfo import FileIntent, unwrap
from depot.io.utils import INMEMORY_FILESIZE

try:
    from PIL import (
        BmpImagePlugin,
        ExifTags,
        IcnsImagePlugin,
        IcoImagePlugin,
        Image,
        ImageOps,
        PngImagePlugin,
    )
except ImportError as exc:  # pragma: no cover - the test environment has Pillow
    # Named by the public module the application imported, not this private one.
    raise ImportError(
        missing_dependency_message("depot.fields.specialized.image", "Pillow")
    ) from exc

#: The formats accepted by default: what browsers show, plus BMP and TIFF, which
#: scanners and cameras produce. Pillow reads more, but EPS runs Ghostscript on
#: the upload and every rarely used decoder is attack surface for no benefit.
IMAGE_FORMATS: tuple[str, ...] = (
    "JPEG",
    "MPO",
    "PNG",
    "GIF",
    "WEBP",
    "AVIF",
    "BMP",
    "TIFF",
    "ICO",
)

#: How many pages of a TIFF, or pictures of an MPO, are measured before one is
#: accepted. Only the first is ever decoded; the rest are checked so that no
#: later use of the file meets a bomb, within a bounded time.
MAX_FRAMES_CHECKED = 1000

#: A JPEG is decoded at the smallest scale still this many times the largest
#: copy needed, as Pillow's own ``thumbnail()`` does.
DRAFT_GAP = 2.0

#: Passed to Pillow's resize: the image is first shrunk by a whole factor (fast,
#: and the decoded JPEG is already reduced), then resampled from at least this
#: many times the final size. From 3 on, Pillow's documentation says the result
#: matches a full resample.
REDUCING_GAP = 3.0

# The largest picture an ICO holds.
_ICO_MAX_SIDE = 256

# A resized Multi-Picture JPEG (Pillow's MPO: stereo cameras, some phones)
# keeps only its first picture, so it is written as a plain JPEG.
_SAVED_AS = {"MPO": "JPEG"}

# What Pillow raises on content it cannot decode: a damaged header, a
# truncated stream, a chunk with a bad length; its TIFF reader raises
# TypeError ("Missing dimensions") and KeyError for a required tag missing.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    struct.error,
    TypeError,
    KeyError,
)

_ORIENTATION = ExifTags.Base.Orientation
# EXIF orientations 5 to 8 turn the picture a quarter: width and height swap.
_QUARTER_TURNS = (5, 6, 7, 8)


@dataclass(frozen=True)
class Rendition:
    """An image Pillow wrote, ready to store."""

    data: bytes
    width: int
    height: int
    format: str

    @property
    def content_type(self) -> str:
        """The MIME type of :attr:`format`."""
        return Image.MIME.get(self.format, "application/octet-stream")

    @property
    def extension(self) -> str:
        """The file name extension filedepot used for it: the format in lower case."""
        return self.format.lower()


class CheckedImage:
    """An uploaded image whose header was read and checked; nothing decoded yet.

    Build one with :func:`open_image`.
    """

    def __init__(
        self, stream: IO[bytes], image: Image.Image, filename: str | None, content_type: str | None
    ) -> None:
        self._stream = stream
        self._image = image
        self._decoded: Image.Image | None = None
        self.filename = filename
        self.format: str = image.format or "PNG"
        # Browsers send application/octet-stream for what they cannot name:
        # no better than nothing, while Pillow knows what the file is.
        declared = content_type if content_type != "application/octet-stream" else None
        #: The declared type, else the one Pillow recognised.
        self.content_type = declared or Image.MIME.get(_SAVED_AS.get(self.format, self.format))
        self.icc_profile: bytes | None = image.info.get("icc_profile") or None
        width, height = image.size
        #: ``(width, height)`` as the image displays: EXIF orientation applied.
        self.size = (height, width) if _orientation(image) in _QUARTER_TURNS else (width, height)

    @property
    def save_format(self) -> str:
        """The format a resized copy of this image is written in."""
        fmt = _SAVED_AS.get(self.format, self.format)
        return fmt if _writable(fmt) else "PNG"

    def content(self) -> FileIntent:
        """The uploaded bytes, unchanged, with their name and type, for storing."""
        rewind(self._stream)
        return FileIntent(self._stream, self.filename, self.content_type)

    def resized_content(self, resized: Rendition) -> FileIntent:
        """``resized``, a copy in :attr:`save_format`, to store in place of the upload.

        It keeps the upload's name, and its type unless the format changed.
        """
        same_format = _SAVED_AS.get(self.format, self.format) == resized.format
        content_type = self.content_type if same_format else resized.content_type
        return FileIntent(resized.data, self.filename, content_type)

    def decode(self, largest: tuple[int, int]) -> Image.Image:
        """Decode the image, upright and in an 8-bit mode, for copies up to ``largest``.

        A JPEG is decoded at the smallest scale that still holds ``largest``
        :data:`DRAFT_GAP` times over, so a 48 megapixel photo takes 3 MB of
        memory, not 144 MB, to make a thumbnail. Decoding reads the whole file, so a
        truncated or damaged one is refused here.
        """
        if self._decoded is None:
            image = self._image
            # Square request: the copies are cut after the EXIF rotation, so
            # either side of the stored pixels may become the width.
            side = int(max(largest) * DRAFT_GAP)
            image.draft(None, (side, side))
            try:
                with _bombs_refused(self.size):
                    image.load()
            except NotAnImageError:
                raise
            except _DECODE_ERRORS as exc:
                raise NotAnImageError(
                    "This image is damaged or incomplete (perhaps it was cut off during the "
                    "upload). Upload it again, or save it anew from the program that made it."
                ) from exc
            # Unreadable EXIF: the pixels are fine, shown as they are stored.
            with suppress(*_DECODE_ERRORS), _bombs_refused(self.size):
                ImageOps.exif_transpose(image, in_place=True)
            self._decoded = _eight_bit(image)
        return self._decoded

    def close(self) -> None:
        self._image.close()
        if self._decoded is not None:
            self._decoded.close()


@contextmanager
def open_image(
    content: Any,
    filename: str | None = None,
    content_type: str | None = None,
    *,
    formats: Sequence[str] = IMAGE_FORMATS,
    max_pixels: int | None = None,
) -> Iterator[CheckedImage]:
    """Open ``content`` (anything ``create()`` accepts) as an image, or refuse it.

    Only the header is read: the format must be one of ``formats`` and the
    pixel count at most ``max_pixels`` and Pillow's ``Image.MAX_IMAGE_PIXELS``.
    A stream that cannot seek is first copied to a temporary file (in memory
    while small), so it can be read again to be stored.

    :raises depot.exceptions.NotAnImageError: not an image in one of ``formats``.
    :raises depot.exceptions.ImageTooLargeError: too many pixels.
    """
    source, own_name, own_type = unwrap(content)
    stream, spooled = _seekable(source)
    try:
        image = _open(stream, formats, max_pixels)
        try:
            with _bombs_refused(image.size):  # reading EXIF may warn
                checked = CheckedImage(
                    stream, image, filename or own_name, content_type or own_type
                )
        except BaseException:
            image.close()
            raise
        try:
            yield checked
        finally:
            checked.close()
    finally:
        if spooled:
            stream.close()


def render(
    image: Image.Image, box: tuple[int, int], fmt: str, icc_profile: bytes | None
) -> Rendition:
    """Write ``image`` in ``fmt``, shrunk to fit ``box`` (never enlarged), without metadata.

    :param image: as :meth:`CheckedImage.decode` returns it.
    :param icc_profile: the colour profile of the upload: the copy is converted
        from it to sRGB, since the profile itself is not written.
    """
    width, height = image.size
    scale = min(box[0] / width, box[1] / height, 1.0)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # resize() makes a new image: thumbnail() would work in place and need a
    # copy of the whole decoded upload first.
    copy = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    copy = _to_srgb(copy, icc_profile)
    copy = _writable_mode(copy, fmt)
    # EXIF (GPS included), XMP, ICC, comments and text chunks all travel in
    # info, and several of Pillow's writers copy them from there.
    copy.info = {}
    options: dict[str, Any] = {}
    if fmt == "ICO":
        # Pillow's ICO writer makes only its standard square sizes that fit
        # (none for 1 x 128: "All sizes too large"); an icon holds 256 x 256 at most.
        if max(size) > _ICO_MAX_SIDE:
            fmt = "PNG"
        else:
            options["sizes"] = [size]
    output = io.BytesIO()
    try:
        copy.save(output, fmt, **options)
    except OSError:
        # "cannot write mode LA as BMP" and the like: every writer takes RGB(A).
        output = io.BytesIO()
        rgb = copy.convert("RGBA" if copy.mode in ("LA", "RGBA") else "RGB")
        rgb.save(output, fmt, **options)
    return Rendition(output.getvalue(), size[0], size[1], fmt)


def check_format(fmt: object, where: str) -> str:
    """The Pillow format name ``fmt`` stands for, if Pillow can write it; else say what to use."""
    name = fmt.upper() if isinstance(fmt, str) else ""
    if not _writable(name):
        raise ValueError(
            f"{where}: Pillow cannot write images in the format {fmt!r}; "
            "use 'PNG', 'JPEG' or 'WEBP'."
        )
    return name


def check_size(size: object, where: str) -> tuple[int, int]:
    """``size`` as a ``(width, height)`` tuple of positive ints; else say how to write it."""
    try:
        width, height = size  # type: ignore[misc]
    except (TypeError, ValueError):
        width = height = None
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in (width, height)):
        raise ValueError(
            f"{where}: a size is (width, height) in pixels, two positive ints such as "
            f"(128, 128), not {size!r}."
        )
    return width, height  # type: ignore[return-value]


def _seekable(source: Any) -> tuple[IO[bytes], bool]:
    """A seekable stream over ``source`` and whether it is a copy to close."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(source), False
    try:
        seekable = bool(source.seekable())
    except (AttributeError, OSError, ValueError):
        seekable = False
    if seekable:
        rewind(source)
        return source, False
    spool = SpooledTemporaryFile(INMEMORY_FILESIZE)  # noqa: SIM115 (closed by open_image)
    try:
        for chunk in iter_chunks(source, Digest()):
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, True


def _open(stream: IO[bytes], formats: Sequence[str], max_pixels: int | None) -> Image.Image:
    allowed = _readable(formats)
    limit = _pixel_limit(max_pixels)
    try:
        with _bombs_refused(None):
            if "ICO" in allowed and limit is not None:
                # Pillow decodes an ICO as it opens it: its pictures are
                # measured before, from their own headers.
                _refuse_larger(_ico_picture_sizes(stream), limit)
            image = Image.open(stream, formats=allowed)
            try:
                if limit is not None:
                    _refuse_larger(_picture_sizes(image), limit)
            except BaseException:
                image.close()
                raise
    except NotAnImageError:
        raise  # a ValueError, like some of Pillow's below
    except Image.UnidentifiedImageError as exc:
        raise NotAnImageError(
            f"This file is not an image in a format accepted here ({_shown(allowed)}). "
            "Upload a picture in one of these formats."
        ) from exc
    except _DECODE_ERRORS as exc:
        raise NotAnImageError(
            "This image cannot be read: its header is damaged. Upload it again, or save it "
            "anew from the program that made it."
        ) from exc
    return image


def _refuse_larger(sizes: Iterable[tuple[int, int]], limit: int) -> None:
    for width, height in sizes:
        if width * height > limit:
            raise _too_large((width, height), limit)


def _ico_picture_sizes(stream: IO[bytes]) -> list[tuple[int, int]]:
    """The real size of each picture of an ICO (none if ``stream`` is no ICO), undecoded.

    The directory's sizes are only claims (an entry saying 16 x 16 held a
    9000 x 9000 PNG): each picture's own header, PNG or BMP, says what decoding
    it would allocate.
    """
    rewind(stream)
    is_ico = IcoImagePlugin._accept(stream.read(4))
    rewind(stream)
    if not is_ico:
        return []
    directory = IcoImagePlugin.IcoFile(stream)
    sizes = [entry.dim for entry in directory.entry]
    for offset in sorted({entry.offset for entry in directory.entry}):
        sizes.append(_embedded_size(stream, offset, bmp_height_halved=True))
    rewind(stream)
    return sizes


def _picture_sizes(image: Image.Image) -> Iterator[tuple[int, int]]:
    """The sizes of the pictures in ``image`` that decoding may allocate, undecoded.

    The first frame's is ``image.size`` (a GIF's canvas already grown to its
    first frame). ICNS icons are measured from the PNG or JPEG 2000 inside;
    the pages of a TIFF and the pictures of an MPO from their own headers, by
    seeking to each (which reads no pixels), up to :data:`MAX_FRAMES_CHECKED`.
    Animated GIF, WebP and PNG frames lie within the canvas and are never
    decoded beyond the first.
    """
    yield image.size
    if isinstance(image, IcnsImagePlugin.IcnsImageFile):
        for start, _length in image.icns.dct.values():
            yield _embedded_size(image.fp, start, bmp_height_halved=False)
    elif image.format in ("TIFF", "MPO"):
        yield from _tiff_blocks(image)
        for frame in range(1, MAX_FRAMES_CHECKED):
            try:
                image.seek(frame)
            except EOFError:
                break
            yield image.size
            yield from _tiff_blocks(image)
        image.seek(0)


#: TIFF tags of the blocks libtiff decodes a page in, whole.
_TILE_WIDTH, _TILE_LENGTH, _ROWS_PER_STRIP = 322, 323, 278


def _tiff_blocks(image: Image.Image) -> Iterator[tuple[int, int]]:
    """The size of the tile, or strip, a TIFF page is decoded in (nothing for another format).

    libtiff allocates a whole tile whatever the picture's size, and a page may
    declare one far larger than itself: a 16 x 16 picture in one deflate tile
    of 16384 x 16384 is a 261 KB upload that takes 268 MB to decode. A strip
    spans the page's width; libtiff cuts the last one at the page's height, so
    a strip taller than the page (2**32 - 1 rows is the usual "one strip")
    costs only the page.
    """
    tags = getattr(image, "tag_v2", None)
    if image.format != "TIFF" or tags is None:
        return
    width, height = image.size
    tile = (tags.get(_TILE_WIDTH), tags.get(_TILE_LENGTH))
    if tile != (None, None):
        yield _tag_int(tile[0], width), _tag_int(tile[1], height)
    rows = tags.get(_ROWS_PER_STRIP)
    if rows is not None:
        yield width, min(_tag_int(rows, height), height)


def _tag_int(value: object, missing: int) -> int:
    """A TIFF tag's int value; ``missing`` when it is absent.

    A tag may hold several values (a tuple): the largest is what decoding may
    allocate. One that is not a number raises TypeError or ValueError, which
    :func:`_open` refuses as a damaged header.
    """
    if value is None:
        return missing
    values = value if isinstance(value, tuple) else (value,)
    return max(int(v) for v in values) if values else missing


def _embedded_size(stream: Any, offset: int, *, bmp_height_halved: bool) -> tuple[int, int]:
    """The size in the header of a picture at ``offset`` of ``stream``: PNG, JPEG 2000 or BMP."""
    stream.seek(offset)
    head = stream.read(12)
    stream.seek(offset)
    if head.startswith(PngImagePlugin._MAGIC):
        return PngImagePlugin.PngImageFile(stream).size
    if head.startswith((b"\xff\x4f\xff\x51", b"\x0d\x0a\x87\x0a", b"\x00\x00\x00\x0cjP  ")):
        from PIL import Jpeg2KImagePlugin

        return Jpeg2KImagePlugin.Jpeg2KImageFile(stream).size
    if not bmp_height_halved:
        return (0, 0)  # an ICNS icon stored raw: its type fixes its size
    width, height = BmpImagePlugin.DibImageFile(stream).size
    return width, height // 2  # the picture, then its mask


@contextmanager
def _bombs_refused(size: tuple[int, int] | None) -> Iterator[None]:
    """Turn Pillow's decompression bomb warning and error into ImageTooLargeError,
    and silence Pillow's other warnings.

    Pillow only warns between ``MAX_IMAGE_PIXELS`` and twice that: the warning
    is made an error here so that such an image is refused, not printed about.
    Its other warnings ("Corrupt EXIF data", "Image was not the expected
    size") are about a damaged upload, which is then either read or refused:
    printing them would let any client fill the logs (and, where warnings are
    errors, turn an upload into a 500). Like any use of ``catch_warnings``,
    this changes the process's warning filters while it runs (another thread
    meanwhile sees the same filters); only Pillow's warnings are touched.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\.|$)")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        limit = _pixel_limit(None)
        raise _too_large(size, limit) from exc


def _too_large(size: tuple[int, int] | None, limit: int | None) -> ImageTooLargeError:
    allowed = f"; at most {_megapixels(limit)} are accepted" if limit else ""
    if size is None:
        return ImageTooLargeError(
            f"This image has too many pixels{allowed}. Upload a smaller image."
        )
    width, height = size
    return ImageTooLargeError(
        f"This image is too large: {width} × {height} pixels "
        f"({_megapixels(width * height)}){allowed}. Upload a smaller image."
    )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.3g} megapixels"


def _pixel_limit(max_pixels: int | None) -> int | None:
    # Read at each upload, so that a change to Pillow's own limit is honoured.
    limits = [n for n in (max_pixels, Image.MAX_IMAGE_PIXELS) if n is not None]
    return min(limits) if limits else None


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_ORIENTATION, 1)
    except _DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) else 1


def _readable(formats: Sequence[str]) -> tuple[str, ...]:
    # Image.open raises KeyError on a format it has no plugin for (AVIF
    # without libavif): only offer the ones this Pillow reads.
    Image.init()
    return tuple(f.upper() for f in formats if f.upper() in Image.OPEN)


def _writable(fmt: str) -> bool:
    Image.init()
    return fmt in Image.SAVE


def _shown(formats: Sequence[str]) -> str:
    # MPO is how Pillow names a JPEG with several pictures; people call it JPEG.
    names = [f for f in formats if f not in _SAVED_AS]
    return ", ".join(names) if names else "none"


def _eight_bit(image: Image.Image) -> Image.Image:
    """``image`` in L, LA, RGB, RGBA or CMYK: the modes resizing and every writer handle."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return image
    if mode in ("P", "PA"):
        # A palette is resampled by nearest neighbour only: expand it first.
        has_alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode.startswith(("I", "F")):
        return _gray_to_eight_bit(image)
    if mode in ("RGBa", "La"):
        return image.convert(mode.upper())
    if mode == "1":
        return image.convert("L")
    return image.convert("RGB")


def _gray_to_eight_bit(image: Image.Image) -> Image.Image:
    # Pillow's conversion to L clips at 255, turning a 16-bit scan white:
    # scale the values into 0-255 first.
    if image.mode != "F":
        image = image.convert("I")
    extrema = image.getextrema()
    assert isinstance(extrema[0], (int, float))  # one band: (min, max)
    low, high = float(extrema[0]), float(extrema[1])
    if image.mode == "F" and low >= 0 and high <= 1:
        low, high = 0.0, 1.0
    elif low >= 0 and high <= 255:
        return image.convert("L")
    elif low >= 0 and high <= 65535:
        low, high = 0.0, 65535.0
    span = (high - low) or 1
    return image.point(lambda v: (v - low) * 255 / span).convert("L")


def _to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Convert ``image`` from ``icc_profile`` to sRGB; CMYK becomes RGB in any case."""
    if icc_profile and image.mode in ("RGB", "RGBA", "CMYK"):
        try:
            from PIL import ImageCms

            converted = ImageCms.profileToProfile(
                image,
                ImageCms.ImageCmsProfile(io.BytesIO(icc_profile)),
                ImageCms.createProfile("sRGB"),
                outputMode="RGBA" if image.mode == "RGBA" else "RGB",
            )
        except (ImportError, OSError, ValueError, TypeError):
            # No littlecms in this Pillow, or a profile it cannot read: the
            # pixels are kept as they are, which is what a browser without
            # colour management shows anyway.
            pass
        else:
            if converted is not None:
                image = converted
    if image.mode == "CMYK":
        image = image.convert("RGB")
    return image


def _writable_mode(image: Image.Image, fmt: str) -> Image.Image:
    """``image`` ready for ``fmt``: a JPEG has no alpha, so transparency goes on white."""
    if fmt == "JPEG" and image.mode in ("RGBA", "LA"):
        # What was transparent shows as white, as it would on a page.
        base = "RGB" if image.mode == "RGBA" else "L"
        background = Image.new(base, image.size, "white")
        background.paste(image.convert(base), mask=image.getchannel("A"))
        return background
    return image
