"""The SQLAlchemy fields with their files on S3 (moto's server), on every database."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from tests.fields.files import all_exist, none_exist
from tests.fields.models import Album, Document

Maker = orm.sessionmaker[orm.Session]


@pytest.fixture
def s3_depot(s3_settings: dict[str, Any]) -> FileStorage:
    storage = DepotManager.configure("default", s3_settings)
    DepotManager.configure("other", {"depot.backend": "memory"})
    return storage


@pytest.mark.usefixtures("s3_depot")
def test_replace_commit_and_rollback(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        doc = Document(name="doc", attachment=b"first")
        s.add(doc)
        s.commit()
        first = doc.attachment
        assert first.file.read() == b"first"
        doc.attachment = b"second"
        second = doc.attachment
        s.commit()
        assert none_exist(first)
        doc.attachment = b"third"
        third = doc.attachment
        s.flush()
        s.rollback()
        assert none_exist(third)
        assert doc.attachment.file.read() == b"second"
    assert all_exist(second)


@pytest.mark.usefixtures("s3_depot")
def test_savepoint_and_list(Session: Maker) -> None:  # noqa: N803
    with Session() as s:
        album = Album(name="album", photos=[b"one"])
        s.add(album)
        s.flush()
        with pytest.raises(ZeroDivisionError), s.begin_nested():
            album.photos.append(b"two")
            two = album.photos[-1]
            s.flush()
            1 / 0  # noqa: B018
        assert none_exist(two)
        album.photos.append(b"three")
        s.commit()
        assert [p.file.read() for p in album.photos] == [b"one", b"three"]
        photos = list(album.photos)
        s.delete(album)
        s.commit()
    assert none_exist(photos)


# One database is enough here: the failure is the backend's; each run starts a server.
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_server_down_when_deleting_after_commit(
    Session: Maker,  # noqa: N803
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.backends.s3 import MotoServer

    # No retries against a stopped server: the failure is the subject here.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with MotoServer(tmp_path) as server:
        DepotManager.configure(
            "default",
            {
                "depot.backend": "s3",
                "depot.bucket": "sql-outage",
                "depot.endpoint_url": server.url,
                "depot.access_key_id": "k",
                "depot.secret_access_key": "s",
                "depot.region_name": "us-east-1",
            },
        )
        with Session() as s:
            doc = Document(name="doc", attachment=b"on s3")
            s.add(doc)
            s.commit()
            path = doc.attachment.path
            doc.attachment = None
            s.flush()
            server.stop()
            with caplog.at_level(logging.ERROR, "depot.fields"):
                s.commit()  # does not raise: the row is written
        server.start()
    with Session() as s:
        assert s.scalars(sa.select(Document)).one().attachment is None
    [record] = caplog.records
    assert record.getMessage() == (
        f"Could not delete {path} (no row refers to it after the commit); "
        "the file stays in its depot"
    )
    assert "Cannot reach the S3 bucket 'sql-outage'" in str(record.exc_info[1])  # type: ignore[index]
