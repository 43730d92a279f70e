"""Hostile review of issue 12: MaxSize and lying streams (E), views of wide items (F),
directories planted at the names a local replace writes (H).

A replace either happens or does not: when it raises, get() must still give
the old version. A directory planted at metadata.json or checksum made
replace() raise IsADirectoryError after committing the new data, which get()
then served; one planted at file.new (or metadata.json.new, checksum.new)
made every replace() of that file fail for good, while list() left it there.
"""

from __future__ import annotations

import array
import ctypes
import io
import os
from pathlib import Path
from typing import Any

import pytest

from depot.exceptions import CorruptMetadataError, FileTooLargeError
from depot.io.interfaces import FileStorage
from depot.io.local import LocalFileStorage
from depot.io.memory import MemoryFileStorage
from depot.validators import MaxSize, validate

LIMIT = 1000
#: What the hostile streams would give if nothing stopped them.
ENDLESS = 5_000_000


class _Lying(io.RawIOBase):
    """Bytes without end (up to ENDLESS), seekable, with a made-up position."""

    def __init__(self, tell: Any, seek: Any) -> None:
        self._given = 0
        self._tell = tell
        self._seek = seek

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> Any:
        return self._tell

    def seek(self, offset: int, whence: int = 0) -> Any:
        return self._seek

    def read(self, n: int | None = -1) -> bytes:
        n = 65536 if n is None or n < 0 else n
        n = min(n, ENDLESS - self._given)
        self._given += n
        return b"x" * n


@pytest.fixture(params=["memory", "local"])
def storage(request: pytest.FixtureRequest, tmp_path: Any) -> FileStorage:
    return MemoryFileStorage() if request.param == "memory" else LocalFileStorage(tmp_path)


@pytest.mark.parametrize(
    ("tell", "seek"),
    [
        (-(10**12), -(10**12)),
        (0, -(10**12)),
        (0, 0),  # claims every seek lands at the start
        (0, True),
        (0, 0.0),
        (0, "0"),
        (0, 10**12),
        (None, None),
    ],
    ids=[
        "tell-negative", "seek-negative", "seek-always-zero", "seek-bool", "seek-float",
        "seek-str", "seek-elsewhere", "tell-none",
    ],
)  # fmt: skip
def test_maxsize_counts_the_bytes_whatever_the_stream_says_of_its_position(
    storage: FileStorage, tell: Any, seek: Any
) -> None:
    with pytest.raises(FileTooLargeError):  # at once, or while it is stored
        intent = validate(_Lying(tell, seek), [MaxSize(LIMIT)], filename="a.bin")
        file_id = storage.create(intent)
        pytest.fail(f"stored {storage.get(file_id).content_length} bytes under MaxSize({LIMIT})")


class _SeekReturnsNone(io.BytesIO):
    """A wrapper written for Python 2's file.seek(), which returned None."""

    def seek(self, *args: Any) -> Any:  # type: ignore[override]
        super().seek(*args)
        return None


def test_a_stream_whose_seek_returns_none_is_stored_within_maxsize(storage: FileStorage) -> None:
    # Stored as it is without a validator; with one it must be too.
    file_id = storage.create(
        validate(_SeekReturnsNone(b"abc" * 10), [MaxSize(LIMIT)], filename="a.bin")
    )
    assert storage.get(file_id).read() == b"abc" * 10


def test_a_stream_sniffed_then_rewound_is_stored_whole_within_maxsize(
    storage: FileStorage,
) -> None:
    # What a legitimate caller does: read the start, seek back, hand it over.
    stream = io.BytesIO(b"y" * LIMIT)
    intent = validate(stream, [MaxSize(LIMIT)], filename="a.bin")
    source = intent.fileinfo[0]
    assert source.read(600) == b"y" * 600
    assert source.seek(0) == 0
    file_id = storage.create(intent)
    assert storage.get(file_id).read() == b"y" * LIMIT


def test_an_untrusted_stream_rewound_again_and_again_stays_bounded() -> None:
    # Once a seek's answer is implausible, rewinding no longer resets the count.
    source = validate(_Lying(0, None), [MaxSize(LIMIT)]).fileinfo[0]
    with pytest.raises(FileTooLargeError):
        for _ in range(LIMIT):
            source.seek(0)
            source.read(100)


def test_a_view_of_wide_items_is_measured_in_bytes(storage: FileStorage) -> None:
    view = memoryview(array.array("Q", [0x4141414141414141] * 200))  # 200 items, 1600 bytes
    file_id = storage.create(view, filename="a.bin")
    stored = storage.get(file_id)
    assert stored.content_length == len(stored.read()) == view.nbytes
    with pytest.raises(FileTooLargeError):
        storage.create(validate(view, [MaxSize(LIMIT)], filename="a.bin"))


@pytest.mark.parametrize("name", ["metadata.json", "checksum"])
def test_a_replace_that_raises_changed_nothing(tmp_path: Path, name: str) -> None:
    # A directory where depot keeps a file's metadata is damage: get() says so
    # (CorruptMetadataError, which the middleware answers 503) rather than
    # serving a file whose metadata it cannot read, and replace() refuses
    # before committing anything: the old data stays, nothing pending is left.
    storage = LocalFileStorage(tmp_path)
    file_id = storage.create(b"old", filename="a.txt")
    folder = tmp_path / file_id
    target = folder / name
    target.unlink()
    target.mkdir()
    with pytest.raises(CorruptMetadataError, match="a directory"):
        storage.get(file_id)
    with pytest.raises(CorruptMetadataError, match="a directory"):
        storage.replace(file_id, b"new", filename="b.txt")
    assert (folder / "file").read_bytes() == b"old"
    assert not [n for n in os.listdir(folder) if n.endswith(".new")]
    # Once the directory is gone, the old version is what is read.
    target.rmdir()
    if name == "checksum":
        with storage.get(file_id) as stored:
            assert (stored.read(), stored.filename, stored.checksum) == (b"old", "a.txt", None)
    storage.replace(file_id, b"new", filename="b.txt")
    with storage.get(file_id) as stored:
        assert stored.read() == b"new"


def test_a_planted_directory_goes_to_the_trash_whatever_it_holds(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path)
    file_id = storage.create(b"old", filename="a.txt")
    deep = tmp_path / file_id / "file.new"
    for level in range(40):  # deeper than is removed at once
        deep = deep / f"d{level}"
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"x")
    os.symlink(tmp_path / file_id / "file", tmp_path / file_id / "file.new" / "link")
    storage.replace(file_id, b"new", filename="b.txt")
    assert sorted(os.listdir(tmp_path / file_id)) == ["checksum", "file", "metadata.json"]
    assert storage.list() == [file_id]  # and list() removes what was left in the trash
    assert sorted(os.listdir(tmp_path)) == [file_id]
    assert storage.get(file_id).read() == b"new"


@pytest.mark.parametrize("name", ["file.new", "metadata.json.new", "checksum.new"])
def test_a_planted_pending_directory_does_not_block_replace_for_good(
    tmp_path: Path, name: str
) -> None:
    storage = LocalFileStorage(tmp_path)
    file_id = storage.create(b"old", filename="a.txt")
    (tmp_path / file_id / name).mkdir()
    assert storage.list() == [file_id]  # cleans leftovers
    assert not os.path.lexists(tmp_path / file_id / name)
    storage.replace(file_id, b"new", filename="b.txt")
    with storage.get(file_id) as stored:
        assert stored.read() == b"new"
    assert os.listdir(tmp_path / file_id)


class _Packed(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("a", ctypes.c_uint8), ("b", ctypes.c_uint32)]


@pytest.mark.parametrize(
    "view",
    [
        memoryview(array.array("H", range(300)))[::2],  # not contiguous: 150 items, 300 bytes
        memoryview(bytes(range(256)) * 4).cast("B", (32, 32)),  # 2-D: 32 rows, 1024 bytes
        memoryview(array.array("d", [1.5] * 100)),
        memoryview((_Packed * 3)()),  # format "B" yet 5 bytes an item
        memoryview((ctypes.c_uint64 * 4)(1, 2, 3, 4)),  # format "<Q"
    ],
    ids=["strided", "two-d", "doubles", "structures", "ctypes"],
)
def test_any_view_is_stored_and_recorded_as_its_bytes(
    storage: FileStorage, view: memoryview
) -> None:
    file_id = storage.create(view, filename="a.bin")
    stored = storage.get(file_id)
    assert stored.read() == view.tobytes()
    assert stored.content_length == view.nbytes
    with pytest.raises(FileTooLargeError):
        storage.create(validate(view, [MaxSize(view.nbytes - 1)], filename="a.bin"))


class _GivesWideViews(io.RawIOBase):
    """A stream whose read() gives views of 8-byte items (which io allows)."""

    def __init__(self, blocks: int) -> None:
        self._blocks = blocks

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> Any:
        if not self._blocks:
            return b""
        self._blocks -= 1
        return memoryview(array.array("Q", [0x4242424242424242] * 100))


def test_a_stream_giving_views_of_wide_items_is_measured_in_bytes(storage: FileStorage) -> None:
    file_id = storage.create(_GivesWideViews(3), filename="a.bin")
    stored = storage.get(file_id)
    assert stored.content_length == len(stored.read()) == 2400


@pytest.mark.parametrize("name", ["file.new", "metadata.json.new", "checksum.new"])
def test_get_reads_the_old_version_past_a_planted_pending_directory(
    tmp_path: Path, name: str
) -> None:
    storage = LocalFileStorage(tmp_path)
    file_id = storage.create(b"old", filename="a.txt")
    (tmp_path / file_id / name).mkdir()
    with storage.get(file_id) as stored:
        assert (stored.read(), stored.filename) == (b"old", "a.txt")
