"""Two rows sharing one value, both loaded in one session (issue 12, finding 3).

One row letting go of the value (cleared, replaced, deleted) must not delete
the files the other loaded row still refers to.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from tests.fields.files import all_exist, none_exist
from tests.fields.models import Album, Document

pytestmark = pytest.mark.usefixtures("depot")

Maker = orm.sessionmaker[orm.Session]


@pytest.fixture
def shared(Session: Maker) -> Any:  # noqa: N803
    """Rows 'a' and 'b' committed with one value, copied by assigning the stored file."""
    with Session(expire_on_commit=False) as s:
        a = Document(name="a", attachment=b"shared")
        s.add(a)
        s.commit()
        s.add(Document(name="b", attachment=a.attachment))
        s.commit()
    return a.attachment


def load(s: orm.Session, name: str) -> Document:
    return s.scalars(sa.select(Document).where(Document.name == name)).one()


def let_go(s: orm.Session, doc: Document, how: str) -> None:
    """Make the row of ``doc`` let go of its value: "cleared", "replaced" or "deleted"."""
    if how == "cleared":
        doc.attachment = None
    elif how == "replaced":
        doc.attachment = b"new"
    else:
        s.delete(doc)


def assert_kept_for_b(Session: Maker, shared: Any) -> None:  # noqa: N803
    """The shared files are still there, and row 'b' opens them."""
    assert all_exist(shared)
    with Session() as s:
        assert load(s, "b").attachment.file.read() == b"shared"


@pytest.mark.parametrize("how", ["cleared", "replaced", "deleted"])
def test_the_other_loaded_row_keeps_the_file(Session: Maker, shared: Any, how: str) -> None:  # noqa: N803
    with Session() as s:
        a, b = load(s, "a"), load(s, "b")
        assert b.attachment == shared
        let_go(s, a, how)
        s.commit()
    assert_kept_for_b(Session, shared)


def test_both_rows_let_go_in_one_transaction(Session: Maker, shared: Any) -> None:  # noqa: N803
    with Session() as s:
        a, b = load(s, "a"), load(s, "b")
        a.attachment = None
        s.delete(b)
        s.commit()
    assert none_exist(shared)


def test_list_column_sharing_a_file_with_a_single_column(Session: Maker, shared: Any) -> None:  # noqa: N803
    with Session() as s:
        s.add(Album(name="album", photos=[load(s, "a").attachment]))
        s.commit()
    with Session() as s:
        a, b = load(s, "a"), load(s, "b")
        album = s.scalars(sa.select(Album)).one()
        a.attachment = None
        b.attachment = None
        s.commit()
        assert all_exist(shared), "the album still holds it"
        album.photos = []
        s.commit()
    assert none_exist(shared)


@pytest.mark.parametrize("how", ["cleared", "deleted"])
def test_the_other_row_not_loaded_keeps_the_file(Session: Maker, shared: Any, how: str) -> None:  # noqa: N803
    """The value was copied in this process: the database is asked before deleting."""
    with Session() as s:
        let_go(s, load(s, "a"), how)
        s.commit()
    assert_kept_for_b(Session, shared)
    with Session() as s:
        load(s, "b").attachment = None
        s.commit()
    assert none_exist(shared), "the last row let go of it"


def test_the_other_row_in_another_session(Session: Maker, shared: Any) -> None:  # noqa: N803
    with Session() as first, Session(expire_on_commit=False) as second:
        b = load(second, "b")
        second.commit()  # SQLite: a reader's lock would keep the other session from committing
        load(first, "a").attachment = None
        first.commit()
        assert b.attachment.file.read() == b"shared"
