"""ORM-enabled bulk statements: the files of the rows they delete or change go after the commit.

filedepot 0.12 deleted, after the commit, the files of the rows a
``query.delete(synchronize_session='fetch'|'evaluate')`` matched among those
loaded in the session. depot reads the file columns of the rows the statement
matches (``do_orm_execute``), whatever ``synchronize_session`` is and whether
the rows were loaded, for ``query.delete()``/``update()`` and 2.0's
``session.execute(delete(M))``/``update(M)``. A rollback deletes nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event, orm

from depot.fields.upload import UploadedFile
from tests.fields.files import all_exist, none_exist
from tests.fields.models import Album, Document, Folder, Item, Media, Video
from tests.fields.rows import commit_video

pytestmark = pytest.mark.usefixtures("depot")

Maker = orm.sessionmaker[orm.Session]

SYNCS = ["fetch", "evaluate", False, "auto"]


def add_documents(Session: Maker, *names: str) -> dict[str, Any]:  # noqa: N803
    """Committed documents with a file each: ``{name: attachment}``."""
    with Session() as s:
        docs = [Document(name=name, attachment=name.encode()) for name in names]
        s.add_all(docs)
        s.commit()
        return {doc.name: doc.attachment for doc in docs}


def names_left(Session: Maker) -> list[str]:  # noqa: N803
    with Session() as s:
        return sorted(s.scalars(sa.select(Document.name)))


def load_all(s: orm.Session, loaded: bool) -> None:
    """If ``loaded``, load every document in ``s``: the statement then matches loaded rows."""
    if loaded:
        s.scalars(sa.select(Document)).all()


def run_and_commit(Session: Maker, statement: Any, sync: Any, loaded: bool) -> None:  # noqa: N803
    """Run ``statement`` with ``synchronize_session=sync`` in a new session, and commit."""
    with Session() as s:
        load_all(s, loaded)
        s.execute(statement, execution_options={"synchronize_session": sync})
        s.commit()


@pytest.mark.parametrize("sync", SYNCS)
@pytest.mark.parametrize("loaded", [True, False])
def test_query_delete(Session: Maker, sync: Any, loaded: bool) -> None:  # noqa: N803
    files = add_documents(Session, "a", "b", "c")
    with Session() as s:
        load_all(s, loaded)
        deleted = (
            s.query(Document).filter(Document.name.in_(["a", "b"])).delete(synchronize_session=sync)
        )
        assert deleted == 2
        assert all_exist(files["a"])  # not before the commit
        s.commit()
    assert none_exist(files["a"]) and none_exist(files["b"])
    assert all_exist(files["c"])
    assert names_left(Session) == ["c"]


@pytest.mark.parametrize("sync", SYNCS)
@pytest.mark.parametrize("loaded", [True, False])
def test_delete_statement(Session: Maker, sync: Any, loaded: bool) -> None:  # noqa: N803
    files = add_documents(Session, "a", "b", "c")
    run_and_commit(Session, sa.delete(Document).where(Document.name != "c"), sync, loaded)
    assert none_exist(files["a"]) and none_exist(files["b"])
    assert all_exist(files["c"])


@pytest.mark.parametrize("sync", SYNCS)
@pytest.mark.parametrize("loaded", [True, False])
def test_update_statement_to_none(Session: Maker, sync: Any, loaded: bool) -> None:  # noqa: N803
    files = add_documents(Session, "a", "b")
    statement = sa.update(Document).where(Document.name == "a").values(attachment=None)
    run_and_commit(Session, statement, sync, loaded)
    assert none_exist(files["a"])
    assert all_exist(files["b"])
    assert names_left(Session) == ["a", "b"]


def test_query_update_to_another_value(Session: Maker) -> None:  # noqa: N803
    """b takes a's value: b's old file goes, a's stays (both rows refer to it)."""
    files = add_documents(Session, "a", "b")
    with Session() as s:
        s.query(Document).filter_by(name="b").update(
            {"attachment": files["a"]}, synchronize_session="fetch"
        )
        s.commit()
    assert none_exist(files["b"])
    assert all_exist(files["a"])
    with Session() as s:
        # a deleted later: b still refers to the file, so it stays.
        s.delete(s.scalars(sa.select(Document).where(Document.name == "a")).one())
        s.commit()
    assert all_exist(files["a"])
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        assert doc.attachment.file.read() == b"a"


def test_update_every_row_to_one_rows_value(Session: Maker) -> None:  # noqa: N803
    files = add_documents(Session, "a", "b", "c")
    with Session() as s:
        s.execute(sa.update(Document).values(attachment=files["b"]))
        s.commit()
    assert none_exist(files["a"]) and none_exist(files["c"])
    assert all_exist(files["b"])


def test_update_of_other_columns_keeps_files(Session: Maker) -> None:  # noqa: N803
    files = add_documents(Session, "a")
    statements: list[str] = []
    engine = Session.kw["bind"]

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with Session() as s:
            s.execute(sa.update(Document).values(name="renamed"))
            s.commit()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert all_exist(files["a"])
    # No reading of the file columns for a statement that does not set them.
    assert not [text for text in statements if text.lstrip().upper().startswith("SELECT")]


def test_rollback_deletes_nothing(Session: Maker) -> None:  # noqa: N803
    files = add_documents(Session, "a", "b")
    with Session() as s:
        s.execute(sa.delete(Document))
        s.execute(sa.update(Document).values(attachment=None))
        s.rollback()
    assert all_exist(files["a"]) and all_exist(files["b"])
    assert names_left(Session) == ["a", "b"]


def test_savepoint_rolled_back_undoes_the_statement(Session: Maker) -> None:  # noqa: N803
    files = add_documents(Session, "a", "b")
    with Session() as s:
        with s.begin_nested() as savepoint:
            s.execute(sa.delete(Document).where(Document.name == "a"))
            savepoint.rollback()
        with s.begin_nested():
            s.execute(sa.delete(Document).where(Document.name == "b"))
        s.commit()
    assert all_exist(files["a"])
    assert none_exist(files["b"])
    assert names_left(Session) == ["a"]


def test_failed_statement_deletes_nothing(Session: Maker) -> None:  # noqa: N803
    files = add_documents(Session, "a", "b")
    with Session() as s:
        with pytest.raises(sa.exc.IntegrityError):
            s.execute(sa.update(Document).values(name="same", attachment=None))
        s.rollback()
        s.commit()
    assert all_exist(files["a"]) and all_exist(files["b"])


def test_pending_changes_are_flushed_first(Session: Maker) -> None:  # noqa: N803
    files = add_documents(Session, "a")
    with Session() as s:
        new = Document(name="new", attachment=b"pending")
        s.add(new)
        s.scalars(sa.select(Document).where(Document.name == "a")).one().attachment = b"second"
        s.execute(sa.delete(Document))
        second = s.scalars(sa.select(Document)).all()
        assert second == []
        s.commit()
    assert none_exist(new.attachment)
    assert none_exist(files["a"])


def test_shared_value_stays(Session: Maker) -> None:  # noqa: N803
    """A value copied to another row stays when a bulk statement deletes the first row."""
    files = add_documents(Session, "a")
    with Session() as s:
        s.add(Document(name="copy", attachment=files["a"]))
        s.commit()
    with Session() as s:
        s.execute(sa.delete(Document).where(Document.name == "a"))
        s.commit()
    assert all_exist(files["a"])
    with Session() as s:
        s.execute(sa.update(Document).values(attachment=None))
        s.commit()
    assert none_exist(files["a"])


def test_shared_by_a_loaded_row_within_the_statement(Session: Maker) -> None:  # noqa: N803
    """Rows matched by the statement do not keep their old files through loaded objects."""
    files = add_documents(Session, "a", "b")
    with Session() as s:
        loaded = s.scalars(sa.select(Document).order_by(Document.name)).all()
        s.execute(
            sa.update(Document).values(attachment=None),
            execution_options={"synchronize_session": False},
        )
        # Still what was loaded: SQLAlchemy was told not to synchronize.
        assert loaded[0].attachment["path"] == files["a"]["path"]
        s.commit()
    assert none_exist(files["a"]) and none_exist(files["b"])


@pytest.fixture
def narrowing(Session: Maker) -> Iterator[None]:  # noqa: N803
    """A do_orm_execute hook of the application's, added after depot's, narrowing DELETEs."""

    def only_a(state: orm.ORMExecuteState) -> None:
        if state.is_delete:
            state.statement = state.statement.where(Document.name == "a")

    event.listen(orm.Session, "do_orm_execute", only_a)
    yield
    event.remove(orm.Session, "do_orm_execute", only_a)


@pytest.mark.usefixtures("narrowing")
def test_rows_another_hook_spared_keep_their_files(Session: Maker) -> None:  # noqa: N803
    files = add_documents(Session, "a", "b")
    with Session() as s:
        s.execute(sa.delete(Document))
        s.commit()
    assert names_left(Session) == ["b"]
    assert none_exist(files["a"])
    assert all_exist(files["b"])


def test_bulk_update_by_primary_key(Session: Maker) -> None:  # noqa: N803
    files = add_documents(Session, "a", "b", "c")
    with Session() as s:
        ids = {d.name: d.id for d in s.scalars(sa.select(Document))}
        s.execute(
            sa.update(Document),
            [{"id": ids["a"], "attachment": None}, {"id": ids["b"], "attachment": files["c"]}],
        )
        s.commit()
    assert none_exist(files["a"]) and none_exist(files["b"])
    assert all_exist(files["c"])


def test_list_column(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        kept = Album(name="kept", photos=[b"k"])
        gone = Album(name="gone", photos=[b"g1", b"g2"])
        s.add_all([kept, gone])
        s.commit()
        kept_photos, gone_photos = list(kept.photos), list(gone.photos)
    with Session() as s:
        s.query(Album).filter_by(name="gone").delete()
        s.commit()
    assert none_exist(gone_photos)
    assert all_exist(kept_photos)


def test_joined_inheritance(Session: Maker) -> None:  # noqa: N803
    """An UPDATE of a subclass sets its own table's columns: only those files go."""
    with Session() as s:
        video = commit_video(s)
        movie, poster = video.file, video.poster
    with Session() as s:
        s.execute(sa.update(Video).values(poster=None))
        s.execute(sa.update(Media).values(kind="video"))
        s.commit()
    assert none_exist(poster)
    assert all_exist(movie)


def test_relationship_criteria(Session: Maker) -> None:  # noqa: N803
    """A WHERE that reaches another table (UPDATE ... FROM, or a subquery) reads the same rows."""
    with Session() as s:
        folders = [
            Folder(name="x", items=[Item(data=b"x")]),
            Folder(name="y", items=[Item(data=b"y")]),
        ]
        s.add_all(folders)
        s.commit()
        x_data, y_data = folders[0].items[0].data, folders[1].items[0].data
    with Session() as s:
        s.execute(
            sa.delete(Item).where(
                Item.folder_id.in_(sa.select(Folder.id).where(Folder.name == "x"))
            )
        )
        s.commit()
    assert none_exist(x_data)
    assert all_exist(y_data)


def test_core_statement_on_a_connection_is_not_tracked(Session: Maker) -> None:  # noqa: N803
    """Documented: Core statements on a Connection bypass the session."""
    files = add_documents(Session, "a")
    with Session.kw["bind"].begin() as connection:
        connection.execute(sa.delete(Document.__table__))
    assert all_exist(files["a"])


def test_a_value_built_by_hand_set_by_a_statement(Session: Maker) -> None:  # noqa: N803
    files = add_documents(Session, "a")
    value = UploadedFile(b"by hand")
    with Session() as s:
        s.execute(sa.update(Document).values(attachment=value))
        s.commit()
    assert none_exist(files["a"])
    assert all_exist(value)
    with Session() as s:
        s.execute(sa.delete(Document))
        s.commit()
    assert none_exist(value)


def test_concurrent_move_of_a_value(
    Session: Maker,  # noqa: N803
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another transaction moves a's file to b while a bulk DELETE of a waits for the row.

    The rows read before the statement are locked (``SELECT ... FOR UPDATE``):
    the DELETE's read waits for the other transaction, then sees a without its
    file, so the file b took stays. SQLite lets one writer at a time: the
    DELETE waits or fails, and deletes nothing either way.
    """
    from depot.fields import _sqlashared

    files = add_documents(Session, "a", "b")
    # As if the copy were made by another process: no in-process record of it.
    monkeypatch.setattr(_sqlashared, "_copied", {})
    outcome: dict[str, Any] = {}
    mover = Session()
    try:
        a, b = (mover.scalars(sa.select(Document).where(Document.name == n)).one() for n in "ab")
        b.attachment = a.attachment
        a.attachment = None
        mover.flush()  # the rows are locked until the commit
        _sqlashared._copied.clear()

        def bulk_delete() -> None:
            try:
                with Session() as s:
                    outcome["deleted"] = s.execute(
                        sa.delete(Document).where(Document.name == "a")
                    ).rowcount
                    s.commit()
            except sa.exc.OperationalError as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=bulk_delete)
        worker.start()
        worker.join(0.5)  # waiting on the lock
        mover.commit()
        worker.join(30)
        assert not worker.is_alive()
    finally:
        mover.close()
    if Session.kw["bind"].dialect.name == "sqlite":
        assert "deleted" in outcome or "locked" in str(outcome["error"])
    else:
        assert outcome == {"deleted": 1}
    assert none_exist(files["b"])  # b's own old file, let go of by the mover
    assert all_exist(files["a"])
    with Session() as s:
        b = s.scalars(sa.select(Document).where(Document.name == "b")).one()
        assert b.attachment.file.read() == b"a"


def test_parameters_given_apart(Session: Maker) -> None:  # noqa: N803
    files = add_documents(Session, "a", "b")
    with Session() as s:
        statement = sa.delete(Document).where(Document.name == sa.bindparam("which"))
        s.execute(statement, {"which": "a"})
        s.commit()
    assert none_exist(files["a"])
    assert all_exist(files["b"])


@pytest.mark.parametrize("outer_commits", [True, False])
def test_session_joined_to_an_outer_transaction(Session: Maker, outer_commits: bool) -> None:  # noqa: N803
    files = add_documents(Session, "a", "b")
    with Session.kw["bind"].connect() as connection:
        outer = connection.begin()
        with orm.Session(bind=connection, join_transaction_mode="create_savepoint") as s:
            s.execute(sa.delete(Document).where(Document.name == "a"))
            s.commit()  # releases the savepoint only
        assert all_exist(files["a"])
        if outer_commits:
            outer.commit()
        else:
            outer.rollback()
    if outer_commits:
        assert none_exist(files["a"])
        assert names_left(Session) == ["b"]
    else:
        assert all_exist(files["a"])
        assert names_left(Session) == ["a", "b"]
    assert all_exist(files["b"])


def test_more_rows_than_one_check_holds(Session: Maker) -> None:  # noqa: N803
    from depot.fields import _sqlabulk

    count = _sqlabulk._IN_CHUNK + 20
    with Session() as s:
        docs = [Document(name=f"d{n}", attachment=b"x") for n in range(count)]
        s.add_all(docs)
        s.commit()
        values = [doc.attachment for doc in docs]
    with Session() as s:
        s.execute(sa.update(Document).where(Document.name != "d0").values(attachment=None))
        s.commit()
    assert all_exist(values[0])
    assert all(none_exist(value) for value in values[1:])


def test_unreadable_rows_name_no_file(Session: Maker) -> None:  # noqa: N803
    files = add_documents(Session, "a")
    with Session() as s:
        s.execute(
            sa.text("INSERT INTO depot_documents (id, name, attachment) VALUES (99, 'raw', '5')")
        )
        s.commit()
    with Session() as s:
        s.execute(sa.delete(Document))
        s.commit()
    assert none_exist(files["a"])
    assert names_left(Session) == []


def test_sql_expressions_as_values(Session: Maker) -> None:  # noqa: N803
    files = add_documents(Session, "a", "b")
    with Session() as s:
        # The column set to itself: nothing changes, nothing goes.
        s.execute(sa.update(Document).values(attachment=Document.attachment))
        s.execute(sa.update(Document).where(Document.name == "a").values(attachment=sa.null()))
        s.commit()
    assert none_exist(files["a"])
    assert all_exist(files["b"])


def test_content_in_a_statement_is_refused(Session: Maker) -> None:  # noqa: N803
    files = add_documents(Session, "a")
    with Session() as s:
        with pytest.raises(sa.exc.StatementError, match="assign the content to the mapped"):
            s.execute(sa.update(Document).values(attachment=b"content"))
        s.rollback()
    assert all_exist(files["a"])


def test_rows_that_cannot_be_read_are_logged(
    Session: Maker,  # noqa: N803
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A WHERE that cannot be read as a SELECT: the statement runs, its files stay, logged."""
    from depot.fields import _sqlabulk

    files = add_documents(Session, "a")

    def broken(*args: Any) -> Any:
        raise sa.exc.CompileError("no SELECT can take this WHERE")

    monkeypatch.setattr(_sqlabulk, "_matched_rows", broken)
    with Session() as s, caplog.at_level(logging.WARNING, "depot.fields.sqlalchemy"):
        assert s.execute(sa.delete(Document)).rowcount == 1
        s.commit()
    assert names_left(Session) == []
    assert all_exist(files["a"])
    [record] = caplog.records
    assert "the files they let go of stay" in record.getMessage()


@pytest.mark.parametrize("form", ["values", "parameters", "many"])
def test_insert_statement_copying_a_value(Session: Maker, form: str) -> None:  # noqa: N803
    """A row inserted by a statement with another row's value: deleting that row keeps the file."""
    files = add_documents(Session, "a")
    with Session() as s:
        if form == "values":
            s.execute(sa.insert(Document).values(name="copy", attachment=files["a"]))
        elif form == "parameters":
            s.execute(sa.insert(Document), {"name": "copy", "attachment": files["a"]})
        else:
            rows = [{"name": f"copy{n}", "attachment": files["a"]} for n in range(2)]
            s.execute(sa.insert(Document), rows)
        s.commit()
    with Session() as s:
        s.delete(s.scalars(sa.select(Document).where(Document.name == "a")).one())
        s.commit()
    assert all_exist(files["a"])
