"""A file column whose text is not a file value (issue 12, finding 13).

The row still loads, and can be cleared, updated and deleted through the ORM;
using the value raises CorruptColumnError naming the row, the column and the
problem; nothing is stored or deleted for it. Rows are written with Core SQL.
"""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from depot.exceptions import CorruptMetadataError
from depot.fields.upload import CorruptColumnError, UnreadableValue, UploadedFile
from tests.fields.files import all_exist, stored_count
from tests.fields.models import Album, Document

pytestmark = pytest.mark.usefixtures("depot")

Maker = orm.sessionmaker[orm.Session]

CORRUPT = [
    "5",
    '"x"',
    "null",
    "[1, 2]",
    "true",
    "not json",
    '{"depot_name": "default", "files": 5}',
    '{"depot_name": "default", "files": "default/abc"}',
    '{"depot_name": "default", "files": [1, 2]}',
    '{"depot_name": 7, "files": []}',
    '{"depot_name": "default", "files": [], "file_id": ["x"]}',
    '{"files": ["default/\\u0000"], "path": 3}',
]

#: One of each kind, for the tests that change the row.
SAMPLE = ["5", "null", "not json", '{"depot_name": "default", "files": 5}']


def insert_raw(Session: Maker, table: str, column: str, text: str) -> None:  # noqa: N803
    with Session() as s:
        s.execute(
            sa.text(f"INSERT INTO {table} (id, name, {column}) VALUES (1, 'raw', :text)"),
            {"text": text},
        )
        s.commit()


def raw_text(Session: Maker, table: str, column: str) -> str | None:  # noqa: N803
    with Session() as s:
        return s.execute(sa.text(f"SELECT {column} FROM {table}")).scalar()


@pytest.mark.parametrize("text", CORRUPT)
def test_loads_and_says_what_is_wrong_when_used(Session: Maker, text: str) -> None:  # noqa: N803
    insert_raw(Session, "depot_documents", "attachment", text)
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        assert isinstance(doc.attachment, UnreadableValue)
        for use in (lambda v: v.file, lambda v: v.url, lambda v: v["path"], lambda v: list(v)):
            with pytest.raises(CorruptColumnError, match=r"Document\(id=1\)\.attachment") as info:
                use(doc.attachment)
            assert "Assign a new file or None" in str(info.value)
        assert isinstance(info.value, CorruptMetadataError)
        assert isinstance(info.value, ValueError)
    assert stored_count() == 0


@pytest.mark.parametrize("text", SAMPLE)
def test_cleared_through_the_orm(Session: Maker, text: str) -> None:  # noqa: N803
    insert_raw(Session, "depot_documents", "attachment", text)
    with Session() as s:
        s.scalars(sa.select(Document)).one().attachment = None
        s.commit()
    assert raw_text(Session, "depot_documents", "attachment") is None


@pytest.mark.parametrize("text", SAMPLE)
def test_repaired_with_a_new_file(Session: Maker, text: str) -> None:  # noqa: N803
    insert_raw(Session, "depot_documents", "attachment", text)
    with Session() as s:
        s.scalars(sa.select(Document)).one().attachment = b"good"
        s.commit()
    with Session() as s:
        value = s.scalars(sa.select(Document)).one().attachment
        assert isinstance(value, UploadedFile)
        assert value.file.read() == b"good"


@pytest.mark.parametrize("text", SAMPLE)
def test_other_columns_updated_keep_the_text(Session: Maker, text: str) -> None:  # noqa: N803
    insert_raw(Session, "depot_documents", "attachment", text)
    with Session() as s:
        s.scalars(sa.select(Document)).one().name = "renamed"
        s.commit()
    assert raw_text(Session, "depot_documents", "attachment") == text


@pytest.mark.parametrize("expired", [False, True])
@pytest.mark.parametrize("text", SAMPLE)
def test_deleted_through_the_orm(
    Session: Maker,  # noqa: N803
    text: str,
    expired: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    insert_raw(Session, "depot_documents", "attachment", text)
    with Session() as s, caplog.at_level(logging.ERROR, "depot.fields"):
        doc = s.scalars(sa.select(Document)).one()
        if expired:
            s.expire(doc)
        s.delete(doc)
        s.commit()
    assert raw_text(Session, "depot_documents", "name") is None
    assert not caplog.records, "tried to delete files for an unreadable value"


@pytest.mark.parametrize(
    "text", ["5", '"x"', "{}x", '[{"depot_name": "default", "files": 3}]', "[null]"]
)
def test_list_column(Session: Maker, text: str) -> None:  # noqa: N803
    insert_raw(Session, "depot_albums", "photos", text)
    with Session() as s:
        album = s.scalars(sa.select(Album)).one()
        with pytest.raises(CorruptColumnError, match=r"Album\(id=1\)\.photos"):
            album.photos.append(b"more")
        album.photos = [b"fresh"]
        s.commit()
    with Session() as s:
        assert [p.file.read() for p in s.scalars(sa.select(Album)).one().photos] == [b"fresh"]


def test_list_column_row_deleted(Session: Maker) -> None:  # noqa: N803
    insert_raw(Session, "depot_albums", "photos", "[1]")
    with Session() as s:
        s.delete(s.scalars(sa.select(Album)).one())
        s.commit()
    assert raw_text(Session, "depot_albums", "name") is None


def test_decode_refuses_what_is_not_a_value() -> None:
    for text in ["5", '"x"', "null", "[1, 2]", '{"files": 5}']:
        with pytest.raises(ValueError, match="not an object|'files' must be"):
            UploadedFile.decode(text)
    assert stored_count() == 0


def test_assigning_a_dict_that_is_not_a_value() -> None:
    doc = Document(name="d")
    with pytest.raises(ValueError, match="cannot keep a dict"):
        doc.attachment = {"depot_name": "default", "files": "default/x"}
    assert doc.attachment is None


def test_an_unreadable_row_beside_good_ones(Session: Maker) -> None:  # noqa: N803
    """Loading many rows with one bad among them works; the good ones open."""
    with Session() as s:
        s.add(Document(id=2, name="good", attachment=b"good"))
        s.commit()
    insert_raw(Session, "depot_documents", "attachment", "[1, 2]")
    with Session() as s:
        docs = {d.name: d for d in s.scalars(sa.select(Document))}
        assert docs["good"].attachment.file.read() == b"good"
        assert isinstance(docs["raw"].attachment, UnreadableValue)
        s.delete(docs["raw"])
        s.commit()
        assert all_exist(docs["good"].attachment)
