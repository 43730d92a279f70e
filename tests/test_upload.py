"""UploadedFile and DepotFileInfo: the value a file field keeps, without any ORM."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest

from depot.exceptions import ConfigurationError, StoredFileNotFoundError, UnknownDepotError
from depot.fields.interfaces import DepotFileInfo, FileFilter
from depot.fields.upload import UploadedFile
from depot.io.interfaces import FileStorage
from depot.io.utils import FileIntent
from depot.manager import DepotManager
from tests.reference import UPLOADED_FILE_KEYS, run_filedepot

# filedepot 0.12 wrote this for UploadedFile(FileIntent(b'hello', 'hello.txt', 'text/plain'))
# on a local depot (printed by its encode()); its JSON keys, order and separators are the
# format to keep.
FILEDEPOT_JSON = (
    '{"depot_name": "default", "files": ["default/a03a7ea4-e7db-11f1-a64b-02fc00000001"], '
    '"file_id": "a03a7ea4-e7db-11f1-a64b-02fc00000001", '
    '"path": "default/a03a7ea4-e7db-11f1-a64b-02fc00000001", "filename": "hello.txt", '
    '"content_type": "text/plain", "uploaded_at": "2026-11-24 07:49:49", "_public_url": null}'
)


@pytest.fixture
def memory_depot() -> FileStorage:
    return DepotManager.configure("default", {"depot.backend": "depot.io.memory.MemoryFileStorage"})


def test_storing_records_filedepots_keys_in_its_order(default_depot: FileStorage) -> None:
    value = UploadedFile(FileIntent(b"hello", "hello.txt", "text/plain"))
    assert list(value) == UPLOADED_FILE_KEYS
    assert value.depot_name == "default"
    assert value.path == f"default/{value.file_id}"
    assert value.files == [value.path]
    assert (value.filename, value.content_type) == ("hello.txt", "text/plain")
    stored = default_depot.get(value.file_id)
    assert value.uploaded_at == stored.last_modified.strftime("%Y-%m-%d %H:%M:%S")
    assert value.file.read() == b"hello"
    assert value.original_content is not None


def test_encode_writes_filedepots_json_text(memory_depot: FileStorage) -> None:
    value = UploadedFile.decode(FILEDEPOT_JSON)
    assert value.encode() == FILEDEPOT_JSON


def test_decoding_touches_no_depot_and_a_missing_file_only_fails_when_read(
    memory_depot: FileStorage,
) -> None:
    value = UploadedFile.decode(FILEDEPOT_JSON)
    assert value.original_content is None
    assert value.filename == "hello.txt"
    with pytest.raises(StoredFileNotFoundError) as info:
        value.file  # noqa: B018
    message = str(info.value)
    assert value.path in message and "assign a new file or None" in message
    assert isinstance(info.value, IOError)


def test_a_value_from_an_unconfigured_depot_says_which(memory_depot: FileStorage) -> None:
    value = UploadedFile.decode(
        FILEDEPOT_JSON.replace('"depot_name": "default"', '"depot_name": "old"')
    )
    with pytest.raises(UnknownDepotError, match="no depot named 'old'.*configure"):
        value.file  # noqa: B018


def test_storing_into_a_named_depot_or_alias(memory_depot: FileStorage) -> None:
    other = DepotManager.configure("media", {"depot.backend": "depot.io.memory.MemoryFileStorage"})
    DepotManager.alias("pictures", "media")
    value = UploadedFile(b"x", "pictures")
    assert value.depot_name == "media"
    assert other.exists(value.file_id) and not memory_depot.exists(value.file_id)


def test_storing_into_an_unknown_depot_is_refused(memory_depot: FileStorage) -> None:
    with pytest.raises(UnknownDepotError, match="Storing a file: no depot named 'nope'"):
        UploadedFile(b"x", "nope")
    assert memory_depot.list() == []


def test_storing_without_any_depot_says_to_configure_one() -> None:
    with pytest.raises(ConfigurationError, match="configure"):
        UploadedFile(b"x")


def test_values_are_read_only(memory_depot: FileStorage) -> None:
    value = UploadedFile(b"x")
    for change in (
        lambda: value.__setitem__("filename", "y"),
        lambda: setattr(value, "filename", "y"),
        lambda: value.__delitem__("filename"),
        lambda: delattr(value, "filename"),
    ):
        with pytest.raises(TypeError, match="immutable: assign a new file"):
            change()
    assert value.filename == "unnamed"


def test_unknown_attributes_raise_attribute_error(memory_depot: FileStorage) -> None:
    value = UploadedFile(b"x")
    assert not hasattr(value, "thumb_url")
    with pytest.raises(AttributeError, match="'nothing'"):
        value.nothing  # noqa: B018


def test_copies_and_pickles_are_equal_values(memory_depot: FileStorage) -> None:
    value = UploadedFile(b"x")
    for twin in (copy.copy(value), copy.deepcopy(value), pickle.loads(pickle.dumps(value))):
        assert type(twin) is UploadedFile
        assert twin == value
        assert twin.file.read() == b"x"
    assert memory_depot.list() == [value.file_id]  # none of them stored again


def test_url_is_the_public_url_or_the_middlewares(memory_depot: FileStorage) -> None:
    value = UploadedFile(b"x")
    with pytest.raises(ConfigurationError, match="make_middleware"):
        value.url  # noqa: B018
    DepotManager.make_middleware(lambda environ, start_response: [])
    assert value.url == f"/depot/default/{value.file_id}"
    public = UploadedFile.decode(
        FILEDEPOT_JSON.replace('"_public_url": null', '"_public_url": "https://cdn/x"')
    )
    assert public.url == "https://cdn/x"


class Recorder(FileFilter):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_save(self, uploaded_file: DepotFileInfo) -> None:
        self.seen.append(uploaded_file.file_id)
        uploaded_file["note"] = "filtered"


def test_filters_run_on_new_values_only(memory_depot: FileStorage) -> None:
    recorder = Recorder()
    value = UploadedFile(b"x")
    value._apply_filters([recorder])
    assert value.note == "filtered" and recorder.seen == [value.file_id]
    with pytest.raises(TypeError):
        value["note"] = "again"  # frozen again after the filters ran
    loaded = UploadedFile.decode(value.encode())
    loaded._apply_filters([recorder])
    assert recorder.seen == [value.file_id]


class StoresThenFails(FileFilter):
    def on_save(self, uploaded_file: DepotFileInfo) -> None:
        extra = uploaded_file.depot.create(b"thumb")
        uploaded_file["files"].append(f"{uploaded_file.depot_name}/{extra}")
        raise RuntimeError("thumbnail failed")


def test_a_failing_filter_deletes_every_file_the_value_stored(memory_depot: FileStorage) -> None:
    value = UploadedFile(b"x")
    with pytest.raises(RuntimeError, match="thumbnail failed"):
        value._apply_filters([StoresThenFails()])
    assert memory_depot.list() == []


class FailsAfterStoring(UploadedFile):
    def process_content(self, content: Any, filename: Any = None, content_type: Any = None) -> None:
        super().process_content(content, filename, content_type)
        raise ValueError("not what this value expects")


def test_a_failing_process_content_deletes_what_it_stored(memory_depot: FileStorage) -> None:
    with pytest.raises(ValueError, match="not what this value expects"):
        FailsAfterStoring(b"x")
    assert memory_depot.list() == []


def test_filedepot_reads_the_json_depot_writes(filedepot_python: str, tmp_path) -> None:
    DepotManager.configure("default", {"depot.storage_path": str(tmp_path / "files")})
    value = UploadedFile(FileIntent(b"hello", "hello.txt", "text/plain"))
    script = """
import json, sys
from depot.manager import DepotManager
from depot.fields.upload import UploadedFile
DepotManager.configure('default', {'depot.storage_path': sys.argv[1]})
value = UploadedFile.decode(sys.stdin.read())
print(json.dumps({"module": DepotManager.__module__ and __import__('depot').__file__,
                  "data": value.file.read().decode(), "keys": sorted(value),
                  "filename": value.filename, "path": value.path}))
"""
    report = run_filedepot(
        filedepot_python, script, str(tmp_path / "files"), cwd=tmp_path, stdin=value.encode()
    )
    assert report["data"] == "hello"
    assert report["filename"] == "hello.txt"
    assert report["path"] == value.path
    assert report["keys"] == sorted(json.loads(value.encode()))
