"""DepotMiddleware under gunicorn with 64 concurrent connections (issue 12's load campaign).

A bounded Python client (threads and http.client, traffic only to 127.0.0.1)
sends a mix of GET, HEAD, single and multiple ranges and conditional requests
(304) for 1 KiB and 1 MiB local files, and some clients drop the connection in
the middle of a download. It checks every answer: no error, no 5xx, no body
shorter or other than announced. The workers' memory (VmRSS) and open file
descriptors are measured after a warm-up and after the run: neither may grow.

``DEPOT_LOAD_SECONDS`` sets how long the load lasts (default 30);
``DEPOT_LOAD_REPORT`` names a file the figures are written to as JSON.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from depot.io.local import LocalFileStorage
from tests.servers import gunicorn

CONNECTIONS = 64
SECONDS = float(os.environ.get("DEPOT_LOAD_SECONDS", "30"))
#: The workers may grow by this much while serving the same files again and
#: again (allocator noise); a leak per request grows far more in 30 seconds.
RSS_SLACK_KIB = 8 * 1024
FD_SLACK = 2


@dataclass
class File:
    path: str
    data: bytes
    etag: str = ""


@dataclass
class Tally:
    requests: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, kind: str) -> None:
        with self.lock:
            self.requests[kind] += 1

    def error(self, message: str) -> None:
        with self.lock:
            if len(self.errors) < 50:  # keep the first ones: enough to see what broke
                self.errors.append(message)
            self.requests["errors"] += 1


def worker_pids(master: int) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def measure(master: int) -> dict[int, tuple[int, int]]:
    return {pid: (rss_kib(pid), fd_count(pid)) for pid in worker_pids(master)}


class Client:
    """One connection's worth of requests, kept alive between them."""

    def __init__(self, port: int, files: list[File], tally: Tally, seed: int) -> None:
        self.port = port
        self.files = files
        self.tally = tally
        self.random = random.Random(seed)
        self.connection: http.client.HTTPConnection | None = None

    def run(self, deadline: float) -> None:
        kinds = ["get", "get", "head", "range", "ranges", "304", "abort"]
        while time.monotonic() < deadline:
            self.one(self.random.choice(kinds), self.random.choice(self.files))
        self.close()

    def one(self, kind: str, file: File) -> None:
        headers = {
            "range": {"Range": "bytes=100-1099"},
            "ranges": {"Range": "bytes=0-9,-10"},
            "304": {"If-None-Match": file.etag},
        }.get(kind, {})
        method = "HEAD" if kind == "head" else "GET"
        for attempt in (1, 2):
            reused = self.connection is not None
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.connection.request(method, file.path, headers=headers)
                response = self.connection.getresponse()
                if kind == "abort":
                    response.read(10 * 1024)
                    self.abort()
                    self.tally.count(kind)
                    return
                body = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if reused and attempt == 1:
                    # The server may close an idle kept-alive connection: a
                    # client sends again on a new one (as urllib3 does).
                    self.tally.count("reconnects")
                    continue
                self.tally.error(f"{kind} {file.path}: {exc!r}")
                return
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                self.tally.error(f"{kind} {file.path}: {exc!r}")
                return
            self.check(kind, file, response, body)
            self.tally.count(kind)
            return

    def check(self, kind: str, file: File, response: http.client.HTTPResponse, body: bytes) -> None:
        status = response.status
        length = response.getheader("Content-Length")
        data = file.data
        problem = None
        if status >= 500:
            problem = f"status {status}"
        elif kind == "304":
            if status != 304 or body:
                problem = f"status {status}, {len(body)} bytes for a 304"
        elif kind == "head":
            if status != 200 or body or length != str(len(data)):
                problem = f"HEAD: status {status}, Content-Length {length}, {len(body)} bytes"
        elif length != str(len(body)):
            problem = f"Content-Length {length} but {len(body)} bytes"
        elif kind == "get" and (status != 200 or body != data):
            problem = f"status {status}, body differs"
        elif kind == "range" and (status != 206 or body != data[100:1100]):
            problem = f"status {status}, range differs"
        elif kind == "ranges" and (
            status != 206 or data[:10] not in body or data[-10:] not in body
        ):
            problem = f"status {status}, multipart differs"
        if problem:
            self.tally.error(f"{kind} {file.path}: {problem}")
        if response.getheader("Connection", "").lower() == "close":
            self.close()

    def abort(self) -> None:
        """Drop the connection mid-download; every other time with a reset (RST)."""
        assert self.connection is not None and self.connection.sock is not None
        if self.random.random() < 0.5:
            self.connection.sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        self.close()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def run_clients(port: int, files: list[File], seconds: float, tally: Tally) -> float:
    deadline = time.monotonic() + seconds
    clients = [Client(port, files, tally, seed) for seed in range(CONNECTIONS)]
    threads = [threading.Thread(target=c.run, args=(deadline,)) for c in clients]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
        assert not thread.is_alive(), "a client hung"
    return time.monotonic() - started


def settled(master: int, baseline: dict[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
    """The workers' figures once the closed connections are gone (a few seconds at most)."""
    deadline = time.monotonic() + 15
    while True:
        now = measure(master)
        grown = any(now[pid][1] > fds + FD_SLACK for pid, (_, fds) in baseline.items())
        if not grown or time.monotonic() > deadline:
            return now
        time.sleep(0.25)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[File]]:
    storage_path = tmp_path_factory.mktemp("load") / "files"
    storage = LocalFileStorage(storage_path, fsync=False)
    found = []
    for size, count in ((1024, 4), (1024 * 1024, 2)):
        for _ in range(count):
            data = os.urandom(size)
            file_id = storage.create(data, "f.bin", "application/octet-stream")
            found.append(File(f"/depot/default/{file_id}", data))
    return storage_path, found


def test_64_connections_without_errors_or_leaks(files) -> None:
    storage_path, stored = files
    with gunicorn(storage_path, workers=2) as (port, master):
        for file in stored:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("HEAD", file.path)
            file.etag = connection.getresponse().getheader("ETag") or ""
            connection.close()
            assert re.fullmatch(r'"[0-9a-f]{32}"', file.etag)

        warmup = Tally()
        run_clients(port, stored, min(3.0, SECONDS), warmup)
        assert warmup.errors == []
        before = settled(master, measure(master))

        tally = Tally()
        elapsed = run_clients(port, stored, SECONDS, tally)
        after = settled(master, before)

    total = sum(n for kind, n in tally.requests.items() if kind not in ("errors", "reconnects"))
    figures = {
        "connections": CONNECTIONS,
        "seconds": round(elapsed, 1),
        "requests": total,
        "by_kind": dict(tally.requests),
        "errors": tally.requests["errors"],
        "requests_per_second": round(total / elapsed),
        "workers": {
            str(pid): {
                "rss_kib_before": before[pid][0],
                "rss_kib_after": after[pid][0],
                "fds_before": before[pid][1],
                "fds_after": after[pid][1],
            }
            for pid in before
        },
    }
    if os.environ.get("DEPOT_LOAD_REPORT"):
        Path(os.environ["DEPOT_LOAD_REPORT"]).write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))  # shown with -s or -rP: the figures for docs/reliability.rst

    assert tally.errors == [], tally.errors
    assert tally.requests["abort"] > 0 and total > CONNECTIONS
    for pid, (rss, fds) in before.items():
        assert after[pid][1] <= fds + FD_SLACK, (
            f"worker {pid}: descriptors {fds} -> {after[pid][1]}"
        )
        assert after[pid][0] <= rss + RSS_SLACK_KIB, (
            f"worker {pid}: RSS {rss} -> {after[pid][0]} KiB"
        )


def test_files_deleted_while_served_are_404_never_a_short_body(tmp_path: Path) -> None:
    # Issue 12, finding 11, through a real server: a file deleted between the
    # lookup and the body. Every answer is the whole file or a 404.
    storage_path = tmp_path / "files"
    storage = LocalFileStorage(storage_path, fsync=False)
    data = os.urandom(256 * 1024)
    ids = [storage.create(data, "f.bin") for _ in range(8)]
    seconds = min(10.0, SECONDS)
    tally = Tally()
    stop = threading.Event()

    def churn() -> None:
        rng = random.Random(0)
        while not stop.is_set():
            ids.append(storage.create(data, "f.bin"))
            storage.delete(ids.pop(rng.randrange(len(ids) - 1)))
            tally.count("deleted")

    def client(seed: int, port: int, deadline: float) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            file_id = rng.choice(ids)
            headers = rng.choice([{}, {"Range": "bytes=1000-99999"}, {"Range": "bytes=0-9,-10"}])
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                connection.request("GET", f"/depot/default/{file_id}", headers=headers)
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                tally.error(f"{file_id}: {exc!r}")
                continue
            finally:
                connection.close()
            length = response.getheader("Content-Length")
            if response.status == 404:
                tally.count("404")
            elif response.status in (200, 206) and length == str(len(body)):
                expected = {200: data, 206: data[1000:100000]}[response.status]
                multipart = "," in headers.get("Range", "")
                if not multipart and body != expected:
                    tally.error(f"{file_id}: {response.status} with other bytes")
                tally.count(str(response.status))
            else:
                tally.error(f"{file_id}: {response.status}, Content-Length {length}, {len(body)}")

    with gunicorn(storage_path, workers=2) as (port, _):
        deleter = threading.Thread(target=churn)
        deleter.start()
        deadline = time.monotonic() + seconds
        threads = [threading.Thread(target=client, args=(n, port, deadline)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + 120)
        stop.set()
        deleter.join(timeout=60)
    print(json.dumps(dict(tally.requests)))
    assert tally.errors == [], tally.errors
    assert tally.requests["404"] > 0 and tally.requests["200"] > 0 and tally.requests["deleted"] > 0
