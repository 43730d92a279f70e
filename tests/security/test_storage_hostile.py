"""Hostile names, types and stored metadata, property-based (issue 12, the campaign).

Whatever text a client sends as a file name or content type, ``create()`` and
``replace()`` store it without raising, and what ``get()`` gives back can
always be served: a type that is a safe media type, a name that encodes and
is at most 255 characters. Whatever value another program (or a damaged disk)
leaves in a file's metadata, ``get()`` returns a file whose fields have their
types, or raises CorruptMetadataError (which the middleware answers with 503),
never another exception.

The budget is a multiple of the hypothesis profile's (tests/conftest.py: 150
examples in CI, ``DEPOT_HYPOTHESIS=thorough`` for 5000): four times it on
memory and local, half of it on S3 and GridFS, whose every example is a few
round trips to a server.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from depot._headers import MAX_FILENAME_LENGTH, safe_content_type
from depot.exceptions import CorruptMetadataError
from depot.io.interfaces import FileStorage
from depot.io.utils import FileIntent
from depot.manager import DepotManager
from tests.io.rawmeta import FIELDS, can_write, write_field

#: Every code point, lone surrogates (what os.fsdecode makes of bad bytes),
#: controls and unassigned ones included.
ANY_CHARACTER = st.characters(codec=None, categories=None)

TOKEN = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789+-.!#$&^_`|~*"), min_size=1)

FILENAMES = st.one_of(
    st.text(ANY_CHARACTER, max_size=40),
    st.text(ANY_CHARACTER, min_size=240, max_size=20_000),
    st.builds(lambda stem, ext: f"{stem}.{ext}", st.text(ANY_CHARACTER), st.text(ANY_CHARACTER)),
)

CONTENT_TYPES = st.one_of(
    st.text(ANY_CHARACTER, max_size=60),
    # Near misses of real types: a list, a path, parameters with anything in them.
    st.builds(
        lambda kind, subtype, rest: f"{kind}/{subtype}{rest}",
        TOKEN,
        TOKEN,
        st.text(ANY_CHARACTER, max_size=30),
    ),
    st.sampled_from(["text/html", "image/png; charset=utf-8", "text/html, image/png"]),
    st.text(ANY_CHARACTER, min_size=250, max_size=2000),
)

#: JSON-like values of any type, as a metadata.json, a document or a dict may hold.
ANY_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(ANY_CHARACTER, max_size=30)
    | st.sampled_from(["2024-05-01 12:00:00", "9999-12-31 23:59:59", "0001-01-01 00:00:00"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)

#: Each backend with its share of the profile's example budget.
BACKENDS = [
    pytest.param("memory", 4.0, id="memory"),
    pytest.param("local", 4.0, id="local"),
    pytest.param("s3", 0.5, id="s3"),
    pytest.param("gridfs", 0.5, id="gridfs"),
]


@pytest.fixture
def hostile_storage(request: pytest.FixtureRequest) -> FileStorage:
    name = request.node.callspec.params["backend"]
    return DepotManager.from_config(request.getfixturevalue(f"{name}_settings"))


def _budget(share: float) -> settings:
    return settings(max_examples=max(10, int(settings.default.max_examples * share)))


def _servable(stored: Any) -> None:
    """What the middleware and the buckets will send of a stored file is sendable."""
    assert isinstance(stored.content_type, str)
    assert safe_content_type(stored.content_type) == stored.content_type
    assert isinstance(stored.filename, str) and stored.filename
    assert len(stored.filename) <= MAX_FILENAME_LENGTH
    stored.filename.encode("utf-8")  # no lone surrogate


@pytest.mark.parametrize(("backend", "share"), BACKENDS)
def test_any_name_and_type_is_stored_servable(
    hostile_storage: FileStorage, backend: str, share: float
) -> None:
    storage = hostile_storage

    @_budget(share)
    @given(name=FILENAMES, ctype=CONTENT_TYPES, carried=st.booleans())
    def store(name: str, ctype: str, carried: bool) -> None:
        content: Any = FileIntent(b"data", name, ctype) if carried else b"data"
        options = {} if carried else {"filename": name, "content_type": ctype}
        file_id = storage.create(content, **options)
        try:
            stored = storage.get(file_id)
            _servable(stored)
            assert stored.read() == b"data"
            if safe_content_type(ctype) is not None:  # a safe type is kept as given
                assert stored.content_type == safe_content_type(ctype)
            storage.replace(file_id, b"new", **{"filename": name[::-1], "content_type": ctype})
            _servable(storage.get(file_id))
        finally:
            storage.delete(file_id)

    store()


@pytest.mark.parametrize(("backend", "share"), BACKENDS)
def test_any_stored_metadata_is_read_or_refused_as_corrupt(
    hostile_storage: FileStorage, backend: str, share: float
) -> None:
    storage = hostile_storage

    @_budget(share)
    @given(field=st.sampled_from(FIELDS), value=ANY_VALUE)
    def read(field: str, value: Any) -> None:
        if not can_write(storage, field, value):
            value = json.dumps(value)  # as a string: what S3 and GCS would hold
            if not can_write(storage, field, value):
                return
        file_id = storage.create(b"hello", filename="a.txt")
        try:
            write_field(storage, file_id, field, value)
            try:
                stored = storage.get(file_id)
            except CorruptMetadataError as exc:
                assert file_id in str(exc)
                return
            _well_typed(stored)
        finally:
            storage.delete(file_id)

    read()


@settings(max_examples=max(10, settings.default.max_examples // 2))
@given(document=ANY_VALUE)
def test_any_local_metadata_file_is_read_or_refused_as_corrupt(
    local_settings: dict[str, Any], document: Any
) -> None:
    # The whole metadata.json, not one field: a list, a number, a torn write.
    storage = DepotManager.from_config(local_settings)
    file_id = storage.create(b"hello", filename="a.txt")
    path = os.path.join(storage.storage_path, file_id, "metadata.json")  # type: ignore[attr-defined]
    with open(path, "w") as out:
        json.dump(document, out)
    try:
        _well_typed(storage.get(file_id))
    except CorruptMetadataError as exc:
        assert file_id in str(exc)
    storage.delete(file_id)


def _well_typed(stored: Any) -> None:
    assert stored.filename is None or isinstance(stored.filename, str)
    assert stored.content_type is None or isinstance(stored.content_type, str)
    assert stored.last_modified is None or isinstance(stored.last_modified, datetime)
    length = stored.content_length
    assert length is None or (type(length) is int and 0 <= length < 2**63)
    stored.close()


def test_a_corrupt_file_is_answered_with_503_not_500(local_settings: dict[str, Any]) -> None:
    from webtest import TestApp

    storage = DepotManager.configure("default", local_settings)
    file_id = storage.create(b"hello", filename="a.txt")
    write_field(storage, file_id, "content_length", -5)
    app = TestApp(DepotManager.make_middleware(lambda environ, start_response: []))
    response = app.get(f"/depot/default/{file_id}", expect_errors=True)
    assert response.status_int == 503
    assert "-5" not in response.headers.get("Content-Length", "")
