"""The behaviour every storage backend shares, as the methods of :class:`StorageContract`.

A test class inherits them and supplies the storage under test as the
``storage`` fixture; depot's own tests do so for each of its backends
(``tests/io/test_contract.py``).

.. versionadded:: 1.0
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import pytest

from depot.exceptions import (
    BackendUnavailableError,
    CorruptMetadataError,
    FileTooLargeError,
    InvalidFileIdError,
    StoredFileNotFoundError,
)
from depot.io.interfaces import FileStorage, StoredFile
from depot.io.utils import FileIntent
from depot.testing.streams import Generated, MiB, OneWayStream, sha256
from depot.validators import MaxSize, validate

__all__ = [
    "BAD_IDS",
    "CORRUPT_VALUES",
    "QUOTED_BADLY",
    "UNSAFE_TYPES",
    "RawMetadata",
    "StorageContract",
]

#: Ids every backend refuses with :class:`~depot.exceptions.InvalidFileIdError`
#: (a ``ValueError``), in ``get``, ``exists``, ``delete`` and ``replace``: paths,
#: empty and NUL-holding strings, what is not a UUID (nor a MongoDB ObjectId),
#: and what is not a string. A backend whose ids take another form overrides the
#: ``bad_id`` fixture of :class:`StorageContract`.
BAD_IDS: list[object] = [
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    "",
    "a/b",
    "x\x00y",
    "not-an-id",
    "00000000000040008000000000000000",
    "00000000-0000-4000-8000-00000000000G",
    "00000000-0000-4000-8000-000000000000/..",
    None,
    42,
]

# Issue 12, finding 4: a content type that is not a safe RFC 9110 media type
# (it would split or inject a header where it is served, by the middleware or,
# for S3 and GCS, by the bucket itself) is stored as application/octet-stream.

#: Content types that are not safe RFC 9110 media types: every backend stores
#: them as ``application/octet-stream``.
UNSAFE_TYPES = [
    "text/html\r\n\r\n;x=y",
    "text/html\nX-Injected: 1",
    "text/html\x0b",
    "text/html\x1c",
    "image/png, text/html",
    "image/png/../../text/html",
    "text/h\u00e9tml",
    "text/html; charset=\u2603",
    "image/" + "x" * 300,
    "html",
    " ",
]

#: A name that buckets keep percent-encoded and that is not UTF-8 once
#: decoded: damaged metadata on S3 and GCS, a plain name elsewhere.
QUOTED_BADLY = "%zz%ff"

# Finding 12: metadata of the wrong type, however it got there (a hand-edited
# metadata.json, another program's GridFS document or object metadata), is
# refused like a corrupt file: CorruptMetadataError, which the middleware
# answers with 503, never a TypeError (500) or a negative Content-Length.

#: ``(field, raw value)`` pairs of damaged metadata, by the names
#: :class:`~depot.io.interfaces.StoredFile` gives the fields: reading such a
#: file raises :class:`~depot.exceptions.CorruptMetadataError`.
CORRUPT_VALUES: list[tuple[str, object]] = [
    ("content_length", "5"),
    ("content_length", -5),
    ("content_length", 5.5),
    ("content_length", True),
    ("content_length", 10**30),
    ("content_length", [5]),
    ("filename", 5),
    ("filename", ["a.txt"]),
    ("filename", {"name": "a.txt"}),
    ("filename", True),
    ("filename", QUOTED_BADLY),
    ("content_type", 5),
    ("content_type", ["text/html"]),
    ("content_type", {"type": "text/html"}),
    ("last_modified", 5),
    ("last_modified", 5.5),
    ("last_modified", ["2024-05-01 12:00:00"]),
    ("last_modified", {"at": 1}),
    ("last_modified", "5"),
    ("last_modified", "2024-02-30 12:00:00"),
    ("last_modified", "99999-01-01 00:00:00"),
]


class RawMetadata(ABC):
    """Writes a stored file's metadata behind its storage's back, as damage or another
    program would: what the ``raw_metadata`` fixture of :class:`StorageContract` gives.

    Only the backend's own test suite knows where its metadata lives (a JSON
    file, a database row, an object's headers), so a backend that wants the
    test of damaged metadata run supplies one; without it, that one test is
    skipped.

    .. versionadded:: 1.0
    """

    #: Fields that the backend reads as unknown (``None``) rather than refuse,
    #: when their raw value is damaged, as it documents. (S3 and GCS read an
    #: ``x-depot-modified`` that is not a time as no date, as filedepot did.)
    lenient_fields: frozenset[str] = frozenset()

    #: How many of :data:`CORRUPT_VALUES` :meth:`can_write` must accept, so
    #: that the test is not empty. A backend whose own types keep most wrong
    #: values out (typed database columns) lowers it.
    least_writable: int = 4

    def can_write(self, field: str, value: object) -> bool:
        """Whether the backend can hold ``value`` as ``field`` at all.

        A bucket that keeps only strings cannot hold ``5``; such a value is
        not tried. By default every value but :data:`QUOTED_BADLY`, which is
        damage only where names are kept percent-encoded.
        """
        return value != QUOTED_BADLY

    @abstractmethod
    def write(self, file_id: str, field: str, value: object) -> None:
        """Store ``value`` as the raw ``field`` of the file's metadata.

        :param field: ``filename``, ``content_type``, ``content_length`` or
            ``last_modified``; the backend maps it to the name it stores.
        """


def _uses_uuid_ids(file_id: str) -> bool:
    try:
        return str(uuid.UUID(file_id)) == file_id
    except ValueError:
        return False


def _gzip_of_zeros(tmp_path: Path, size: int) -> str:
    path = os.path.join(tmp_path, "zeros.gz")
    with gzip.open(path, "wb", compresslevel=1) as out:
        block = bytes(MiB)
        for _ in range(size // MiB):
            out.write(block)
    return path


class StorageContract:
    """The contract suite: inherit it in a test class that gives the ``storage`` fixture.

    ::

        class TestMyStorage(StorageContract):
            @pytest.fixture
            def storage(self, tmp_path):
                return MyStorage(str(tmp_path / "files"))

    ``storage`` is a new, empty storage for each test, private (no public
    URLs), with no :attr:`~depot.io.interfaces.FileStorage.policy`. Its tests
    need nothing else from pytest than ``tmp_path``.

    What a backend may lack is a capability, tested only when it is there:

    - seeking: a file whose ``seekable()`` is false skips the seek tests;
    - following a replace: a :class:`~depot.io.interfaces.StoredFile` class
      that does not override ``_follow_replace`` skips the tests of a file
      replaced before its first read;
    - raw metadata: the ``raw_metadata`` fixture, ``None`` by default, gives a
      :class:`RawMetadata` for the test of damaged metadata.

    Each skip names what is missing. What a backend knowingly does otherwise
    goes in :attr:`expected_failures`; the hook methods below loosen a check
    for what a test server cannot do.

    .. versionadded:: 1.0
    """

    #: Tests the backend is known to fail, by name (``"test_empty_file"``, or
    #: with its parameters, ``"test_text_is_refused_with_a_hint[str]"``), with
    #: the reason. Each runs as a strict ``xfail``: a test that starts to pass
    #: fails the run, so the list shrinks as the backend grows.
    expected_failures: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = [
            name
            for name in cls.expected_failures
            if not name.startswith("test_") or not hasattr(cls, name.partition("[")[0])
        ]
        if unknown:
            raise TypeError(
                f"{cls.__name__}.expected_failures names no test of the suite: "
                f"{', '.join(map(repr, unknown))}. Use the names pytest shows, such as "
                "'test_empty_file', or 'test_text_is_refused_with_a_hint[str]' for one "
                "of its parameters."
            )

    @pytest.fixture(autouse=True)
    def _expected_failure(self, request: pytest.FixtureRequest) -> None:
        node = request.node
        for name in (node.name, getattr(node, "originalname", node.name)):
            reason = self.expected_failures.get(name)
            if reason is not None:
                node.add_marker(pytest.mark.xfail(reason=reason, strict=True))
                return

    # --- the fixtures and hooks a test class may override ----------------------

    @pytest.fixture
    def raw_metadata(self) -> RawMetadata | None:
        """A :class:`RawMetadata` of ``storage``; ``None`` (the default) skips its test."""
        return None

    @pytest.fixture(params=BAD_IDS, ids=repr)
    def bad_id(self, request: pytest.FixtureRequest) -> object:
        """An id ``storage`` must refuse as malformed; by default each of :data:`BAD_IDS`."""
        return request.param

    @pytest.fixture
    def missing_id(self, storage: FileStorage) -> str:
        """A well-formed id of this backend (UUID or ObjectId) that names no file."""
        file_id = storage.create(b"gone")
        storage.delete(file_id)
        return file_id

    def check_old_version(
        self, storage: FileStorage, stored: StoredFile, data: bytes, old: bytes
    ) -> None:
        """Check that ``data``, read from ``stored`` after its file was replaced, is ``old``.

        ``stored`` held its version (it was read, or
        :meth:`~depot.io.interfaces.StoredFile.hold_version` was called)
        before the replace, and the backend did not raise
        :class:`~depot.exceptions.BackendUnavailableError` ("replaced").
        Override it for a test server that ignores what the real one enforces
        (an emulator that ignores a conditional read): check there what can be.
        """
        assert data == old

    def deleted_file_reads_whole(self, storage: FileStorage) -> bool | None:
        """What a file deleted after ``get()``, before its first read, does when read.

        ``True``: it reads whole (the backend holds the bytes from ``get()``
        on, as local files and memory do); ``False``: it raises
        :class:`~depot.exceptions.StoredFileNotFoundError` (the bytes are
        fetched at the first read, as buckets do); ``None``, the default:
        either, but never a part of the file.
        """
        return None

    # --- helpers ---------------------------------------------------------------

    @staticmethod
    def _needs_seek(stored: StoredFile) -> None:
        if not stored.seekable():
            pytest.skip(
                f"{type(stored).__name__}.seekable() is false: seeking is an optional "
                "capability of a StoredFile"
            )

    @staticmethod
    def _needs_follow_replace(stored: StoredFile) -> None:
        if type(stored)._follow_replace is StoredFile._follow_replace:
            pytest.skip(
                f"{type(stored).__name__} does not override _follow_replace(): following "
                "a replace before the first read is an optional capability of a StoredFile"
            )

    def _old_version_or_replaced(
        self, storage: FileStorage, stored: StoredFile, read: Callable[[], bytes], old: bytes
    ) -> None:
        try:
            data = read()
        except BackendUnavailableError as exc:  # S3, GCS, GridFS: the old version is gone
            assert "replaced" in str(exc)
        else:
            self.check_old_version(storage, stored, data, old)

    # --- create and read back --------------------------------------------------

    def test_create_bytes_and_read_back(self, storage: FileStorage) -> None:
        before = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
        file_id = storage.create(b"hello depot")
        stored = storage.get(file_id)

        assert isinstance(stored, StoredFile)
        assert stored.read() == b"hello depot"
        assert stored.file_id == file_id
        assert stored.filename == stored.name == "unnamed"
        assert stored.content_type == "application/octet-stream"
        assert stored.content_length == 11
        assert stored.checksum == sha256(b"hello depot")
        assert stored.last_modified is not None
        assert stored.last_modified.tzinfo is None
        assert stored.last_modified.microsecond == 0
        assert before <= stored.last_modified <= before + timedelta(seconds=5)
        assert stored.public_url is None

    def test_name_and_type_from_arguments_win(self, storage: FileStorage) -> None:
        file_id = storage.create(
            b"x", filename="report.csv", content_type="application/vnd.ms-excel"
        )
        stored = storage.get(file_id)
        assert (stored.filename, stored.content_type) == ("report.csv", "application/vnd.ms-excel")

    def test_type_is_guessed_from_the_name(self, storage: FileStorage) -> None:
        stored = storage.get(storage.create(b"%PDF-1.4", filename="a.pdf"))
        assert stored.content_type == "application/pdf"

    def test_unicode_filename_round_trips(self, storage: FileStorage) -> None:
        name = "caf\u00e9 \u2615 \u0444\u0430\u0439\u043b.txt"
        assert storage.get(storage.create(b"x", filename=name)).filename == name

    def test_empty_file(self, storage: FileStorage) -> None:
        stored = storage.get(storage.create(b""))
        assert stored.read() == b""
        assert stored.content_length == 0
        assert stored.checksum == sha256(b"")

    def test_seekable_file_is_read_from_its_start(self, storage: FileStorage) -> None:
        # filedepot rewinds what it is given; applications rely on it after writing.
        buffer = io.BytesIO(b"0123456789")
        buffer.seek(5)
        assert storage.get(storage.create(buffer)).read() == b"0123456789"

    def test_stream_that_cannot_seek_is_consumed_as_it_comes(self, storage: FileStorage) -> None:
        data = os.urandom(300_000)
        stored = storage.get(storage.create(OneWayStream(data), filename="upload.bin"))
        assert stored.read() == data
        assert stored.content_length == len(data)
        assert stored.checksum == sha256(data)

    def test_file_on_disk_gives_its_name(self, storage: FileStorage, tmp_path: Path) -> None:
        path = tmp_path / "photo.jpg"
        path.write_bytes(b"\xff\xd8\xff")
        with open(path, "rb") as f:
            stored = storage.get(storage.create(f))
        assert (stored.filename, stored.content_type) == ("photo.jpg", "image/jpeg")
        assert stored.read() == b"\xff\xd8\xff"

    def test_file_intent(self, storage: FileStorage) -> None:
        stored = storage.get(storage.create(FileIntent(b"<svg/>", "d.svg", "image/svg+xml")))
        assert (stored.filename, stored.content_type, stored.read()) == (
            "d.svg",
            "image/svg+xml",
            b"<svg/>",
        )

    def test_file_intent_without_type_guesses_it(self, storage: FileStorage) -> None:
        stored = storage.get(storage.create(FileIntent(io.BytesIO(b"x"), "notes.txt", None)))
        assert stored.content_type == "text/plain"

    def test_webob_upload(self, storage: FileStorage) -> None:
        from webob import Request

        body = (
            b'--XX\r\nContent-Disposition: form-data; name="f"; filename="cv.pdf"\r\n'
            b"Content-Type: application/pdf\r\n\r\n%PDF-1.7 data\r\n--XX--\r\n"
        )
        request = Request.blank(
            "/", method="POST", body=body, content_type="multipart/form-data; boundary=XX"
        )
        form: Any = request.POST
        stored = storage.get(storage.create(form["f"]))
        assert (stored.filename, stored.content_type, stored.read()) == (
            "cv.pdf",
            "application/pdf",
            b"%PDF-1.7 data",
        )

    def test_werkzeug_upload(self, storage: FileStorage) -> None:
        datastructures = pytest.importorskip(
            "werkzeug.datastructures", reason="werkzeug (Flask's uploads) is not installed"
        )
        upload = datastructures.FileStorage(
            io.BytesIO(b"GIF89a"), filename="anim.gif", content_type="image/gif"
        )
        stored = storage.get(storage.create(upload))
        assert (stored.filename, stored.content_type, stored.read()) == (
            "anim.gif",
            "image/gif",
            b"GIF89a",
        )

    def test_fieldstorage_like_upload(self, storage: FileStorage) -> None:
        class Field:  # the shape of cgi.FieldStorage and multipart's parts
            filename: str | None = "data.json"
            type = "application/json"
            file: Any = io.BytesIO(b"{}")

        stored = storage.get(storage.create(Field()))
        assert (stored.filename, stored.content_type, stored.read()) == (
            "data.json",
            "application/json",
            b"{}",
        )

    @pytest.mark.parametrize("content", ["text", io.StringIO("text")], ids=["str", "text-file"])
    def test_text_is_refused_with_a_hint(self, storage: FileStorage, content: object) -> None:
        with pytest.raises(TypeError, match=r"binary mode \('rb'\)"):
            storage.create(content)  # type: ignore[arg-type]
        assert storage.list() == []

    def test_unsupported_content_is_refused(self, storage: FileStorage) -> None:
        with pytest.raises(TypeError, match="Cannot store a int: pass bytes"):
            storage.create(42)  # type: ignore[arg-type]

    def test_get_missing_file(self, storage: FileStorage, missing_id: str) -> None:
        with pytest.raises(StoredFileNotFoundError, match=missing_id) as raised:
            storage.get(missing_id)
        assert isinstance(raised.value, IOError)

    @pytest.mark.parametrize("operation", ["get", "exists", "delete", "replace"])
    def test_malformed_ids_are_refused(
        self, storage: FileStorage, operation: str, bad_id: object
    ) -> None:
        args = (bad_id, b"data") if operation == "replace" else (bad_id,)
        with pytest.raises(InvalidFileIdError, match="Invalid file id") as raised:
            getattr(storage, operation)(*args)
        assert isinstance(raised.value, ValueError)

    # --- replace ---------------------------------------------------------------

    def test_replace_keeps_the_id_and_changes_the_content(self, storage: FileStorage) -> None:
        file_id = storage.create(b"old", filename="a.txt")
        assert storage.replace(file_id, b"new content") == file_id
        stored = storage.get(file_id)
        assert stored.read() == b"new content"
        assert (stored.filename, stored.content_type) == ("a.txt", "text/plain")
        assert stored.content_length == 11
        assert stored.checksum == sha256(b"new content")

    def test_replace_with_a_type_only_changes_the_type(self, storage: FileStorage) -> None:
        # filedepot dropped a content_type given without a filename; depot keeps it.
        file_id = storage.create(b"old", filename="a.txt")
        storage.replace(file_id, b"{}", content_type="application/json")
        stored = storage.get(file_id)
        assert (stored.filename, stored.content_type) == ("a.txt", "application/json")

    def test_replace_with_a_new_name_guesses_a_new_type(self, storage: FileStorage) -> None:
        file_id = storage.create(b"old", filename="a.txt")
        storage.replace(storage.get(file_id), b"<html>", filename="page.html")
        stored = storage.get(file_id)
        assert (stored.filename, stored.content_type) == ("page.html", "text/html")

    def test_replace_missing_file(self, storage: FileStorage, missing_id: str) -> None:
        with pytest.raises(StoredFileNotFoundError):
            storage.replace(missing_id, b"data")
        assert not storage.exists(missing_id)

    def test_replace_stored_file_with_itself_restores_it_elsewhere(
        self, storage: FileStorage, missing_id: str
    ) -> None:
        class Backup(StoredFile):  # a file of another depot of the same backend
            def __init__(self) -> None:
                super().__init__(missing_id, "b.txt", "text/plain")
                self._data = io.BytesIO(b"backup me")

            def read(self, n: int = -1) -> bytes:
                return self._data.read(n)

            def close(self) -> None:
                self._data.close()

            @property
            def closed(self) -> bool:
                return self._data.closed

        original = Backup()
        assert storage.replace(original, original) == original.file_id
        copy = storage.get(original.file_id)
        assert (copy.read(), copy.filename) == (b"backup me", "b.txt")

    def test_failed_replace_keeps_the_old_file(self, storage: FileStorage) -> None:
        class Broken(OneWayStream):
            def read(self, n: int = -1) -> bytes:
                if self._data.tell() > 1000:
                    raise ConnectionResetError("client went away")
                return super().read(n)

        file_id = storage.create(b"keep me", filename="k.txt")
        with pytest.raises(ConnectionResetError):
            storage.replace(file_id, Broken(os.urandom(10_000)))
        stored = storage.get(file_id)
        assert (stored.read(), stored.filename, stored.checksum) == (
            b"keep me",
            "k.txt",
            sha256(b"keep me"),
        )

    def test_failed_create_stores_nothing(self, storage: FileStorage) -> None:
        class Broken(OneWayStream):
            def read(self, n: int = -1) -> bytes:
                raise ConnectionResetError("client went away")

        with pytest.raises(ConnectionResetError):
            storage.create(Broken(b""))
        assert storage.list() == []

    # --- delete, list, ids -----------------------------------------------------

    def test_delete(self, storage: FileStorage) -> None:
        file_id = storage.create(b"x")
        assert storage.exists(file_id)
        storage.delete(storage.get(file_id))
        assert not storage.exists(file_id)
        with pytest.raises(StoredFileNotFoundError):
            storage.get(file_id)

    def test_delete_missing_file_does_nothing(self, storage: FileStorage, missing_id: str) -> None:
        storage.delete(missing_id)

    def test_list(self, storage: FileStorage) -> None:
        assert storage.list() == []
        ids = {storage.create(b"a"), storage.create(b"b"), storage.create(b"c")}
        assert set(storage.list()) == ids
        removed = ids.pop()
        storage.delete(removed)
        assert set(storage.list()) == ids

    def test_iter_ids_gives_the_ids_of_list(self, storage: FileStorage) -> None:
        assert list(storage.iter_ids()) == []
        ids = {storage.create(b"a"), storage.create(b"b")}
        assert set(storage.iter_ids()) == ids
        assert sorted(storage.iter_ids()) == sorted(storage.list())

    def test_ids_are_random_uuid4(self, storage: FileStorage) -> None:
        file_id = storage.create(b"x")
        assert storage.create(b"x") != file_id
        # Ids of another form (GridFS keeps filedepot's ObjectIds) are only unique.
        if _uses_uuid_ids(file_id):
            assert uuid.UUID(file_id).version == 4

    # --- the stored file -------------------------------------------------------

    def test_stored_file_is_a_read_only_file(self, storage: FileStorage) -> None:
        stored = storage.get(storage.create(b"0123456789"))
        assert stored.readable() and not stored.writable()
        assert stored.read(4) == b"0123"
        assert stored.read(2) == b"45"
        assert stored.read() == b"6789"
        assert not stored.closed
        stored.close()
        assert stored.closed
        with pytest.raises(ValueError):
            stored.read()

    def test_stored_file_closed_before_reading(self, storage: FileStorage) -> None:
        stored = storage.get(storage.create(b"x"))
        stored.close()
        assert stored.closed
        with pytest.raises(ValueError):
            stored.read()

    def test_stored_file_is_a_context_manager(self, storage: FileStorage) -> None:
        with storage.get(storage.create(b"x")) as stored:
            assert stored.read() == b"x"
        assert stored.closed

    def test_stored_file_seeks(self, storage: FileStorage) -> None:
        stored = storage.get(storage.create(b"0123456789"))
        self._needs_seek(stored)
        stored.seek(6)
        assert stored.tell() == 6
        assert stored.read(2) == b"67"
        stored.seek(-1, io.SEEK_END)
        assert stored.read() == b"9"

    def test_iteration_yields_blocks(self, storage: FileStorage) -> None:
        from depot.io._chunks import BLOCK_SIZE

        data = os.urandom(BLOCK_SIZE * 2 + 10)
        chunks = list(storage.get(storage.create(data)))
        assert [len(c) for c in chunks] == [BLOCK_SIZE, BLOCK_SIZE, 10]
        assert b"".join(chunks) == data

    def test_repr_is_filedepots(self, storage: FileStorage) -> None:
        stored = storage.get(storage.create(b"x", filename="a.txt"))
        assert repr(stored) == (
            f"<{type(stored).__name__}:{stored.file_id} filename=a.txt "
            f"content_type=text/plain last_modified={stored.last_modified}>"
        )

    def test_large_stream_round_trip(self, storage: FileStorage) -> None:
        data = os.urandom(3 * 1024 * 1024 + 7)
        stored = storage.get(storage.create(OneWayStream(data, piece=65536)))
        assert hashlib.sha256(b"".join(stored)).hexdigest() == hashlib.sha256(data).hexdigest()
        assert stored.content_length == len(data)

    def test_fileid_and_fileinfo(self, storage: FileStorage) -> None:
        stored = storage.get(storage.create(b"x"))
        assert storage.fileid(stored) == storage.fileid(stored.file_id) == stored.file_id
        source, name, ctype = storage.fileinfo(b"x", "a.png")
        assert (source, name, ctype) == (b"x", "a.png", "image/png")

    # --- names and types as stored ---------------------------------------------

    @pytest.mark.parametrize("content_type", UNSAFE_TYPES, ids=repr)
    def test_unsafe_content_type_is_stored_as_octet_stream(
        self, storage: FileStorage, content_type: str
    ) -> None:
        file_id = storage.create(b"<script>", filename="a.bin", content_type=content_type)
        assert storage.get(file_id).content_type == "application/octet-stream"
        storage.replace(file_id, b"<script>", content_type=content_type)
        assert storage.get(file_id).content_type == "application/octet-stream"
        carried = FileIntent(b"<script>", "b.bin", content_type)
        assert storage.get(storage.create(carried)).content_type == "application/octet-stream"

    def test_safe_content_type_with_parameters_is_kept(self, storage: FileStorage) -> None:
        ctype = 'text/plain; charset=utf-8; format="flowed"'
        assert storage.get(storage.create(b"x", content_type=f"  {ctype} ")).content_type == ctype

    # Finding 10: os.fsdecode() makes lone surrogates of bytes that are not UTF-8;
    # such a name cannot be encoded where it is served, so it is stored with U+FFFD.
    @pytest.mark.parametrize("name", ["caf\udce9.txt", "\ud800", "a\udfff\udcffb.pdf"], ids=repr)
    def test_lone_surrogates_in_a_name_are_stored_replaced(
        self, storage: FileStorage, name: str
    ) -> None:
        stored = storage.get(storage.create(b"x", filename=name))
        assert stored.filename == name.translate({c: "\ufffd" for c in range(0xD800, 0xE000)})
        stored.filename.encode("utf-8")

    def test_name_of_a_file_opened_by_undecodable_path(
        self, storage: FileStorage, tmp_path: Path
    ) -> None:
        path = os.path.join(os.fsencode(tmp_path), b"r\xe9sum\xe9.txt")
        with open(path, "wb") as out:
            out.write(b"cv")
        with open(os.fsdecode(path), "rb") as source:
            stored = storage.get(storage.create(source))
        assert stored.filename == "r\ufffdsum\ufffd.txt"
        assert stored.content_type == "text/plain"

    # Finding 18: names are stored with at most 255 characters, the extension kept.
    @pytest.mark.parametrize("length", [256, 20_000])
    def test_long_names_are_stored_shortened_keeping_the_extension(
        self, storage: FileStorage, length: int
    ) -> None:
        name = "\u00e9" * (length - 4) + ".pdf"
        file_id = storage.create(b"x", filename=name)
        stored = storage.get(file_id)
        assert stored.filename is not None
        assert len(stored.filename) == 255
        assert stored.filename == "\u00e9" * 251 + ".pdf"
        assert stored.content_type == "application/pdf"
        storage.replace(file_id, b"y", filename="b" * 1000)
        assert storage.get(file_id).filename == "b" * 255

    def test_name_of_255_characters_is_kept(self, storage: FileStorage) -> None:
        name = "n" * 251 + ".txt"
        assert storage.get(storage.create(b"x", filename=name)).filename == name

    # --- damaged metadata ------------------------------------------------------

    def test_wrong_typed_metadata_is_corrupt(
        self, storage: FileStorage, raw_metadata: RawMetadata | None
    ) -> None:
        if raw_metadata is None:
            pytest.skip(
                "no raw_metadata fixture: give one returning a depot.testing.RawMetadata "
                "for this backend to test how it reads damaged metadata"
            )
        tried, wrong = 0, []
        for field, value in CORRUPT_VALUES:
            if not raw_metadata.can_write(field, value):
                continue  # this backend cannot hold such a value at all
            tried += 1
            file_id = storage.create(b"hello", filename="a.txt")
            raw_metadata.write(file_id, field, value)
            try:
                stored = storage.get(file_id)
            except CorruptMetadataError as exc:
                if file_id not in str(exc) or "Restore the file from a backup" not in str(exc):
                    wrong.append(f"{field}={value!r}: message {exc}")
            except Exception as exc:  # noqa: BLE001 (what is wrong is reported below)
                wrong.append(f"{field}={value!r}: {type(exc).__name__}: {exc}")
            else:
                lenient = field in raw_metadata.lenient_fields
                if not (lenient and getattr(stored, field) is None):
                    wrong.append(f"{field}={value!r}: accepted")
            storage.delete(file_id)  # a corrupt file can still be deleted
            assert not storage.exists(file_id)
        assert tried >= raw_metadata.least_writable, (
            f"the raw_metadata fixture could write {tried} of the damaged values: "
            f"fewer than its least_writable ({raw_metadata.least_writable})"
        )
        assert not wrong, "\n".join(wrong)

    # --- the size limit --------------------------------------------------------

    # Finding 5: MaxSize measured a seekable stream by fstat(fileno()), which is
    # the size of whatever the descriptor is, not of the bytes read: gzip.open()
    # reports its compressed file, /dev/zero 0 bytes. The bytes actually read are
    # counted now, on every backend, whatever the stream says of itself.
    @pytest.mark.parametrize(("limit", "size"), [(MiB, 8 * MiB), (20 * MiB, 48 * MiB)])
    def test_max_size_counts_what_a_gzip_stream_gives(
        self, storage: FileStorage, tmp_path: Path, limit: int, size: int
    ) -> None:
        path = _gzip_of_zeros(tmp_path, size)
        assert os.path.getsize(path) < limit  # what fstat() says of it
        kept = storage.create(b"kept", "kept.txt")
        with gzip.open(path, "rb") as stream, pytest.raises(FileTooLargeError):
            storage.create(validate(stream, [MaxSize(limit)]), "bomb.bin")
        assert storage.list() == [kept]

    def test_max_size_stops_a_device_that_never_ends(self, storage: FileStorage) -> None:
        if not os.path.exists("/dev/zero"):
            pytest.skip("this system has no /dev/zero")
        with open("/dev/zero", "rb") as endless, pytest.raises(FileTooLargeError):
            storage.create(validate(endless, [MaxSize(MiB)]), "zeros.bin")
        assert storage.list() == []

    def test_max_size_does_not_trust_a_descriptor_of_another_file(
        self, storage: FileStorage, tmp_path: Path
    ) -> None:
        small = tmp_path / "small"
        small.write_bytes(b"s" * 10)

        class Disguised(Generated):  # reads 5 MiB, but its descriptor is a 10-byte file
            def __init__(self) -> None:
                super().__init__(5 * MiB, seekable=True)
                self._file = small.open("rb")

            def fileno(self) -> int:
                return self._file.fileno()

        stream = Disguised()
        try:
            with pytest.raises(FileTooLargeError):
                storage.create(validate(stream, [MaxSize(MiB)]), "x.bin")
        finally:
            stream._file.close()
        assert storage.list() == []

    def test_max_size_counts_a_regular_file_that_grows(
        self, storage: FileStorage, tmp_path: Path
    ) -> None:
        path = tmp_path / "growing"
        path.write_bytes(b"g" * 1000)
        with path.open("rb") as source:
            intent = validate(source, [MaxSize(2000)])  # 1000 bytes now: accepted
            with path.open("ab") as writer:
                writer.write(b"g" * 5000)  # grows before it is stored
            with pytest.raises(FileTooLargeError):
                storage.create(intent)
        assert storage.list() == []

    def test_max_size_passes_a_regular_file_within_the_limit(
        self, storage: FileStorage, tmp_path: Path
    ) -> None:
        path = tmp_path / "ok.bin"
        data = os.urandom(300_000)
        path.write_bytes(data)
        with path.open("rb") as source:
            stored = storage.get(storage.create(validate(source, [MaxSize(len(data))])))
        assert (stored.read(), stored.filename, stored.checksum) == (data, "ok.bin", sha256(data))

    @pytest.mark.parametrize("size", [MiB, 12 * MiB])
    def test_a_gzip_stream_within_the_limit_stores_what_it_gives(
        self, storage: FileStorage, tmp_path: Path, size: int
    ) -> None:
        path = _gzip_of_zeros(tmp_path, size)
        with gzip.open(path, "rb") as stream:
            stored = storage.get(storage.create(validate(stream, [MaxSize(size)]), "zeros.bin"))
        assert stored.content_length == size
        assert stored.checksum == sha256(bytes(size))

    # --- issue 13: what filedepot's suites (and apps that copied them) do --------

    @pytest.mark.parametrize("operation", ["create", "replace"])
    def test_a_frozen_timestamp_sets_last_modified(
        self, storage: FileStorage, operation: str
    ) -> None:
        # filedepot's suite freezes time by patching the helper where it lives.
        file_id = storage.create(b"first", filename="a.txt")
        with mock.patch("depot.io.utils.timestamp", return_value="2001-01-01 00:00:01"):
            if operation == "create":
                file_id = storage.create(b"content", filename="a.txt")
            else:
                storage.replace(file_id, b"content")
        assert storage.get(file_id).last_modified == datetime(2001, 1, 1, 0, 0, 1)

    def test_a_file_not_read_yet_reads_the_version_a_replace_stored(
        self, storage: FileStorage
    ) -> None:
        # filedepot's test_replace_keeps_filename: get(), replace(), then read.
        file_id = storage.create(b"HELLO WORLD", filename="file.txt")
        stored = storage.get(file_id)
        self._needs_follow_replace(stored)
        storage.replace(stored, b"NEW CONTENT, longer")
        assert stored.read() == b"NEW CONTENT, longer"
        # ... and its metadata now describes the bytes it read.
        assert stored.content_length == 19
        assert stored.checksum == sha256(b"NEW CONTENT, longer")
        assert stored.filename == "file.txt"

    def test_a_file_read_once_keeps_its_version_or_says_it_is_gone(
        self, storage: FileStorage
    ) -> None:
        file_id = storage.create(b"0123456789" * 1000, filename="file.txt")
        stored = storage.get(file_id)
        first = stored.read(10)
        storage.replace(file_id, b"abcdefghij" * 2000, filename="other.bin")
        # Never bytes of one version under the metadata of another: the rest of
        # the old version, or an error saying the file was replaced.
        try:
            rest = stored.read()
        except BackendUnavailableError as exc:
            assert "replaced" in str(exc)
        else:
            assert first + rest == b"0123456789" * 1000
        assert (stored.filename, stored.content_length) == ("file.txt", 10000)
        assert stored.checksum == sha256(b"0123456789" * 1000)

    @pytest.mark.parametrize("operation", ["get", "exists", "replace", "delete"])
    def test_uuid_objects_are_accepted_as_ids(self, storage: FileStorage, operation: str) -> None:
        file_id = storage.create(b"content", filename="a.txt")
        if not _uses_uuid_ids(file_id):
            with pytest.raises(InvalidFileIdError):
                storage.get(uuid.UUID(int=1))  # type: ignore[arg-type]
            return
        as_uuid: Any = uuid.UUID(file_id)
        if operation == "get":
            stored = storage.get(as_uuid)
            assert (stored.file_id, stored.read()) == (file_id, b"content")
        elif operation == "exists":
            assert storage.exists(as_uuid)
            assert not storage.exists(uuid.uuid4())  # type: ignore[arg-type]
        elif operation == "replace":
            assert storage.replace(as_uuid, b"new") == file_id
            assert storage.get(file_id).read() == b"new"
        else:
            storage.delete(as_uuid)
            assert not storage.exists(file_id)

    def test_a_held_file_keeps_its_version(self, storage: FileStorage) -> None:
        file_id = storage.create(b"old bytes", filename="old.txt")
        stored = storage.get(file_id)
        stored.hold_version()
        storage.replace(file_id, b"new, longer bytes", filename="new.bin")
        self._old_version_or_replaced(storage, stored, stored.read, b"old bytes")
        assert (stored.filename, stored.content_length) == ("old.txt", 9)

    def test_iter_range_reads_the_version_its_range_was_computed_from(
        self, storage: FileStorage
    ) -> None:
        file_id = storage.create(b"0123456789", filename="old.txt")
        stored = storage.get(file_id)
        stop = stored.content_length
        assert stop is not None
        storage.replace(file_id, b"abcdefghijklmnopqrst")
        self._old_version_or_replaced(
            storage, stored, lambda: b"".join(stored.iter_range(5, stop)), b"56789"
        )
        assert stored.content_length == 10

    def test_served_headers_and_body_are_of_one_version(self, storage: FileStorage) -> None:
        from webob import Request

        from depot.middleware import FileServeApp

        file_id = storage.create(b"old bytes", filename="old.txt")
        stored = storage.get(file_id)
        app = FileServeApp(stored, 60)
        storage.replace(file_id, b"new, longer bytes", filename="new.txt")
        response = Request.blank("/").get_response(app)
        if response.status_int == 503:  # S3, GCS, GridFS: the version the headers describe is gone
            return
        assert response.status_int == 200
        assert response.content_length == 9
        self.check_old_version(storage, stored, response.body, b"old bytes")

    def test_a_file_deleted_before_its_first_read_reads_whole_or_is_missing(
        self, storage: FileStorage
    ) -> None:
        file_id = storage.create(b"content", filename="a.txt")
        stored = storage.get(file_id)
        storage.delete(file_id)
        # Memory and local storage hold the bytes from get() on; the buckets and
        # GridFS fetch them at the first read, when they are gone. Never a part.
        reads_whole = self.deleted_file_reads_whole(storage)
        try:
            data = stored.read()
        except StoredFileNotFoundError as exc:
            assert reads_whole is not True, f"{type(stored).__name__} did not read it whole"
            assert file_id in str(exc)
        else:
            assert reads_whole is not False, f"{type(stored).__name__} read a deleted file"
            assert data == b"content"

    def test_a_file_open_in_text_mode_is_refused_before_reading(
        self, storage: FileStorage, tmp_path: Path
    ) -> None:
        # filedepot's docs write open('cat.jpg'): a JPEG read as text fails to decode.
        path = tmp_path / "cat.jpg"
        path.write_bytes(b"\xff\xd8\xff\xe0 not utf-8 \xff")
        with open(path) as text:
            with pytest.raises(
                TypeError, match=r"'cat.jpg' is open in text mode.*open\(path, 'rb'\)"
            ):
                storage.create(text)  # type: ignore[arg-type]
            assert text.tell() == 0  # nothing read
        file_id = storage.create(b"old")
        with open(path) as text, pytest.raises(TypeError, match="text mode"):
            storage.replace(file_id, text)  # type: ignore[arg-type]
        assert storage.get(file_id).read() == b"old"

    def test_a_path_given_as_str_says_to_open_it(self, storage: FileStorage) -> None:
        with pytest.raises(
            TypeError, match=r"looks like a file path.*open\('/tmp/x/cat.jpg', 'rb'\)"
        ):
            storage.create("/tmp/x/cat.jpg")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"text.encode\('utf-8'\)") as raised:
            storage.create("HELLO WORLD")  # type: ignore[arg-type]
        assert "looks like a file path" not in str(raised.value)

    @pytest.mark.parametrize("first", ["read", "seek", "iterate"])
    def test_following_a_replace_never_mixes_versions(
        self, storage: FileStorage, first: str
    ) -> None:
        file_id = storage.create(b"v0" * 50, filename="v0.txt")
        for version, size in enumerate([3, 700, 1, 90_000], start=1):
            stored = storage.get(file_id)
            self._needs_follow_replace(stored)
            if first == "seek":
                self._needs_seek(stored)
            # Two replaces between get() and the first read: the newest one is read.
            storage.replace(file_id, b"x" * 5)
            data = bytes([version]) * size
            storage.replace(file_id, data, filename=f"v{version}.bin")
            if first == "read":
                got = stored.read()
            elif first == "seek":
                stored.seek(1)
                got = data[:1] + stored.read()
            else:
                got = b"".join(stored)
            assert got == data
            assert (stored.filename, stored.content_length, stored.checksum) == (
                f"v{version}.bin",
                size,
                sha256(data),
            )
            stored.close()
