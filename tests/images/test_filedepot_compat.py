"""Image values written by filedepot 0.12 load and serve; filedepot reads depot's.

``tests/fixtures/filedepot_0_12/images.json`` and ``images_local/`` were written
by filedepot 0.12's UploadedImageWithThumb and WithThumbnailFilter (see
``generate_images.py`` there).
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from depot.fields.filters.thumbnails import WithThumbnailFilter
from depot.fields.specialized.image import UploadedImageWithThumb
from depot.fields.upload import UploadedFile
from depot.io.interfaces import FileStorage
from depot.io.utils import FileIntent
from depot.manager import DepotManager
from tests.images.pictures import encode, halves, opened
from tests.reference import REPO, run_filedepot

FIXTURES = REPO / "tests" / "fixtures" / "filedepot_0_12"
RECORDED = json.loads((FIXTURES / "images.json").read_text())
VALUES = {v["label"]: v for v in RECORDED["values"]}


def value_type(kind: str) -> type[UploadedFile]:
    return UploadedImageWithThumb if kind == "image" else UploadedFile


@pytest.fixture
def media(tmp_path: Path) -> FileStorage:
    """filedepot's depot 'media', copied: tests never write into the fixture."""
    root = tmp_path / "media"
    shutil.copytree(FIXTURES / "images_local", root)
    return DepotManager.configure(RECORDED["depot"], {"depot.storage_path": str(root)})


def size_of(stored: Any) -> list[Any]:
    image = opened(stored)
    return [image.format, *image.size]


@pytest.mark.parametrize("label", sorted(VALUES))
def test_filedepots_values_load_and_serve(media: FileStorage, middleware: Any, label: str) -> None:
    recorded = VALUES[label]
    value = value_type(recorded["kind"]).decode(recorded["json"])
    assert value.encode() == recorded["json"]
    for key, size in recorded["stored"].items():
        assert size_of(DepotManager.get_file(value[key])) == size
    assert size_of(value.file) == recorded["stored"]["path"]
    assert value.url == f"/depot/media/{value.file_id}"
    if recorded["kind"] == "image":
        assert size_of(value.thumb_file) == recorded["stored"]["thumb_path"]
        assert value.thumb_url == f"/depot/media/{value.thumb_id}"
        assert (value.width, value.height) == (None, None)  # filedepot did not record them
    else:
        assert size_of(value.thumb_64x64_file) == recorded["stored"]["thumb_64x64_path"]
        assert value.thumb_64x64_url == f"/depot/media/{value.thumb_64x64_id}"


@pytest.mark.parametrize("label", sorted(VALUES))
def test_depot_stores_what_filedepot_stored(
    media: FileStorage, middleware: Any, label: str
) -> None:
    """The same picture gives the same keys, in the same order, and images of the same sizes."""
    recorded = VALUES[label]
    theirs = json.loads(recorded["json"])
    name = DepotManager.get_file(theirs["path"]).filename
    content = FileIntent(base64.b64decode(recorded["given_base64"]), name, None)
    if recorded["kind"] == "image":
        ours = UploadedImageWithThumb(content, "media")
        assert list(ours) == [*theirs, "width", "height"]
    else:
        ours = UploadedFile(content, "media")
        ours._apply_filters([WithThumbnailFilter((64, 64), "PNG")])
        assert list(ours) == list(theirs)
    for key, size in recorded["stored"].items():
        assert size_of(DepotManager.get_file(ours[key])) == size
    for key in ("filename", "content_type", "depot_name"):
        assert ours[key] == theirs[key]


READ_BY_FILEDEPOT = """
import json, sys
import depot
from depot.manager import DepotManager
from depot.fields.upload import UploadedFile
try:
    from depot.fields.specialized.image import UploadedImageWithThumb as ImageValue
except ImportError:  # no Pillow here: its properties are these two lines
    ImageValue = UploadedFile
DepotManager.configure('default', {'depot.storage_path': sys.argv[1]})
DepotManager.make_middleware(lambda environ, start_response: [])
value = ImageValue.decode(sys.stdin.read())
if ImageValue is UploadedFile:
    thumb, thumb_url = value.depot.get(value.thumb_id), (
        value['_thumb_public_url'] or DepotManager.get_middleware().url_for(value['thumb_path']))
else:
    thumb, thumb_url = value.thumb_file, value.thumb_url
print(json.dumps({"module": depot.__file__, "class": ImageValue.__name__,
                  "data": value.file.read().hex(), "thumb": thumb.read().hex(),
                  "thumb_url": thumb_url, "filename": value.filename}))
"""


def test_filedepot_reads_depots_image_values(filedepot_python: str, tmp_path: Path) -> None:
    DepotManager.configure("default", {"depot.storage_path": str(tmp_path / "files")})
    picture = encode(halves((300, 200)), "PNG")
    value = UploadedImageWithThumb(FileIntent(picture, "picture.png", None))
    report = run_filedepot(
        filedepot_python,
        READ_BY_FILEDEPOT,
        str(tmp_path / "files"),
        cwd=tmp_path,
        stdin=value.encode(),
    )
    assert bytes.fromhex(report["data"]) == picture
    with value.thumb_file as thumb:
        assert bytes.fromhex(report["thumb"]) == thumb.read()
    assert report["thumb_url"] == f"/depot/default/{value.thumb_id}"
    assert report["filename"] == "picture.png"
