"""Concurrency: 16 threads and 4 processes creating, reading, replacing and deleting at once.

On one local depot and on one S3 bucket (moto's server), for a few seconds
each. Every version's bytes describe themselves (a header naming the writer
and the version, then filler derived from it), so a read that mixes two
versions, or the metadata of one with the bytes of another, shows. Each worker
deletes only the files it created, so it knows which of its files must exist:

- a worker's own live file is never "not found", though others replace it;
- the only errors are the documented ones: StoredFileNotFoundError for a file
  another worker deleted meanwhile, and on S3 BackendUnavailableError for a
  file replaced after it was opened (its reads are conditional on the version);
- every read is one whole version: the bytes match the header, the file name,
  content_length and checksum of that same version;
- at the end every live file is listed and whole, and no deleted one is.

Then the same race as a client of the middleware sees it (issue 12, finding
14): readers of one local file being replaced over and over get 200 with a
body matching its Content-Length and ETag, every time.

``DEPOT_CONCURRENCY_SECONDS`` sets how long each campaign runs (default 3).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest

from depot.exceptions import BackendUnavailableError, StoredFileNotFoundError
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from tests.streams import sha256

SECONDS = float(os.environ.get("DEPOT_CONCURRENCY_SECONDS", "3"))
THREADS, PROCESSES = 16, 4


def version_bytes(writer: str, number: int, size: int) -> bytes:
    """A version that describes itself: a header, then filler made from it."""
    header = f"depot|{writer}|{number}|{size}\n".encode()
    filler = hashlib.sha256(header).digest() * (size // 32 + 1)
    return header + filler[:size]


def version_of(data: bytes) -> tuple[str, int] | None:
    """``(writer, number)`` of the version ``data`` is, whole; None if it is no one version."""
    header, _, _ = data.partition(b"\n")
    try:
        _, writer, number, size = header.decode().split("|")
        whole = data == version_bytes(writer, int(number), int(size))
    except ValueError:
        return None
    return (writer, int(number)) if whole else None


def check_version(stored: Any, data: bytes) -> str | None:
    """What is wrong with a read, or None if it is one whole version."""
    version = version_of(data)
    if version is None:
        return f"{stored.file_id}: not one whole version: {data[:40]!r} ({len(data)} bytes)"
    writer, number = version
    header = data.partition(b"\n")[0]
    if (stored.filename, stored.content_length, stored.checksum) != (
        f"{writer}-{number}.bin",
        len(data),
        sha256(data),
    ):
        return (
            f"{stored.file_id}: bytes of {header!r} with the metadata of "
            f"{stored.filename}, {stored.content_length} bytes, {stored.checksum}"
        )
    return None


def replaced_while_read(exc: Exception) -> bool:
    """S3's documented error for a file replaced between get() and read()."""
    return isinstance(exc, BackendUnavailableError) and "replaced after it was opened" in str(exc)


def work(
    storage: FileStorage, name: str, start: float, seconds: float, seed: int, max_size: int
) -> dict[str, Any]:
    """One worker's loop; returns its counts, problems and own live/deleted files."""
    rng = random.Random(seed)
    mine: list[str] = []
    deleted: list[str] = []
    pool: list[str] = []
    counts: Counter[str] = Counter()
    problems: list[str] = []
    number = 0
    while time.time() < start:
        time.sleep(0.001)
    while time.time() < start + seconds and len(problems) < 20:
        if counts["ops"] % 40 == 0:
            pool = storage.list()
            counts["list"] += 1
        counts["ops"] += 1
        roll = rng.random()
        number += 1
        data = version_bytes(name, number, rng.randrange(max_size))
        candidates = pool + mine
        file_id = rng.choice(candidates) if candidates else None
        try:
            if roll < 0.15 or file_id is None:
                counts["create"] += 1
                file_id = storage.create(data, filename=f"{name}-{number}.bin")
                mine.append(file_id)
            elif roll < 0.6:
                counts["read"] += 1
                with storage.get(file_id) as stored:
                    read = stored.read()
                problem = check_version(stored, read)
                if problem:
                    problems.append(problem)
            elif roll < 0.9:
                counts["replace"] += 1
                storage.replace(file_id, data, filename=f"{name}-{number}.bin")
            elif mine:
                counts["delete"] += 1
                file_id = mine.pop(rng.randrange(len(mine)))
                storage.delete(file_id)
                deleted.append(file_id)
        except StoredFileNotFoundError as exc:
            if file_id in mine:
                problems.append(f"{name}: its own live file {file_id} not found: {exc}")
            else:
                counts["not found (deleted by another)"] += 1
        except Exception as exc:  # anything else is a failure, reported whole
            if replaced_while_read(exc):
                counts["replaced while read"] += 1
            else:
                problems.append(f"{name}: {type(exc).__name__}: {exc}")
    return {"counts": counts, "problems": problems, "mine": mine, "deleted": deleted}


def work_in_process(settings: dict[str, Any], *args: Any) -> dict[str, Any]:
    return work(DepotManager.from_config(settings), *args)


def run_campaign(
    settings: dict[str, Any], max_size: int, may_resurrect: bool = False
) -> dict[str, Any]:
    storage = DepotManager.from_config(settings)
    context = multiprocessing.get_context("forkserver")
    start = time.time() + 2  # time for the processes to start
    results: list[dict[str, Any]] = []
    with context.Pool(PROCESSES) as processes:
        pending = [
            processes.apply_async(
                work_in_process, (settings, f"p{n}", start, SECONDS, 100 + n, max_size)
            )
            for n in range(PROCESSES)
        ]
        outcomes: dict[int, dict[str, Any]] = {}

        def thread(n: int) -> None:
            outcomes[n] = work(storage, f"t{n}", start, SECONDS, n, max_size)

        threads = [threading.Thread(target=thread, args=(n,)) for n in range(THREADS)]
        for each in threads:
            each.start()
        for each in threads:
            each.join()
        results += [outcome.get(timeout=SECONDS + 60) for outcome in pending]
        results += outcomes.values()
    assert len(results) == THREADS + PROCESSES

    counts: Counter[str] = Counter()
    problems = []
    for result in results:
        counts.update(result["counts"])
        problems += result["problems"]
    live = {file_id for result in results for file_id in result["mine"]}
    gone = {file_id for result in results for file_id in result["deleted"]}
    listed = set(storage.list())
    problems += [f"{file_id} lost" for file_id in live - listed]
    resurrected = gone & listed
    if not may_resurrect:
        problems += [f"{file_id} deleted, yet listed" for file_id in resurrected]
    problems += [f"{file_id} listed, made by nobody" for file_id in listed - live - gone]
    for file_id in listed:
        with storage.get(file_id) as stored:
            problem = check_version(stored, stored.read())
        if problem:
            problems.append(f"at the end: {problem}")
    assert problems == [], f"{len(problems)} problems, {dict(counts)}: {problems[:10]}"
    return {
        "operations": counts["ops"],
        "files": len(listed),
        "resurrected": len(resurrected),
        **counts,
    }


def report(what: str, figures: dict[str, Any], seconds: float) -> None:
    print(f"\n{what}, {seconds:.1f} s: {figures}")


def test_local(tmp_path: Any) -> None:
    started = time.monotonic()
    settings = {
        "depot.backend": "local",
        "depot.storage_path": str(tmp_path / "files"),
        "depot.fsync": "false",  # the guarantees are the same; more operations per second
    }
    figures = run_campaign(settings, max_size=64 * 1024)
    report(f"local: {THREADS} threads + {PROCESSES} processes", figures, time.monotonic() - started)
    assert figures["read"] > 300 and figures["replace"] > 200, figures


def test_s3(s3_settings: dict[str, Any]) -> None:
    pytest.importorskip("boto3")
    started = time.monotonic()
    # A replace() racing a delete() of the same file writes only over the version
    # it found (PutObject with If-Match): a deleted file never comes back.
    figures = run_campaign(s3_settings, max_size=16 * 1024)
    report(f"s3: {THREADS} threads + {PROCESSES} processes", figures, time.monotonic() - started)
    # moto answers a few dozen requests a second on a busy machine
    assert figures["read"] > 20 and figures["replace"] > 10, figures


def replace_until(settings: dict[str, Any], file_id: str, stop_at: float) -> int:
    storage = DepotManager.from_config(settings)
    number = 0
    while time.time() < stop_at:
        number += 1
        data = version_bytes("w", number, random.randrange(64 * 1024))
        storage.replace(file_id, data, filename=f"w-{number}.bin")
    return number


def test_local_over_http(tmp_path: Any) -> None:
    """Finding 14 as a client saw it: 404s, bodies not matching Content-Length, wrong ETags."""
    from webob import Request

    settings = {
        "depot.backend": "local",
        "depot.storage_path": str(tmp_path / "files"),
        "depot.fsync": "false",
    }
    storage = DepotManager.configure("default", settings)
    file_id = storage.create(version_bytes("w", 0, 1000), filename="w-0.bin")
    app = DepotManager.make_middleware(lambda environ, start_response: [])
    started = time.monotonic()
    stop_at = time.time() + 1 + SECONDS
    counts: Counter[str] = Counter()
    problems: list[str] = []
    lock = threading.Lock()

    def read_until() -> None:
        requests = 0
        while time.time() < stop_at and len(problems) < 20:
            requests += 1
            try:
                response = Request.blank(f"/depot/default/{file_id}").get_response(app)
                body = response.body
            except Exception as exc:  # webob refuses a body shorter than Content-Length
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            if response.status_int != 200:
                problems.append(f"{response.status}")
            elif int(response.headers["Content-Length"]) != len(body):
                problems.append(f"Content-Length {response.headers['Content-Length']}, {len(body)}")
            elif response.headers["ETag"].strip('"') != sha256(body)[7:39]:
                problems.append(f"ETag {response.headers['ETag']} of other bytes")
            elif version_of(body) is None:
                problems.append(f"bytes of several versions: {body[:40]!r}")
        with lock:
            counts["requests"] += requests

    context = multiprocessing.get_context("forkserver")
    with context.Pool(1) as writer:
        replaces = writer.apply_async(replace_until, (settings, file_id, stop_at))
        readers = [threading.Thread(target=read_until) for _ in range(4)]
        for each in readers:
            each.start()
        for each in readers:
            each.join()
        counts["replaces"] = replaces.get(timeout=60)
    report(
        "local over HTTP: 4 reader threads, 1 replacing process",
        dict(counts),
        time.monotonic() - started,
    )
    assert problems == [], f"{len(problems)} bad answers, {dict(counts)}: {problems[:10]}"
    assert counts["replaces"] > 100 and counts["requests"] > 100, counts
