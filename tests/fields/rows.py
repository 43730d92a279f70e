"""What the field tests write to the database and read back: committed rows and their values."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from tests.fields.models import Document, Video

Maker = orm.sessionmaker[orm.Session]


def add_document(Session: Maker, name: str = "doc", content: bytes = b"first") -> Any:  # noqa: N803
    """A committed document with a file; returns its (detached) attachment value."""
    with Session() as s:
        doc = Document(name=name, attachment=content)
        s.add(doc)
        s.commit()
        return doc.attachment


def attachment_of(Session: Maker, name: str = "doc") -> Any:  # noqa: N803
    """The attachment of document ``name`` as the database holds it now."""
    with Session() as s:
        return s.scalars(sa.select(Document).where(Document.name == name)).one().attachment


def commit_video(s: orm.Session) -> Video:
    """A video committed in ``s``: its file on the base table, its poster on its own."""
    video = Video(file=b"movie", poster=b"poster")
    s.add(video)
    s.commit()
    return video
