"""Model-driven migration on SQLite, PostgreSQL and MariaDB (and Ming): copy, then rewrite."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from depot.io.interfaces import FileStorage
from depot.io.memory import MemoryFileStorage
from depot.io.utils import FileIntent
from depot.manager import DepotManager
from depot.ops import MigrationPlan, Progress, file_columns, migrate
from tests.ops.conftest import png
from tests.ops.models import Folder, Photo, Plain

MODELS = [Photo, Folder, Plain]


@pytest.fixture
def depots(local_fast: dict[str, Any]) -> tuple[FileStorage, FileStorage]:
    old = DepotManager.configure("old", {"depot.backend": "memory"})
    new = DepotManager.configure("new", local_fast)
    return old, new


def populate(engine: sa.Engine) -> dict[str, Any]:
    """Rows on 'old': three photos (each with a thumbnail), two folders, one empty row."""
    with orm.Session(engine) as session:
        photos = [
            Photo(id=n, image=png(color))
            for n, color in enumerate(["red", "blue", "green"], start=1)
        ]
        folder = Folder(
            owner="ann",
            number=1,
            files=[
                FileIntent(b"first", "a.txt", "text/plain"),
                FileIntent(b"second", "b.txt", "text/plain"),
            ],
            cover=FileIntent(b"cover", "cover.txt", "text/plain"),
        )
        session.add_all([*photos, folder, Folder(owner="bob", number=2), Plain(id=1)])
        session.commit()
    stray = DepotManager.get("old").create(b"nobody refers to me")  # type: ignore[union-attr]
    return {"stray": stray}


def raw_rows(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        photos = conn.execute(
            sa.select(sa.type_coerce(Photo.__table__.c.image, sa.Text())).order_by(
                Photo.__table__.c.id
            )
        ).scalars()
        folders = conn.execute(
            sa.select(
                sa.type_coerce(Folder.__table__.c.files, sa.Text()),
                sa.type_coerce(Folder.__table__.c.cover, sa.Text()),
            ).order_by(Folder.__table__.c.owner)
        ).all()
        return [json.loads(p) for p in photos] + [
            [json.loads(t) if t else None for t in row] for row in folders
        ]


def test_file_columns_are_found_by_type() -> None:
    assert file_columns(Photo) == ["image"]
    assert file_columns(Folder) == ["files", "cover"]
    assert file_columns(Plain) == []


def test_copies_the_referenced_files_and_rewrites_the_rows(
    db: sa.Engine, depots: tuple[FileStorage, FileStorage]
) -> None:
    old, new = depots
    made = populate(db)
    plan = MigrationPlan("new", bind=db, models=MODELS, rewrite=True, batch_size=2)
    events = list(plan)  # the iterable form
    summary = plan.summary
    assert summary is not None and summary.ok, (summary.copy.failed, summary.left)
    assert summary.copy.copied == 3 * 2 + 2 + 1
    assert summary.rows == 3 + 1  # rows with a file; bob's folder holds none
    assert summary.rewritten == 4
    assert {"scan", "copy", "rewrite"} <= {e.phase for e in events}
    assert not new.exists(made["stray"])
    # Nothing is deleted from the old depot.
    assert len(old.list()) == 3 * 2 + 3 + 1

    photo_values, *folders = raw_rows(db)[:3], raw_rows(db)[3:]
    for value in photo_values:
        assert value["depot_name"] == "new"
        assert value["path"] == f"new/{value['file_id']}"
        assert value["thumb_path"] == f"new/{value['thumb_id']}"
        assert value["files"] == [value["path"], value["thumb_path"]]
    (ann_files, ann_cover), (bob_files, bob_cover) = folders[0]
    assert [v["depot_name"] for v in ann_files] == ["new", "new"]
    assert ann_cover["path"].startswith("new/")
    assert bob_files is None and bob_cover is None

    # The ORM reads the rewritten rows, files and thumbnails from the new depot.
    with orm.Session(db) as session:
        photo = session.get(Photo, 2)
        assert photo is not None and photo.image is not None
        assert photo.image.file.read() == png("blue")
        assert photo.image.thumb_file.read()[:4] == b"\x89PNG"
        folder = session.get(Folder, ("ann", 1))
        assert folder is not None and folder.files is not None
        assert [f.file.read() for f in folder.files] == [b"first", b"second"]
    # Running it again finds everything in place.
    again = migrate("new", bind=db, models=MODELS, rewrite=True)
    assert not again.copy.copied and not again.copy.failed and again.rewritten == 0


def test_without_rewrite_the_rows_keep_their_depot_name(
    db: sa.Engine, depots: tuple[FileStorage, FileStorage], local_fast: dict[str, Any]
) -> None:
    populate(db)
    before = raw_rows(db)
    events: list[Progress] = []
    summary = migrate("new", bind=db, models=MODELS, progress=events.append)
    assert summary.ok and summary.copy.copied == 9 and summary.rewritten == 0
    assert raw_rows(db) == before
    assert events and events[-1].phase == "copy"
    # The name 'old' now configured with the new backend: the rows work unchanged.
    DepotManager._clear()
    DepotManager.configure("old", local_fast)
    with orm.Session(db) as session:
        photo = session.get(Photo, 3)
        assert photo is not None and photo.image is not None
        assert photo.image.file.read() == png("green")


def test_the_rewrite_runs_in_the_callers_transaction(
    db: sa.Engine, depots: tuple[FileStorage, FileStorage]
) -> None:
    populate(db)
    before = raw_rows(db)
    with orm.Session(db) as session:
        summary = migrate("new", bind=session, models=MODELS, rewrite=True)
        assert summary.rewritten == 4
        session.rollback()
    assert raw_rows(db) == before
    with orm.Session(db) as session:
        migrate("new", bind=session, models=MODELS, rewrite=True)
        session.commit()
    assert all(value["depot_name"] == "new" for value in raw_rows(db)[:3])


def test_a_row_whose_file_did_not_copy_is_left_as_it_was(
    db: sa.Engine, depots: tuple[FileStorage, FileStorage]
) -> None:
    old, new = depots
    populate(db)
    before = raw_rows(db)
    lost = before[0]["thumb_id"]
    old.delete(lost)
    summary = migrate("new", bind=db, models=MODELS, rewrite=True)
    assert [r.file_id for r in summary.copy.failed] == [lost]
    assert not summary.ok
    assert len(summary.left) == 1 and "depot_ops_photos(id=1).image" in summary.left[0][0]
    after = raw_rows(db)
    assert after[0] == before[0]
    assert after[1]["depot_name"] == "new"


def test_only_the_given_sources_move(
    db: sa.Engine, depots: tuple[FileStorage, FileStorage]
) -> None:
    populate(db)
    DepotManager.configure("third", {"depot.backend": "memory"})
    DepotManager.set_default("third")
    with orm.Session(db) as session:
        session.add(Photo(id=10, image=png("white")))
        session.commit()
    summary = migrate("new", bind=db, models=[Photo], sources=["third"], rewrite=True)
    assert summary.copy.copied == 2 and summary.rewritten == 1
    names = [value["depot_name"] for value in raw_rows(db)[:4]]
    assert names == ["old", "old", "old", "new"]


def test_refuses_what_cannot_work(depots: tuple[FileStorage, FileStorage]) -> None:
    with pytest.raises(TypeError, match="configured name"):
        MigrationPlan(MemoryFileStorage())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="without bind"):
        MigrationPlan("new", models=[Photo])
    with pytest.raises(ValueError, match="both a source and the target"):
        MigrationPlan("new", sources=["new"])
    DepotManager.alias("media", "new")
    with pytest.raises(ValueError, match="'media' is an alias of it"):
        MigrationPlan("new", sources=["media"])


def test_ming_documents_are_migrated_and_rewritten(
    depots: tuple[FileStorage, FileStorage],
) -> None:
    pytest.importorskip("ming")
    from ming import create_datastore

    from tests.ops.ming_models import Note, ops_session

    old, new = depots
    datastore = create_datastore("mim:///depot_ops_migrate")
    ops_session.impl.bind = datastore
    try:
        notes = [
            Note(title=f"n{n}", file=FileIntent(b"note %d" % n, f"{n}.txt", "text/plain"))
            for n in range(5)
        ]
        ops_session.flush()
        ids = [n._id for n in notes]
        ops_session.clear()
        summary = migrate("new", ming_session=ops_session, ming_classes=[Note], rewrite=True)
        assert summary.ok and summary.copy.copied == 5 and summary.rewritten == 5
        raw = ops_session.db["depot_ops_notes"].find_one({"_id": ids[3]})
        assert raw["file"]["depot_name"] == "new" and raw["file"]["path"].startswith("new/")
        loaded = Note.query.get(_id=ids[3])
        assert loaded.file.file.read() == b"note 3"
    finally:
        ops_session.clear()
        datastore.conn.drop_database("depot_ops_migrate")
        ops_session.impl.bind = None


def test_leaving_the_iteration_early_stops_the_work(
    db: sa.Engine, depots: tuple[FileStorage, FileStorage]
) -> None:
    old, new = depots
    populate(db)
    plan = MigrationPlan("new", bind=db, models=MODELS, rewrite=True, jobs=1)
    for event in plan:
        if event.phase == "copy" and event.files_done == 1:
            break
    assert plan.summary is None  # it did not finish
    assert 1 <= len(new.list()) < 9
    assert all(value["depot_name"] == "old" for value in raw_rows(db)[:3])
    # Run to its end, it finishes the rest.
    plan = MigrationPlan("new", bind=db, models=MODELS, rewrite=True)
    assert len(list(plan)) > 0 and plan.summary is not None and plan.summary.ok
    assert len(new.list()) == 9


def test_an_error_in_the_iterated_plan_is_raised_to_the_loop(
    db: sa.Engine, depots: tuple[FileStorage, FileStorage]
) -> None:
    populate(db)
    plan = MigrationPlan("new", bind=db, models=MODELS, sources=["unconfigured"], batch_size=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        list(plan)


def insert_photos(engine: sa.Engine, values: dict[int, Any]) -> None:
    """Photos whose column holds the JSON of ``values``, as a Core UPDATE or a backup leaves."""
    statement = sa.insert(Photo.__table__).values(
        id=sa.bindparam("id"), image=sa.bindparam("text", type_=sa.Text())
    )
    with engine.begin() as conn:
        conn.execute(statement, [{"id": k, "text": json.dumps(v)} for k, v in values.items()])


def value_of(name: str, file_id: str, **more: Any) -> dict[str, Any]:
    path = f"{name}/{file_id}"
    return {"depot_name": name, "file_id": file_id, "path": path, "files": [path], **more}


def test_a_value_the_field_cannot_read_is_left_as_it_was(
    db: sa.Engine, depots: tuple[FileStorage, FileStorage]
) -> None:
    old, new = depots
    kept, other = old.create(b"kept"), old.create(b"other")
    # 'files' is no list: the field reads the value as unreadable, so which
    # files it means is unknown and it cannot be said to be in the target.
    broken = {**value_of("old", kept), "files": f"old/{other}"}
    insert_photos(db, {1: value_of("old", kept), 2: broken})
    summary = migrate("new", bind=db, models=[Photo], rewrite=True)
    assert summary.rewritten == 1 and not new.exists(other)
    assert [where for where, _ in summary.left] == ["depot_ops_photos(id=2).image"]
    assert [u.where for u in summary.unreadable] == ["depot_ops_photos(id=2).image"]
    assert raw_rows(db)[1] == broken


def test_the_file_the_field_opens_must_be_in_the_target(
    db: sa.Engine, local_fast: dict[str, Any]
) -> None:
    old = DepotManager.configure("old", {"depot.backend": "memory"})
    DepotManager.configure("new", {**local_fast, "depot.max_size": "10"})
    small, large = old.create(b"small"), old.create(b"too large for new")
    # The field opens depot_name/file_id; path names another file (edited by hand).
    odd = {**value_of("old", small), "file_id": large}
    insert_photos(db, {1: odd})
    summary = migrate("new", bind=db, models=[Photo], rewrite=True)
    assert [r.file_id for r in summary.copy.failed] == [large]
    assert summary.rewritten == 0 and len(summary.left) == 1
    assert raw_rows(db)[0] == odd


def test_stored_middleware_urls_name_the_target(
    db: sa.Engine, depots: tuple[FileStorage, FileStorage]
) -> None:
    old, new = depots
    image, thumb = old.create(b"image"), old.create(b"thumb")
    value = value_of(
        "old",
        image,
        thumb_128x128_id=thumb,
        thumb_128x128_path=f"old/{thumb}",
        thumb_128x128_url=f"/depot/old/{thumb}",
        elsewhere_path=f"old/{thumb}",
        elsewhere_url="https://cdn.example.com/x.png",
    )
    value["files"].append(f"old/{thumb}")
    insert_photos(db, {1: value})
    summary = migrate("new", bind=db, models=[Photo], rewrite=True)
    assert summary.ok and summary.rewritten == 1
    (after,) = raw_rows(db)[:1]
    assert after["thumb_128x128_path"] == f"new/{thumb}"
    # The URL the thumbnail filter stored served the old depot.
    assert after["thumb_128x128_url"] == f"/depot/new/{thumb}"
    assert after["elsewhere_url"] == "https://cdn.example.com/x.png"  # not the middleware's


def test_a_model_of_joined_table_inheritance(
    db: sa.Engine, depots: tuple[FileStorage, FileStorage]
) -> None:
    from depot.ops import sqlalchemy_references
    from tests.ops.models import Document, Report

    old, new = depots
    with orm.Session(db) as session:
        session.add_all(
            Report(
                id=n,
                file=FileIntent(b"file %d" % n, "f.txt", "text/plain"),
                appendix=FileIntent(b"appendix %d" % n, "a.txt", "text/plain"),
            )
            for n in (1, 2, 3)
        )
        session.add(Document(id=4, file=FileIntent(b"file 4", "f.txt", "text/plain")))
        session.commit()
    # Each row once: its two tables joined, not every row of one with every row of the other.
    batches = list(sqlalchemy_references(db, [Report]))
    assert sum(b.rows for b in batches) == 3
    assert sum(len(b.references) for b in batches) == 6
    summary = migrate("new", bind=db, models=[Report, Document], rewrite=True)
    assert summary.ok and summary.rewritten == 3 + 1  # the reports, then document 4
    with orm.Session(db) as session:
        reports = session.scalars(sa.select(Report).order_by(Report.id)).all()
        # Each row keeps its own files (a rewrite over both tables once set every row's).
        assert [r.appendix.file.read() for r in reports] == [b"appendix %d" % n for n in (1, 2, 3)]
        assert [r.file.file.read() for r in reports] == [b"file %d" % n for n in (1, 2, 3)]
        assert {r.appendix["depot_name"] for r in reports} == {"new"}
        document = session.get(Document, 4)
        assert document is not None and document.file["depot_name"] == "new"
