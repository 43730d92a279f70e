"""Retrying after a failure never commits a row whose file was deleted (issue 12, finding 1).

A rolled-back transaction or savepoint, or an expunge, leaves the object holding
the value it was given; the usual retries then write it. Each test checks the
committed row opens its file, on every database and both local depots.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from depot.fields._tracking import paths_of
from tests.fields.files import drop_and_collect, exists, stored_count
from tests.fields.models import Album, Document
from tests.fields.rows import add_document, attachment_of

pytestmark = pytest.mark.usefixtures("depot")

Maker = orm.sessionmaker[orm.Session]


def committed_file(Session: Maker, name: str) -> bytes:  # noqa: N803
    with attachment_of(Session, name).file as stored:
        return stored.read()


def commit_taken(s: orm.Session) -> None:
    """Commit a document named 'taken', so that inserting another of that name fails."""
    s.add(Document(name="taken", attachment=b"first"))
    s.commit()


def add_renamed(s: orm.Session, doc: Document) -> None:
    """The usual retry: rename the object whose insert failed, add it again, commit."""
    doc.name = "free"
    s.add(doc)
    s.commit()


def test_savepoint_insert_fails_then_renamed_and_added_again(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        commit_taken(s)
        doc = Document(name="taken", attachment=b"mine")
        with pytest.raises(sa.exc.IntegrityError), s.begin_nested():
            s.add(doc)
        add_renamed(s, doc)
    assert committed_file(Session, "free") == b"mine"


def test_commit_fails_then_added_in_a_new_transaction(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        commit_taken(s)
    with Session() as s:
        doc = Document(name="taken", attachment=b"mine")
        s.add(doc)
        with pytest.raises(sa.exc.IntegrityError):
            s.commit()
        s.rollback()
        add_renamed(s, doc)
    assert committed_file(Session, "free") == b"mine"


def test_retry_in_a_new_session(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        commit_taken(s)
    doc = Document(name="taken", attachment=b"mine")
    with Session() as s:
        s.add(doc)
        with pytest.raises(sa.exc.IntegrityError):
            s.flush()
    with Session() as s:
        add_renamed(s, doc)
    assert committed_file(Session, "free") == b"mine"


def test_expunged_with_a_change_then_added_back(Session: Maker) -> None:  # noqa: N803
    add_document(Session)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        doc.attachment = b"second"
        s.expunge(doc)
        s.commit()
        s.add(doc)
        s.commit()
    assert committed_file(Session, "doc") == b"second"


def test_list_column_retried_after_a_failed_insert(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        s.add(Album(name="taken", photos=[b"a"]))
        s.commit()
        album = Album(name="taken", photos=[b"b", b"c"])
        with pytest.raises(sa.exc.IntegrityError), s.begin_nested():
            s.add(album)
        album.name = "free"
        s.add(album)
        s.commit()
    with Session() as s:
        album = s.scalars(sa.select(Album).where(Album.name == "free")).one()
        assert [photo.file.read() for photo in album.photos] == [b"b", b"c"]


def test_given_up_after_a_failure_the_files_go(Session: Maker) -> None:  # noqa: N803
    """An object dropped after its failed insert leaves nothing behind once collected."""
    with Session() as s:
        commit_taken(s)
    before = stored_count()
    with Session() as s:
        doc = Document(name="taken", attachment=b"mine")
        paths = paths_of(doc.attachment)
        s.add(doc)
        with pytest.raises(sa.exc.IntegrityError):
            s.commit()
        s.rollback()
    del doc
    drop_and_collect(Session)
    assert not any(exists(p) for p in paths)
    assert stored_count() == before


def test_value_copied_to_a_new_object_is_kept_when_the_row_lets_go(Session: Maker) -> None:  # noqa: N803
    """A new object given a row's value may write it: the row letting go deletes nothing."""
    add_document(Session, "a", b"shared")
    with Session() as s:
        a = s.scalars(sa.select(Document)).one()
        copy = Document(name="b", attachment=a.attachment)
        a.attachment = None
        s.commit()
    with Session() as s:
        s.add(copy)
        s.commit()
    assert committed_file(Session, "b") == b"shared"


def test_object_never_added_leaves_nothing_once_dropped(Session: Maker) -> None:  # noqa: N803
    doc = Document(name="never", attachment=b"content")
    Album(name="never", photos=[b"a", b"b"])
    assert stored_count() == 3
    del doc
    drop_and_collect(Session)
    assert stored_count() == 0


def test_a_value_written_with_core_is_never_deleted_for_its_object(Session: Maker) -> None:  # noqa: N803
    """A value the object never wrote but a Core statement did is a row's: it stays."""
    doc = Document(name="core", attachment=b"content")
    with Session() as s:
        s.execute(sa.insert(Document).values(name="core", attachment=doc.attachment))
        s.commit()
    del doc
    drop_and_collect(Session)
    assert committed_file(Session, "core") == b"content"
