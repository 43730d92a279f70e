"""collect_garbage: rows referencing a subset of files, leftovers, the grace period, memory."""

from __future__ import annotations

import json
import time
import tracemalloc
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from depot.io.utils import FileIntent
from depot.manager import DepotManager
from depot.ops import Batch, Reference, collect_garbage, sqlalchemy_references
from tests.databases import sqlite_engine
from tests.ops.conftest import OLD, png
from tests.ops.models import Folder, OpsBase, Photo

MODELS = [Photo, Folder]


def old_files() -> Any:
    return mock.patch("depot.io.utils.timestamp", return_value=OLD)


def test_lists_then_deletes_only_old_unreferenced_files(
    db: sa.Engine, local_fast: dict[str, Any]
) -> None:
    media = DepotManager.configure("media", local_fast)
    with old_files():
        with orm.Session(db) as session:
            session.add(Photo(id=1, image=png()))
            session.add(
                Folder(owner="x", number=1, files=[FileIntent(b"a", "a.txt", "text/plain")])
            )
            session.commit()
        leftovers = {media.create(b"left %d" % n) for n in range(3)}
    recent = media.create(b"an upload in flight")
    referenced = set(media.list()) - leftovers - {recent}
    assert len(referenced) == 3  # the photo, its thumbnail, the folder's file

    listed = collect_garbage("media", sqlalchemy_references(db, MODELS, batch_size=1))
    assert {r.file_id for r in listed.garbage} == leftovers
    assert {r.outcome for r in listed.garbage} == {"unreferenced"}
    assert [r.file_id for r in listed.recent] == [recent]
    assert (listed.files, listed.rows, listed.references) == (7, 2, 3)
    assert len(media.list()) == 7  # listing deletes nothing

    deleted = collect_garbage("media", sqlalchemy_references(db, MODELS), delete=True)
    assert {r.file_id for r in deleted.deleted} == leftovers and not deleted.failed
    assert set(media.list()) == referenced | {recent}
    # With no grace at all, the recent upload goes too; referenced files never do.
    later = datetime.utcnow() + timedelta(seconds=5)  # noqa: DTZ003 - naive UTC, as stored
    last = collect_garbage(
        "media", sqlalchemy_references(db, MODELS), delete=True, grace=timedelta(0), now=later
    )
    assert [r.file_id for r in last.deleted] == [recent]
    assert set(media.list()) == referenced


def test_an_unreadable_value_stops_the_deletion(db: sa.Engine) -> None:
    media = DepotManager.configure("media", {"depot.backend": "memory"})
    with old_files():
        leftover = media.create(b"left")
    with db.begin() as conn:
        conn.execute(
            sa.insert(Photo.__table__).values(id=5, image=sa.type_coerce("{not json", sa.Text()))
        )
    summary = collect_garbage("media", sqlalchemy_references(db, MODELS), delete=True)
    assert summary.refused is not None and "depot_ops_photos(id=5).image" in summary.refused
    assert "ignore_unreadable=True" in summary.refused
    assert media.exists(leftover)
    forced = collect_garbage(
        "media",
        sqlalchemy_references(db, MODELS),
        delete=True,
        ignore_unreadable=True,
        allow_no_references=True,  # the one row read holds no reference
    )
    assert [r.file_id for r in forced.deleted] == [leftover]


def test_references_through_an_alias_count() -> None:
    media = DepotManager.configure("media-v2", {"depot.backend": "memory"})
    DepotManager.alias("media", "media-v2")
    with old_files():
        kept, gone = media.create(b"kept"), media.create(b"gone")
    refs = [Batch([Reference("media", kept, "somewhere")], rows=1)]
    summary = collect_garbage("media-v2", refs, delete=True)
    assert [r.file_id for r in summary.deleted] == [gone]
    assert media.exists(kept)


def test_refuses_what_cannot_work() -> None:
    storage = DepotManager.configure("media", {"depot.backend": "memory"})
    with pytest.raises(TypeError, match="configured name"):
        collect_garbage(storage, [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grace="):
        collect_garbage("media", [], grace=timedelta(seconds=-1))
    with pytest.raises(ValueError, match=r"grace=3600: .* a timedelta"):
        collect_garbage("media", [], grace=3600)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'Photo' is not a mapped class"):
        collect_garbage("media", sqlalchemy_references(sa.create_engine("sqlite://"), ["Photo"]))
    with pytest.raises(TypeError, match="naive UTC datetime"):
        collect_garbage("media", [], now="2020-01-01")  # type: ignore[arg-type]


ROWS = 50_000


def test_memory_stays_bounded_for_50000_rows(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path / "many.sqlite")
    OpsBase.metadata.create_all(engine)
    media = DepotManager.configure("media", {"depot.backend": "memory"})
    with old_files():
        kept = [media.create(b"kept %d" % n) for n in range(10)]
        leftovers = {media.create(b"left %d" % n) for n in range(10)}

    def value(n: int) -> str:
        file_id = kept[n] if n < len(kept) else str(uuid.UUID(int=n, version=4))
        path = f"media/{file_id}"
        return json.dumps(
            {
                "depot_name": "media",
                "files": [path],
                "file_id": file_id,
                "path": path,
                "filename": f"photo-{n}.png",
                "content_type": "image/png",
                "uploaded_at": OLD,
                "_public_url": None,
            }
        )

    # The values go in with Core, as raw text (the ORM would store content).
    insert = sa.insert(Photo.__table__).values(image=sa.bindparam("text", type_=sa.Text()))
    with engine.begin() as conn:
        conn.execute(insert, [{"id": n, "text": value(n)} for n in range(ROWS)])
    all_text = sum(len(value(n)) for n in range(0, ROWS, 100)) * 100
    tracemalloc.start()
    try:
        started = time.perf_counter()
        summary = collect_garbage("media", sqlalchemy_references(engine, [Photo]), delete=True)
        took = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        engine.dispose()
    print(f"{ROWS} rows in {took:.2f} s under tracemalloc, peak {peak / 1e6:.1f} MB")
    assert summary.rows == ROWS and summary.references == ROWS
    assert {r.file_id for r in summary.deleted} == leftovers
    # One batch of rows at a time: a small part of what the table's text alone weighs.
    assert peak < all_text / 5, f"peak {peak} bytes; the rows' JSON is {all_text} bytes"


FILE_COLUMNS = ("image", "files", "cover")


def insert_raw(engine: sa.Engine, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Rows whose file columns hold the JSON of the given values, as a Core UPDATE leaves them."""
    statement = sa.insert(table).values(
        {
            k: sa.bindparam(k, type_=sa.Text()) if k in FILE_COLUMNS else sa.bindparam(k)
            for k in rows[0]
        }
    )
    texts = [{k: json.dumps(v) if k in FILE_COLUMNS else v for k, v in r.items()} for r in rows]
    with engine.begin() as conn:
        conn.execute(statement, texts)


def test_a_value_of_the_wrong_shape_stops_the_deletion(db: sa.Engine) -> None:
    # JSON, but not a file value: the field reads each as an UnreadableValue, so
    # the files they mean are unknown and must not be taken for garbage.
    media = DepotManager.configure("media", {"depot.backend": "memory"})
    with old_files():
        named = [media.create(b"named %d" % n) for n in range(4)]
    insert_raw(
        db,
        Photo.__table__,
        [
            {"id": 1, "image": {"depot_name": "media", "files": f"media/{named[0]}"}},
            {"id": 2, "image": f"media/{named[1]}"},
            {"id": 3, "image": {"path": f"media/{named[2]}", "files": [{"p": 1}]}},
        ],
    )
    insert_raw(db, Folder.__table__, [{"owner": "x", "number": 1, "files": [f"media/{named[3]}"]}])
    summary = collect_garbage("media", sqlalchemy_references(db, MODELS), delete=True)
    assert summary.refused is not None and "nothing was deleted" in summary.refused
    assert sorted(u.where for u in summary.unreadable) == [
        "depot_ops_folders(owner='x', number=1).files",
        "depot_ops_photos(id=1).image",
        "depot_ops_photos(id=2).image",
        "depot_ops_photos(id=3).image",
    ]
    assert "'files' must be a list" in summary.unreadable[0].problem
    assert all(media.exists(file_id) for file_id in named)


def test_every_file_a_value_names_is_referenced(db: sa.Engine) -> None:
    media = DepotManager.configure("media", {"depot.backend": "memory"})
    with old_files():
        image, thumb, renamed, unlisted, leftover = (media.create(b"%d" % n) for n in range(5))
    insert_raw(
        db,
        Photo.__table__,
        [
            # Written before values listed their files: the thumbnail is only thumb_path.
            {
                "id": 1,
                "image": {
                    "depot_name": "media",
                    "file_id": image,
                    "path": f"media/{image}",
                    "thumb_id": thumb,
                    "thumb_path": f"media/{thumb}",
                },
            },
            # A depot renamed and depot_name edited: the field opens depot_name/file_id.
            {
                "id": 2,
                "image": {
                    "depot_name": "media",
                    "file_id": renamed,
                    "path": f"gone/{renamed}",
                    "files": [f"gone/{renamed}"],
                },
            },
            # A 'files' that misses a path the value names; a '<name>_path' that is no depot path.
            {
                "id": 3,
                "image": {
                    "depot_name": "media",
                    "files": [],
                    "small_path": f"media/{unlisted}",
                    "local_path": "/tmp/x.png",
                },
            },
        ],
    )
    summary = collect_garbage("media", sqlalchemy_references(db, MODELS), delete=True)
    assert summary.refused is None and not summary.unreadable
    assert [r.file_id for r in summary.deleted] == [leftover]
    assert set(media.list()) == {image, thumb, renamed, unlisted}


def test_times_with_a_zone_and_in_the_future() -> None:
    media = DepotManager.configure("media", {"depot.backend": "memory"})
    with old_files():
        zoned, future, old = (media.create(b"%d" % n) for n in range(3))
    # A third-party backend may give its times with a zone; a clock may be ahead.
    media.files[zoned]["metadata"]["last_modified"] = datetime(
        2020, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))
    )
    media.files[future]["metadata"]["last_modified"] = datetime(2999, 1, 1)
    with pytest.raises(ValueError, match="naive UTC"):
        collect_garbage("media", [], now=datetime.now(timezone.utc))
    summary = collect_garbage("media", [], delete=True, allow_no_references=True)
    assert sorted(r.file_id for r in summary.deleted) == sorted([zoned, old])
    assert [r.file_id for r in summary.recent] == [future]
    assert media.list() == [future]


@pytest.mark.parametrize("backend", ["local", "sql", "memory"])
def test_unfinished_chunked_uploads_are_never_collected(backend: str, tmp_path: Path) -> None:
    settings: dict[str, Any] = {"depot.backend": backend}
    if backend == "local":
        settings["depot.storage_path"] = str(tmp_path / "media")
    elif backend == "sql":
        settings["depot.url"] = f"sqlite:///{tmp_path / 'files.sqlite'}"
    media = DepotManager.configure("media", settings)
    data = b"x" * 1000
    upload = media.reserve(len(data), None, "text/plain", "a.txt")
    media.write_chunk(upload, 0, data[:500])
    later = datetime.utcnow() + timedelta(days=30)  # noqa: DTZ003 - naive UTC, as stored
    summary = collect_garbage(
        "media", [], delete=True, grace=timedelta(0), now=later, allow_no_references=True
    )
    assert summary.files == 0 and not summary.garbage
    media.write_chunk(upload, 500, data[500:])
    with media.get(media.finalize(upload)) as stored:
        assert stored.read() == data


def test_a_ming_document_of_the_wrong_shape_stops_the_deletion() -> None:
    pytest.importorskip("ming")
    from ming import create_datastore

    from depot.ops import ming_references
    from tests.ops.ming_models import Note, ops_session

    media = DepotManager.configure("media", {"depot.backend": "memory"})
    with old_files():
        meant, thumb, leftover = (media.create(b"%d" % n) for n in range(3))
    datastore = create_datastore("mim:///depot_ops_gc")
    ops_session.impl.bind = datastore
    try:
        collection = ops_session.db["depot_ops_notes"]
        collection.insert_one({"title": "edited", "file": f"media/{meant}"})
        old_value = {"depot_name": "media", "file_id": meant, "path": f"media/{meant}"}
        collection.insert_one(
            {"title": "old", "file": {**old_value, "thumb_path": f"media/{thumb}"}}
        )
        summary = collect_garbage("media", ming_references(ops_session, [Note]), delete=True)
        assert summary.refused is not None and not summary.deleted
        (problem,) = summary.unreadable
        assert "it is a JSON string, not an object" in problem.problem
        collection.delete_many({"title": "edited"})
        summary = collect_garbage("media", ming_references(ops_session, [Note]), delete=True)
        assert [r.file_id for r in summary.deleted] == [leftover]
        assert set(media.list()) == {meant, thumb}
    finally:
        datastore.conn.drop_database("depot_ops_gc")
        ops_session.impl.bind = None


def test_a_listed_name_that_is_no_file_id_is_never_deleted() -> None:
    # A third-party backend's list() may give what its get() refuses.
    media = DepotManager.configure("media", {"depot.backend": "memory"})
    with old_files():
        leftover = media.create(b"left")
    media.files["not-an-id"] = dict(media.files[leftover])
    summary = collect_garbage("media", [], delete=True, allow_no_references=True)
    assert [r.file_id for r in summary.deleted] == [leftover]
    assert [(r.file_id, r.outcome) for r in summary.failed] == [("not-an-id", "failed")]
    assert "InvalidFileIdError" in summary.failed[0].reason
    assert "not-an-id" in media.files


def test_a_reference_under_a_name_not_configured_keeps_its_file() -> None:
    # The application aliases 'media' to 'media-v2'; the job collecting garbage
    # forgot that alias. The rows' 'media/<id>' must not make every file garbage.
    media = DepotManager.configure("media-v2", {"depot.backend": "memory"})
    DepotManager.configure("elsewhere", {"depot.backend": "memory"})
    with old_files():
        kept, moved, gone = (media.create(b"%d" % n) for n in range(3))
    refs = [
        Batch(
            [
                Reference("media", kept, "docs(id=1).file"),
                Reference("media", str(uuid.uuid4()), "docs(id=2).file"),  # not ours: no file
                Reference("elsewhere", moved, "docs(id=3).file"),  # configured: told apart
            ],
            rows=3,
        )
    ]
    summary = collect_garbage("media-v2", refs, delete=True, allow_no_references=True)
    assert sorted(r.file_id for r in summary.deleted) == sorted([moved, gone])
    assert [(r.path, r.where) for r in summary.unconfigured] == [
        (f"media/{kept}", "docs(id=1).file")
    ]
    assert media.exists(kept)


def test_no_reference_read_at_all_stops_the_deletion(db: sa.Engine) -> None:
    """The wrong database, or the wrong models: every old file looked like garbage."""
    media = DepotManager.configure("media", {"depot.backend": "memory"})
    with old_files():
        files = {media.create(b"%d" % n) for n in range(3)}
    summary = collect_garbage("media", sqlalchemy_references(db, MODELS), delete=True)
    assert summary.refused is not None and "no reference to 'media' was read" in summary.refused
    assert "allow_no_references=True" in summary.refused
    assert {r.file_id for r in summary.garbage} == files and set(media.list()) == files
    forced = collect_garbage(
        "media", sqlalchemy_references(db, MODELS), delete=True, allow_no_references=True
    )
    assert {r.file_id for r in forced.deleted} == files and media.list() == []
