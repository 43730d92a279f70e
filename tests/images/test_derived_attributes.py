"""``<name>_file`` and ``<name>_url`` of a value, derived from a ``<name>_path`` key.

Filters record the extra files they store (thumbnails) by path only; the value
offers them opened and as URLs, also once loaded back from a row.
"""

from __future__ import annotations

import pytest

from depot.exceptions import ConfigurationError, StoredFileNotFoundError
from depot.fields.upload import UploadedFile
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager


@pytest.fixture
def depot() -> FileStorage:
    return DepotManager.configure("default", {"depot.backend": "depot.io.memory.MemoryFileStorage"})


def loaded_with_extra(depot: FileStorage, **keys: object) -> tuple[UploadedFile, str]:
    extra_id = depot.create(b"extra", "extra.bin")
    row = dict(UploadedFile(b"main"), small_path=f"default/{extra_id}", **keys)
    return UploadedFile(row), extra_id


def test_file_opens_the_recorded_path(depot: FileStorage) -> None:
    value, _ = loaded_with_extra(depot)
    with value.small_file as extra:
        assert extra.read() == b"extra"


def test_url_is_the_middlewares_without_a_public_url(depot: FileStorage) -> None:
    value, extra_id = loaded_with_extra(depot, _small_public_url=None)
    with pytest.raises(ConfigurationError, match="make_middleware"):
        _ = value.small_url
    DepotManager.make_middleware(lambda environ, start_response: [])
    assert value.small_url == f"/depot/default/{extra_id}"


def test_url_is_the_public_one_when_recorded(depot: FileStorage) -> None:
    value, _ = loaded_with_extra(depot, _small_public_url="https://cdn.example/s.png")
    assert value.small_url == "https://cdn.example/s.png"


def test_a_stored_key_wins(depot: FileStorage) -> None:
    # filedepot's WithThumbnailFilter stored its URL as 'thumb_<w>x<h>_url'.
    value, _ = loaded_with_extra(depot, small_url="/kept/as/stored")
    assert value.small_url == "/kept/as/stored"


def test_a_missing_file_names_its_path(depot: FileStorage) -> None:
    value, extra_id = loaded_with_extra(depot)
    depot.delete(extra_id)
    with pytest.raises(StoredFileNotFoundError, match=rf"default/{extra_id} \(small_path\)"):
        _ = value.small_file


def test_without_a_path_key_there_is_no_such_attribute(depot: FileStorage) -> None:
    value = UploadedFile(b"main")
    assert not hasattr(value, "small_file")
    assert not hasattr(value, "small_url")
    with pytest.raises(AttributeError, match="'large_url'"):
        _ = value.large_url
