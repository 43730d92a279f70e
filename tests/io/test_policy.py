"""A depot's policy (``max_size``, ``allowed_types``, ``allowed_extensions``), on every backend."""

from __future__ import annotations

import io
from typing import Any

import pytest

from depot.exceptions import (
    ConfigurationError,
    ContentTypeNotAllowedError,
    ExtensionNotAllowedError,
    FileTooLargeError,
)
from depot.io.interfaces import FileStorage, StoredFile
from depot.io.utils import FileIntent
from depot.manager import DepotManager
from depot.validators import MaxSize
from tests.streams import Generated, OneWayStream

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
    b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x03\x00\x08\xfc\x02\xfe\xa7"
    b"\x9a\xa0\xa0\x00\x00\x00\x00IEND\xaeB`\x82"
)
HTML = b"<!DOCTYPE html><html><script>alert(1)</script></html>"


def with_policy(backend_settings: dict[str, Any], **policy: Any) -> FileStorage:
    settings = dict(backend_settings)
    settings.update({f"depot.{k}": v for k, v in policy.items()})
    return DepotManager.from_config(settings)


def test_a_file_over_max_size_is_refused_and_leaves_nothing(
    backend_settings: dict[str, Any],
) -> None:
    storage = with_policy(backend_settings, max_size="1 KiB")
    before = set(storage.list())
    with pytest.raises(FileTooLargeError, match="at most 1.02 KB"):
        storage.create(b"x" * 1025, "big.bin")
    # A stream that cannot seek, and one that says nothing of its size, are cut
    # while they stream: only a block past the limit is ever read.
    one_way = OneWayStream(b"y" * 10_000_000)
    with pytest.raises(FileTooLargeError):
        storage.create(one_way, "big.bin")
    with pytest.raises(FileTooLargeError):
        storage.create(Generated(5_000_000), "generated.bin")
    assert set(storage.list()) == before
    assert storage.get(storage.create(b"x" * 1024, "fits.bin")).read() == b"x" * 1024


def test_a_replace_over_max_size_keeps_the_current_version(
    backend_settings: dict[str, Any],
) -> None:
    storage = with_policy(backend_settings, max_size=100)
    fileid = storage.create(b"small", "a.txt")
    with pytest.raises(FileTooLargeError):
        storage.replace(fileid, OneWayStream(b"z" * 1_000_000))
    with pytest.raises(FileTooLargeError):
        storage.replace(fileid, b"z" * 101)
    stored = storage.get(fileid)
    assert (stored.read(), stored.filename, stored.content_length) == (b"small", "a.txt", 5)


def test_allowed_types_are_sniffed(backend_settings: dict[str, Any]) -> None:
    storage = with_policy(backend_settings, allowed_types="image/png, image/jpeg")
    fileid = storage.create(PNG, "dot.png")
    assert storage.get(fileid).content_type == "image/png"
    # A page sent as an image, under an image's name: its first bytes tell.
    with pytest.raises(ContentTypeNotAllowedError, match="not accepted here"):
        storage.create(FileIntent(HTML, "cat.png", "image/png"))
    with pytest.raises(ContentTypeNotAllowedError):
        storage.create(b"%PDF-1.4 ...", "doc.pdf")
    with pytest.raises(ContentTypeNotAllowedError):
        storage.replace(fileid, FileIntent(HTML, "dot.png", "image/png"))
    assert storage.get(fileid).read() == PNG


def test_allowed_extensions_check_the_name_that_is_stored(
    backend_settings: dict[str, Any],
) -> None:
    storage = with_policy(backend_settings, allowed_extensions=[".txt", "csv"])
    fileid = storage.create(b"a,b", "table.CSV")
    with pytest.raises(ExtensionNotAllowedError, match=r"must end with one of \.txt, \.csv"):
        storage.create(b"MZ...", "setup.exe")
    with pytest.raises(ExtensionNotAllowedError):
        storage.create(b"no name")  # stored as 'unnamed'
    # A replace without a name keeps the current one, which is allowed.
    storage.replace(fileid, io.BytesIO(b"c,d"))
    assert storage.get(fileid).filename == "table.CSV"
    with pytest.raises(ExtensionNotAllowedError):
        storage.replace(fileid, b"x", "renamed.exe")
    assert storage.get(fileid).read() == b"c,d"


def test_restoring_a_file_applies_the_policy(backend_settings: dict[str, Any]) -> None:
    source = DepotManager.from_config(backend_settings)  # no policy
    big: StoredFile = source.get(source.create(b"q" * 200, "q.txt"))
    storage = with_policy(backend_settings, max_size=100)
    with pytest.raises(FileTooLargeError):
        storage.replace(big, big)


def test_no_policy_by_default(storage: FileStorage) -> None:
    assert storage.policy == ()


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("max_size", "ten", "Cannot read the size 'ten'"),
        ("max_size", -1, "cannot be negative"),
        ("allowed_types", "image/*, text/html; charset=utf-8", "not a content type pattern"),
        ("allowed_types", 42, "must be a list of strings"),
        ("allowed_types", " , ", "is empty"),
        ("allowed_extensions", [".txt", 3], "must be a list of strings"),
    ],
)
def test_bad_policy_settings_say_what_to_write(setting: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        DepotManager.configure("media", {"depot.backend": "memory", f"depot.{setting}": value})
    assert f"depot.{setting}" in str(raised.value)


def test_policy_settings_are_not_passed_to_the_backend(tmp_path: Any) -> None:
    storage = DepotManager.configure(
        "default",
        {
            "depot.backend": "local",
            "depot.storage_path": str(tmp_path),
            "depot.max_size": "10",
            "depot.allowed_extensions": ".txt",
        },
    )
    assert [type(c).__name__ for c in storage.policy] == ["MaxSize", "Extensions"]
    with pytest.raises(ConfigurationError, match="depot.max_size, depot.allowed_types"):
        DepotManager.configure(
            "x", {"depot.backend": "local", "depot.storage_path": str(tmp_path), "depot.nope": 1}
        )


def test_fields_add_their_limits_on_top() -> None:
    sa = pytest.importorskip("sqlalchemy")
    from sqlalchemy import orm

    from depot.fields.sqlalchemy import UploadedFileField

    class Base(orm.DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = "docs"
        id = sa.Column(sa.Integer, primary_key=True)
        small = sa.Column(UploadedFileField(validators=[MaxSize(10)]))
        any = sa.Column(UploadedFileField())

    DepotManager.configure("default", {"depot.backend": "memory", "depot.max_size": 50})
    engine = sa.create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with orm.Session(engine) as session:
        doc = Doc()
        with pytest.raises(FileTooLargeError, match="at most 10 bytes"):
            doc.small = b"x" * 20  # the field's limit
        with pytest.raises(FileTooLargeError, match="at most 50 bytes"):
            doc.any = b"x" * 60  # the depot's, under a field without one
        doc.small, doc.any = b"x" * 10, b"x" * 50
        session.add(doc)
        session.commit()
        assert (len(doc.small.file.read()), len(doc.any.file.read())) == (10, 50)


class FiledepotEraStorage(FileStorage):
    """A backend written as filedepot's docs taught: create() and replace() overridden."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def get(self, file_or_id: Any) -> Any:
        raise NotImplementedError

    def create(self, content: Any, filename: Any = None, content_type: Any = None) -> str:
        source, _, _ = self.fileinfo(content, filename, content_type)
        data = source if isinstance(source, bytes) else source.read()  # type: ignore[union-attr]
        self.files[str(len(self.files))] = data
        return str(len(self.files) - 1)

    def replace(
        self, file_or_id: Any, content: Any, filename: Any = None, content_type: Any = None
    ) -> str:
        source, _, _ = self.fileinfo(content, filename, content_type)
        self.files[file_or_id] = source if isinstance(source, bytes) else source.read()  # type: ignore[union-attr]
        return str(file_or_id)

    def delete(self, file_or_id: Any) -> None:
        self.files.pop(file_or_id, None)

    def exists(self, file_or_id: Any) -> bool:
        return file_or_id in self.files

    def list(self) -> list[str]:
        return list(self.files)


def test_a_filedepot_era_backend_gets_the_policy_too() -> None:
    storage = DepotManager.configure(
        "default",
        {
            "depot.backend": f"{__name__}.FiledepotEraStorage",
            "depot.max_size": 10,
            "depot.allowed_extensions": ".txt",
        },
    )
    fileid = storage.create(b"short", "a.txt")
    assert storage.files[fileid] == b"short"  # type: ignore[attr-defined]
    with pytest.raises(FileTooLargeError):
        storage.create(b"much too long", "b.txt")
    with pytest.raises(ExtensionNotAllowedError):
        storage.replace(fileid, b"x", filename="b.exe")
    with pytest.raises(FileTooLargeError):
        storage.replace(fileid, content=io.BytesIO(b"much too long"), filename="b.txt")
    assert storage.files == {"0": b"short"}  # type: ignore[attr-defined]
    # Without a policy the methods are called as they are.
    plain = FiledepotEraStorage()
    assert plain.replace("0", b"anything at all", "x.exe") == "0"
