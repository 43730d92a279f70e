"""Hostile review of issue 12, finding 15 (review G): a TIFF tile far larger than its picture.

The pixel limit measures the picture (16 x 16 here); libtiff allocates a whole
tile to decode it, and a TIFF may declare tiles of any size: one deflate tile
of 16384 x 16384 (268 MB once inflated) fits in a 261 KB upload.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from depot.exceptions import ImageTooLargeError
from depot.fields._images import open_image

#: Peak memory above the interpreter's own that decoding a 256-pixel image may take.
BUDGET_MB = 64

_CHILD = """
import io, resource, sys
from depot.fields._images import open_image
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    with open_image(io.BytesIO(data), "x.tif") as image:
        image.decode((128, 128))
    outcome = "decoded"
except Exception as exc:
    outcome = type(exc).__name__
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(outcome, (after - before) // 1024)
"""


def tiled_tiff(width: int, height: int, tile: int) -> bytes:
    """A grayscale TIFF of ``width`` x ``height`` with one deflate tile of ``tile`` x ``tile``."""
    data = zlib.compress(bytes(tile * tile), 9)
    tags = [
        (256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 8), (262, 3, 1),
        (277, 3, 1), (322, 4, tile), (323, 4, tile), (324, 4, None), (325, 4, len(data)),
    ]  # fmt: skip
    return _tiff(tags, data)


def striped_tiff(width: int, height: int, rows: int, inflated: int) -> bytes:
    """A grayscale TIFF in one deflate strip of ``rows`` rows, ``inflated`` bytes once inflated."""
    data = zlib.compress(bytes(inflated), 9)
    tags = [
        (256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 8), (262, 3, 1),
        (273, 4, None), (277, 3, 1), (278, 4, rows), (279, 4, len(data)),
    ]  # fmt: skip
    return _tiff(tags, data)


def _tiff(tags: list[tuple[int, int, int | None]], data: bytes) -> bytes:
    data_offset = 8 + 2 + len(tags) * 12 + 4
    ifd = struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        value = data_offset if value is None else value
        fmt = "<HHIHH" if kind == 3 else "<HHII"
        ifd += struct.pack(fmt, tag, kind, 1, value, *([0] if kind == 3 else []))
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + data


def _decode_in_child(tmp_path: Path, data: bytes) -> tuple[str, int]:
    path = tmp_path / "x.tif"
    path.write_bytes(data)
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    outcome, peak = result.stdout.split()
    return outcome, int(peak)


def test_a_huge_tile_is_refused_before_decoding(tmp_path: Path) -> None:
    outcome, peak = _decode_in_child(tmp_path, tiled_tiff(16, 16, 16384))
    assert outcome == "ImageTooLargeError"
    assert peak < BUDGET_MB, f"{outcome} after {peak} MB for a 16 x 16 picture"


def test_a_strip_declaring_more_rows_than_the_page_costs_only_the_page(tmp_path: Path) -> None:
    # libtiff cuts a strip at the page's height: 16 x 16 is all it decodes,
    # however many rows the strip claims and however much its data inflates to.
    data = striped_tiff(16, 16, 16384 * 16384 // 16, 16384 * 16384)
    outcome, peak = _decode_in_child(tmp_path, data)
    assert outcome in ("decoded", "ImageTooLargeError", "NotAnImageError")
    assert peak < BUDGET_MB, f"{outcome} after {peak} MB for a 16 x 16 picture"


def test_a_tile_within_the_limit_is_decoded() -> None:
    with open_image(io.BytesIO(tiled_tiff(16, 16, 64)), "x.tif", max_pixels=64 * 64) as image:
        assert image.decode((128, 128)).size == (16, 16)


def test_a_huge_tile_on_a_later_page_is_refused() -> None:
    data = _with_second_page_tiled(4096)
    with Image.open(io.BytesIO(data)) as pages:  # the crafted file is what it says
        pages.seek(1)
        assert pages.tag_v2[322] == 4096
    with (
        pytest.raises(ImageTooLargeError),
        open_image(io.BytesIO(data), "x.tif", max_pixels=10_000),
    ):
        pass


def _with_second_page_tiled(tile: int) -> bytes:
    """A two-page TIFF: a plain 16 x 16 page, then a 16 x 16 page in one ``tile``-wide tile."""
    first = io.BytesIO()
    Image.new("L", (16, 16)).save(first, "TIFF")
    head = first.getvalue()
    second = tiled_tiff(16, 16, tile)
    # Append the second file's IFD and data after the first, offsets shifted.
    shift = len(head) - 8
    count = struct.unpack_from("<H", second, 8)[0]
    ifd = bytearray(second[8 : 8 + 2 + count * 12 + 4])
    for i in range(count):
        entry = 2 + i * 12
        tag = struct.unpack_from("<H", ifd, entry)[0]
        if tag == 324:  # TileOffsets
            (offset,) = struct.unpack_from("<I", ifd, entry + 8)
            struct.pack_into("<I", ifd, entry + 8, offset + shift)
    out = bytearray(head) + bytes(ifd) + second[8 + len(ifd) :]
    # Link the first page's IFD to the second.
    first_ifd = struct.unpack_from("<I", out, 4)[0]
    n = struct.unpack_from("<H", out, first_ifd)[0]
    struct.pack_into("<I", out, first_ifd + 2 + n * 12, len(head))
    return bytes(out)
