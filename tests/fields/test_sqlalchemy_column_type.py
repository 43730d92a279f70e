"""UploadedFileField as a type: filedepot's names, its arguments, statement caching."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from depot.fields.sqlalchemy import UploadedFileField, UploadedFilesField, _SQLAMutationTracker
from depot.fields.upload import UploadedFile
from depot.validators import MaxSize
from tests.fields.models import Document, Video, WithCopy


def test_filedepot_names_applications_reach() -> None:
    orm.configure_mappers()  # fills mapped_entities, as the first query would
    assert _SQLAMutationTracker.mapped_entities[Document] == ["attachment"]
    assert _SQLAMutationTracker.mapped_entities[Video] == ["file", "poster"]
    prop = orm.class_mapper(Document).attrs["attachment"]
    assert sa.event.contains(prop, "set", _SQLAMutationTracker._field_set)
    column = Document.__table__.c.attachment.type
    assert column._upload_type is UploadedFile
    assert column._upload_storage is None


def test_extra_arguments_are_ignored_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="ignores the extra arguments"):
        UploadedFileField((), UploadedFile, None, 4096)


def test_upload_type_must_be_a_value_class() -> None:
    with pytest.raises(TypeError, match="upload_type must be a subclass of UploadedFile"):
        UploadedFileField(upload_type=dict)  # type: ignore[arg-type]


def test_statements_are_cached_per_upload_type() -> None:
    class Other(UploadedFile):
        pass

    assert UploadedFileField()._static_cache_key == UploadedFileField()._static_cache_key
    assert (
        UploadedFileField(upload_type=Other)._static_cache_key
        != UploadedFileField()._static_cache_key
    )
    assert UploadedFilesField()._static_cache_key != UploadedFileField()._static_cache_key


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filters": WithCopy()}, r"filters takes a list, not .*: write filters=\["),
        ({"filters": [object()]}, r"filters holds .*, which has no on_save\(\) method"),
        ({"validators": MaxSize(10)}, r"validators takes a list, not MaxSize\(10\)"),
        ({"validators": ["10 MB"]}, r"validators holds '10 MB', which has no check\(\) method"),
    ],
)
def test_mistaken_arguments_say_what_to_write(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        UploadedFileField(**kwargs)
    with pytest.raises(TypeError, match=message):
        UploadedFilesField(**kwargs)
