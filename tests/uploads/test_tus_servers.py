"""tuspy, a tus client nobody here wrote, against real servers on 127.0.0.1.

Two worker processes serve the upload, and the server is killed and started
again in the middle of it: the client resumes where the storage says it is,
and the stored bytes are the file's.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path

import pytest

from depot.io.local import LocalFileStorage
from tests.servers import ServerProcess

tusclient = pytest.importorskip("tusclient.client")

MIB = 1 << 20
SERVERS = {
    "gunicorn": lambda port: [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
        "--log-level", "warning", "tests.uploads.tus_app:application",
    ],
    "uvicorn": lambda port: [
        sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "2", "--log-level", "warning", "tests.uploads.tus_app:asgi_application",
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_tuspy_resumes_after_the_server_restarts(tmp_path: Path, name: str) -> None:
    storage = tmp_path / "files"
    data = os.urandom(50 * MIB)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    env = {"DEPOT_TEST_STORAGE": str(storage), "PYTHONPATH": str(Path(__file__).parents[2])}
    server = ServerProcess(name, SERVERS[name], tmp_path, env)
    server.start()
    # A stream of our own: tuspy leaves a file it opened itself unclosed.
    with open(source, "rb") as stream:
        try:
            client = tusclient.TusClient(f"{server.url}/files")
            uploader = client.uploader(
                file_stream=stream,
                chunk_size=2 * MIB,
                metadata={"filename": "upload.bin", "filetype": "application/octet-stream"},
                retries=20,
                retry_delay=1,
            )
            for _ in range(8):
                uploader.upload_chunk()
            assert uploader.offset == 16 * MIB
            server.stop()  # killed: both workers, between two chunks
            restarted = threading.Timer(2.0, server.start)
            restarted.start()  # while the client is retrying
            uploader.upload()
            restarted.join()
        finally:
            server.stop()
    (line,) = (storage.parent / "files.done").read_text().splitlines()
    stored = LocalFileStorage(str(storage)).get(line.split()[0])
    assert stored.content_length == len(data)
    assert stored.checksum == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (stored.filename, stored.read() == data) == ("upload.bin", True)


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_a_patch_cut_off_midway_stores_nothing(tmp_path: Path, name: str) -> None:
    """The client sends half its Content-Length, then goes away: nothing of it is kept,
    and the upload goes on from where it was (through a real server's disconnect)."""
    import socket
    import time

    import requests

    storage = tmp_path / "files"
    env = {"DEPOT_TEST_STORAGE": str(storage), "PYTHONPATH": str(Path(__file__).parents[2])}
    server = ServerProcess(name, SERVERS[name], tmp_path, env)
    server.start()
    try:
        tus = {"Tus-Resumable": "1.0.0"}
        created = requests.post(
            f"{server.url}/files", headers={**tus, "Upload-Length": "200000"}, timeout=30
        )
        assert created.status_code == 201, created.text
        location = created.headers["Location"]
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            head = (
                f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                "Content-Length: 200000\r\n\r\n"
            )
            sock.sendall(head.encode() + b"a" * 100_000)
            time.sleep(0.5)
        url = f"{server.url}{location}"
        for _ in range(50):  # the worker notices the disconnect
            time.sleep(0.1)
            answer = requests.head(url, headers=tus, timeout=30)
            assert answer.status_code == 200
            assert answer.headers["Upload-Offset"] == "0"
            if not list((storage / ".depot-uploads" / location.rsplit("/", 1)[1]).glob(".tmp-*")):
                break
        headers = {**tus, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
        done = requests.patch(url, headers=headers, data=b"b" * 200_000, timeout=30)
        assert (done.status_code, done.headers["Upload-Offset"]) == (204, "200000")
    finally:
        server.stop()
    (line,) = (storage.parent / "files.done").read_text().splitlines()
    assert LocalFileStorage(str(storage)).get(line.split()[0]).read() == b"b" * 200_000
