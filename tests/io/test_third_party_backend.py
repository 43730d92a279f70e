"""Backends written outside depot run the shipped contract suite with one fixture.

``FolderStorage`` is written the 1.0 way (docs/backends.rst, "Writing a
backend"): it implements ``_write`` and leaves ids, content, policy and
checksums to the template methods of FileStorage. ``FiledepotEraStorage`` is
written as filedepot 0.12 taught, overriding ``create()`` and ``replace()``
itself; it keeps working, and the suite marks only what filedepot never
promised.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tempfile
import uuid
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

import pytest
from webtest import TestApp

from depot.exceptions import CorruptMetadataError, StoredFileNotFoundError
from depot.io import utils
from depot.io.interfaces import FileContent, FileStorage, NewVersion, StoredFile
from depot.manager import DepotManager
from depot.testing import RawMetadata, StorageContract

# --- written the 1.0 way ----------------------------------------------------------

_TRAILER_SIZE = 8  # the length of the JSON metadata, at the end of each file


def _metadata(file_id: str, file: IO[bytes]) -> dict[str, Any]:
    """The metadata of an open file: JSON after the bytes, then its length."""
    file.seek(-_TRAILER_SIZE, io.SEEK_END)
    size = int.from_bytes(file.read(_TRAILER_SIZE), "big")
    file.seek(-_TRAILER_SIZE - size, io.SEEK_END)
    fields = json.loads(file.read(size))
    modified = fields.get("last_modified")
    if isinstance(modified, str):
        try:
            fields["last_modified"] = utils.parse_timestamp(modified)
        except ValueError:
            raise CorruptMetadataError(
                f"Invalid metadata last_modified of file {file_id} (FolderStoredFile): "
                f"{modified!r}. Restore the file from a backup or delete it."
            ) from None
    return fields


class FolderStoredFile(StoredFile):
    """One version of a file of a FolderStorage: the file opened by ``get()``."""

    def __init__(self, file_id: str, path: Path) -> None:
        self._path = path
        try:
            self._file = open(path, "rb")  # noqa: SIM115 (closed by close())
        except FileNotFoundError:
            raise StoredFileNotFoundError(file_id, "FolderStorage") from None
        self._pos = 0
        try:
            super().__init__(file_id, **_metadata(file_id, self._file))
        except BaseException:
            self._file.close()
            raise

    def _follow_replace(self) -> None:
        # A replace renames a new file over the path: open it if it is another.
        try:
            newest = open(self._path, "rb")  # noqa: SIM115 (kept, or closed below)
        except FileNotFoundError:
            return  # deleted: this one still reads whole
        if os.fstat(newest.fileno()).st_ino == os.fstat(self._file.fileno()).st_ino:
            newest.close()
            return
        try:
            self._set_metadata(**_metadata(self.file_id, newest))
        except BaseException:
            newest.close()
            raise
        self._file.close()
        self._file = newest

    def read(self, n: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        self._first_read()
        left = (self.content_length or 0) - self._pos
        self._file.seek(self._pos)
        data = self._file.read(left if n is None or n < 0 else min(n, left))
        self._pos += len(data)
        return data

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        self._first_read()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.content_length or 0}
        if base[whence] + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base[whence] + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed


class FolderStorage(FileStorage):
    """Each file in one file of a folder, named by its id: the bytes, then the metadata."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def get(self, file_or_id: StoredFile | str) -> FolderStoredFile:
        fileid = self._checked_id(file_or_id)
        return FolderStoredFile(fileid, self.path / fileid)

    def delete(self, file_or_id: StoredFile | str) -> None:
        fileid = self._checked_id(file_or_id)
        with suppress(FileNotFoundError):
            (self.path / fileid).unlink()

    def exists(self, file_or_id: StoredFile | str) -> bool:
        return (self.path / self._checked_id(file_or_id)).is_file()

    def list(self) -> list[str]:
        return [p.name for p in self.path.iterdir() if not p.name.startswith(".")]

    def _write(self, fileid: str, new: NewVersion) -> None:
        fd, temporary = tempfile.mkstemp(dir=self.path, prefix=".new-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in new.chunks():
                    out.write(chunk)
                metadata = {
                    "filename": new.filename,
                    "content_type": new.content_type,
                    "content_length": new.digest.length,
                    "checksum": new.digest.checksum,
                    "last_modified": utils.timestamp(),
                }
                out.write(_trailer(metadata))
            os.replace(temporary, self.path / fileid)  # whole, or not at all
        except BaseException:
            os.unlink(temporary)
            raise


def _trailer(metadata: dict[str, Any]) -> bytes:
    encoded = json.dumps(metadata).encode()
    return encoded + len(encoded).to_bytes(_TRAILER_SIZE, "big")


class FolderRawMetadata(RawMetadata):
    """Rewrites the JSON at the end of a FolderStorage's file."""

    def __init__(self, storage: FolderStorage) -> None:
        self.storage = storage

    def write(self, file_id: str, field: str, value: object) -> None:
        path = self.storage.path / file_id
        data = path.read_bytes()
        size = int.from_bytes(data[-_TRAILER_SIZE:], "big")
        start = len(data) - _TRAILER_SIZE - size
        metadata = json.loads(data[start:-_TRAILER_SIZE])
        metadata[field] = value
        path.write_bytes(data[:start] + _trailer(metadata))


class TestFolderStorage(StorageContract):
    """The whole suite, one fixture (and one optional, for the damaged-metadata test)."""

    @pytest.fixture
    def storage(self, tmp_path: Path) -> FolderStorage:
        return FolderStorage(str(tmp_path / "files"))

    @pytest.fixture
    def raw_metadata(self, storage: FolderStorage) -> RawMetadata:
        return FolderRawMetadata(storage)


# --- written as filedepot 0.12 taught ----------------------------------------------


def _filedepot_id(file_or_id: Any) -> str:
    # filedepot's UUID check: a malformed id is a ValueError.
    file_id = FileStorage.fileid(file_or_id)
    try:
        uuid.UUID(f"{file_id}")
    except ValueError:
        raise ValueError(f"Invalid file id {file_id}") from None
    return file_id


class FiledepotEraStoredFile(StoredFile):
    def __init__(self, file_id: str, entry: dict[str, Any]) -> None:
        super().__init__(
            file_id,
            filename=entry["filename"],
            content_type=entry["content_type"],
            last_modified=utils.parse_timestamp(entry["last_modified"]),
            content_length=len(entry["data"]),
        )
        self._data = io.BytesIO(entry["data"])

    def read(self, n: int = -1) -> bytes:
        return self._data.read(n)

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._data.seek(offset, whence)

    def tell(self) -> int:
        return self._data.tell()

    def close(self) -> None:
        self._data.close()

    @property
    def closed(self) -> bool:
        return self._data.closed


class FiledepotEraStorage(FileStorage):
    """Keeps files in a dict; create() and replace() are its own."""

    def __init__(self, **settings: Any) -> None:
        self.files: dict[str, dict[str, Any]] = {}

    def get(self, file_or_id: StoredFile | str) -> FiledepotEraStoredFile:
        fileid = _filedepot_id(file_or_id)
        if fileid not in self.files:
            raise OSError(f"File {fileid} not existing")
        return FiledepotEraStoredFile(fileid, self.files[fileid])

    def _save(self, fileid: str, content: Any, filename: str, content_type: str) -> None:
        must_close, source = utils.file_from_content(content)
        data = io.BytesIO()
        try:
            shutil.copyfileobj(source, data)  # type: ignore[misc]
        finally:
            if must_close:
                source.close()  # type: ignore[union-attr]
        self.files[fileid] = {
            "data": data.getvalue(),
            "filename": filename,
            "content_type": content_type,
            "last_modified": utils.timestamp(),
        }

    def create(
        self, content: FileContent, filename: str | None = None, content_type: str | None = None
    ) -> str:
        fileid = str(uuid.uuid1())
        source, filename, content_type = self.fileinfo(content, filename, content_type)
        self._save(fileid, source, filename, content_type)
        return fileid

    def replace(
        self,
        file_or_id: StoredFile | str,
        content: FileContent,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        fileid = _filedepot_id(file_or_id)
        restoring = isinstance(file_or_id, StoredFile) and file_or_id is content
        if not restoring and fileid not in self.files:
            raise OSError(f"File {fileid} not existing")
        source, filename, content_type = self.fileinfo(
            content, filename, content_type, None if restoring else (lambda: self.get(fileid))
        )
        self._save(fileid, source, filename, content_type)
        return fileid

    def delete(self, file_or_id: StoredFile | str) -> None:
        self.files.pop(_filedepot_id(file_or_id), None)

    def exists(self, file_or_id: StoredFile | str) -> bool:
        return _filedepot_id(file_or_id) in self.files

    def list(self) -> list[str]:
        return list(self.files)


_NO_CHECKSUM = "filedepot's backends record no checksum (StoredFile.checksum is None)"
_PLAIN_IOERROR = "filedepot raised a plain IOError for a missing file, not StoredFileNotFoundError"

#: What filedepot's contract never promised, each with the reason.
NOT_IN_FILEDEPOTS_CONTRACT = {
    "test_create_bytes_and_read_back": _NO_CHECKSUM,
    "test_empty_file": _NO_CHECKSUM,
    "test_stream_that_cannot_seek_is_consumed_as_it_comes": _NO_CHECKSUM,
    "test_replace_keeps_the_id_and_changes_the_content": _NO_CHECKSUM,
    "test_failed_replace_keeps_the_old_file": _NO_CHECKSUM,
    "test_max_size_passes_a_regular_file_within_the_limit": _NO_CHECKSUM,
    "test_a_gzip_stream_within_the_limit_stores_what_it_gives": _NO_CHECKSUM,
    "test_a_file_read_once_keeps_its_version_or_says_it_is_gone": _NO_CHECKSUM,
    "test_get_missing_file": _PLAIN_IOERROR,
    "test_replace_missing_file": _PLAIN_IOERROR,
    "test_delete": _PLAIN_IOERROR,
    "test_malformed_ids_are_refused": (
        "filedepot refused ids with a plain ValueError (InvalidFileIdError is 1.0's), "
        "and took what uuid.UUID() parses, 32 hex digits without dashes or None's text too"
    ),
    "test_ids_are_random_uuid4": "filedepot made uuid1 ids",
    "test_uuid_objects_are_accepted_as_ids": "filedepot found no file for a uuid.UUID id",
}


class TestFiledepotEraStorage(StorageContract):
    expected_failures = NOT_IN_FILEDEPOTS_CONTRACT

    # Optional capabilities that filedepot's file objects never had: the suite
    # would skip these tests; depot's own suite runs with no skip, so they are
    # not collected for this backend at all.
    test_a_file_not_read_yet_reads_the_version_a_replace_stored = None
    test_following_a_replace_never_mixes_versions = None
    test_wrong_typed_metadata_is_corrupt = None  # no raw_metadata written for it

    @pytest.fixture
    def storage(self) -> FiledepotEraStorage:
        return FiledepotEraStorage()


def _application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the application"]


@pytest.fixture
def legacy() -> FileStorage:
    """A FiledepotEraStorage configured by its dotted path, with a setting it ignores."""
    return DepotManager.configure(
        "legacy", {"depot.backend": f"{__name__}.FiledepotEraStorage", "depot.anything": "1"}
    )


def test_a_filedepot_era_backend_is_configured_by_dotted_path_and_served(
    legacy: FileStorage,
) -> None:
    assert type(legacy) is FiledepotEraStorage
    assert DepotManager.get("legacy") is legacy
    file_id = legacy.create(b"hello, old friend", filename="hello.txt")

    app = TestApp(DepotManager.make_middleware(_application))
    url = DepotManager.url_for(f"legacy/{file_id}")
    response = app.get(url)
    assert response.body == b"hello, old friend"
    assert response.content_type == "text/plain"
    assert response.content_length == 17
    assert 'filename="hello.txt"' in response.headers["Content-Disposition"]
    ranged = app.get(url, headers={"Range": "bytes=7-9"})
    assert (ranged.status_int, ranged.body) == (206, b"old")
    assert app.head(url).content_length == 17
    assert app.get("/").body == b"the application"


def test_a_filedepot_era_missing_file_is_not_found(legacy: FileStorage) -> None:
    app = TestApp(DepotManager.make_middleware(_application))
    missing = DepotManager.url_for(f"legacy/{uuid.uuid1()}")
    assert app.get(missing, expect_errors=True).status_int == 404


@pytest.mark.parametrize(
    "failure",
    [OSError(errno.EIO, "Input/output error"), ConnectionError("refused"), TimeoutError()],
)
def test_a_failing_filedepot_era_backend_is_unavailable(
    legacy: FileStorage, monkeypatch: pytest.MonkeyPatch, failure: OSError
) -> None:
    # Only the bare IOError of a missing file is a 404; a fault of the system stays a 503.
    def failing(file_or_id: Any) -> Any:
        raise failure

    monkeypatch.setattr(legacy, "get", failing)
    app = TestApp(DepotManager.make_middleware(_application))
    answer = app.get(DepotManager.url_for(f"legacy/{uuid.uuid1()}"), expect_errors=True)
    assert answer.status_int == 503


def test_a_filedepot_era_malformed_id_is_not_found(legacy: FileStorage) -> None:
    # Its get() raises a plain ValueError, as filedepot's backends did.
    app = TestApp(DepotManager.make_middleware(_application))
    assert app.get("/depot/legacy/not-an-id", expect_errors=True).status_int == 404
    assert app.head("/depot/legacy/not-an-id", expect_errors=True).status_int == 404


# --- the suite as a third party runs it: in a project of its own ---------------------

pytest_plugins = ["pytester"]


def test_the_suite_runs_in_another_project_with_one_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_mine="""
        import pytest
        from depot.io.memory import MemoryFileStorage
        from depot.testing import StorageContract

        class TestMine(StorageContract):
            expected_failures = {
                "test_empty_file": "passes: a strict xfail says so",
                "test_text_is_refused_with_a_hint[str]": "passes too",
            }

            @pytest.fixture
            def storage(self):
                return MemoryFileStorage()
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "-k", "empty_file or text_is_refused")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*XPASS(strict)*passes: a strict xfail says so*"])


def test_expected_failures_must_name_tests_of_the_suite() -> None:
    with pytest.raises(TypeError, match=r"names no test of the suite: 'test_empty_fille'"):

        class TestTypo(StorageContract):  # defined, never collected
            expected_failures = {"test_empty_fille": "a typo"}
