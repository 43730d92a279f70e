"""Issue 12, finding 15: containers (ICO, ICNS, multi-frame TIFF and MPO) are
checked by the real size of each picture inside, read from its own header,
before anything is decoded.

An ICO's directory declared 16 x 16 while the PNG inside was 9000 x 9000:
the pixel limit was checked against 16 x 16, and decoding took 336 MB.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from PIL import Image

from depot.exceptions import ImageTooLargeError
from depot.fields._images import open_image
from depot.fields.specialized.image import UploadedImageWithThumb
from depot.io.interfaces import FileStorage
from tests.images.crafted import dib, icns, ico, real_png
from tests.images.pictures import encode, halves

LIMIT = 4_000_000  # pixels


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    return real_png(9000, 9000)


def _decode(content: bytes, *args: Any, box: tuple[int, int], **options: Any) -> None:
    with open_image(content, *args, **options) as image:
        image.decode(box)


def _refused(content: bytes, formats: tuple[str, ...] | None = None) -> ImageTooLargeError:
    options: dict[str, Any] = {"max_pixels": LIMIT}
    if formats:
        options["formats"] = formats
    with pytest.raises(ImageTooLargeError) as raised:
        _decode(content, "x", None, **options, box=(128, 128))
    return raised.value


def test_an_ico_declaring_16_pixels_holding_a_huge_png_is_refused(huge_png: bytes) -> None:
    error = _refused(ico((16, 16, huge_png)))
    assert "9000 × 9000 pixels" in str(error)


def test_an_ico_holding_a_huge_bmp_is_refused() -> None:
    error = _refused(ico((16, 16, dib(9000, 9000))))
    assert "9000 × 9000 pixels" in str(error)


def test_every_picture_of_an_ico_is_checked(huge_png: bytes) -> None:
    small = encode(halves((32, 32), "RGBA"), "PNG")
    _refused(ico((32, 32, small), (16, 16, huge_png)))


def test_an_ico_whose_pictures_are_what_it_says_is_accepted() -> None:
    data = encode(halves((64, 64), "RGBA"), "ICO", sizes=[(64, 64), (32, 32), (16, 16)])
    with open_image(data, "a.ico", None, max_pixels=LIMIT) as image:
        assert image.decode((32, 32)).size == (64, 64)


def test_an_ico_picture_pointing_outside_the_file_is_refused_as_damaged() -> None:
    from depot.exceptions import NotAnImageError

    data = bytearray(ico((16, 16, encode(halves((16, 16)), "PNG"))))
    data[18:22] = (10**6).to_bytes(4, "little")  # the entry's offset
    with pytest.raises(NotAnImageError):
        _decode(bytes(data), "x", None, max_pixels=LIMIT, box=(16, 16))


def test_an_icns_declaring_512_pixels_holding_a_huge_png_is_refused(huge_png: bytes) -> None:
    error = _refused(icns(b"ic09", huge_png), formats=("ICNS",))
    assert "9000 × 9000 pixels" in str(error)


def test_a_tiff_whose_second_page_is_huge_is_refused() -> None:
    output = io.BytesIO()
    small = Image.new("L", (10, 10))
    # Pages of 1 x 9000 pixels take little memory to write; the limit is
    # lowered to match, so the second page is over it.
    tall = Image.new("L", (1, 9000))
    small.save(output, "TIFF", save_all=True, append_images=[tall])
    with pytest.raises(ImageTooLargeError, match="1 × 9000 pixels"):
        _decode(output.getvalue(), "x.tif", None, max_pixels=5000, box=(10, 10))


def test_an_mpo_whose_second_picture_is_huge_is_refused() -> None:
    output = io.BytesIO()
    Image.new("RGB", (10, 10)).save(
        output, "MPO", save_all=True, append_images=[Image.new("RGB", (1, 9000))]
    )
    with pytest.raises(ImageTooLargeError, match="1 × 9000 pixels"):
        _decode(output.getvalue(), "x.jpg", None, max_pixels=5000, box=(10, 10))


def test_a_multipage_tiff_within_the_limit_is_accepted() -> None:
    output = io.BytesIO()
    Image.new("L", (20, 10)).save(
        output, "TIFF", save_all=True, append_images=[Image.new("L", (5, 5))]
    )
    with open_image(output.getvalue(), "x.tif", None, max_pixels=500) as image:
        assert image.decode((10, 10)).size == (20, 10)


def test_the_image_field_refuses_the_ico_before_storing(
    depot: FileStorage, huge_png: bytes
) -> None:
    class Small(UploadedImageWithThumb):
        max_pixels = LIMIT

    with pytest.raises(ImageTooLargeError):
        Small(ico((16, 16, huge_png)))
    assert depot.list() == []


CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from depot.exceptions import ImageTooLargeError
    from depot.fields._images import open_image
    from tests.images.crafted import ico, real_png

    content = ico((16, 16, real_png(9000, 9000)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with open_image(content, "x.ico", None, max_pixels=4_000_000) as image:
            image.decode((128, 128))
        outcome = "decoded"
    except ImageTooLargeError:
        outcome = "refused"
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"outcome": outcome, "grew_kib": after - before}))
    """
)


def test_refusing_the_ico_takes_no_memory_for_its_pixels() -> None:
    # Pillow allocates pixels with C malloc, which tracemalloc does not see:
    # the peak RSS of a child process is measured instead.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=root, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "refused"
    # Decoding it takes 324 MB (9000 x 9000 x 4 bytes); refusing it, a few.
    assert report["grew_kib"] < 32 * 1024, report


def test_a_tiff_page_without_dimensions_is_refused_as_damaged() -> None:
    # Found by tests/security/test_images_hostile.py: Pillow's TIFF reader
    # raises TypeError ("Missing dimensions") for a page lacking its size tags.
    from depot.exceptions import NotAnImageError

    output = io.BytesIO()
    page = Image.new("L", (4, 4))
    page.save(output, "TIFF", save_all=True, append_images=[page])
    data = bytearray(output.getvalue())
    first = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, first)[0]
    second = struct.unpack_from("<I", data, first + 2 + 12 * count)[0]
    for entry in range(struct.unpack_from("<H", data, second)[0]):
        offset = second + 2 + 12 * entry
        if struct.unpack_from("<H", data, offset)[0] in (256, 257):  # ImageWidth, ImageLength
            struct.pack_into("<H", data, offset, 0x9999 - entry)
    with pytest.raises(NotAnImageError, match="damaged"):
        _decode(bytes(data), "x.tif", None, max_pixels=LIMIT, box=(4, 4))


@pytest.mark.parametrize(("width", "height"), [(1, 1024), (1100, 1100)])
def test_an_ico_of_any_real_size_is_stored_with_its_thumbnail(
    depot: FileStorage, width: int, height: int
) -> None:
    # Found by tests/security/test_images_hostile.py: Pillow's ICO writer made
    # none of its standard sizes for a 1 x 128 copy ("All sizes too large").
    value = UploadedImageWithThumb(ico((16, 16, real_png(width, height))))
    with Image.open(io.BytesIO(depot.get(value["thumb_id"]).read())) as thumb:
        assert max(thumb.size) == 128
    with Image.open(io.BytesIO(depot.get(value["file_id"]).read())) as stored:
        assert max(stored.size) <= 1100
