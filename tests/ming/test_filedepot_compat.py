"""Documents filedepot 0.12 wrote with Ming load, serve and change under depot.

The fixture data (``tests/fixtures/filedepot_0_12/ming.json`` and the local
depot ``ming_local/``) was written by filedepot's own ``UploadedFileProperty``
and ``DepotExtension``; ``generate_ming.py`` there writes it again.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
from bson import json_util
from ming import schema as S
from ming.odm import FieldProperty, MappedClass, Mapper, ODMSession
from webtest import TestApp

from depot.exceptions import StoredFileNotFoundError
from depot.fields.ming import UploadedFileProperty
from depot.fields.upload import UploadedFile
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from tests.ming import models

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "filedepot_0_12"
DUMP = json_util.loads((FIXTURES / "ming.json").read_text())
GONE = "file deleted behind its back"


class LegacyAttachment(MappedClass):
    class __mongometa__:
        session = models.session
        name = "legacy_attachments"

    _id = FieldProperty(S.ObjectId)
    label = FieldProperty(str)
    file = UploadedFileProperty()


Mapper.compile_all()


def wrapped_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the application"]


def copy_fixture(tmp_path: Path, session: ODMSession, collections: dict[str, str]) -> FileStorage:
    """Put filedepot's documents and its depot ``media`` in place for the test."""
    shutil.copytree(FIXTURES / "ming_local", tmp_path / "media")
    media = DepotManager.configure(
        "media", {"depot.backend": "local", "depot.storage_path": str(tmp_path / "media")}
    )
    for theirs, ours in collections.items():
        session.db[ours].insert_many(DUMP["collections"][theirs])
    return media


@pytest.fixture
def media(tmp_path: Path, bound: ODMSession) -> FileStorage:
    return copy_fixture(tmp_path, bound, {"attachments": "legacy_attachments"})


@pytest.fixture
def app(media: FileStorage) -> TestApp:
    return TestApp(DepotManager.make_middleware(wrapped_app))


def written(label: str) -> dict[str, Any]:
    """The document filedepot wrote with this label."""
    return next(d for d in DUMP["collections"]["attachments"] if d["label"] == label)


WITH_FILES = [d["label"] for d in DUMP["collections"]["attachments"] if d.get("file")]


@pytest.mark.parametrize("label", [label for label in WITH_FILES if label != GONE])
def test_loads_and_serves_what_filedepot_wrote(app: TestApp, label: str) -> None:
    doc = LegacyAttachment.query.get(label=label)
    theirs = written(label)["file"]
    assert isinstance(doc.file, UploadedFile)
    assert dict(doc.file) == theirs
    expected = DUMP["files"][theirs["path"]]
    with doc.file.file as stored:
        assert hashlib.sha256(stored.read()).hexdigest() == expected["sha256"]
        assert stored.filename == expected["filename"]
    response = app.get(doc.file.url)
    assert doc.file.url == f"/depot/{theirs['path']}"
    assert hashlib.sha256(response.body).hexdigest() == expected["sha256"]
    assert response.content_type == expected["content_type"]


@pytest.mark.parametrize("label", ["no file", "cleared"])
def test_documents_without_a_file_read_none(media: FileStorage, label: str) -> None:
    assert LegacyAttachment.query.get(label=label).file is None


def test_a_document_whose_file_filedepot_lost_loads(app: TestApp, bound: ODMSession) -> None:
    doc = LegacyAttachment.query.get(label=GONE)
    assert doc.file.filename == "unnamed"
    with pytest.raises(StoredFileNotFoundError, match=doc.file.path):
        doc.file.file  # noqa: B018
    app.get(doc.file.url, status=404)
    doc.file = None
    bound.flush()
    assert bound.db["legacy_attachments"].find_one({"label": GONE})["file"] is None


def test_replacing_and_deleting_delete_filedepots_files(
    media: FileStorage, bound: ODMSession
) -> None:
    before = set(media.list())
    replaced = LegacyAttachment.query.get(label="named text")
    deleted = LegacyAttachment.query.get(label="bytes, no name")
    gone = {replaced.file.file_id, deleted.file.file_id}
    replaced.file = b"depot's now"
    deleted.delete()
    bound.flush()
    assert set(media.list()) == (before - gone) | {replaced.file.file_id}
    bound.clear()
    assert LegacyAttachment.query.get(label="named text").file.file.read() == b"depot's now"


def test_depot_writes_the_subdocument_filedepot_wrote(
    media: FileStorage, bound: ODMSession
) -> None:
    DepotManager.set_default("media")
    ours = LegacyAttachment(label="ours", file=b"x")
    bound.flush()
    raw = bound.db["legacy_attachments"].find_one({"_id": ours._id})["file"]
    assert list(raw) == list(written("named text")["file"])
