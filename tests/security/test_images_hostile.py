"""Hostile images, property-based (issue 12, the campaign).

Random bytes, real images cut short or with bytes flipped, and headers crafted
to lie (PNG, GIF and BMP sizes, ICO directories pointing at pictures of other
sizes): each is either accepted, decoded within the pixel limit, or refused
with a ValidationError subclass; never another exception, and never more
memory than the limit allows (the peak RSS of the process is watched).
"""

from __future__ import annotations

import io
import resource
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from depot.exceptions import ValidationError
from depot.fields._images import open_image
from depot.fields.specialized.image import UploadedImageWithThumb
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from tests.images.crafted import dib, ico, real_png
from tests.images.pictures import encode, halves, png_header

#: Pixels allowed per picture: 4 MB decoded at most (RGBA).
LIMIT = 1_000_000
#: How much the peak RSS of this process may grow over a whole campaign.
MEMORY_GROWTH = 128 * 1024 * 1024

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "ICO")


def _samples() -> list[bytes]:
    picture = halves((40, 30), "RGBA")
    samples = []
    for fmt in FORMATS:
        image = picture if fmt in ("PNG", "WEBP", "TIFF", "ICO") else picture.convert("RGB")
        samples.append(encode(image, fmt))
    output = io.BytesIO()
    picture.save(output, "GIF", save_all=True, append_images=[halves((40, 30))], duration=50)
    samples.append(output.getvalue())
    output = io.BytesIO()
    picture.save(output, "PNG", save_all=True, append_images=[halves((40, 30), "RGBA")])
    samples.append(output.getvalue())  # APNG
    return samples


SAMPLES = _samples()
#: One of SAMPLES (drawn by index: their bytes would make a huge repr).
SAMPLE = st.integers(0, len(SAMPLES) - 1).map(lambda i: SAMPLES[i])

DIMENSION = st.one_of(st.integers(0, 70_000), st.integers(0, 2**32 - 1))


def _gif(screen: tuple[int, int], frame: tuple[int, int, int, int]) -> bytes:
    header = b"GIF89a" + struct.pack("<HHBBB", *screen, 0, 0, 0)
    descriptor = b"," + struct.pack("<HHHHB", *frame, 0)
    return header + descriptor + b"\x02\x02\x44\x01\x00;"


def _bmp(width: int, height: int) -> bytes:
    info = dib(width, max(1, height // 2), 24)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


HOSTILE = st.one_of(
    st.binary(max_size=2000),
    # A real image cut short, or with a few bytes changed.
    st.builds(lambda data, cut: data[:cut], SAMPLE, st.integers(0, 3000)),
    st.builds(
        lambda data, changes: _changed(data, changes),
        SAMPLE,
        st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    ),
    # Headers that lie.
    st.builds(png_header, st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)),
    st.builds(
        lambda w, h, entries: ico(*[(dw, dh, png_header(w, h)) for dw, dh in entries]),
        st.integers(1, 2**31 - 1),
        st.integers(1, 2**31 - 1),
        st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), min_size=1, max_size=4),
    ),
    st.builds(
        lambda w, h: ico((16, 16, dib(w, h))), st.integers(1, 2**31 - 1), st.integers(1, 2**30 - 1)
    ),
    st.builds(
        lambda w, h: ico((16, 16, real_png(w, h))), st.integers(1, 1500), st.integers(1, 1500)
    ),
    st.builds(
        _gif,
        st.tuples(st.integers(0, 65535), st.integers(0, 65535)),
        st.tuples(*[st.integers(0, 65535)] * 4),
    ),
    st.builds(_bmp, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 2)),
)


def _changed(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    changed = bytearray(data)
    for position, value in changes:
        changed[position % len(changed)] = value
    return bytes(changed)


@pytest.fixture
def depot() -> FileStorage:
    return DepotManager.configure("default", {"depot.backend": "memory"})


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@settings(max_examples=max(50, settings.default.max_examples * 10))
@given(content=HOSTILE)
def test_an_image_is_accepted_within_the_limit_or_refused(content: bytes) -> None:
    start = _peak_rss()
    try:
        with open_image(content, "upload", None, formats=FORMATS, max_pixels=LIMIT) as image:
            decoded = image.decode((128, 128))
            assert decoded.width * decoded.height <= LIMIT
    except ValidationError as refusal:
        assert str(refusal)  # a message for the person who sent it
    assert _peak_rss() - start < MEMORY_GROWTH


@settings(max_examples=max(10, settings.default.max_examples // 3))
@given(content=HOSTILE)
def test_the_image_field_stores_or_refuses_leaving_nothing(
    depot: FileStorage, content: bytes
) -> None:
    class Limited(UploadedImageWithThumb):
        max_pixels = LIMIT

    before = set(depot.list())
    try:
        value = Limited(content)
    except ValidationError:
        assert set(depot.list()) == before
        return
    stored = set(depot.list()) - before
    assert stored == {value["file_id"], value["thumb_id"]}
    with Image.open(io.BytesIO(depot.get(value["thumb_id"]).read())) as thumb:
        assert thumb.width <= 128 and thumb.height <= 128


@pytest.mark.parametrize("data", SAMPLES, ids=lambda d: Image.open(io.BytesIO(d)).format)
def test_every_sample_is_accepted(data: bytes) -> None:
    with open_image(data, "x", None, formats=FORMATS, max_pixels=LIMIT) as image:
        width, height = image.decode((16, 16)).size
        assert (width, height) == (40, 30) or image.format == "ICO"  # its largest icon
        assert 0 < width <= 40 and 0 < height <= 30
