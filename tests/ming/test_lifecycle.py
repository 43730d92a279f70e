"""DepotExtension: which files go, and when, as Ming's unit of work flushes and clears."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from bson import ObjectId
from ming import create_datastore
from ming.odm import ODMSession, SessionExtension
from ming.odm.middleware import MingMiddleware
from pymongo.errors import DuplicateKeyError
from webtest import TestApp

from depot.exceptions import StoredFileNotFoundError
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from tests.ming import models
from tests.ming.models import Attachment, Copied, ThreadAttachment


def stored(depot: FileStorage) -> set[str]:
    return set(depot.list())


@pytest.fixture
def saved(session: ODMSession, depot: FileStorage) -> Any:
    """A document with a file, written and loaded again in a clear session."""
    doc = Attachment(name="saved", file=b"old")
    session.flush()
    session.clear()
    return Attachment.query.get(_id=doc._id)


# --- flush ------------------------------------------------------------------------


def test_a_flushed_file_stays(session: ODMSession, depot: FileStorage) -> None:
    doc = Attachment(name="a", file=b"kept")
    session.flush()
    session.clear()
    assert stored(depot) == {doc.file.file_id}


def test_a_replaced_file_goes_after_the_flush(
    session: ODMSession, depot: FileStorage, saved: Any
) -> None:
    old = saved.file.file_id
    saved.file = b"new"
    assert stored(depot) == {old, saved.file.file_id}, "nothing goes before the flush"
    session.flush()
    assert stored(depot) == {saved.file.file_id}
    session.clear()
    assert Attachment.query.get(_id=saved._id).file.file.read() == b"new"


def test_a_file_set_to_none_goes_after_the_flush(
    session: ODMSession, depot: FileStorage, saved: Any
) -> None:
    saved.file = None
    assert len(stored(depot)) == 1
    session.flush()
    assert stored(depot) == set()


def test_a_deleted_documents_files_go_after_the_flush(
    session: ODMSession, depot: FileStorage
) -> None:
    doc = Copied(file=b"with a copy")
    session.flush()
    doc.delete()
    assert len(stored(depot)) == 2
    session.flush()
    assert stored(depot) == set()


def test_files_replaced_before_any_flush_go_with_it(
    session: ODMSession, depot: FileStorage, saved: Any
) -> None:
    saved.file = b"second"
    saved.file = b"third"
    new = Attachment(name="new", file=b"first draft")
    new.file = b"final"
    assert len(stored(depot)) == 5
    session.flush()
    assert stored(depot) == {saved.file.file_id, new.file.file_id}


def test_a_file_assigned_back_stays(session: ODMSession, depot: FileStorage, saved: Any) -> None:
    original = saved.file
    saved.file = b"for a moment"
    saved.file = original
    session.flush()
    assert stored(depot) == {original.file_id}


def test_flushing_one_document_touches_only_its_files(
    session: ODMSession, depot: FileStorage, saved: Any
) -> None:
    other = Attachment(name="other", file=b"other old")
    session.flush()
    old, other_old = saved.file.file_id, other.file.file_id
    saved.file = b"new"
    other.file = b"other new"
    session.flush(saved)
    assert old not in stored(depot)
    assert other_old in stored(depot)
    session.flush()
    assert stored(depot) == {saved.file.file_id, other.file.file_id}


def test_a_file_another_document_took_stays(
    session: ODMSession, depot: FileStorage, saved: Any
) -> None:
    taker = Attachment(name="taker", file=saved.file)
    saved.delete()
    session.flush()
    assert stored(depot) == {taker.file.file_id}
    session.clear()
    assert Attachment.query.get(name="taker").file.file.read() == b"old"


def test_a_value_without_its_files_list_still_names_its_file(
    session: ODMSession, depot: FileStorage
) -> None:
    file_id = depot.create(b"old", "old.txt")
    value = {"depot_name": "default", "file_id": file_id, "path": f"default/{file_id}"}
    session.db["attachments"].insert_one({"name": "listless", "file": value})
    doc = Attachment.query.get(name="listless")
    doc.file = b"new"
    session.flush()
    assert stored(depot) == {doc.file.file_id}


def test_a_document_whose_file_is_already_gone_can_be_deleted(
    session: ODMSession, depot: FileStorage, saved: Any
) -> None:
    depot.delete(saved.file.file_id)
    saved.delete()
    session.flush()
    assert session.db["attachments"].count_documents({}) == 0


def test_a_deleted_attribute_goes_once_the_document_is_written(
    session: ODMSession, depot: FileStorage, saved: Any
) -> None:
    del saved.file
    # Ming does not mark a document changed by del; the next change writes it.
    saved.name = "changed"
    session.flush()
    assert stored(depot) == set()
    assert "file" not in session.db["attachments"].find_one({"_id": saved._id})


# --- clear ------------------------------------------------------------------------


def test_files_of_a_document_never_flushed_go_when_the_session_is_cleared(
    session: ODMSession, depot: FileStorage
) -> None:
    Copied(file=b"never saved")
    assert len(stored(depot)) == 2
    session.clear()
    assert stored(depot) == set()


def test_close_clears(session: ODMSession, depot: FileStorage) -> None:
    Attachment(name="a", file=b"never saved")
    session.close()
    assert stored(depot) == set()


def test_an_unflushed_replacement_goes_and_the_saved_file_stays(
    session: ODMSession, depot: FileStorage, saved: Any
) -> None:
    old = saved.file.file_id
    saved.file = b"never saved"
    saved.file = None
    session.clear()
    assert stored(depot) == {old}
    assert Attachment.query.get(_id=saved._id).file.file_id == old


def test_an_unflushed_delete_keeps_the_files(
    session: ODMSession, depot: FileStorage, saved: Any
) -> None:
    saved.delete()
    session.clear()
    assert stored(depot) == {saved.file.file_id}


def test_a_document_cleared_unflushed_cannot_be_saved_with_its_lost_file(
    session: ODMSession, depot: FileStorage
) -> None:
    doc = Attachment(name="a", file=b"deleted by clear")
    session.clear()
    session.save(doc)
    with pytest.raises(StoredFileNotFoundError, match="assign the file again") as raised:
        session.flush()
    assert doc.file.path in str(raised.value)
    session.clear()
    doc.file = b"given again"
    session.save(doc)
    session.flush()
    assert stored(depot) == {doc.file.file_id}


# --- failed flushes ---------------------------------------------------------------


def test_a_failed_flush_deletes_nothing_still_referenced(
    session: ODMSession, depot: FileStorage, saved: Any
) -> None:
    old = saved.file.file_id
    saved.file = b"new"
    new = saved.file.file_id
    duplicate = Attachment(_id=saved._id, name="duplicate", file=b"refused")
    refused = duplicate.file.file_id
    with pytest.raises(DuplicateKeyError):
        session.flush()
    # saved was written before the duplicate failed: its old file is unreferenced
    # now, but nothing is deleted by a flush that failed.
    assert stored(depot) == {old, new, refused}
    session.clear()
    assert stored(depot) == {new}
    assert session.db["attachments"].find_one({"_id": saved._id})["file"]["file_id"] == new


def test_a_flush_retried_after_a_failure_deletes_what_the_first_left(
    session: ODMSession, depot: FileStorage, saved: Any
) -> None:
    old = saved.file.file_id
    saved.file = b"new"
    duplicate = Attachment(_id=saved._id, name="duplicate", file=b"fixed later")
    with pytest.raises(DuplicateKeyError):
        session.flush()
    assert old in stored(depot)
    duplicate._id = ObjectId()
    session.flush()
    assert stored(depot) == {saved.file.file_id, duplicate.file.file_id}


class FailsAroundWrites(SessionExtension):
    """Fails the flush of documents named ``fail before`` or ``fail after`` their write.

    Listed before DepotExtension, it keeps depot's own hook from running, as a
    connection lost mid-write would.
    """

    def before_update(self, obj: Any, st: Any, **kwargs: Any) -> None:
        if obj.name == "fail before":
            raise ConnectionError("lost before the write")

    def after_update(self, obj: Any, st: Any, **kwargs: Any) -> None:
        if obj.name == "fail after":
            raise ConnectionError("lost after the write")


@pytest.fixture
def failing_session(session: ODMSession) -> Iterator[ODMSession]:
    extensions = session.extensions
    session.extensions = [FailsAroundWrites(session), *extensions]
    try:
        yield session
    finally:
        session.extensions = extensions


@pytest.mark.parametrize("written", [False, True], ids=["before the write", "after the write"])
def test_a_write_that_may_have_happened_is_checked_before_clearing(
    failing_session: ODMSession, depot: FileStorage, saved: Any, written: bool
) -> None:
    old = saved.file.file_id
    saved.name = "fail after" if written else "fail before"
    saved.file = b"new"
    new = saved.file.file_id
    with pytest.raises(ConnectionError):
        failing_session.flush()
    failing_session.clear()
    in_database = failing_session.db["attachments"].find_one({"_id": saved._id})
    assert in_database["file"]["file_id"] == (new if written else old)
    assert stored(depot) == {new if written else old}


def test_files_are_kept_when_the_database_cannot_say(
    failing_session: ODMSession,
    depot: FileStorage,
    saved: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = saved.file.file_id
    saved.name = "fail after"
    saved.file = b"new"
    with pytest.raises(ConnectionError):
        failing_session.flush()
    bind = failing_session.impl.bind
    # Nothing listens on port 9: the database is gone when the session is cleared.
    failing_session.impl.bind = create_datastore(
        "mongodb://127.0.0.1:9/gone?serverSelectionTimeoutMS=200&connectTimeoutMS=200"
    )
    try:
        failing_session.clear()
    finally:
        failing_session.impl.bind.conn.close()
        failing_session.impl.bind = bind
    assert stored(depot) == {old, saved.file.file_id}
    assert any("its files are kept" in r.getMessage() for r in caplog.records)


# --- deletions that fail ----------------------------------------------------------


def test_a_deletion_failing_after_the_flush_is_logged(
    session: ODMSession,
    depot: FileStorage,
    saved: Any,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.backends.s3 import MotoServer

    # No retries against a stopped server: the failure is the subject here.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with MotoServer(tmp_path) as server:
        DepotManager.configure(
            "s3",
            {
                "depot.backend": "s3",
                "depot.bucket": "ming-outage",
                "depot.endpoint_url": server.url,
                "depot.access_key_id": "k",
                "depot.secret_access_key": "s",
                "depot.region_name": "us-east-1",
            },
        )
        DepotManager.set_default("s3")
        doc = Attachment(name="on s3", file=b"stored on s3")
        session.flush()
        path = doc.file.path
        doc.file = None
        server.stop()
        session.flush()  # does not raise: the document is written
        assert session.db["attachments"].find_one({"_id": doc._id})["file"] is None
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert [r.getMessage() for r in errors] == [
            f"Could not delete {path} (no document refers to it after the flush); "
            "the file stays in its depot"
        ]
        server.start()


def test_a_file_in_a_depot_no_longer_configured_is_logged(
    session: ODMSession, depot: FileStorage, saved: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = saved.file.path
    del DepotManager._depots["default"]
    saved.delete()
    session.flush()
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"Could not delete {path} (no document refers to it after the flush): "
        "depot 'default' is not configured; the file stays in it"
    ]


# --- what the unit of work does not see -------------------------------------------


def test_remove_queries_bypass_the_unit_of_work(
    session: ODMSession, depot: FileStorage, saved: Any
) -> None:
    Attachment.query.remove({"_id": saved._id})
    session.flush()
    assert stored(depot) == {saved.file.file_id}, "documented: the file stays"


# --- TurboGears' setup: thread-local sessions, MingMiddleware --------------------


def test_a_failed_request_leaves_no_file_and_a_good_one_keeps_its_file(
    session: ODMSession, depot: FileStorage
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        ThreadAttachment(file=environ["PATH_INFO"].encode())
        if environ["PATH_INFO"] == "/fail":
            raise RuntimeError("the view failed")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    web = TestApp(MingMiddleware(app))
    with pytest.raises(RuntimeError, match="the view failed"):
        web.get("/fail")
    assert stored(depot) == set()
    web.get("/ok")
    (kept,) = models.thread_session.db["thread_attachments"].find()
    assert stored(depot) == {kept["file"]["file_id"]}
