"""UploadedFilesField: a list of files in one column, each following the transaction."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from depot.exceptions import FileTooLargeError
from depot.fields.sqlalchemy import UploadedFileList
from depot.fields.upload import UploadedFile
from tests.fields.files import all_exist, none_exist, stored_count
from tests.fields.models import Album
from tests.streams import OneWayStream

pytestmark = pytest.mark.usefixtures("depot")

Maker = orm.sessionmaker[orm.Session]


def add_album(Session: Maker, *photos: bytes) -> list[Any]:  # noqa: N803
    with Session() as s:
        album = Album(name="album", photos=list(photos))
        s.add(album)
        s.commit()
        return list(album.photos)


def contents(Session: Maker) -> list[bytes] | None:  # noqa: N803
    with Session() as s:
        photos = s.scalars(sa.select(Album)).one().photos
        return None if photos is None else [p.file.read() for p in photos]


def test_a_list_of_files(Session: Maker) -> None:  # noqa: N803
    add_album(Session, b"one", b"two")
    with Session() as s:
        photos = s.scalars(sa.select(Album)).one().photos
        raw = s.execute(sa.text("SELECT photos FROM depot_albums")).scalar_one()
    assert isinstance(photos, UploadedFileList)
    assert all(isinstance(p, UploadedFile) for p in photos)
    assert [p.file.read() for p in photos] == [b"one", b"two"]
    # A JSON array of what a single file column holds.
    assert json.loads(raw) == [dict(p) for p in photos]


def test_empty_and_none(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        s.add(Album(name="empty", photos=[]))
        s.add(Album(name="none", photos=None))
        s.commit()
        found = {a.name: a.photos for a in s.scalars(sa.select(Album))}
    assert found == {"empty": [], "none": None}


def test_a_single_file_column_reads_as_a_list_of_one(Session: Maker) -> None:  # noqa: N803
    single = UploadedFile(b"single")
    with Session() as s:
        s.execute(
            sa.text("INSERT INTO depot_albums (name, photos) VALUES ('old', :json)"),
            {"json": single.encode()},
        )
        photos = s.scalars(sa.select(Album)).one().photos
    assert photos == [single]


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_append_in_place(Session: Maker, outcome: str) -> None:  # noqa: N803
    add_album(Session, b"one")
    with Session() as s:
        album = s.scalars(sa.select(Album)).one()
        album.photos.append(b"two")
        album.photos += [b"three"]
        added = album.photos[1:]
        assert isinstance(added[0], UploadedFile)
        getattr(s, outcome)()
    if outcome == "commit":
        assert contents(Session) == [b"one", b"two", b"three"]
        assert all_exist(added)
    else:
        assert contents(Session) == [b"one"]
        assert none_exist(added)


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_remove_in_place(Session: Maker, outcome: str) -> None:  # noqa: N803
    one, two, three = add_album(Session, b"one", b"two", b"three")
    with Session() as s:
        album = s.scalars(sa.select(Album)).one()
        album.photos.remove(album.photos[0])
        del album.photos[-1]
        getattr(s, outcome)()
    if outcome == "commit":
        assert contents(Session) == [b"two"]
        assert none_exist([one, three])
    else:
        assert contents(Session) == [b"one", b"two", b"three"]
        assert all_exist([one, three])
    assert all_exist(two)


def test_other_changes_in_place(Session: Maker) -> None:  # noqa: N803
    one, two = add_album(Session, b"one", b"two")
    with Session() as s:
        album = s.scalars(sa.select(Album)).one()
        album.photos.insert(0, b"zero")
        album.photos[1] = b"ONE"
        album.photos.extend([b"three"])
        album.photos[3:] = [b"four"]
        assert album.photos.pop(2) == two
        s.commit()
    assert contents(Session) == [b"zero", b"ONE", b"four"]
    assert none_exist([one, two])
    assert stored_count() == 3


def test_reassigned_list_keeps_the_files_it_still_holds(Session: Maker) -> None:  # noqa: N803
    one, two = add_album(Session, b"one", b"two")
    with Session() as s:
        album = s.scalars(sa.select(Album)).one()
        album.photos = [album.photos[1], b"three"]
        s.commit()
    assert contents(Session) == [b"two", b"three"]
    assert none_exist(one)
    assert all_exist(two)


def test_change_in_a_savepoint_rolled_back(Session: Maker) -> None:  # noqa: N803
    add_album(Session, b"one")
    with Session() as s:
        album = s.scalars(sa.select(Album)).one()
        with pytest.raises(ZeroDivisionError), s.begin_nested():
            album.photos.append(b"two")
            two = album.photos[-1]
            s.flush()
            1 / 0  # noqa: B018
        assert none_exist(two)
        s.commit()
    assert contents(Session) == [b"one"]


def test_deleted_row_deletes_every_file(Session: Maker) -> None:  # noqa: N803
    photos = add_album(Session, b"one", b"two")
    with Session() as s:
        s.delete(s.scalars(sa.select(Album)).one())
        s.commit()
    assert none_exist(photos)


def test_cleared_list(Session: Maker) -> None:  # noqa: N803
    photos = add_album(Session, b"one", b"two")
    with Session() as s:
        album = s.scalars(sa.select(Album)).one()  # held: the session keeps objects weakly
        album.photos.clear()
        s.commit()
    assert contents(Session) == []
    assert none_exist(photos)


def test_validators_check_every_file_before_storing_any(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        album = Album(name="album")
        s.add(album)
        with pytest.raises(FileTooLargeError, match="File 2 of 3: The file is too large"):
            album.photos = [b"small", b"x" * 101, b"small too"]
        assert stored_count() == 0
        album.photos = []
        with pytest.raises(FileTooLargeError):
            album.photos.append(b"y" * 101)
        assert album.photos == []


def test_a_stream_found_too_large_midway_undoes_the_assignment(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        album = Album(name="album")
        s.add(album)
        with pytest.raises(FileTooLargeError):
            album.photos = [b"fits", OneWayStream(b"z" * 500, piece=10)]
        assert album.photos is None
    assert stored_count() == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"one file", "put it in a list"),
        ({"file_id": "x"}, "put it in a list"),
        ([b"ok", None], "cannot hold None"),
    ],
)
def test_what_is_not_a_list_of_files(Session: Maker, value: Any, message: str) -> None:  # noqa: N803
    album = Album(name="album")
    with pytest.raises(TypeError, match=message):
        album.photos = value
    assert stored_count() == 0


def test_detached_list_changed_then_added_back(Session: Maker) -> None:  # noqa: N803
    one, two = add_album(Session, b"one", b"two")
    with Session(expire_on_commit=False) as s:
        album = s.scalars(sa.select(Album)).one()
    album.photos.pop(0)
    album.photos.append(b"three")
    with Session() as s:
        s.add(album)
        s.commit()
    assert contents(Session) == [b"two", b"three"]
    assert none_exist(one)
