"""Crash safety of the local storage: a writer killed with SIGKILL at random moments.

Each trial forks a child (from one process that imported depot once, so a
trial costs milliseconds, not an interpreter start) that creates, replaces and
deletes files of random sizes on a fresh storage in a loop. Before each
operation it logs its intent, and after the call returned its acknowledgement,
each line with a single write to a log file, so a line the parent reads whole
was written. The parent kills it after a random delay and then checks what any
later reader sees:

- every acknowledged file is there, byte-exact (the last acknowledged version);
- an operation in flight left the old state or the new one, never a mix: an
  unacknowledged replace reads as the old or the new version, an
  unacknowledged create as absent or whole, an unacknowledged delete as the
  old version or absent;
- no ``get()`` returns a partial file: its bytes match its own content_length
  and checksum;
- ``list()`` cleans what the killed child left (pending ``.new`` files,
  temporary and trash directories).

``DEPOT_CRASH_TRIALS`` sets the number of trials (default 200).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from depot.io.local import LocalFileStorage
from tests.streams import sha256

REPO = Path(__file__).resolve().parents[2]
TRIALS = int(os.environ.get("DEPOT_CRASH_TRIALS", "200"))
FSYNC_EVERY = 10  # one trial in ten with fsync on: slower, and the same guarantee
MAX_SIZE = 200_000
INITIAL = 3


def writer(root: str, log_path: str, seed: int, fsync: bool, ready: int) -> None:
    """The child: write forever, logging intents and acknowledgements, until killed."""
    rng = random.Random(seed)
    storage = LocalFileStorage(root, fsync=fsync)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    ids = storage.list()

    def note(*words: str) -> None:
        os.write(log, (" ".join(words) + "\n").encode())

    os.write(ready, b"r")
    os.close(ready)
    while True:
        roll = rng.random()
        size = rng.choice([0, 1, rng.randrange(MAX_SIZE)])
        data = rng.randbytes(size)
        digest = sha256(data)
        if roll < 0.35 or not ids:
            note("create?", digest)
            file_id = storage.create(data, filename=f"{digest[7:15]}.bin")
            note("created", file_id, digest)
            ids.append(file_id)
        elif roll < 0.9:
            file_id = rng.choice(ids)
            note("replace?", file_id, digest)
            storage.replace(file_id, data, filename=f"{digest[7:15]}.bin")
            note("replaced", file_id, digest)
        else:
            file_id = ids.pop(rng.randrange(len(ids)))
            note("delete?", file_id)
            storage.delete(file_id)
            note("deleted", file_id)


class Outcome:
    """What the log allows each file to be after the kill."""

    def __init__(self, initial: dict[str, str], log: bytes) -> None:
        self.acknowledged: dict[str, str | None] = dict(initial)  # id -> checksum, None: deleted
        self.in_flight: tuple[str, ...] | None = None
        self.operations = 0
        for line in log.split(b"\n")[:-1]:  # a last line without newline was cut
            words = tuple(line.decode().split())
            if words[0].endswith("?"):
                self.in_flight = words
                continue
            self.operations += 1
            self.in_flight = None
            if words[0] in ("created", "replaced"):
                self.acknowledged[words[1]] = words[2]
            else:
                self.acknowledged[words[1]] = None

    def allowed(self, file_id: str) -> set[str | None]:
        """The checksums ``file_id`` may read with (None: absent)."""
        allowed = {self.acknowledged.get(file_id)}
        if self.in_flight is not None:
            kind = self.in_flight[0]
            if kind == "create?" and file_id not in self.acknowledged:
                allowed = {None, self.in_flight[1]}
            elif kind == "replace?" and self.in_flight[1] == file_id:
                allowed.add(self.in_flight[2])
            elif kind == "delete?" and self.in_flight[1] == file_id:
                allowed.add(None)
        return allowed


def read_whole(storage: LocalFileStorage, file_id: str) -> str:
    """Read a file and check it is whole: its bytes match its own length and checksum."""
    with storage.get(file_id) as stored:
        data = stored.read()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert (len(data), digest) == (stored.content_length, stored.checksum), (
        f"{file_id}: a partial or mixed file ({len(data)} bytes, "
        f"metadata says {stored.content_length} bytes)"
    )
    assert stored.filename == f"{digest[7:15]}.bin"
    return digest


def leftovers(root: Path) -> list[str]:
    found = []
    for entry in root.iterdir():
        if entry.name.startswith(".depot-"):
            if entry.name.startswith(".depot-tmp-") and not any(entry.iterdir()):
                continue  # killed between mkdir and its lock: removed once stale
            found.append(entry.name)
        elif entry.is_dir():
            found += [f"{entry.name}/{name}" for name in os.listdir(entry) if name.endswith(".new")]
    return found


# One process imports depot once, then forks a writer per trial (fork is safe
# there: it runs no thread), so a trial costs a fork, not an interpreter start.
SPAWNER = """
import json, os, sys, traceback
from tests.reliability.test_crash import writer

for line in sys.stdin:
    root, log_path, seed, fsync = json.loads(line)
    ready, signal_ready = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready)
        try:
            writer(root, log_path, seed, fsync, signal_ready)
        except BaseException:
            traceback.print_exc()
        os._exit(1)
    os.close(signal_ready)
    os.read(ready, 1)  # the writer is at work (or died: then the status says so)
    os.close(ready)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


class Spawner:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SPAWNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )

    def kill_after(self, delay: float, *spec: object) -> int:
        """Start a writer, kill it after ``delay`` seconds at work; its exit code."""
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(spec) + "\n")
        self.process.stdin.flush()
        pid = int(self.process.stdout.readline())
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):  # died by itself: the code says why
            os.kill(pid, signal.SIGKILL)
        return int(self.process.stdout.readline())

    def close(self) -> None:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.close()
        self.process.wait(30)
        self.process.stdout.close()


@pytest.fixture
def spawner() -> Iterator[Spawner]:
    spawner = Spawner()
    yield spawner
    spawner.close()


def test_sigkill_at_random_moments(tmp_path: Path, spawner: Spawner) -> None:
    rng = random.Random(12)
    started = time.monotonic()
    stats = dict.fromkeys(
        ["operations", "mid_operation", "old_kept", "new_seen", "cleaned", "fsync"], 0
    )
    for trial in range(TRIALS):
        root = tmp_path / f"trial{trial}"
        fsync = trial % FSYNC_EVERY == 0
        stats["fsync"] += fsync
        storage = LocalFileStorage(str(root), fsync=False)
        initial = {}
        for _ in range(INITIAL):
            data = rng.randbytes(rng.randrange(MAX_SIZE))
            digest = sha256(data)
            initial[storage.create(data, filename=f"{digest[7:15]}.bin")] = digest
        log_path = tmp_path / f"trial{trial}.log"
        log_path.touch()

        seed = rng.randrange(2**32)
        code = spawner.kill_after(rng.uniform(0, 0.03), str(root), str(log_path), seed, fsync)
        assert code == -signal.SIGKILL, f"trial {trial}: the writer exited with {code}"

        outcome = Outcome(initial, log_path.read_bytes())
        stats["operations"] += outcome.operations
        stats["mid_operation"] += outcome.in_flight is not None
        left_before = leftovers(root)
        listed = storage.list()  # cleans what the child left
        assert leftovers(root) == [], f"trial {trial}: list() left {leftovers(root)}"
        stats["cleaned"] += bool(left_before)

        for file_id in set(outcome.acknowledged) | set(listed):
            found = read_whole(storage, file_id) if file_id in listed else None
            allowed = outcome.allowed(file_id)
            assert found in allowed, (
                f"trial {trial}: {file_id} reads as {found}, expected one of {allowed} "
                f"(in flight: {outcome.in_flight})"
            )
            if outcome.in_flight and outcome.in_flight[:2] == ("replace?", file_id):
                new = found == outcome.in_flight[2]
                stats["new_seen" if new else "old_kept"] += 1
        # and the storage works on: every file can be replaced and deleted
        for file_id in listed:
            storage.replace(file_id, b"after")
            assert storage.get(file_id).read() == b"after"
            storage.delete(file_id)
        assert storage.list() == []

    seconds = time.monotonic() - started
    print(f"\n{TRIALS} SIGKILL trials in {seconds:.1f} s: {stats}")
    # The kills landed where they matter: inside operations, on both sides of
    # a replace's commit, and leaving debris for list() to clean.
    assert stats["mid_operation"] > TRIALS // 2, stats
    assert stats["old_kept"] and stats["new_seen"] and stats["cleaned"], stats
