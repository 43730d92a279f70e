"""UploadedFileProperty: what a document keeps, what reading gives back, and refused input."""

from __future__ import annotations

import io
import logging
import sys
import types
import weakref
from typing import Any

import pytest
from ming.odm import ODMSession

from depot.exceptions import (
    ContentTypeNotAllowedError,
    FileTooLargeError,
    StoredFileNotFoundError,
    UnknownDepotError,
)
from depot.fields import ming as depot_ming
from depot.fields.ming import DepotExtension, UploadedFileProperty
from depot.fields.upload import UploadedFile
from depot.io.interfaces import FileStorage
from depot.io.utils import FileIntent
from depot.manager import DepotManager
from tests.ming.models import Attachment, BareAttachment, Copied, FailingFilter, Validated
from tests.reference import UPLOADED_FILE_KEYS

#: The keys of the subdocument filedepot 0.12 stored, which depot stores too.
FILEDEPOT_KEYS = set(UPLOADED_FILE_KEYS)


def raw(session: ODMSession, collection: str, doc: Any) -> dict[str, Any]:
    """The document as MongoDB holds it."""
    found: dict[str, Any] = session.db[collection].find_one({"_id": doc._id})
    return found


def test_stores_filedepots_subdocument(session: ODMSession, depot: FileStorage) -> None:
    doc = Attachment(name="a", file=FileIntent(b"hello", "hello.txt", "text/plain"))
    session.flush()
    stored = raw(session, "attachments", doc)["file"]
    assert set(stored) == FILEDEPOT_KEYS
    assert stored["depot_name"] == "default"
    assert stored["path"] == f"default/{stored['file_id']}"
    assert stored["files"] == [stored["path"]]
    assert (stored["filename"], stored["content_type"]) == ("hello.txt", "text/plain")
    assert stored["_public_url"] is None
    assert depot.get(stored["file_id"]).read() == b"hello"


def test_reads_back_an_uploaded_file(session: ODMSession, depot: FileStorage) -> None:
    doc = Attachment(name="a", file=io.BytesIO(b"from a stream"))
    session.flush()
    session.clear()
    loaded = Attachment.query.get(_id=doc._id)
    assert isinstance(loaded.file, UploadedFile)
    assert loaded.file.filename == "unnamed"
    DepotManager.make_middleware(None)
    assert loaded.file.url == f"/depot/{loaded.file.path}"
    with loaded.file.file as stored:
        assert stored.read() == b"from a stream"


def test_upload_storage_names_the_depot(session: ODMSession, depot: FileStorage) -> None:
    doc = Attachment(name="a", file=b"to default", other=b"to other")
    assert doc.file.depot_name == "default"
    assert doc.other.depot_name == "other"
    assert DepotManager.get("other").get(doc.other.file_id).read() == b"to other"  # type: ignore[union-attr]


def test_a_document_without_a_file_reads_none(session: ODMSession, depot: FileStorage) -> None:
    doc = Attachment(name="never given")
    cleared = Attachment(name="cleared", file=b"x")
    cleared.file = None
    session.flush()
    # A document written before the property existed lacks the key altogether.
    session.db["attachments"].insert_one({"name": "older"})
    session.clear()
    assert Attachment.query.get(_id=doc._id).file is None
    assert Attachment.query.get(_id=cleared._id).file is None
    assert raw(session, "attachments", cleared)["file"] is None
    assert Attachment.query.get(name="older").file is None
    assert isinstance(Attachment.file, UploadedFileProperty)


def test_values_are_read_only_copies(session: ODMSession, depot: FileStorage) -> None:
    doc = Attachment(name="a", file=b"x")
    value = doc.file
    with pytest.raises(TypeError, match="assign a new file to the field"):
        value["filename"] = "other.txt"
    value["files"].append("default/not-a-file")
    assert doc.file["files"] == [doc.file.path]


def test_a_stored_value_assigned_again_stores_nothing(
    session: ODMSession, depot: FileStorage
) -> None:
    first = Attachment(name="a", file=b"x")
    as_json = UploadedFile(b"y").encode()
    second = Attachment(name="b", file=UploadedFile.decode(as_json))
    third = Attachment(name="c", file=dict(first.file))
    assert len(depot.list()) == 2
    assert second.file.file.read() == b"y"
    assert third.file == first.file


def test_assigning_the_stored_file_makes_a_copy(session: ODMSession, depot: FileStorage) -> None:
    first = Attachment(name="a", file=FileIntent(b"shared?", "notes.txt", "text/plain"))
    with first.file.file as stored:
        second = Attachment(name="b", file=stored)
    assert second.file.file_id != first.file.file_id
    assert (second.file.filename, second.file.content_type) == ("notes.txt", "text/plain")
    assert second.file.file.read() == b"shared?"


def test_a_missing_file_does_not_stop_the_document_loading(
    session: ODMSession, depot: FileStorage
) -> None:
    doc = Attachment(name="a", file=b"soon gone")
    session.flush()
    depot.delete(doc.file.file_id)
    session.clear()
    loaded = Attachment.query.get(_id=doc._id)
    assert loaded.file.filename == "unnamed"
    with pytest.raises(StoredFileNotFoundError, match=loaded.file.path) as raised:
        loaded.file.file  # noqa: B018
    assert "assign a new file or None" in str(raised.value)
    # and it can be repaired
    loaded.file = b"again"
    session.flush()
    assert Attachment.query.get(_id=doc._id).file.file.read() == b"again"


def test_a_corrupt_value_names_the_property(session: ODMSession, depot: FileStorage) -> None:
    session.db["attachments"].insert_one({"name": "broken", "file": "not a file"})
    loaded = Attachment.query.get(name="broken")
    with pytest.raises(TypeError, match=r"Attachment\.file holds 'not a file'.*assign a file"):
        loaded.file  # noqa: B018
    loaded.file = None
    session.flush()
    assert raw(session, "attachments", loaded)["file"] is None


def test_filters_run_on_each_new_file(session: ODMSession, depot: FileStorage) -> None:
    doc = Copied(file=b"original")
    assert doc.file.files == [doc.file.path, doc.file.copy_path]
    assert depot.get(doc.file.copy_id).read() == b"original (copy)"
    session.flush()
    session.clear()
    loaded = Copied.query.get(_id=doc._id)
    assert loaded.file.copy_id == doc.file.copy_id
    loaded.file = loaded.file  # a stored value is not filtered again
    assert len(depot.list()) == 2


def test_a_failing_filter_leaves_nothing(session: ODMSession, depot: FileStorage) -> None:
    doc = FailingFilter()
    with pytest.raises(RuntimeError, match="the filter failed"):
        doc.file = b"content"
    assert depot.list() == []
    assert doc.file is None


def test_validators_refuse_before_anything_is_stored(
    session: ODMSession, depot: FileStorage
) -> None:
    doc = Validated(file=FileIntent(b"small", "notes.txt", "text/plain"))
    kept = doc.file
    with pytest.raises(FileTooLargeError, match="at most 100 bytes"):
        doc.file = FileIntent(b"x" * 101, "big.txt", "text/plain")
    with pytest.raises(ContentTypeNotAllowedError):
        doc.file = FileIntent(b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "pixel.png", "image/png")
    assert doc.file == kept
    assert depot.list() == [kept.file_id]


def test_an_unknown_depot_is_named(session: ODMSession, depot: FileStorage) -> None:
    DepotManager._clear()
    DepotManager.configure("default", {"depot.backend": "memory"})
    doc = Attachment(name="a")
    with pytest.raises(UnknownDepotError, match=r"no depot named 'other'.*configure\('other'"):
        doc.other = b"x"


def test_a_document_loaded_without_the_property_refuses_a_file(
    session: ODMSession, depot: FileStorage
) -> None:
    doc = Attachment(name="a", file=b"x")
    session.flush()
    session.clear()
    partial = Attachment.query.find({"_id": doc._id}, projection=["name"]).first()
    with pytest.raises(ValueError, match=r"Attachment\.file was not loaded.*among its fields"):
        partial.file = b"would be lost"
    assert depot.list() == [doc.file.file_id]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filters": depot_ming.FileFilter}, r"filters takes a list, not .*: write filters=\["),
        ({"filters": [object()]}, r"has no on_save\(\) method"),
        ({"validators": "10 MB"}, r"validators takes a list, not '10 MB': write validators="),
        ({"upload_type": dict}, "upload_type must be a subclass of UploadedFile"),
        ({"upload_storage": 3}, "upload_storage is the name of a depot"),
    ],
)
def test_declaration_mistakes_are_explained(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        UploadedFileProperty(**kwargs)


def test_a_session_without_the_extension_is_reported_once(
    session: ODMSession,
    depot: FileStorage,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(depot_ming, "_untracked_sessions", weakref.WeakSet())
    caplog.set_level(logging.WARNING, "depot.fields.ming")
    BareAttachment(file=b"a")
    BareAttachment(file=b"b")
    warnings = [r for r in caplog.records if "without DepotExtension" in r.getMessage()]
    assert len(warnings) == 1
    assert "extensions=[DepotExtension]" in warnings[0].getMessage()
    caplog.clear()
    Attachment(name="tracked", file=b"c")
    assert not caplog.records


def test_sprox_gets_a_file_input(monkeypatch: pytest.MonkeyPatch) -> None:
    # sprox is not installed here: stand-ins for its two selector tables.
    tables: dict[str, dict[Any, Any]] = {"widgets": {}, "validators": {}}
    for name, attr, table in [
        ("sprox.mg.widgetselector", "MingWidgetSelector", "widgets"),
        ("sprox.mg.validatorselector", "MingValidatorSelector", "validators"),
    ]:
        module = types.ModuleType(name)
        selector = type(attr, (), {f"default_{table}": tables[table]})
        setattr(module, attr, selector)
        monkeypatch.setitem(sys.modules, name, module)
    forms = types.ModuleType("tw2.forms")
    forms.FileField = type("FileField", (), {})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tw2.forms", forms)
    tables["widgets"][str] = "kept"

    depot_ming._register_with_sprox()

    schema = depot_ming._UploadedFileSchema
    assert tables["widgets"] == {str: "kept", schema: forms.FileField}
    from depot.validators import TW2FileIntentValidator

    assert tables["validators"] == {schema: TW2FileIntentValidator}


def test_the_extension_is_a_ming_session_extension() -> None:
    from ming.odm import SessionExtension

    assert issubclass(DepotExtension, SessionExtension)
