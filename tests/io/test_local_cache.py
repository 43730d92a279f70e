"""The local backend's metadata cache is never stale, and local_path names only the bytes held.

A storage keeps what it parsed from a file's metadata.json, trusted only while the
status of the file's directory and metadata.json is unchanged, and only once both
are older than a settle time (3 s in use). These tests shorten that time to
:data:`SETTLE` (ext4 and tmpfs stamp times in ticks of at most 10 ms) and wait it
out, so that files really are cached when they are changed behind the cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import depot.io.local
from depot.exceptions import CorruptMetadataError, StoredFileNotFoundError
from depot.io.local import LocalFileStorage, _MetadataCache
from tests.streams import sha256

REPO = Path(__file__).resolve().parents[2]

#: The settle time used here, in seconds: several timestamp ticks of the test disk.
SETTLE = 0.05

MakeStorage = Callable[[], LocalFileStorage]


@pytest.fixture
def make_storage(tmp_path: Path) -> MakeStorage:
    """Storages on one directory, as separate instances (separate caches)."""

    def make() -> LocalFileStorage:
        storage = LocalFileStorage(str(tmp_path / "files"), fsync=False)
        storage._metadata_cache = _MetadataCache(settled_ns=int(SETTLE * 1e9))
        return storage

    return make


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The file ids whose metadata.json was read and parsed, in order."""
    seen: list[str] = []
    parse = depot.io.local._parse_metadata

    def counting(file_id: str, where: str, raw: bytes) -> dict[str, object]:
        seen.append(file_id)
        return parse(file_id, where, raw)

    monkeypatch.setattr(depot.io.local, "_parse_metadata", counting)
    return seen


def settle() -> None:
    time.sleep(SETTLE * 2)


def cached(storage: LocalFileStorage, file_id: str) -> bool:
    return file_id in storage._metadata_cache._entries


def read_all(storage: LocalFileStorage, file_id: str) -> tuple[bytes, str | None, str | None]:
    with storage.get(file_id) as stored:
        return stored.read(), stored.filename, stored.checksum


def cache_it(storage: LocalFileStorage, file_id: str) -> None:
    """Wait until the file is settled, then get it once, which caches it."""
    settle()
    storage.get(file_id).close()
    assert cached(storage, file_id)


def test_a_settled_file_is_served_without_reading_its_metadata(
    make_storage: MakeStorage, parses: list[str]
) -> None:
    storage = make_storage()
    file_id = storage.create(b"hello", filename="a.txt", content_type="text/plain")
    cache_it(storage, file_id)
    parses.clear()
    for _ in range(3):
        with storage.get(file_id) as stored:
            assert stored.read() == b"hello"
            assert (stored.filename, stored.content_type, stored.content_length) == (
                "a.txt",
                "text/plain",
                5,
            )
            assert stored.checksum == sha256(b"hello")
    assert parses == []


def test_a_file_changed_within_the_settle_time_is_not_cached(make_storage: MakeStorage) -> None:
    storage = make_storage()
    file_id = storage.create(b"hello", filename="a.txt")
    storage.get(file_id).close()
    assert not cached(storage, file_id)
    # The real settle time is 3 s: a file written now is not cached for 3 s.
    default = LocalFileStorage(storage.storage_path)
    settle()
    default.get(file_id).close()
    assert not cached(default, file_id)


def test_replace_by_another_storage_instance_is_seen(make_storage: MakeStorage) -> None:
    reader, writer = make_storage(), make_storage()
    file_id = reader.create(b"old!", filename="a1.txt")
    cache_it(reader, file_id)
    # The same sizes everywhere: only the inodes and times tell the versions apart.
    writer.replace(file_id, b"new!", filename="b2.txt")
    assert read_all(reader, file_id) == (b"new!", "b2.txt", sha256(b"new!"))


def test_replace_by_another_process_is_seen(make_storage: MakeStorage) -> None:
    reader = make_storage()
    file_id = reader.create(b"old!", filename="a1.txt")
    cache_it(reader, file_id)
    script = textwrap.dedent(
        f"""
        from depot.io.local import LocalFileStorage
        LocalFileStorage({reader.storage_path!r}).replace({file_id!r}, b"new!", filename="b2.txt")
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True)
    assert read_all(reader, file_id) == (b"new!", "b2.txt", sha256(b"new!"))


def test_delete_and_restore_under_the_same_id_is_seen(make_storage: MakeStorage) -> None:
    reader, writer = make_storage(), make_storage()
    file_id = reader.create(b"old!", filename="a1.txt")
    cache_it(reader, file_id)
    writer.delete(file_id)
    with pytest.raises(StoredFileNotFoundError):
        reader.get(file_id)
    assert cached(reader, file_id)  # kept: another instance deleted it
    # replace(stored, stored) restores a file under its own id: a new directory.
    other = LocalFileStorage(str(Path(writer.storage_path).parent / "other"), fsync=False)
    backup = other.get(other.create(b"new!", filename="b2.txt"))
    backup.file_id = file_id
    writer.replace(backup, backup)
    assert read_all(reader, file_id) == (b"new!", "b2.txt", sha256(b"new!"))


def test_same_size_rewrite_in_place_with_the_old_mtime_is_seen(make_storage: MakeStorage) -> None:
    # filedepot rewrites metadata.json in place (same inode, same directory
    # entries); a copy tool may then set the old mtime back. The ctime moves.
    storage = make_storage()
    file_id = storage.create(b"data", filename="a1.txt")
    cache_it(storage, file_id)
    metadata = Path(storage.storage_path) / file_id / "metadata.json"
    before = metadata.stat()
    text = metadata.read_text()
    with open(metadata, "r+") as f:  # in place: the inode stays
        f.write(text.replace("a1.txt", "b2.txt"))
    os.utime(metadata, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = metadata.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert storage.get(file_id).filename == "b2.txt"


def test_rewrite_in_place_within_the_same_tick_is_seen(make_storage: MakeStorage) -> None:
    # Written, read and rewritten at once: the status before and after the
    # rewrite may be equal to the nanosecond (inode, size, and times of one
    # tick). Nothing this recent is cached, so the rewrite is read.
    storage = make_storage()
    file_id = storage.create(b"data", filename="a1.txt")
    metadata = Path(storage.storage_path) / file_id / "metadata.json"
    text = metadata.read_text()
    assert storage.get(file_id).filename == "a1.txt"
    before = metadata.stat()
    with open(metadata, "r+") as f:
        f.write(text.replace("a1.txt", "b2.txt"))
    os.utime(metadata, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert storage.get(file_id).filename == "b2.txt"
    assert not cached(storage, file_id)


def test_reused_inodes_never_bring_back_an_old_version(make_storage: MakeStorage) -> None:
    # ext4 gives a replace's new files the inodes its previous replace freed:
    # after two replaces metadata.json can have a cached version's inode,
    # size and name. Each version is cached, then replaced behind the cache.
    reader, writer = make_storage(), make_storage()
    file_id = reader.create(b"v00", filename="v00.txt")
    metadata = Path(reader.storage_path) / file_id / "metadata.json"
    seen_inodes = {metadata.stat().st_ino}
    reused = 0
    for n in range(1, 25):
        cache_it(reader, file_id)
        data = f"v{n:02d}".encode()
        writer.replace(file_id, data, filename=f"v{n:02d}.txt")
        inode = metadata.stat().st_ino
        reused += inode in seen_inodes
        seen_inodes.add(inode)
        assert read_all(reader, file_id) == (data, f"v{n:02d}.txt", sha256(data))
    # Not a condition of correctness, but of this test proving anything.
    if not reused:
        pytest.skip("this file system never reused an inode here; the reads were right")


def test_corrupt_metadata_is_refused_after_caching(make_storage: MakeStorage) -> None:
    storage = make_storage()
    file_id = storage.create(b"data", filename="a1.txt")
    cache_it(storage, file_id)
    metadata = Path(storage.storage_path) / file_id / "metadata.json"
    size = metadata.stat().st_size
    with open(metadata, "r+") as f:  # in place, same size: not JSON any more
        f.write("{" * size)
    with pytest.raises(CorruptMetadataError, match="metadata.json"):
        storage.get(file_id)


def test_a_directory_planted_at_checksum_is_refused_after_caching(
    make_storage: MakeStorage,
) -> None:
    storage = make_storage()
    file_id = storage.create(b"data")
    cache_it(storage, file_id)
    checksum = Path(storage.storage_path) / file_id / "checksum"
    checksum.unlink()
    checksum.mkdir()
    with pytest.raises(CorruptMetadataError, match="a directory, not a file"):
        storage.get(file_id)


def test_a_link_planted_at_metadata_after_caching_is_not_followed(
    make_storage: MakeStorage, tmp_path: Path
) -> None:
    storage = make_storage()
    file_id = storage.create(b"data", filename="mine.txt")
    cache_it(storage, file_id)
    folder = Path(storage.storage_path) / file_id
    outside = tmp_path / "outside.json"
    outside.write_text((folder / "metadata.json").read_text())
    (folder / "metadata.json").unlink()
    (folder / "metadata.json").symlink_to(outside)
    with pytest.raises(StoredFileNotFoundError):
        storage.get(file_id)


def test_a_cached_file_not_read_yet_follows_a_replace(make_storage: MakeStorage) -> None:
    reader, writer = make_storage(), make_storage()
    file_id = reader.create(b"old!", filename="a1.txt")
    cache_it(reader, file_id)
    stored = reader.get(file_id)
    writer.replace(file_id, b"new!", filename="b2.txt")
    assert stored.read() == b"new!"
    assert (stored.filename, stored.checksum) == ("b2.txt", sha256(b"new!"))
    stored.close()


def test_a_cached_file_read_once_keeps_its_version(make_storage: MakeStorage) -> None:
    reader, writer = make_storage(), make_storage()
    file_id = reader.create(b"old!", filename="a1.txt")
    cache_it(reader, file_id)
    with reader.get(file_id) as stored:
        assert stored.read(2) == b"ol"
        writer.replace(file_id, b"new!", filename="b2.txt")
        writer.delete(file_id)
        assert stored.read() == b"d!"
        assert stored.filename == "a1.txt"


def test_readers_and_a_replacing_thread_always_agree_with_the_bytes(
    make_storage: MakeStorage,
) -> None:
    storage = make_storage()
    file_id = storage.create(b"0" * 64, filename="0.txt")
    cache_it(storage, file_id)
    stop = threading.Event()
    wrong: list[object] = []

    def replace() -> None:
        n = 0
        while not stop.is_set():
            n = (n + 1) % 10
            storage.replace(file_id, str(n).encode() * 64, filename=f"{n}.txt")

    def read() -> None:
        while not stop.is_set():
            with storage.get(file_id) as stored:
                data = stored.read()
                if (stored.filename, stored.checksum) != (f"{data[:1].decode()}.txt", sha256(data)):
                    wrong.append((data, stored.filename, stored.checksum))

    threads = [threading.Thread(target=replace), *(threading.Thread(target=read) for _ in range(3))]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_the_cache_is_bounded(make_storage: MakeStorage) -> None:
    storage = make_storage()
    storage._metadata_cache = _MetadataCache(size=3, settled_ns=int(SETTLE * 1e9))
    ids = [storage.create(str(n).encode()) for n in range(5)]
    settle()
    for file_id in ids:
        storage.get(file_id).close()
    assert list(storage._metadata_cache._entries) == ids[2:]  # the oldest go first
    assert [read_all(storage, file_id)[0] for file_id in ids] == [b"0", b"1", b"2", b"3", b"4"]


def test_replace_and_delete_drop_their_entry(make_storage: MakeStorage) -> None:
    storage = make_storage()
    file_id = storage.create(b"old")
    cache_it(storage, file_id)
    storage.replace(file_id, b"new")
    assert not cached(storage, file_id)
    cache_it(storage, file_id)
    storage.delete(file_id)
    assert not cached(storage, file_id)


def test_metadata_written_by_filedepot_is_cached_as_parsed(make_storage: MakeStorage) -> None:
    # filedepot 0.12 wrote no checksum and, in old versions, no content_length.
    storage = make_storage()
    file_id = storage.create(b"12345", filename="old.bin")
    folder = Path(storage.storage_path) / file_id
    (folder / "checksum").unlink()
    (folder / "metadata.json").write_text(
        json.dumps({"filename": "old.bin", "content_type": "application/octet-stream"})
    )
    for _ in range(2):
        cache_it(storage, file_id)
        with storage.get(file_id) as stored:
            assert (stored.read(), stored.content_length, stored.checksum) == (b"12345", 5, None)


# --- local_path -------------------------------------------------------------------


def test_local_path_names_the_data_file(make_storage: MakeStorage) -> None:
    storage = make_storage()
    file_id = storage.create(b"data")
    with storage.get(file_id) as stored:
        path = stored.local_path
        assert path is not None and os.path.isabs(path)
        assert Path(path) == (Path(storage.storage_path) / file_id / "file").absolute()
        assert Path(path).read_bytes() == b"data"
        assert os.path.samestat(os.stat(path), os.fstat(stored.fileno()))


def test_local_path_of_a_relative_storage_path_is_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = LocalFileStorage("files")
    with storage.get(storage.create(b"data")) as stored:
        assert stored.local_path == str(tmp_path / "files" / stored.file_id / "file")


def test_local_path_is_none_once_the_path_names_other_bytes(make_storage: MakeStorage) -> None:
    storage = make_storage()
    file_id = storage.create(b"old")
    with storage.get(file_id) as held:
        held.hold_version()
        storage.replace(file_id, b"new")
        assert held.local_path is None  # the path names the new version now
        assert held.read() == b"old"
    with storage.get(file_id) as stored:
        assert stored.local_path is not None
        storage.delete(file_id)
        assert stored.local_path is None
        assert stored.read() == b"new"


def test_local_path_follows_a_replace_before_the_first_read(make_storage: MakeStorage) -> None:
    storage = make_storage()
    file_id = storage.create(b"old")
    with storage.get(file_id) as stored:
        storage.replace(file_id, b"new")
        path = stored.local_path  # holds the version, as a read does
        assert path is not None and Path(path).read_bytes() == b"new"
        assert stored.read() == b"new"


def test_local_path_is_none_for_a_planted_link_or_a_closed_file(
    make_storage: MakeStorage, tmp_path: Path
) -> None:
    storage = make_storage()
    file_id = storage.create(b"data")
    stored = storage.get(file_id)
    stored.hold_version()
    data = Path(storage.storage_path) / file_id / "file"
    (tmp_path / "elsewhere").write_bytes(b"data")
    data.unlink()
    data.symlink_to(tmp_path / "elsewhere")
    assert stored.local_path is None
    stored.close()
    assert stored.local_path is None


# --- peek(): the metadata of a cached file, nothing opened ------------------------


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path os.open() was asked for, in order."""
    seen: list[str] = []
    real = os.open

    def counting(path: str, *args: object, **kwargs: object) -> int:
        seen.append(path)
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", counting)
    return seen


def test_peek_gives_a_cached_files_metadata_without_opening_anything(
    make_storage: MakeStorage, opens: list[str]
) -> None:
    storage = make_storage()
    file_id = storage.create(b"hello", filename="a.txt", content_type="text/plain")
    cache_it(storage, file_id)
    opens.clear()
    peeked = storage.peek(file_id)
    assert opens == []
    assert peeked is not None and peeked.closed
    with storage.get(file_id) as stored:
        for name in ("file_id", "filename", "content_type", "last_modified", "content_length"):
            assert getattr(peeked, name) == getattr(stored, name), name
        assert peeked.checksum == stored.checksum == sha256(b"hello")
    with pytest.raises(ValueError, match="closed file"):
        peeked.read()
    assert peeked.local_path is None and peeked.held_size is None


def test_peek_is_none_for_a_file_not_cached(make_storage: MakeStorage) -> None:
    storage = make_storage()
    file_id = storage.create(b"hello")
    assert storage.peek(file_id) is None  # not settled yet: get() reads it
    assert storage.peek("00000000-0000-4000-8000-000000000000") is None
    with pytest.raises(ValueError):
        storage.peek("../etc")


def _replace_elsewhere(storage: LocalFileStorage, folder: Path, file_id: str) -> None:
    LocalFileStorage(storage.storage_path, fsync=False).replace(file_id, b"new!")


def _delete_elsewhere(storage: LocalFileStorage, folder: Path, file_id: str) -> None:
    LocalFileStorage(storage.storage_path, fsync=False).delete(file_id)


def _edit_metadata_in_place(storage: LocalFileStorage, folder: Path, file_id: str) -> None:
    path = folder / "metadata.json"
    before = path.stat()
    path.write_text(path.read_text().replace("a1.txt", "b2.txt"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # only ctime tells


def _leave_a_killed_replace(storage: LocalFileStorage, folder: Path, file_id: str) -> None:
    (folder / "file.new").write_bytes(b"half")


def _swap_the_folder_for_a_link(storage: LocalFileStorage, folder: Path, file_id: str) -> None:
    moved = folder.with_name("moved")
    folder.rename(moved)
    folder.symlink_to(moved)


@pytest.mark.parametrize(
    "change",
    [
        _replace_elsewhere,
        _delete_elsewhere,
        _edit_metadata_in_place,
        _leave_a_killed_replace,
        _swap_the_folder_for_a_link,
    ],
)
def test_peek_vouches_for_nothing_changed_behind_the_cache(
    make_storage: MakeStorage, change: Callable[[LocalFileStorage, Path, str], None]
) -> None:
    storage = make_storage()
    file_id = storage.create(b"old!", filename="a1.txt")
    cache_it(storage, file_id)
    assert storage.peek(file_id) is not None
    change(storage, Path(storage.storage_path) / file_id, file_id)
    assert storage.peek(file_id) is None


def test_a_file_held_reports_the_size_it_was_opened_with(make_storage: MakeStorage) -> None:
    storage = make_storage()
    file_id = storage.create(b"hello")
    cache_it(storage, file_id)
    with storage.get(file_id) as stored:
        assert stored.held_size == 5
    with open(Path(storage.storage_path) / file_id / "file", "r+b") as data:
        data.truncate(2)  # behind depot's back: the next open sees it
    with storage.get(file_id) as stored:
        assert (stored.held_size, stored.content_length) == (2, 5)
    assert stored.held_size is None  # closed
