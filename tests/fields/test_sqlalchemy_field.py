"""UploadedFileField: what it accepts, what the column holds, what loads back."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from depot.exceptions import (
    ContentTypeNotAllowedError,
    FileTooLargeError,
    StoredFileNotFoundError,
)
from depot.fields.upload import UploadedFile
from depot.io.utils import FileIntent
from depot.manager import DepotManager
from tests.fields.files import all_exist, exists, none_exist, stored_count
from tests.fields.models import Checked, Document, LegacyDocument, Video
from tests.reference import UPLOADED_FILE_KEYS
from tests.streams import OneWayStream

pytestmark = pytest.mark.usefixtures("depot")

Maker = orm.sessionmaker[orm.Session]


def raw_column(session: orm.Session, table: str, column: str) -> Any:
    return session.execute(sa.text(f"SELECT {column} FROM {table}")).scalar_one()


def test_sqlalchemy_2_style(Session: Maker) -> None:  # noqa: N803
    with Session() as s, s.begin():
        s.add(Document(name="doc", attachment=io.BytesIO(b"content")))
    with Session() as s:
        doc = s.scalars(sa.select(Document).where(Document.name == "doc")).one()
        assert isinstance(doc.attachment, UploadedFile)
        assert doc.attachment.file.read() == b"content"
        stored = raw_column(s, "depot_documents", "attachment")
    # The column holds the JSON UploadedFile.encode() writes, filedepot's format.
    assert json.loads(stored) == dict(doc.attachment)
    assert set(doc.attachment) >= set(UPLOADED_FILE_KEYS)


def test_sqlalchemy_1_4_style(Session: Maker) -> None:  # noqa: N803
    session = Session()
    session.add(LegacyDocument(name="legacy", content=b"old style"))
    session.commit()
    doc = session.query(LegacyDocument).filter_by(name="legacy").one()
    assert doc.content.file.read() == b"old style"
    old = doc.content
    doc.content = None
    session.commit()
    assert session.query(LegacyDocument).one().content is None
    assert none_exist(old)
    session.close()


def test_column_is_text(Session: Maker, engine: sa.Engine) -> None:  # noqa: N803
    inspector = sa.inspect(engine)
    single = {c["name"]: c["type"] for c in inspector.get_columns("depot_documents")}
    many = {c["name"]: c["type"] for c in inspector.get_columns("depot_albums")}
    assert type(single["attachment"]).__name__ == "TEXT"
    mysql = engine.dialect.name in ("mysql", "mariadb")
    assert type(many["photos"]).__name__ == ("MEDIUMTEXT" if mysql else "TEXT")


def test_json_longer_than_filedepots_column(Session: Maker) -> None:  # noqa: N803
    """filedepot's VARCHAR(4000) could not hold a value with many extra files."""
    with Session() as s:
        s.add(Checked(many=b"main"))
        s.commit()
        value = s.scalars(sa.select(Checked)).one().many
        assert len(value.encode()) > 4000
        assert len(raw_column(s, "depot_checked", "many")) == len(value.encode())
    assert len(value["files"]) == 41
    assert all_exist(value)


def test_value_kept_as_is_and_none_clears(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        first = Document(name="a", attachment=b"shared")
        s.add(first)
        s.flush()
        value = first.attachment
        second = Document(name="b", attachment=value)
        assert second.attachment is value
        second.attachment = None
        assert second.attachment is None
        s.add(second)
        s.commit()
    assert stored_count() == 1


def test_missing_file_still_loads(Session: Maker, depot: Any) -> None:  # noqa: N803
    with Session() as s:
        s.add(Document(name="doc", attachment=b"soon gone"))
        s.commit()
        path = s.scalars(sa.select(Document)).one().attachment.path
    depot.delete(path.partition("/")[2])
    with Session() as s:
        doc = s.scalars(sa.select(Document)).one()
        assert doc.attachment.path == path
        with pytest.raises(StoredFileNotFoundError, match=path):
            doc.attachment.file  # noqa: B018
        # The row can be cleaned up.
        doc.attachment = b"replacement"
        s.commit()
        assert doc.attachment.file.read() == b"replacement"


def test_validators_refuse_before_storing(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        row = Checked(text=b"short text")
        s.add(row)
        s.commit()
        kept = row.text
        with pytest.raises(FileTooLargeError, match="at most 100 bytes"):
            row.text = b"x" * 101
        with pytest.raises(FileTooLargeError):
            row.text = OneWayStream(b"y" * 5000)
        with pytest.raises(ContentTypeNotAllowedError):
            row.text = b"\x89PNG\r\n\x1a\n" + b"\0" * 30
        assert row.text == kept
        s.commit()
    assert stored_count() == 1


def test_filters_store_more_files_deleted_with_the_value(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        row = Checked(copied=b"original")
        s.add(row)
        s.commit()
        value = row.copied
        assert len(value["files"]) == 2
        assert DepotManager.get_file(value["copy_path"]).read() == b"copy of original"
        row.copied = None
        s.commit()
    assert none_exist(value)


def test_failing_filter_leaves_nothing_stored(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        row = Checked()
        s.add(row)
        with pytest.raises(RuntimeError, match="the filter broke"):
            row.broken = b"data"
        assert row.broken is None
    assert stored_count() == 0


def test_upload_storage(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        row = Checked(elsewhere=b"in other")
        s.add(row)
        s.commit()
        assert row.elsewhere.depot_name == "other"
        assert exists(row.elsewhere.path)
    assert stored_count("default") == 0


def test_core_statements_say_to_assign_through_the_orm(Session: Maker) -> None:  # noqa: N803
    with Session() as s, pytest.raises(sa.exc.StatementError, match="assign the content"):
        s.execute(sa.insert(Document).values(name="core", attachment=b"raw bytes"))


def test_inherited_columns_convert_once(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        video = Video(file=b"movie", poster=b"poster")
        s.add(video)
        s.commit()
    assert stored_count() == 2


def test_a_copy_of_the_stored_file(Session: Maker) -> None:  # noqa: N803
    """Assigning the stored file gives a row its own copy, which the docs recommend."""
    with Session() as s:
        first = Document(name="a", attachment=FileIntent(b"report", "report.txt", "text/plain"))
        s.add(first)
        s.flush()
        second = Document(name="b", attachment=first.attachment.file)
        s.add(second)
        s.commit()
        assert second.attachment.file_id != first.attachment.file_id
        assert (second.attachment.filename, second.attachment.file.read()) == (
            "report.txt",
            b"report",
        )
        copy = second.attachment
        first.attachment = None
        s.commit()
    assert all_exist(copy)
