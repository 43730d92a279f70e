"""Serving over real sockets: depot under gunicorn, granian and uvicorn (issue 14).

Each test runs once per server: depot's WSGI middleware under gunicorn and
granian, its ASGI middleware under uvicorn and granian, every one on
127.0.0.1 over one local depot. The clients are real too: httpx, curl, and a
raw socket where what matters is the bytes on the wire (HEAD sends none, a
client hangs up mid-download).

The worker's memory during a 100 MiB download is measured two ways: psutil
samples its RSS, and the kernel's high-water mark (``VmHWM``, reset through
``/proc/<pid>/clear_refs`` just before) catches a peak between two samples.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from depot.io.local import LocalFileStorage
from tests.servers import granian, gunicorn, uvicorn, worker_pid

try:
    import depot.asgi  # noqa: F401  (only whether it is there)
except ModuleNotFoundError as exc:
    if exc.name != "depot.asgi":
        raise  # depot.asgi is there and broken: that is a failure, not a skip
    HAVE_ASGI = False
else:
    HAVE_ASGI = True

MIB = 1024 * 1024
BIG = 100 * MIB
#: How much the worker's memory may grow while it sends the 100 MiB file.
#: Measured (gunicorn 27, granian 2.8, 2 cores): 0 MiB under gunicorn, which
#: sends the file with sendfile(), about 2 MiB under granian's WSGI; a front
#: end that buffered the body grew by 200 MiB and more.
RSS_GROWTH_BOUND = 32 * MIB
#: How long a server may take to close the stored file after a client hangs up.
CLOSE_DEADLINE = 10.0


@dataclass(frozen=True)
class Stored:
    """The files of the one local depot the servers serve."""

    storage_path: Path
    big_id: str
    big_sha256: str
    big_tail: bytes  # its last 64 KiB, to check a suffix range byte for byte
    big_data_path: str  # the local file a server holds open while sending it
    small_id: str
    small: bytes


@pytest.fixture(scope="session")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Stored:
    storage_path = tmp_path_factory.mktemp("real-servers") / "files"
    storage = LocalFileStorage(storage_path, fsync=False)
    digest = hashlib.sha256()
    tail = bytearray()

    class Random:
        """100 MiB of random bytes, made as they are read (never held whole)."""

        left = BIG

        def read(self, n: int = -1) -> bytes:
            n = min(self.left, MIB if n < 0 else n)
            self.left -= n
            chunk = os.urandom(n)
            digest.update(chunk)
            tail[:] = (tail + chunk)[-64 * 1024 :]
            return chunk

    big_id = storage.create(Random(), filename="movie.mp4")
    small = os.urandom(300 * 1024)
    small_id = storage.create(small, filename="photo.jpg")
    with storage.get(big_id) as big:
        data_path = big.local_path
    assert data_path is not None
    assert os.path.getsize(data_path) == BIG
    return Stored(storage_path, big_id, digest.hexdigest(), bytes(tail), data_path, small_id, small)


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    pid: int  # the process that runs depot and holds its files

    def url(self, file_id: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.path(file_id)}"

    @staticmethod
    def path(file_id: str) -> str:
        return f"/depot/default/{file_id}"


@contextmanager
def _gunicorn(storage: Path) -> Iterator[tuple[int, int]]:
    with gunicorn(storage) as (port, master):
        yield port, worker_pid(master)


SERVERS: dict[str, Callable[[Path], AbstractContextManager[tuple[int, int]]]] = {
    "gunicorn-wsgi": _gunicorn,
    "granian-wsgi": lambda storage: granian("tests.wsgi_app:application", storage, "wsgi"),
    "uvicorn-asgi": lambda storage: uvicorn("tests.asgi_app:application", storage),
    "granian-asgi": lambda storage: granian("tests.asgi_app:application", storage, "asgi"),
}


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest, stored: Stored) -> Iterator[Server]:
    name = request.param
    if name.endswith("-asgi") and not HAVE_ASGI:
        pytest.skip("depot.asgi not on this branch yet")
    with SERVERS[name](stored.storage_path) as (port, pid):
        yield Server(name, port, pid)


def exchange(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` on a raw connection; the status line, headers and every byte after.

    The request should say ``Connection: close``: this reads until the server closes.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = bytes(received).partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def curl_binary() -> str:
    found = shutil.which("curl")
    if found is None:
        pytest.fail("curl is not installed: install it (Debian: apt-get install curl)")
    return found


def test_a_range_is_answered_206_with_exactly_its_bytes(
    server: Server, stored: Stored, tmp_path: Path
) -> None:
    body, headers = tmp_path / "body", tmp_path / "headers"
    completed = subprocess.run(
        [
            curl_binary(),
            "--silent",
            "--show-error",
            "--range",
            "1000-1999",
            "--dump-header",
            str(headers),
            "--output",
            str(body),
            "--write-out",
            "%{http_code}",
            server.url(stored.small_id),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert completed.stdout == "206"
    assert body.read_bytes() == stored.small[1000:2000]
    assert f"content-range: bytes 1000-1999/{len(stored.small)}" in (
        headers.read_text().lower().splitlines()
    )

    # A suffix range reads from the far end of the 100 MiB file only.
    response = httpx.get(server.url(stored.big_id), headers={"Range": "bytes=-65536"}, timeout=60)
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {BIG - 65536}-{BIG - 1}/{BIG}"
    assert response.content == stored.big_tail


def test_if_none_match_with_the_etag_got_first_is_answered_304(
    server: Server, stored: Stored
) -> None:
    with httpx.Client(timeout=60) as client:
        first = client.get(server.url(stored.small_id))
        assert first.status_code == 200
        assert first.content == stored.small
        etag = first.headers["ETag"]

        again = client.get(server.url(stored.small_id), headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["ETag"] == etag
        assert again.headers["Cache-Control"] == first.headers["Cache-Control"]

        # The connection still works after a 304: its answer had no body.
        assert client.get(server.url(stored.small_id)).content == stored.small


#: Headers that describe the connection or the moment, not the answer.
NOT_OF_THE_ANSWER = {"date", "connection", "keep-alive"}


def test_head_sends_the_headers_of_get_and_no_body(server: Server, stored: Stored) -> None:
    path = server.path(stored.small_id)
    got = exchange(
        server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    head = exchange(
        server.port, f"HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert got[0].startswith("HTTP/1.1 200")
    assert got[2] == stored.small
    assert head[0] == got[0]
    assert head[2] == b"", "bytes after the headers of a HEAD answer"
    of_get = {k: v for k, v in got[1].items() if k not in NOT_OF_THE_ANSWER}
    of_head = {k: v for k, v in head[1].items() if k not in NOT_OF_THE_ANSWER}
    assert of_head == of_get
    assert of_head["content-length"] == str(len(stored.small))


def _peak_rss_reset(pid: int) -> bool:
    """Reset the kernel's peak RSS of ``pid`` (Linux 4.0+); False where it cannot."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


class RSSSampler(threading.Thread):
    """Samples a process's RSS every few milliseconds until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.samples: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append(self.process.memory_info().rss)
            self.done.wait(0.005)

    def stop(self) -> int:
        """Stop; the highest RSS seen."""
        self.done.set()
        self.join()
        return max(self.samples)


def test_a_100_mib_download_is_byte_exact_and_the_worker_memory_stays_flat(
    server: Server, stored: Stored, request: pytest.FixtureRequest
) -> None:
    with httpx.Client(timeout=60) as client:
        # Warm up: the worker has imported and served before the baseline.
        assert client.get(server.url(stored.small_id)).content == stored.small
        worker = psutil.Process(server.pid)
        baseline = worker.memory_info().rss
        precise = _peak_rss_reset(server.pid)
        sampler = RSSSampler(server.pid)
        sampler.start()
        digest, size = hashlib.sha256(), 0
        try:
            with client.stream("GET", server.url(stored.big_id)) as response:
                assert response.status_code == 200
                assert response.headers["Content-Length"] == str(BIG)
                for chunk in response.iter_raw(MIB):
                    digest.update(chunk)
                    size += len(chunk)
        finally:
            sampled = sampler.stop()
        assert (size, digest.hexdigest()) == (BIG, stored.big_sha256)

    growth = sampled - baseline
    request.node.user_properties.append(("rss_growth_sampled_mib", round(growth / MIB, 1)))
    assert len(sampler.samples) > 10, "the download ended before RSS could be sampled"
    assert growth < RSS_GROWTH_BOUND, f"the worker grew by {growth / MIB:.1f} MiB"
    if precise:
        peak_growth = _peak_rss(server.pid) - baseline
        request.node.user_properties.append(("rss_growth_peak_mib", round(peak_growth / MIB, 1)))
        assert peak_growth < RSS_GROWTH_BOUND, f"the worker peaked {peak_growth / MIB:.1f} MiB up"


def _holds(pid: int, path: str) -> bool:
    return any(f.path == path for f in psutil.Process(pid).open_files())


def _poll(condition: Callable[[], bool], deadline: float) -> bool:
    """Whether ``condition()`` became true before ``deadline`` seconds passed."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def test_a_client_that_hangs_up_mid_download_leaves_no_descriptor_open(
    server: Server, stored: Stored
) -> None:
    path = server.path(stored.big_id)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = bytearray()
        while len(received) < MIB:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection before 1 MiB"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200")
        # The server is sending, held back by the client that reads no more:
        # the stored file is open in the worker (the probe below can see it).
        assert _poll(lambda: _holds(server.pid, stored.big_data_path), CLOSE_DEADLINE)
    finally:
        sock.close()

    assert _poll(lambda: not _holds(server.pid, stored.big_data_path), CLOSE_DEADLINE), (
        f"{server.name} still holds {stored.big_data_path} {CLOSE_DEADLINE}s after the "
        "client hung up"
    )
    # The worker is unharmed and serves the next request.
    response = httpx.get(server.url(stored.small_id), timeout=60)
    assert (response.status_code, response.content) == (200, stored.small)
