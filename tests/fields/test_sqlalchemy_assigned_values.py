"""What a file attribute accepts: content, a value of the column's type, or None.

filedepot 0.12 kept a value of another upload type as it was and refused it at
the flush with a ``ValueError`` (wrapped in SQLAlchemy's ``StatementError``);
its own suite checks that (``test_check_assigned_type``). A plain ``dict`` is
refused at assignment: filedepot took one for a value (and deleted its files
if the transaction rolled back), or failed with ``AttributeError: files``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.exc import StatementError

from depot.fields.specialized.image import UploadedImageWithThumb
from depot.fields.upload import UploadedFile
from tests.fields.files import all_exist, stored_count
from tests.fields.models import Album, Document, Photo
from tests.images.pictures import encode, halves

pytestmark = pytest.mark.usefixtures("depot")

Maker = orm.sessionmaker[orm.Session]


def png() -> bytes:
    return encode(halves((40, 30)), "PNG")


# -- a value of another upload type ------------------------------------------------------------


def test_a_value_of_another_type_is_refused_at_flush(Session: Maker) -> None:  # noqa: N803
    """filedepot's test_check_assigned_type, on every database."""
    plain = UploadedFile(png())
    with Session() as s:
        photo = Photo(name="p")
        photo.picture = plain
        assert photo.picture is plain  # kept as it is, as filedepot did
        s.add(photo)
        with pytest.raises(StatementError) as caught:
            s.flush()
        assert "ValueError" in str(caught.value)
        assert isinstance(caught.value.orig, ValueError)
        message = str(caught.value.orig)
        assert "upload_type=UploadedImageWithThumb" in message
        assert "got UploadedFile" in message
        assert "value.file" in message
        s.rollback()
    with Session() as s:
        assert s.scalars(sa.select(Photo)).all() == []
    # Built outside any field: no transaction answers for its file, none deletes it.
    assert all_exist(plain)


def test_a_value_copied_from_a_column_of_another_type_is_refused(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        doc = Document(name="d", attachment=png())
        s.add(doc)
        s.commit()
        photo = Photo(name="p", picture=doc.attachment)
        s.add(photo)
        with pytest.raises(StatementError, match="stores UploadedImageWithThumb values"):
            s.commit()
        s.rollback()
        assert all_exist(doc.attachment)


def test_a_list_item_of_another_type_is_refused_at_flush(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        photo = Photo(name="p", pictures=[png()])
        photo.pictures.append(UploadedFile(png()))
        s.add(photo)
        with pytest.raises(StatementError, match="got UploadedFile"):
            s.flush()
        s.rollback()


def test_values_of_the_column_type_and_subclasses_are_kept(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        first = Photo(name="a", picture=png(), pictures=[png()])
        s.add(first)
        s.commit()
        # A subclass of UploadedFile into an UploadedFile column: filedepot accepted it.
        copy = Photo(name="b", picture=first.picture, pictures=list(first.pictures))
        doc = Document(name="d", attachment=first.picture)
        s.add_all([copy, doc])
        s.commit()
        assert isinstance(first.picture, UploadedImageWithThumb)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        b = s.scalars(sa.select(Photo).where(Photo.name == "b")).one()
        assert doc.attachment["path"] == b.picture["path"]
        assert "thumb_path" in b.picture and all_exist(b.picture)


# -- a dict ------------------------------------------------------------------------------------


def test_a_dict_is_refused_at_assignment(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        doc = Document(name="d", attachment=b"kept")
        s.add(doc)
        s.commit()
        decoded = json.loads(doc.attachment.encode())
        for value in [decoded, {}, {"filename": "a.txt", "content": b"x"}, {"files": []}]:
            with pytest.raises(ValueError, match="cannot keep a dict") as caught:
                doc.attachment = value
            message = str(caught.value)
            assert "content to store" in message
            assert "UploadedFile(data)" in message
            assert "or None" in message
            assert doc.attachment["path"] == decoded["path"]
        # What the message says works.
        other = Document(name="o", attachment=UploadedFile(decoded))
        s.add(other)
        s.commit()
    with Session() as s:
        names = {d.name: d.attachment for d in s.scalars(sa.select(Document))}
        assert names["o"]["path"] == names["d"]["path"]
        assert names["o"].file.read() == b"kept"


def test_a_dict_is_refused_in_a_list(Session: Maker) -> None:  # noqa: N803
    stored_before = stored_count()
    with Session() as s:
        album = Album(name="a", photos=[b"one"])
        s.add(album)
        s.commit()
        value = dict(album.photos[0])
        with pytest.raises(ValueError, match="File 2 of 2: UploadedFilesField cannot keep a dict"):
            album.photos = [b"two", value]
        # Refused before anything was stored.
        assert stored_count() == stored_before + 1
        for change in (
            lambda: album.photos.append(value),
            lambda: album.photos.extend([value]),
            lambda: album.photos.insert(0, value),
            lambda: album.photos.__setitem__(0, value),
        ):
            with pytest.raises(ValueError, match="cannot keep a dict"):
                change()
        assert [dict(p) for p in album.photos] == [value]
        s.commit()


def test_copying_values_keeps_working(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        a = Document(name="a", attachment=b"shared")
        album = Album(name="al", photos=[b"p"])
        s.add_all([a, album])
        s.commit()
        b = Document(name="b")
        b.attachment = a.attachment
        second = Album(name="al2", photos=album.photos)
        second.photos.append(album.photos[0])
        s.add_all([b, second])
        s.commit()
    with Session() as s:
        docs: dict[str, Any] = {d.name: d for d in s.scalars(sa.select(Document))}
        assert docs["b"].attachment.file.read() == b"shared"
        al2 = s.scalars(sa.select(Album).where(Album.name == "al2")).one()
        assert len(al2.photos) == 2
