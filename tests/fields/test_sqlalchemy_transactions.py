"""Files follow the transaction of their row, on every database and on the memory and local depots.

Rolled back: the files stored for it are deleted. Committed: the files its rows
stopped referring to are deleted, and nothing before the commit succeeded.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from depot.exceptions import BackendUnavailableError
from depot.fields._tracking import paths_of
from depot.io.utils import FileIntent
from tests.fields.files import all_exist, drop_and_collect, exists, none_exist, stored_count
from tests.fields.models import Document, Folder, Item, Media
from tests.fields.rows import add_document, attachment_of, commit_video

pytestmark = pytest.mark.usefixtures("depot")

Maker = orm.sessionmaker[orm.Session]


# -- one transaction ---------------------------------------------------------------------------


def test_commit_keeps_the_new_file(Session: Maker) -> None:  # noqa: N803
    value = add_document(Session)
    assert all_exist(value)
    assert attachment_of(Session).file.read() == b"first"


@pytest.mark.parametrize("flush", [False, True])
def test_rollback_deletes_the_new_file(Session: Maker, flush: bool) -> None:  # noqa: N803
    with Session() as s:
        doc = Document(name="doc", attachment=b"data")
        s.add(doc)
        if flush:
            s.flush()
        paths = paths_of(doc.attachment)
        s.rollback()
    # The object, new again, could be added back: its file waits for it.
    assert all(exists(p) for p in paths)
    del doc
    drop_and_collect(Session)
    assert not any(exists(p) for p in paths)
    assert stored_count() == 0


@pytest.mark.parametrize("flush", [False, True])
def test_replace_then_commit_deletes_the_old_file(Session: Maker, flush: bool) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        doc.attachment = b"second"
        new = doc.attachment
        if flush:
            s.flush()
        assert all_exist(old), "deleted before the commit"
        s.commit()
    assert none_exist(old)
    assert all_exist(new)
    assert attachment_of(Session).file.read() == b"second"


def test_replace_then_rollback_keeps_the_old_file(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        doc.attachment = b"second"
        new = doc.attachment
        s.flush()
        s.rollback()
        assert doc.attachment.file.read() == b"first"
    assert all_exist(old)
    assert none_exist(new)


def test_set_to_none_then_commit_deletes_the_file(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:
        s.scalars(sa.select(Document)).one().attachment = None
        s.commit()
    assert none_exist(old)
    assert attachment_of(Session) is None


def test_set_to_none_then_rollback_keeps_the_file(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:
        s.scalars(sa.select(Document)).one().attachment = None
        s.flush()
        s.rollback()
    assert all_exist(old)


def test_replaced_twice_before_a_flush(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        doc.attachment = b"second"
        between = doc.attachment
        doc.attachment = b"third"
        last = doc.attachment
        s.commit()
    assert none_exist(old)
    assert none_exist(between)
    assert all_exist(last)


@pytest.mark.parametrize("flush", [False, True])
def test_deleted_row_then_commit_deletes_its_file(Session: Maker, flush: bool) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:
        s.delete(s.scalars(sa.select(Document)).one())
        if flush:
            s.flush()
            assert all_exist(old), "deleted before the commit"
        s.commit()
    assert none_exist(old)


@pytest.mark.parametrize("flush", [False, True])
def test_deleted_row_then_rollback_keeps_its_file(Session: Maker, flush: bool) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        s.delete(doc)
        if flush:
            s.flush()
        s.rollback()
        assert doc.attachment.file.read() == b"first"
    assert all_exist(old)


def test_replaced_then_deleted_in_one_transaction(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        doc.attachment = b"second"
        new = doc.attachment
        s.delete(doc)
        s.commit()
    assert none_exist(old)
    assert none_exist(new)


def test_a_failed_commit_deletes_nothing_it_replaced(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:

        @sa.event.listens_for(s, "before_commit")
        def refuse(session: orm.Session) -> None:
            raise RuntimeError("commit refused")

        doc = s.scalars(sa.select(Document)).one()
        doc.attachment = b"second"
        new = doc.attachment
        s.flush()
        with pytest.raises(RuntimeError, match="commit refused"):
            s.commit()
        s.rollback()
    assert all_exist(old)
    assert none_exist(new)


def test_close_without_commit_is_a_rollback(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session)
    s = Session()
    doc = s.scalars(sa.select(Document)).one()
    doc.attachment = b"second"
    new = paths_of(doc.attachment)
    s.close()
    # Closing detaches the object with its change, which it could still write.
    assert all_exist(old)
    assert all(exists(p) for p in new)
    del doc
    drop_and_collect(Session)
    assert all_exist(old)
    assert not any(exists(p) for p in new)


def test_session_and_transaction_as_context_managers(Session: Maker) -> None:  # noqa: N803
    with Session() as s, s.begin():
        s.add(Document(name="kept", attachment=b"kept"))
    kept = attachment_of(Session, "kept")
    with pytest.raises(ZeroDivisionError), Session() as s, s.begin():
        s.add(Document(name="lost", attachment=b"lost"))
        s.flush()
        lost = s.scalars(sa.select(Document).where(Document.name == "lost")).one().attachment
        1 / 0  # noqa: B018
    assert all_exist(kept)
    assert none_exist(lost)


def test_a_value_moved_to_another_row_is_kept(Session: Maker) -> None:  # noqa: N803
    shared = add_document(Session, "a")
    with Session() as s:
        a = s.scalars(sa.select(Document).where(Document.name == "a")).one()
        s.add(Document(name="b", attachment=a.attachment))
        a.attachment = b"other"
        s.commit()
    assert all_exist(shared)
    assert attachment_of(Session, "b") == shared


# -- savepoints --------------------------------------------------------------------------------


def test_savepoint_rollback_deletes_only_files_stored_inside(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        outer = Document(name="outer", attachment=b"outer")
        s.add(outer)
        savepoint = s.begin_nested()
        inner = Document(name="inner", attachment=b"inner")
        s.add(inner)
        s.flush()
        inner_paths = paths_of(inner.attachment)
        savepoint.rollback()
        # The object, new again, could be added back in the transaction: it answers for it.
        assert all(exists(p) for p in inner_paths)
        assert all_exist(outer.attachment)
        del inner
        s.commit()
        outer_value = outer.attachment
    assert not any(exists(p) for p in inner_paths)
    assert all_exist(outer_value)
    with Session() as s:
        assert s.scalars(sa.select(Document.name)).all() == ["outer"]


def test_savepoint_rollback_keeps_what_it_replaced(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        with pytest.raises(ZeroDivisionError), s.begin_nested():
            doc.attachment = b"second"
            new = doc.attachment
            s.flush()
            1 / 0  # noqa: B018
        assert none_exist(new)
        assert doc.attachment.file.read() == b"first"
        s.commit()
    assert all_exist(old)
    assert attachment_of(Session).file.read() == b"first"


def test_savepoint_rollback_keeps_the_file_of_a_row_it_deleted(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:
        savepoint = s.begin_nested()
        s.delete(s.scalars(sa.select(Document)).one())
        s.flush()
        savepoint.rollback()
        s.commit()
    assert all_exist(old)
    assert attachment_of(Session).file.read() == b"first"


def test_released_savepoint_follows_its_transaction(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        with s.begin_nested():
            doc.attachment = b"second"
        new = doc.attachment
        assert all_exist(old), "deleted when the savepoint was released"
        s.commit()
    assert none_exist(old)
    assert all_exist(new)


def test_released_savepoint_then_rollback(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        with s.begin_nested():
            doc.attachment = b"second"
        new = doc.attachment
        s.rollback()
    assert all_exist(old)
    assert none_exist(new)


def test_nested_savepoints(Session: Maker) -> None:  # noqa: N803
    """A value replaced in the transaction, again in a savepoint, again in one inside it."""
    old = add_document(Session)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        doc.attachment = b"second"
        second = doc.attachment
        with s.begin_nested():
            doc.attachment = b"third"
            third = doc.attachment
            inner = s.begin_nested()
            doc.attachment = b"fourth"
            fourth = doc.attachment
            s.flush()
            inner.rollback()
            assert none_exist(fourth)
            assert all_exist(third)
        assert all_exist(second), "the row referred to it before the savepoint"
        s.commit()
    assert none_exist(old)
    assert none_exist(second)
    assert all_exist(third)
    assert attachment_of(Session).file.read() == b"third"


# -- objects in every state --------------------------------------------------------------------


def test_expired_object_replaced(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        s.expire(doc)
        doc.attachment = b"second"
        s.commit()
    assert none_exist(old)


def test_expired_object_deleted(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        s.expire(doc)
        s.delete(doc)
        s.commit()
    assert none_exist(old)


def test_object_reused_after_commit(Session: Maker) -> None:  # noqa: N803
    """Commit expires the object: the next change finds the replaced file in the database."""
    with Session() as s:
        doc = Document(name="doc", attachment=b"first")
        s.add(doc)
        s.commit()
        first = attachment_of(Session)
        doc.attachment = b"second"
        s.commit()
        second = doc.attachment
        doc.attachment = b"third"
        third = doc.attachment
        s.rollback()
    assert none_exist(first)
    assert all_exist(second)
    assert none_exist(third)


def test_changed_while_no_transaction_is_open(Session: Maker) -> None:  # noqa: N803
    """Without expire_on_commit, a change after a commit comes before any transaction."""
    with Session(expire_on_commit=False) as s:
        doc = Document(name="doc", attachment=b"first")
        s.add(doc)
        s.commit()
        first = doc.attachment
        doc.attachment = b"second"
        second = doc.attachment
        s.commit()
        doc.attachment = b"third"
        third = doc.attachment
        s.execute(sa.select(1))  # begins a transaction, which a rollback ends
        s.rollback()
    assert none_exist(first)
    assert all_exist(second)
    assert none_exist(third)


def test_detached_object_changed_then_added_back(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        s.expunge(doc)
    doc.attachment = b"second"
    new = doc.attachment
    with Session() as s:
        s.add(doc)
        s.commit()
    assert none_exist(old)
    assert all_exist(new)


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_detached_object_changed_then_merged(Session: Maker, outcome: str) -> None:  # noqa: N803
    old = add_document(Session)
    with Session(expire_on_commit=False) as s:
        doc = s.scalars(sa.select(Document)).one()
    doc.attachment = b"second"
    new = paths_of(doc.attachment)
    with Session() as s:
        s.merge(doc)
        getattr(s, outcome)()
    if outcome == "commit":
        assert none_exist(old)
        assert all(exists(p) for p in new)
    else:
        assert all_exist(old)
        # The detached object still holds its change: the file waits for it.
        assert all(exists(p) for p in new)
        del doc
        drop_and_collect(Session)
        assert not any(exists(p) for p in new)


def test_new_object_filled_before_it_is_added(Session: Maker) -> None:  # noqa: N803
    doc = Document(name="doc", attachment=b"first")
    doc.attachment = b"second"
    first_and_second = stored_count()
    with Session() as s:
        s.add(doc)
        s.rollback()
    assert first_and_second == 2
    assert stored_count() == 1, "the replaced file goes, the one the object holds waits"
    del doc
    drop_and_collect(Session)
    assert stored_count() == 0


def test_unflushed_change_of_an_expunged_object(Session: Maker) -> None:  # noqa: N803
    """Its change never reached the database: the row keeps its file, the new one waits.

    It goes once the object is dropped without being added back.
    """
    old = add_document(Session)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        doc.attachment = b"second"
        new = paths_of(doc.attachment)
        s.expunge(doc)
        s.commit()
    assert all_exist(old)
    assert all(exists(p) for p in new)
    assert attachment_of(Session).file.read() == b"first"
    del doc
    drop_and_collect(Session)
    assert all_exist(old)
    assert not any(exists(p) for p in new)


def test_sessions_side_by_side(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session, "a")
    with Session() as first, Session() as second:
        first.add(Document(name="b", attachment=b"b"))
        first.flush()
        b = first.scalars(sa.select(Document).where(Document.name == "b")).one().attachment
        a = second.scalars(sa.select(Document).where(Document.name == "a")).one()
        a.attachment = b"a again"
        new_a = a.attachment
        first.rollback()
        assert none_exist(b)
        assert all_exist(old) and all_exist(new_a)
        second.commit()
    assert none_exist(old)
    assert all_exist(new_a)


def test_failed_flush_then_rollback(Session: Maker) -> None:  # noqa: N803
    old = add_document(Session, "taken")
    with Session() as s:
        existing = s.scalars(sa.select(Document)).one()
        existing.attachment = b"replacement"
        replacement = existing.attachment
        duplicate = Document(name="taken", attachment=b"duplicate")
        duplicate_paths = paths_of(duplicate.attachment)
        s.add(duplicate)
        with pytest.raises(sa.exc.IntegrityError):
            s.flush()
        s.rollback()
    assert all_exist(old)
    assert none_exist(replacement)
    # The duplicate, new again, could be renamed and added back: its file waits for it.
    assert all(exists(p) for p in duplicate_paths)
    del duplicate
    drop_and_collect(Session)
    assert not any(exists(p) for p in duplicate_paths)
    assert attachment_of(Session, "taken").file.read() == b"first"


def test_failed_flush_in_a_savepoint(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        s.add(Document(name="taken", attachment=b"first"))
        s.flush()
        duplicate = Document(name="taken", attachment=b"duplicate")
        duplicate_paths = paths_of(duplicate.attachment)
        with pytest.raises(sa.exc.IntegrityError), s.begin_nested():
            s.add(duplicate)
        assert all(exists(p) for p in duplicate_paths), "deleted while the object holds it"
        del duplicate
        s.commit()
    assert not any(exists(p) for p in duplicate_paths)
    assert attachment_of(Session, "taken").file.read() == b"first"


# -- related and inherited rows ----------------------------------------------------------------


def test_cascaded_deletes(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        folder = Folder(name="f", items=[Item(data=b"one"), Item(data=b"two")])
        s.add(folder)
        s.commit()
        one, two = (item.data for item in folder.items)
        folder.items.pop(0)  # delete-orphan
        s.commit()
        assert none_exist(one)
        assert all_exist(two)
        s.delete(folder)
        s.commit()
    assert none_exist(two)


def test_joined_inheritance(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        video = commit_video(s)
        movie, poster = video.file, video.poster
        s.expire(video)
        video.poster = b"new poster"
        s.commit()
        assert none_exist(poster)
        new_poster = video.poster
        s.expire(video)
        s.delete(video)
        s.commit()
    assert none_exist(movie)
    assert none_exist(new_poster)
    with Session() as s:
        assert s.scalars(sa.select(Media)).all() == []


# -- what cannot be tracked, and what cannot be deleted ----------------------------------------


def test_failed_deletion_after_commit_is_logged(
    Session: Maker,  # noqa: N803
    depot: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = add_document(Session)

    def down(file_id: str) -> None:
        raise BackendUnavailableError("the backend is down")

    monkeypatch.setattr(depot, "delete", down)
    with Session() as s, caplog.at_level(logging.ERROR, "depot.fields"):
        s.scalars(sa.select(Document)).one().attachment = b"second"
        s.commit()  # does not raise
    assert attachment_of(Session).file.read() == b"second"
    [record] = caplog.records
    assert record.name == "depot.fields.sqlalchemy"
    assert old["path"] in record.getMessage()
    assert record.exc_info is not None and "the backend is down" in str(record.exc_info[1])


def test_content_of_every_kind(Session: Maker, tmp_path: Any) -> None:  # noqa: N803
    source = tmp_path / "notes.txt"
    source.write_bytes(b"from disk")
    with Session() as s, source.open("rb") as opened:
        docs = [
            Document(name="bytes", attachment=b"raw"),
            Document(name="file", attachment=opened),
            Document(name="intent", attachment=FileIntent(b"<p/>", "page.html", "text/html")),
        ]
        s.add_all(docs)
        s.commit()
    assert attachment_of(Session, "file").filename == "notes.txt"
    assert attachment_of(Session, "file").file.read() == b"from disk"
    page = attachment_of(Session, "intent")
    assert (page.filename, page.content_type) == ("page.html", "text/html")
    assert exists(page.path)
