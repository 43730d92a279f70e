"""copy_depot on real backends: ids and metadata kept, verified, resumable, bounded."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from depot.exceptions import UnknownDepotError
from depot.io.interfaces import FileStorage
from depot.io.local import LocalFileStorage
from depot.io.memory import MemoryFileStorage
from depot.io.utils import keeping_last_modified
from depot.ops import Progress, copy_depot, verify_depot
from tests.ops.conftest import OLD, configured

OLD_TIME = datetime.fromisoformat(OLD)


def facts(storage: FileStorage, file_id: str) -> tuple[Any, ...]:
    with storage.get(file_id) as f:
        return (f.filename, f.content_type, f.last_modified, f.content_length, f.checksum)


def fill(storage: FileStorage, count: int, size: int = 64) -> list[str]:
    return [
        storage.create(os.urandom(size), f"file-{n}.bin", "application/x-test")
        for n in range(count)
    ]


class Stop(Exception):
    pass


def collect(outcomes: dict[str, set[str]]) -> Callable[[Progress], None]:
    """A progress callback that gathers each file's id under its outcome."""

    def record(event: Progress) -> None:
        if event.file_id is not None and event.outcome is not None:
            outcomes.setdefault(event.outcome, set()).add(event.file_id)

    return record


def test_keeps_ids_names_types_times_and_checksums(frozen_old: None, tmp_path: Path) -> None:
    source = MemoryFileStorage()
    ids = [source.create(b"one", "one.txt"), source.create(b"", "empty.csv", "text/csv")]
    ids.append(source.create("é".encode(), "naïve name with spaces.txt"))
    target = LocalFileStorage(tmp_path / "target")
    summary = copy_depot(source, target)
    assert summary.ok and summary.copied == 3
    assert summary.bytes_copied == 3 + 0 + 2
    for file_id in ids:
        assert facts(target, file_id) == facts(source, file_id)
        assert facts(target, file_id)[2] == OLD_TIME
        assert target.get(file_id).read() == source.get(file_id).read()
    assert not summary.last_modified_not_kept


@pytest.mark.parametrize("target_backend", ["memory", "local", "s3", "gcs", "gridfs", "sql_sqlite"])
def test_last_modified_kept_on_each_backend(
    target_backend: str, frozen_old: None, request: pytest.FixtureRequest
) -> None:
    settings = request.getfixturevalue(f"{target_backend}_settings")
    if target_backend == "gridfs":
        # Ids are kept, and GridFS's are ObjectIds: it copies from GridFS only.
        source = configured("source", {**settings, "depot.collection": "source"})
    else:
        source = MemoryFileStorage()
    file_id = source.create(b"dated", "dated.txt")
    target = configured("target", settings)
    summary = copy_depot(source, target)
    assert summary.ok, summary.failed
    with target.get(file_id) as copy:
        assert copy.last_modified == OLD_TIME


def test_ids_the_target_cannot_take_fail_with_the_reason(gridfs_settings: dict[str, Any]) -> None:
    source = MemoryFileStorage()
    file_id = source.create(b"a uuid")
    summary = copy_depot(source, configured("target", gridfs_settings))
    assert [r.file_id for r in summary.failed] == [file_id]
    assert "InvalidFileIdError" in summary.failed[0].reason


def test_keeping_last_modified_is_per_thread_and_refuses_aware_times() -> None:
    from concurrent.futures import ThreadPoolExecutor
    from datetime import timezone

    storage = MemoryFileStorage()
    with keeping_last_modified(OLD_TIME), ThreadPoolExecutor(1) as pool:
        elsewhere = pool.submit(storage.create, b"x").result()
        here = storage.create(b"y")
    assert storage.get(here).last_modified == OLD_TIME
    assert storage.get(elsewhere).last_modified != OLD_TIME
    assert storage.get(storage.create(b"z")).last_modified != OLD_TIME
    with (
        pytest.raises(ValueError, match="naive UTC"),
        keeping_last_modified(datetime.now(timezone.utc)),
    ):
        pass


def test_many_files_memory_to_local_and_back(local_fast: dict[str, Any]) -> None:
    source = MemoryFileStorage()
    ids = fill(source, 2000, 100)
    local = configured("local", local_fast)
    there = copy_depot(source, local, jobs=8)
    assert there.ok and there.copied == 2000
    back = MemoryFileStorage()
    returned = copy_depot(local, back, jobs=8)
    assert returned.ok and returned.copied == 2000
    for file_id in ids:
        assert facts(back, file_id) == facts(source, file_id)
        assert back.files[file_id]["data"] == source.files[file_id]["data"]
    assert copy_depot(source, local, jobs=8).skipped == 2000


#: Small files copied to moto's S3 and back: moto answers about 100 writes a
#: second, so the 2,000 files of the test above would take 40 s each way here.
S3_FILES = 150


def test_local_to_s3_and_back(local_fast: dict[str, Any], s3_settings: dict[str, Any]) -> None:
    local = configured("local", local_fast)
    s3 = configured("s3", s3_settings)
    ids = fill(local, S3_FILES, 100)
    # A large file, streamed from a file on disk: never whole in memory.
    big_path = Path(local_fast["depot.storage_path"]).parent / "big.bin"
    with big_path.open("wb") as f:
        for _ in range(64):
            f.write(os.urandom(1024 * 1024))
    with big_path.open("rb") as f:
        big = local.create(f, "big.bin")
    events: list[Progress] = []
    there = copy_depot(local, s3, jobs=8, progress=events.append)
    assert there.ok, there.failed[:3]
    assert there.copied == S3_FILES + 1
    assert there.bytes_copied == S3_FILES * 100 + 64 * 1024 * 1024
    copy_events = [e for e in events if e.phase == "copy"]
    assert copy_events[-1].files_done == copy_events[-1].files_total == S3_FILES + 1
    assert copy_events[-1].bytes_done == copy_events[-1].bytes_total == there.bytes_copied
    done = [e.bytes_done for e in copy_events]
    assert done == sorted(done)
    for file_id in [*ids[:20], big]:
        assert facts(s3, file_id) == facts(local, file_id)

    back = configured(
        "back", {**local_fast, "depot.storage_path": local_fast["depot.storage_path"] + "-back"}
    )
    returned = copy_depot("s3", "back", jobs=8)
    assert returned.ok and returned.copied == S3_FILES + 1
    assert sorted(back.list()) == sorted(local.list())
    with back.get(big) as copy, big_path.open("rb") as original:
        assert copy.checksum == local.get(big).checksum
        assert copy.read(1024) == original.read(1024)
    # Nothing left to do: a second run skips everything.
    again = copy_depot(local, s3, jobs=8)
    assert not again.copied and again.skipped == S3_FILES + 1


def test_interrupted_by_the_callback_then_resumed(
    frozen_old: None, local_fast: dict[str, Any], tmp_path: Path
) -> None:
    source = MemoryFileStorage()
    ids = fill(source, 200)
    target = configured("target", local_fast)

    def stop_half_way(event: Progress) -> None:
        if event.phase == "copy" and event.files_done >= 100:
            raise Stop

    with pytest.raises(Stop):
        copy_depot(source, target, jobs=4, progress=stop_half_way)
    first = set(target.list())
    assert 100 <= len(first) < 200
    outcomes: dict[str, set[str]] = {}
    resumed = copy_depot(source, target, jobs=4, progress=collect(outcomes))
    assert outcomes == {"copied": set(ids) - first, "skipped": first}
    assert (resumed.copied, resumed.skipped) == (200 - len(first), len(first))
    assert verify_depot(target).ok == 200


def test_killed_with_sigkill_then_resumed(local_fast: dict[str, Any], tmp_path: Path) -> None:
    source_dir = tmp_path / "source"
    source = LocalFileStorage(source_dir, fsync=False)
    ids = fill(source, 120, 256 * 1024)  # files that take a few reads each
    target_dir = Path(local_fast["depot.storage_path"])
    script = textwrap.dedent(
        f"""
        import os, signal
        from depot.io.local import LocalFileStorage
        from depot.ops import copy_depot

        def kill(event):
            if event.phase == "copy" and event.files_done >= 40:
                os.kill(os.getpid(), signal.SIGKILL)

        copy_depot(LocalFileStorage({str(source_dir)!r}, fsync=False),
                   LocalFileStorage({str(target_dir)!r}, fsync=False), jobs=4, progress=kill)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    run = subprocess.run([sys.executable, "-c", script], env=env, timeout=60, check=False)
    assert run.returncode == -9
    target = LocalFileStorage(target_dir, fsync=False)
    first = set(target.list())
    assert 40 <= len(first) < 120
    # A write killed between its mkdir and its first file leaves an empty
    # directory, taken for a write about to start for 2 s.
    time.sleep(2.1)
    outcomes: dict[str, set[str]] = {}
    resumed = copy_depot(source, target, jobs=4, progress=collect(outcomes))
    assert resumed.ok
    assert outcomes["copied"] | outcomes["skipped"] == set(ids)
    assert resumed.copied == len(outcomes["copied"]) == 120 - resumed.skipped
    assert resumed.skipped >= 40
    checked = verify_depot(target)
    assert checked.ok == 120 and not checked.problems


@pytest.mark.parametrize("left", ["empty, 3 s old", "half written", "a link"])
def test_a_local_restore_after_a_killed_write_of_the_same_id(tmp_path: Path, left: str) -> None:
    # What a write killed before its rename leaves: the copy run again after a
    # SIGKILL restores that same id, which used to fail with FileExistsError.
    source = MemoryFileStorage()
    file_id = source.create(b"restored", "r.txt")
    target = LocalFileStorage(tmp_path / "target", fsync=False)
    target.create(b"first")  # makes the storage directory
    temp = tmp_path / "target" / f".depot-tmp-{file_id}"
    if left == "a link":
        (tmp_path / "elsewhere").mkdir()
        temp.symlink_to(tmp_path / "elsewhere")
    else:
        temp.mkdir()
        if left == "half written":
            (temp / "file").write_bytes(b"rest")
        else:
            old = time.time() - 3
            os.utime(temp, (old, old))
    summary = copy_depot(source, target)
    assert summary.ok, summary.failed
    assert target.get(file_id).read() == b"restored"
    assert not temp.exists() and (tmp_path / "elsewhere").exists() is (left == "a link")


def test_a_local_restore_leaves_a_fresh_empty_directory_of_the_id_be(tmp_path: Path) -> None:
    """A write of the same id between its mkdir and its lock looks like that: removed,
    the other write failed on a vanished directory, then removed this one's (a race
    found in review)."""
    source = MemoryFileStorage()
    file_id = source.create(b"restored", "r.txt")
    target = LocalFileStorage(tmp_path / "target", fsync=False)
    target.create(b"first")
    temp = tmp_path / "target" / f".depot-tmp-{file_id}"
    temp.mkdir()
    summary = copy_depot(source, target)
    assert "is being written by another process" in summary.failed[0].reason
    assert temp.is_dir()


def test_a_local_restore_refuses_while_another_write_of_the_id_runs(tmp_path: Path) -> None:
    import fcntl

    source = MemoryFileStorage()
    file_id = source.create(b"restored", "r.txt")
    target = LocalFileStorage(tmp_path / "target", fsync=False)
    target.create(b"first")
    temp = tmp_path / "target" / f".depot-tmp-{file_id}"
    temp.mkdir()
    fd = os.open(temp, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        summary = copy_depot(source, target)
    finally:
        os.close(fd)
    assert "is being written by another process" in summary.failed[0].reason
    assert temp.exists()


def test_a_changed_target_file_is_copied_again(local_fast: dict[str, Any]) -> None:
    source = MemoryFileStorage()
    ids = fill(source, 5)
    target = configured("target", local_fast)
    copy_depot(source, target)
    target.replace(ids[0], b"something else")
    target.replace(ids[1], io.BytesIO(source.get(ids[1]).read()), "renamed.bin")
    outcomes: dict[str, set[str]] = {}
    again = copy_depot(source, target, progress=collect(outcomes), overwrite_newer=True)
    assert again.copied == 2 and outcomes["copied"] == {ids[0], ids[1]}
    assert facts(target, ids[0]) == facts(source, ids[0])


def test_a_target_file_changed_after_the_copy_is_not_overwritten_by_older_bytes(
    local_fast: dict[str, Any],
) -> None:
    """An application already writing to the new backend replaced a file there; running
    the copy again put the old bytes back over the new (found in review)."""
    source = MemoryFileStorage()
    with mock.patch("depot.io.utils.timestamp", return_value="2020-02-03 04:05:06"):
        ids = fill(source, 3)
    target = configured("target", local_fast)
    copy_depot(source, target)
    target.replace(ids[0], b"the application's new version")
    target.replace(ids[1], io.BytesIO(source.get(ids[1]).read()), "renamed.bin")
    again = copy_depot(source, target)
    assert not again.ok and again.copied == 0 and again.skipped == 1
    reasons = {r.file_id: r.reason for r in again.failed}
    assert set(reasons) == {ids[0], ids[1]}
    assert "differs in target (size, checksum), and newer there" in reasons[ids[0]]
    assert "--overwrite-newer" in reasons[ids[0]]
    assert target.get(ids[0]).read() == b"the application's new version"
    assert target.get(ids[1]).filename == "renamed.bin"
    # A file the source recorded no checksum of (filedepot's) is compared by its bytes.
    source.files[ids[2]]["metadata"]["checksum"] = None
    same_size = b"x" * len(source.get(ids[2]).read())
    target.replace(ids[2], same_size)
    third = copy_depot(source, target, ids=[ids[2]])
    assert [r.file_id for r in third.failed] == [ids[2]]
    assert "differs in target (checksum), and newer there" in third.failed[0].reason
    assert target.get(ids[2]).read() == same_size


def test_damaged_target_bytes_are_found_by_content_comparison(local_fast: dict[str, Any]) -> None:
    source = MemoryFileStorage()
    ids = fill(source, 3)
    target = configured("target", local_fast)
    copy_depot(source, target)
    data = Path(local_fast["depot.storage_path"]) / ids[2] / "file"
    damaged = bytearray(data.read_bytes())
    damaged[10] ^= 0xFF
    data.write_bytes(bytes(damaged))
    # Same size and recorded checksum: the metadata cannot tell.
    assert not copy_depot(source, target).copied
    outcomes: dict[str, set[str]] = {}
    again = copy_depot(source, target, compare="content", progress=collect(outcomes))
    assert again.copied == 1 and again.skipped == 2
    assert outcomes["copied"] == {ids[2]}
    assert target.get(ids[2]).read() == source.get(ids[2]).read()
    assert verify_depot(target).ok == 3


def test_a_damaged_source_file_fails_and_stores_nothing(local_fast: dict[str, Any]) -> None:
    source = MemoryFileStorage()
    ids = fill(source, 3)
    source.files[ids[0]]["data"] = b"X" * 64  # same size, other bytes
    source.files[ids[1]]["data"] = b"short"
    target = configured("target", local_fast)
    summary = copy_depot(source, target)
    reasons = {r.file_id: r.reason for r in summary.failed}
    assert set(reasons) == {ids[0], ids[1]}
    assert "hash to" in reasons[ids[0]] and "Restore it from a backup" in reasons[ids[0]]
    assert "gives 5 bytes but records 64" in reasons[ids[1]]
    assert target.list() == [ids[2]]


def test_damaged_source_into_s3_stores_nothing(s3_settings: dict[str, Any]) -> None:
    source = MemoryFileStorage()
    file_id = source.create(os.urandom(6 * 1024 * 1024), "big.bin")  # a multipart upload
    source.files[file_id]["data"] = b"Y" * (6 * 1024 * 1024)
    target = configured("s3", s3_settings)
    summary = copy_depot(source, target)
    assert [r.file_id for r in summary.failed] == [file_id]
    assert "hash to" in summary.failed[0].reason
    assert target.list() == []


def test_the_target_policy_applies(local_fast: dict[str, Any]) -> None:
    source = MemoryFileStorage()
    small, large = source.create(b"a", "a.txt"), source.create(b"b" * 1000, "b.txt")
    target = configured("target", {**local_fast, "depot.max_size": "100"})
    summary = copy_depot(source, target)
    assert summary.copied == 1 and target.exists(small)
    assert [r.file_id for r in summary.failed] == [large]
    assert "FileTooLargeError" in summary.failed[0].reason
    assert not target.exists(large)


def test_given_ids_missing_and_malformed_ones_fail_with_reasons() -> None:
    source, target = MemoryFileStorage(), MemoryFileStorage()
    present = source.create(b"here")
    absent = "00000000-0000-4000-8000-000000000000"
    summary = copy_depot(source, target, ids=[present, present, absent, "../../etc/passwd"])
    assert summary.copied == 1 and target.list() == [present]
    reasons = {r.file_id: r.reason for r in summary.failed}
    assert reasons[absent] == "not in the source depot; nothing to copy"
    assert "InvalidFileIdError" in reasons["../../etc/passwd"]


def test_refuses_what_cannot_work() -> None:
    storage = MemoryFileStorage()
    with pytest.raises(ValueError, match="same storage"):
        copy_depot(storage, storage)
    with pytest.raises(ValueError, match="jobs=0"):
        copy_depot(storage, MemoryFileStorage(), jobs=0)
    with pytest.raises(ValueError, match="compare="):
        copy_depot(storage, MemoryFileStorage(), compare="bytes")  # type: ignore[arg-type]
    with pytest.raises(UnknownDepotError, match="DepotManager.configure\\('nowhere'"):
        copy_depot("nowhere", storage)


def test_a_target_server_that_dies_fails_each_file_without_hanging(tmp_path: Path) -> None:
    from tests.backends.s3 import MotoServer

    source = MemoryFileStorage()
    fill(source, 3)
    with MotoServer(tmp_path) as server:
        target = configured(
            "dying",
            {
                "depot.backend": "s3",
                "depot.bucket": "dying",
                "depot.endpoint_url": server.url,
                "depot.access_key_id": "k",
                "depot.secret_access_key": "s",
                "depot.connect_timeout": "1",
                "depot.max_attempts": "1",
            },
        )
        target.create(b"reached")
        server.stop()
        summary = copy_depot(source, target)
    assert len(summary.failed) == 3 and not summary.copied
    assert all("BackendUnavailableError" in r.reason for r in summary.failed), summary.failed[0]


def test_memory_stays_flat_for_a_large_file(tmp_path: Path) -> None:
    source = LocalFileStorage(tmp_path / "source", fsync=False)
    with (tmp_path / "big").open("wb") as f:
        for _ in range(48):
            f.write(os.urandom(1024 * 1024))
    with (tmp_path / "big").open("rb") as f:
        big = source.create(f, "big.bin")
    target = LocalFileStorage(tmp_path / "target", fsync=False)
    tracemalloc.start()
    try:
        summary = copy_depot(source, target, jobs=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary.ok and summary.copied == 1 and target.exists(big)
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes for a 48 MiB copy"


def test_memory_stays_flat_for_many_files() -> None:
    """Nothing per file is gathered, neither the plan nor the results: at its peak
    the copy holds little beyond the target's new files, however many there are."""
    source = MemoryFileStorage()
    fill(source, 20_000, 16)
    target = MemoryFileStorage()
    tracemalloc.start()
    try:
        summary = copy_depot(source, target, jobs=4)
        ok = summary.ok
        del summary  # what is left is the target's files
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ok and len(target.files) == 20_000
    # The ids listed from the source (a list of 20,000 references) are most of it.
    assert peak - current < 512 * 1024, f"{peak - current} bytes above the target's files"


def test_a_large_file_into_s3_keeps_its_checksum_and_is_skipped_next_time(
    local_fast: dict[str, Any], s3_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream that cannot seek and is larger than CHECKSUM_COPY_LIMIT (512 MiB;
    here lowered to 6 MiB) used to be stored without its checksum: the copy then
    read it back whole to verify it, and copied it again on every run."""
    import depot.io.boto3

    monkeypatch.setattr(depot.io.boto3, "CHECKSUM_COPY_LIMIT", 6 * 1024 * 1024)
    local = configured("local", local_fast)
    big = local.create(os.urandom(7 * 1024 * 1024), "big.bin")
    s3 = configured("s3", s3_settings)
    assert copy_depot(local, s3).copied == 1
    assert facts(s3, big) == facts(local, big)
    again = copy_depot(local, s3)
    assert (again.copied, again.skipped) == (0, 1)


class OwnTimeStorage(MemoryFileStorage):
    """A third-party backend: it sets its own time, and says nothing of its writes."""

    records_what_it_reads = False

    def _write(self, fileid: str, new: Any) -> None:
        super()._write(fileid, new)
        self.files[fileid]["metadata"]["last_modified"] = datetime(2030, 1, 1)


class LyingStorage(OwnTimeStorage):
    """A backend that records another checksum than the bytes'."""

    def _write(self, fileid: str, new: Any) -> None:
        super()._write(fileid, new)
        self.files[fileid]["metadata"]["checksum"] = "sha256:" + "0" * 64


def test_a_target_that_does_not_vouch_for_its_writes_is_read_back(frozen_old: None) -> None:
    source = MemoryFileStorage()
    ids = fill(source, 3)
    summary = copy_depot(source, OwnTimeStorage())
    assert summary.ok and summary.copied == 3
    assert {r.file_id for r in summary.last_modified_not_kept} == set(ids)
    assert "the target records 2030-01-01 00:00:00" in summary.last_modified_not_kept[0].reason
    lying = LyingStorage()
    summary = copy_depot(source, lying)
    assert summary.copied == 0 and {r.file_id for r in summary.failed} == set(ids)
    assert "the copy was deleted from the target" in summary.failed[0].reason
    assert lying.list() == []


def test_s3_requests_per_small_file(
    local_fast: dict[str, Any], s3_settings: dict[str, Any]
) -> None:
    """A listing of the bucket, then a PUT carrying the checksum per file missing
    there; a HEAD for each file the bucket has. Nothing is read back."""
    local = configured("local", local_fast)
    fill(local, 20, 100)
    s3 = configured("s3", s3_settings)
    requests: list[str] = []
    s3._client.meta.events.register(  # type: ignore[attr-defined]
        "before-call.s3", lambda model, **kwargs: requests.append(model.name)
    )
    assert copy_depot(local, s3, jobs=4).copied == 20
    assert requests == ["ListObjectsV2"] + ["PutObject"] * 20
    requests.clear()
    assert copy_depot(local, s3, jobs=4).skipped == 20
    assert requests == ["ListObjectsV2"] + ["HeadObject"] * 20


def test_a_few_files_into_a_large_target_are_looked_up_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import depot.ops.copy

    monkeypatch.setattr(depot.ops.copy, "LISTED_BEYOND", 10)
    source, target = MemoryFileStorage(), MemoryFileStorage()
    ids = fill(source, 2)
    fill(target, 30)
    listed: list[str] = []
    looked_up: list[str] = []
    real_iter, real_get = target.iter_ids, target.get

    def iter_ids() -> Iterator[str]:
        for file_id in real_iter():
            listed.append(file_id)
            yield file_id

    def get(file_or_id: Any) -> Any:
        looked_up.append(target.fileid(file_or_id))
        return real_get(file_or_id)

    monkeypatch.setattr(target, "iter_ids", iter_ids)
    monkeypatch.setattr(target, "get", get)
    summary = copy_depot(source, target)
    assert summary.copied == 2
    assert len(listed) == 4 * 2 + 10 + 1  # stopped past the bound
    assert sorted(looked_up) == sorted(ids)
