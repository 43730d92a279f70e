"""What the local backend alone promises: its layout, crash safety, streaming, leftovers."""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from depot.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    CorruptMetadataError,
    StoredFileNotFoundError,
)
from depot.io.local import LocalFileStorage
from depot.manager import DepotManager
from tests.streams import sha256

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def local(tmp_path: Path) -> LocalFileStorage:
    return LocalFileStorage(str(tmp_path / "files"))


def test_layout_and_metadata_are_filedepots(local: LocalFileStorage) -> None:
    file_id = local.create(b"hello", filename="h\u00e9.txt")
    folder = Path(local.storage_path) / file_id
    assert sorted(os.listdir(folder)) == ["checksum", "file", "metadata.json"]
    assert (folder / "file").read_bytes() == b"hello"
    raw = (folder / "metadata.json").read_text()
    metadata = json.loads(raw)
    # Exactly filedepot's keys in its order: filedepot passes every key to
    # StoredFile(**metadata), so one more key would break it on our files.
    assert list(metadata) == ["filename", "content_type", "content_length", "last_modified"]
    assert metadata["filename"] == "h\u00e9.txt"
    assert metadata["content_length"] == 5
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", metadata["last_modified"])
    assert raw == json.dumps(metadata)  # json.dumps defaults, as filedepot writes
    assert (folder / "checksum").read_text() == sha256(b"hello")


# Names and types that json.dumps escapes: metadata.json is written without it
# (for speed) and must stay byte for byte what it writes, as filedepot reads it.
@pytest.mark.parametrize(
    "filename",
    [
        'quote" back\\slash \\u0041.txt',
        "tab\tnew\nline\r\x00\x1f\x7f.bin",
        "\u2028\u2029 \U0001f600 \u00e9\u4e2d.txt",
        "lone \udc80 surrogate.txt",
        "x" * 300 + ".tar.gz",
        "</script>&<'>",
    ],
)
def test_metadata_is_what_json_dumps_writes(local: LocalFileStorage, filename: str) -> None:
    file_id = local.create(b"data", filename=filename, content_type='text/plain; a="\\"x"')
    raw = (Path(local.storage_path) / file_id / "metadata.json").read_bytes()
    stored = local.get(file_id)
    expected = {
        "filename": stored.filename,
        "content_type": stored.content_type,
        "content_length": 4,
        "last_modified": stored.last_modified.strftime("%Y-%m-%d %H:%M:%S"),
    }
    assert raw == json.dumps(expected).encode()
    assert stored.content_type == 'text/plain; a="\\"x"'
    assert raw.isascii()


def test_create_gives_canonical_uuid4_ids(local: LocalFileStorage) -> None:
    ids = {local.create(b"") for _ in range(50)}
    assert len(ids) == 50
    for file_id in ids:
        parsed = uuid.UUID(file_id)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, file_id)


def test_storage_path_is_created_on_first_write(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path / "not" / "yet")
    assert storage.list() == []
    with pytest.raises(StoredFileNotFoundError):
        storage.get("00000000-0000-4000-8000-000000000000")
    assert storage.get(storage.create(b"x")).read() == b"x"


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), ("false", False), ("0", False), ("Yes", True), (0, False)]
)
def test_fsync_setting_reads_config_text(tmp_path: Path, value, expected) -> None:
    assert LocalFileStorage(tmp_path, fsync=value).fsync is expected


def test_fsync_setting_refuses_nonsense(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="fsync must be true or false, not 'maybe'"):
        LocalFileStorage(tmp_path, fsync="maybe")


def test_unreadable_metadata_names_the_file(local: LocalFileStorage) -> None:
    file_id = local.create(b"x")
    metadata = Path(local.storage_path) / file_id / "metadata.json"
    metadata.write_text("{not json")
    with pytest.raises(CorruptMetadataError, match=re.escape(str(metadata))) as raised:
        local.get(file_id)
    assert isinstance(raised.value, ValueError)
    metadata.write_text('{"last_modified": "yesterday"}')
    with pytest.raises(CorruptMetadataError, match="yesterday"):
        local.get(file_id)


def test_missing_metadata_fields_take_defaults(local: LocalFileStorage) -> None:
    file_id = local.create(b"abc")
    (Path(local.storage_path) / file_id / "metadata.json").write_text("{}")
    stored = local.get(file_id)
    assert (stored.filename, stored.content_type, stored.last_modified) == (
        "unnamed",
        "application/octet-stream",
        None,
    )
    assert stored.content_length == 3  # measured on disk


def test_file_gone_under_its_metadata_fails_at_get(local: LocalFileStorage) -> None:
    # Issue 12, defect 11: found at get(), before the middleware answers 200.
    file_id = local.create(b"abc")
    os.remove(Path(local.storage_path) / file_id / "file")
    with pytest.raises(StoredFileNotFoundError, match=file_id):
        local.get(file_id)


def test_data_turned_into_a_directory_fails_at_get(local: LocalFileStorage) -> None:
    file_id = local.create(b"abc")
    data = Path(local.storage_path) / file_id / "file"
    data.unlink()
    data.mkdir()
    with pytest.raises(StoredFileNotFoundError, match=file_id):
        local.get(file_id)


def test_file_opened_reads_on_after_a_delete(local: LocalFileStorage) -> None:
    file_id = local.create(b"abc" * 1000)
    stored = local.get(file_id)
    local.delete(file_id)
    folder = Path(local.storage_path) / file_id
    assert not folder.exists()
    with stored:
        assert stored.read() == b"abc" * 1000  # from the descriptor get() holds


def test_leftovers_are_cleaned_unless_being_written(local: LocalFileStorage) -> None:
    file_id = local.create(b"x")
    root = Path(local.storage_path)
    killed = [root / ".depot-tmp-killed", root / ".depot-trash-killed"]
    stale_empty = root / ".depot-tmp-old-and-empty"
    running = [root / ".depot-tmp-running", root / ".depot-trash-running"]
    just_made = root / ".depot-tmp-just-made"  # a create() between mkdir and lock
    for folder in [*killed, *running]:
        folder.mkdir()
        (folder / "file").write_bytes(b"half")
    stale_empty.mkdir()
    just_made.mkdir()
    an_hour_ago = time.time() - 3700
    os.utime(stale_empty, (an_hour_ago, an_hour_ago))
    (root / "README").write_text("not a file id")
    locks = [os.open(folder, os.O_RDONLY) for folder in running]
    try:
        for lock in locks:  # what a create() or delete() in progress holds
            fcntl.flock(lock, fcntl.LOCK_EX)
        assert local.list() == [file_id]
        assert all(folder.exists() for folder in [*running, just_made])
    finally:
        for lock in locks:
            os.close(lock)
    assert not any(folder.exists() for folder in [*killed, stale_empty])
    assert (root / "README").exists()
    local.list()
    assert not any(folder.exists() for folder in running)


def test_create_streams_in_constant_memory(local: LocalFileStorage) -> None:
    class Zeros:
        def __init__(self, size: int) -> None:
            self.left = size

        def read(self, n: int = -1) -> bytes:
            n = self.left if n < 0 else min(n, self.left)
            self.left -= n
            return bytes(n)

    size = 64 * 1024 * 1024
    tracemalloc.start()
    try:
        file_id = local.create(Zeros(size), filename="zeros.bin")
        stored = local.get(file_id)
        total = sum(len(chunk) for chunk in stored)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes for a {size} byte file"


# --- crash safety ------------------------------------------------------------
#
# A child process runs create() or replace() and kills itself (os._exit: no
# finally blocks, no cleanup) just before its Nth call to a filesystem
# function. Every N is tried; after each crash the parent checks what a reader
# sees.

CRASHING_CHILD = textwrap.dedent(
    """
    import builtins, os, sys
    from depot.io.local import LocalFileStorage

    root, operation, file_id, crash_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    storage = LocalFileStorage(root)
    calls = 0

    def crashing(function):
        def wrapper(*args, **kwargs):
            global calls
            calls += 1
            if calls == crash_at:
                os._exit(17)
            return function(*args, **kwargs)
        return wrapper

    for name in ("rename", "replace", "remove", "mkdir", "fsync", "open"):
        setattr(os, name, crashing(getattr(os, name)))
    builtins.open = crashing(builtins.open)

    new = b"NEW" * 50_000
    if operation == "create":
        storage.create(new, filename="new.txt")
    else:
        storage.replace(file_id, new, filename="new.txt")
    print(calls)
    """
)
OLD, NEW = b"OLD" * 1000, b"NEW" * 50_000


def run_child(
    root: str, operation: str, file_id: str, crash_at: int
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CRASHING_CHILD, root, operation, file_id, str(crash_at)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )


def assert_whole(storage: LocalFileStorage, file_id: str) -> bytes:
    stored = storage.get(file_id)
    data = stored.read()
    expected_name = {OLD: "old.txt", NEW: "new.txt"}.get(data)
    assert expected_name is not None, f"half-written content ({len(data)} bytes)"
    assert (stored.filename, stored.content_length, stored.checksum) == (
        expected_name,
        len(data),
        sha256(data),
    )
    return data


@pytest.mark.parametrize("operation", ["create", "replace"])
def test_crash_at_any_step_leaves_old_or_new_file(tmp_path: Path, operation: str) -> None:
    clean_run = run_child(str(tmp_path / "probe"), "create", "-", 0)
    assert clean_run.returncode == 0, clean_run.stderr
    steps = int(clean_run.stdout) + 1
    assert steps > 5
    seen = set()
    for crash_at in range(1, steps + 1):
        root = str(tmp_path / f"crash{crash_at}")
        storage = LocalFileStorage(root)
        file_id = storage.create(OLD, filename="old.txt") if operation == "replace" else "-"
        result = run_child(root, operation, file_id, crash_at)
        assert result.returncode in (0, 17), result.stderr

        ids = storage.list()
        if operation == "create":
            assert len(ids) <= 1
            seen.add(assert_whole(storage, ids[0]) if ids else None)
        else:
            assert ids == [file_id]
            seen.add(assert_whole(storage, file_id))
            # The depot keeps working, and the next write clears the debris.
            storage.replace(file_id, b"after", filename="after.txt")
            assert storage.get(file_id).read() == b"after"
            assert sorted(os.listdir(Path(root) / file_id)) == ["checksum", "file", "metadata.json"]
    # Both outcomes happened: the crash points span the commit.
    assert seen == ({None, NEW} if operation == "create" else {OLD, NEW})


def test_killed_in_the_middle_of_a_stream(tmp_path: Path) -> None:
    root = tmp_path / "files"
    storage = LocalFileStorage(str(root))
    file_id = storage.create(OLD, filename="old.txt")
    ready = tmp_path / "ready"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
            import time
            from depot.io.local import LocalFileStorage

            class Slow:
                sent = 0
                def read(self, n=-1):
                    if self.sent >= 1_000_000:
                        open({str(ready)!r}, "w").close()
                        time.sleep(60)
                    self.sent += 65536
                    return b"N" * 65536

            LocalFileStorage({str(root)!r}).replace({file_id!r}, Slow(), filename="new.txt")
            """
            ),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline, "child never got going"
            time.sleep(0.02)
        child.kill()
    finally:
        child.wait()
    assert assert_whole(storage, file_id) == OLD
    assert storage.list() == [file_id]


def test_fsync_is_used_only_when_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
    durable = LocalFileStorage(tmp_path / "a")
    durable.replace(durable.create(b"x"), b"y")
    assert len(calls) >= 6  # data, checksum, metadata and directories, each write
    calls.clear()
    fast = LocalFileStorage(tmp_path / "b", fsync=False)
    fast.replace(fast.create(b"x"), b"y")
    assert calls == []


# --- planted symlinks (issue 12, defect 7) -----------------------------------
#
# Someone who can write into storage_path (another app, a restored backup)
# plants links; depot must never read, write or delete through one.


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A depot-layout file outside the storage, which a link points at."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "file").write_bytes(b"secret")
    (folder / "metadata.json").write_text(
        json.dumps({"filename": "secret.txt", "content_type": "text/plain", "content_length": 6})
    )
    (folder / "checksum").write_text(sha256(b"secret"))
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_symlinked_id_directory_is_not_a_stored_file(
    local: LocalFileStorage, outside: Path
) -> None:
    real = local.create(b"mine")
    planted = "5b1f5c9e-56cf-4a8e-9d40-2b8a4c0d9a11"
    (Path(local.storage_path) / planted).symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)

    with pytest.raises(StoredFileNotFoundError, match=planted):
        local.get(planted)
    assert not local.exists(planted)
    assert local.list() == [real]
    with pytest.raises(StoredFileNotFoundError, match=planted):
        local.replace(planted, b"overwritten")
    local.delete(planted)

    assert snapshot(outside) == before
    assert local.get(real).read() == b"mine"


@pytest.mark.parametrize("name", ["file", "metadata.json"])
def test_symlinked_file_inside_a_directory_is_not_followed(
    local: LocalFileStorage, outside: Path, name: str
) -> None:
    file_id = local.create(b"mine", filename="mine.txt")
    inside = Path(local.storage_path) / file_id / name
    inside.unlink()
    inside.symlink_to(outside / name)
    before = snapshot(outside)

    with pytest.raises(StoredFileNotFoundError, match=file_id):
        local.get(file_id)
    assert not local.exists(file_id)
    # replace() renames over the link; it never writes through it.
    local.replace(file_id, b"new", filename="new.txt")
    assert local.get(file_id).read() == b"new"
    local.delete(file_id)
    assert snapshot(outside) == before


def test_symlinked_checksum_is_not_read(local: LocalFileStorage, outside: Path) -> None:
    file_id = local.create(b"secret")
    checksum = Path(local.storage_path) / file_id / "checksum"
    checksum.unlink()
    checksum.symlink_to(outside / "checksum")
    assert local.get(file_id).checksum is None  # as for a file filedepot wrote


@pytest.mark.parametrize("name", ["metadata.json.new", "checksum.new", "file.new"])
def test_planted_pending_link_is_never_followed(
    local: LocalFileStorage, outside: Path, name: str
) -> None:
    file_id = local.create(b"mine", filename="mine.txt")
    target = outside / name.removesuffix(".new")
    (Path(local.storage_path) / file_id / name).symlink_to(target)
    before = snapshot(outside)

    stored = local.get(file_id)
    assert (stored.read(), stored.filename, stored.checksum) == (
        b"mine",
        "mine.txt",
        sha256(b"mine"),
    )
    local.replace(file_id, b"new")
    stored = local.get(file_id)
    assert (stored.read(), stored.filename, stored.checksum) == (b"new", "mine.txt", sha256(b"new"))
    assert sorted(os.listdir(Path(local.storage_path) / file_id)) == [
        "checksum",
        "file",
        "metadata.json",
    ]
    assert snapshot(outside) == before


@pytest.mark.parametrize("prefix", [".depot-trash-", ".depot-tmp-"])
def test_leftover_links_are_removed_without_following(
    local: LocalFileStorage, outside: Path, prefix: str
) -> None:
    file_id = local.create(b"x")
    link = Path(local.storage_path) / f"{prefix}{file_id}"
    link.symlink_to(outside, target_is_directory=True)
    dangling = Path(local.storage_path) / f"{prefix}dangling"
    dangling.symlink_to(Path(local.storage_path) / "nowhere")
    before = snapshot(outside)

    assert local.list() == [file_id]
    assert not os.path.lexists(link)
    assert not os.path.lexists(dangling)
    assert snapshot(outside) == before


def test_fifo_planted_as_data_never_blocks(local: LocalFileStorage) -> None:
    file_id = local.create(b"x")
    data = Path(local.storage_path) / file_id / "file"
    data.unlink()
    os.mkfifo(data)
    outcome: list[BaseException | None] = []

    def get() -> None:
        try:
            local.get(file_id)
        except StoredFileNotFoundError as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    reader = threading.Thread(target=get)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # unblock it, so the test fails instead of hanging
        with open(data, "wb"):
            pass
        reader.join()
    assert outcome and isinstance(outcome[0], StoredFileNotFoundError)


def test_storage_path_may_itself_be_a_symlink(tmp_path: Path) -> None:
    # A deploy's /var/files -> /mnt/disk/files: the root is the admin's choice.
    (tmp_path / "disk").mkdir()
    (tmp_path / "files").symlink_to(tmp_path / "disk", target_is_directory=True)
    storage = LocalFileStorage(str(tmp_path / "files"))
    file_id = storage.create(b"one", filename="one.txt")
    storage.replace(file_id, b"two")
    assert storage.list() == [file_id]
    assert storage.exists(file_id)
    assert storage.get(file_id).read() == b"two"
    storage.delete(file_id)
    assert storage.list() == []
    assert os.listdir(tmp_path / "disk") == []


# --- a replace killed mid-way (issue 12, defect 19) --------------------------


def plant_uncommitted(folder: Path) -> None:
    """What a replace killed before its commit leaves: the pending new version."""
    (folder / "file.new").write_bytes(b"half a new")
    (folder / "checksum.new").write_text(sha256(b"half a new"))
    (folder / "metadata.json.new").write_text(json.dumps({"filename": "new.txt"}))


def plant_committed(folder: Path, data: bytes) -> None:
    """What a replace killed just after its commit leaves: the metadata not yet renamed."""
    (folder / "file").write_bytes(data)
    (folder / "checksum.new").write_text(sha256(data))
    metadata = {"filename": "new.txt", "content_type": "text/plain", "content_length": len(data)}
    (folder / "metadata.json.new").write_text(json.dumps(metadata))


@pytest.mark.parametrize("access", ["get", "list"])
def test_uncommitted_replace_leftovers_are_cleaned_on_access(
    local: LocalFileStorage, access: str
) -> None:
    file_id = local.create(b"old", filename="old.txt")
    folder = Path(local.storage_path) / file_id
    plant_uncommitted(folder)
    if access == "get":
        stored = local.get(file_id)
        assert (stored.read(), stored.filename, stored.checksum) == (
            b"old",
            "old.txt",
            sha256(b"old"),
        )
    else:
        assert local.list() == [file_id]
    assert sorted(os.listdir(folder)) == ["checksum", "file", "metadata.json"]
    assert local.get(file_id).read() == b"old"


@pytest.mark.parametrize("access", ["get", "list"])
def test_committed_replace_is_finished_on_access(local: LocalFileStorage, access: str) -> None:
    file_id = local.create(b"old", filename="old.txt")
    folder = Path(local.storage_path) / file_id
    plant_committed(folder, b"new data")
    getattr(local, access)(*([file_id] if access == "get" else []))
    assert sorted(os.listdir(folder)) == ["checksum", "file", "metadata.json"]
    stored = local.get(file_id)
    assert (stored.read(), stored.filename, stored.content_length, stored.checksum) == (
        b"new data",
        "new.txt",
        8,
        sha256(b"new data"),
    )


def test_a_running_replace_is_never_disturbed(local: LocalFileStorage) -> None:
    file_id = local.create(b"old", filename="old.txt")
    folder = Path(local.storage_path) / file_id
    # Another process's replace: it holds the directory's lock while it writes.
    lock = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        plant_uncommitted(folder)
        pending = snapshot(folder)
        assert local.get(file_id).read() == b"old"
        assert local.list() == [file_id]
        assert snapshot(folder) == pending
    finally:
        os.close(lock)
    assert local.get(file_id).read() == b"old"
    assert sorted(os.listdir(folder)) == ["checksum", "file", "metadata.json"]


def test_cleaning_on_a_read_only_storage_is_skipped(
    local: LocalFileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_id = local.create(b"old", filename="old.txt")
    folder = Path(local.storage_path) / file_id
    plant_committed(folder, b"new data")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    monkeypatch.setattr(os, "remove", refuse)
    stored = local.get(file_id)  # a reader without write access still reads
    assert (stored.read(), stored.filename) == (b"new data", "new.txt")


# --- get() racing replace() (issue 12, defect 14) ----------------------------


def test_get_racing_replace_sees_one_whole_version(tmp_path: Path) -> None:
    local = LocalFileStorage(str(tmp_path), fsync=False)  # many replaces a second
    file_id = local.create(b"v0", filename="v0.txt")
    stop = threading.Event()
    replaced = []

    def replace_forever() -> None:
        version = 0
        while not stop.is_set():
            version += 1
            # Sizes differ, so a length of one version with the bytes of another shows.
            local.replace(file_id, f"v{version}:".encode() * (version % 7 + 1), f"v{version}.txt")
            replaced.append(version)

    writer = threading.Thread(target=replace_forever)
    writer.start()
    problems: list[str] = []
    reads = 0
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and len(problems) < 20:
            reads += 1
            try:
                stored = local.get(file_id)
            except StoredFileNotFoundError:
                problems.append("not found")
                continue
            with stored:
                data = stored.read()
            tag = data.split(b":", 1)[0].decode()
            if (stored.content_length, stored.checksum, stored.filename) != (
                len(data),
                sha256(data),
                f"{tag}.txt",
            ):
                problems.append(f"{stored.filename}, {stored.content_length} bytes: {data[:20]!r}")
    finally:
        stop.set()
        writer.join()
    assert len(replaced) > 20, "the race was not exercised"
    assert problems == [], f"{len(problems)} bad reads of {reads}: {problems[:5]}"


# --- over HTTP (issue 12, defects 7 and 11) ----------------------------------


def served(storage: LocalFileStorage, file_id: str) -> Any:
    DepotManager.configure(
        "default", {"depot.backend": "local", "depot.storage_path": storage.storage_path}
    )
    app = TestApp(DepotManager.make_middleware(lambda environ, start_response: []))
    return app.get(f"/depot/default/{file_id}", expect_errors=True)


@pytest.mark.parametrize("fault", ["removed", "a directory", "a link out"])
def test_data_gone_before_serving_is_a_404_not_an_empty_200(
    local: LocalFileStorage, outside: Path, fault: str
) -> None:
    file_id = local.create(b"abc", filename="a.txt")
    data = Path(local.storage_path) / file_id / "file"
    data.unlink()
    if fault == "a directory":
        data.mkdir()
    elif fault == "a link out":
        data.symlink_to(outside / "file")
    response = served(local, file_id)
    assert response.status_int == 404
    assert b"secret" not in response.body


def test_symlinked_id_is_a_404(local: LocalFileStorage, outside: Path) -> None:
    local.create(b"x")
    planted = "5b1f5c9e-56cf-4a8e-9d40-2b8a4c0d9a11"
    (Path(local.storage_path) / planted).symlink_to(outside, target_is_directory=True)
    response = served(local, planted)
    assert response.status_int == 404
    assert b"secret" not in response.body


def test_giant_metadata_is_refused_not_read_whole(local: LocalFileStorage) -> None:
    file_id = local.create(b"x")
    metadata = Path(local.storage_path) / file_id / "metadata.json"
    metadata.write_text('{"filename": "' + "a" * (8 * 1024 * 1024) + '"}')
    with pytest.raises(CorruptMetadataError, match="larger than 1048576 bytes"):
        local.get(file_id)


def test_a_file_replaced_without_pause_is_an_error_not_a_loop(
    local: LocalFileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_id = local.create(b"x")
    real_stat = os.stat

    def always_another_inode(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        found = real_stat(path, *args, **kwargs)
        if path != "file":
            return found
        values = list(found)
        values[stat.ST_INO] += 1  # as if a replace had just committed
        return os.stat_result(values)

    monkeypatch.setattr(os, "stat", always_another_inode)
    with pytest.raises(BackendUnavailableError, match="replaced 1000 times while it was being"):
        local.get(file_id)


def test_read_all_after_seek_and_of_a_file_grown_in_place(local: LocalFileStorage) -> None:
    file_id = local.create(b"0123456789")
    with local.get(file_id) as stored:
        stored.seek(4)
        assert stored.read() == b"456789"
        assert stored.read() == b""
        assert stored.tell() == 10
    with local.get(file_id) as stored:
        # Something other than depot appends to the file: all of it is read.
        with open(Path(local.storage_path) / file_id / "file", "ab") as appended:
            appended.write(b"x" * 300_000)
        assert stored.read() == b"0123456789" + b"x" * 300_000


def test_readers_never_wait_for_a_replace_upload(local: LocalFileStorage) -> None:
    file_id = local.create(b"old", filename="old.txt")
    halfway, finish = threading.Event(), threading.Event()

    class Slow:
        sent = 0

        def read(self, n: int = -1) -> bytes:
            if self.sent:
                halfway.set()
                finish.wait(30)  # an upload from a slow client
                return b""
            self.sent = 1
            return b"new"

    writer = threading.Thread(target=local.replace, args=(file_id, Slow(), "new.txt"))
    writer.start()
    try:
        assert halfway.wait(10)
        started = time.monotonic()
        for _ in range(20):
            with local.get(file_id) as stored:
                assert (stored.read(), stored.filename) == (b"old", "old.txt")
        assert local.list() == [file_id]
        assert local.exists(file_id)
        assert time.monotonic() - started < 5
        assert (Path(local.storage_path) / file_id / "file.new").exists()  # left alone
    finally:
        finish.set()
        writer.join()
    with local.get(file_id) as stored:
        assert (stored.read(), stored.filename) == (b"new", "new.txt")


# --- issue 13 ------------------------------------------------------------------


def test_metadata_path_is_filedepots_name(local: LocalFileStorage) -> None:
    stored = local.get(local.create(b"x", filename="a.txt"))
    path = Path(stored._metadata_path)
    assert path == Path(local.storage_path) / stored.file_id / "metadata.json"
    assert json.loads(path.read_text())["filename"] == "a.txt"


def test_a_storage_path_that_is_a_file_is_refused_at_once(tmp_path: Path) -> None:
    (tmp_path / "files").write_text("")
    with pytest.raises(ConfigurationError, match=r"'.*files' is a file, not a directory\. Set"):
        DepotManager.from_config({"depot.storage_path": str(tmp_path / "files")})


def test_a_storage_path_under_a_file_is_refused_at_once(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("")
    with pytest.raises(ConfigurationError, match=r"cannot be created: '.*a' is a file"):
        LocalFileStorage(tmp_path / "a" / "b" / "files")
    with pytest.raises(ConfigurationError, match="cannot be created: '/etc/passwd' is a file"):
        LocalFileStorage("/etc/passwd/files")


def deny_writes_to(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_access = os.access

    def access(path: Any, mode: int, **kwargs: Any) -> bool:
        if path == str(folder) and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)


def test_a_storage_path_that_cannot_be_created_is_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root may write anywhere: a parent without write access is simulated.
    deny_writes_to(tmp_path, monkeypatch)
    with pytest.raises(ConfigurationError, match=r"may not write to '.*'\. Create it"):
        LocalFileStorage(tmp_path / "files")


def test_a_read_only_storage_path_is_accepted_for_readers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LocalFileStorage(tmp_path)
    file_id = writer.create(b"served")
    deny_writes_to(tmp_path, monkeypatch)
    reader = LocalFileStorage(tmp_path)
    assert reader.get(file_id).read() == b"served"
    assert "is not writable by this process" in caplog.text


def test_a_dangling_link_as_storage_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "files").symlink_to(tmp_path / "gone")
    with pytest.raises(ConfigurationError, match="symbolic link to .*gone.*, which does not"):
        LocalFileStorage(tmp_path / "files")


def test_an_empty_storage_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="storage_path is empty"):
        LocalFileStorage("")


@pytest.mark.parametrize("field", ["filename", "content_type", "last_modified"])
@pytest.mark.parametrize("value", [0, False, [], {}])
def test_falsy_values_of_the_wrong_type_are_corrupt(
    local: LocalFileStorage, field: str, value: object
) -> None:
    file_id = local.create(b"abc", filename="a.txt")
    metadata = Path(local.storage_path) / file_id / "metadata.json"
    stored = json.loads(metadata.read_text())
    metadata.write_text(json.dumps({**stored, field: value}))
    with pytest.raises(CorruptMetadataError, match=field):
        local.get(file_id)


@pytest.mark.parametrize("field", ["filename", "content_type", "last_modified"])
def test_null_metadata_values_take_defaults_as_in_filedepot(
    local: LocalFileStorage, field: str
) -> None:
    file_id = local.create(b"abc", filename="a.txt", content_type="text/plain")
    metadata = Path(local.storage_path) / file_id / "metadata.json"
    stored = json.loads(metadata.read_text())
    metadata.write_text(json.dumps({**stored, field: None}))
    expected = {"filename": "unnamed", "content_type": "application/octet-stream"}
    assert getattr(local.get(file_id), field) == expected.get(field)


@pytest.mark.parametrize(
    ("path", "message"),
    [("files\0x", "holds a NUL character"), ("/tmp/" + "x" * 5000, "File name too long")],
)
def test_a_storage_path_no_system_accepts_is_refused_at_once(path: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        LocalFileStorage(path)
