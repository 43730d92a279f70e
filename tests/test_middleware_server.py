"""DepotMiddleware end to end: real HTTP over a socket, to gunicorn and through nginx."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
from pathlib import Path

import pytest

from depot.io.local import LocalFileStorage
from tests.servers import gunicorn, nginx

BIG = 100 * 1024 * 1024


def request(port: int, path: str, method: str = "GET", headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request(method, path, headers=headers or {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> tuple[Path, str, str]:
    storage_path = tmp_path_factory.mktemp("served") / "files"
    storage = LocalFileStorage(storage_path, fsync=False)
    digest = hashlib.sha256()

    class Random:
        left = BIG

        def read(self, n: int = -1) -> bytes:
            n = min(self.left, 1024 * 1024 if n < 0 else n)
            self.left -= n
            chunk = os.urandom(n)
            digest.update(chunk)
            return chunk

    file_id = storage.create(Random(), filename="movie.mp4")
    return storage_path, file_id, digest.hexdigest()


def test_range_304_head_and_a_100_mib_download_over_a_socket(big_file) -> None:
    storage_path, file_id, sha = big_file
    path = f"/depot/default/{file_id}"
    with gunicorn(storage_path) as (port, master):
        response, body = request(port, path, headers={"Range": "bytes=1000-1999"})
        assert response.status == 206
        assert response.getheader("Content-Range") == f"bytes 1000-1999/{BIG}"
        assert len(body) == 1000

        response, body = request(port, path, method="HEAD")
        assert (response.status, body) == (200, b"")
        assert response.getheader("Content-Length") == str(BIG)
        etag = response.getheader("ETag")

        response, _ = request(port, path, headers={"If-None-Match": etag})
        assert response.status == 304

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200
        digest, size = hashlib.sha256(), 0
        while chunk := response.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
        connection.close()
        assert (size, digest.hexdigest()) == (BIG, sha)

        (worker,) = worker_pids(master)
        assert peak_rss_mib(worker) < 60, "the worker's memory grew with the file"


def test_offload_to_nginx_with_x_accel_redirect(big_file, tmp_path: Path) -> None:
    storage_path, file_id, sha = big_file
    path = f"/depot/default/{file_id}"
    with (
        gunicorn(storage_path, offload="x-accel-redirect") as (upstream, _),
        nginx(storage_path, upstream, tmp_path / "nginx") as port,
    ):
        response, body = request(port, path, headers={"Range": "bytes=0-1023"})
        assert response.status == 206
        assert len(body) == 1024
        assert response.getheader("Content-Range") == f"bytes 0-1023/{BIG}"
        assert response.getheader("X-Accel-Redirect") is None  # consumed by nginx

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200
        headers = dict(response.getheaders())
        digest = hashlib.sha256()
        while chunk := response.read(1024 * 1024):
            digest.update(chunk)
        connection.close()
        assert digest.hexdigest() == sha
        assert headers["Content-Type"] == "video/mp4"
        assert headers["Content-Disposition"].startswith('inline;filename="movie.mp4"')
        assert headers["Cache-Control"] == "public, max-age=604800"

        etag = request(port, path, method="HEAD")[0].getheader("ETag")
        assert etag
        assert request(port, path, headers={"If-None-Match": etag})[0].status == 304

        # The storage is not reachable from outside through the internal location.
        assert request(port, f"/_depot/default/{file_id}/file")[0].status == 404


@pytest.mark.parametrize(
    ("metadata", "content_type", "disposition"),
    [
        # gunicorn answered 500 to these before (issue 12, findings 4, 10, 18).
        ({"content_type": "text/html\r\n\r\n;x=y"}, "application/octet-stream", "attachment;"),
        ({"content_type": "text/html\x0b;x=y"}, "application/octet-stream", "attachment;"),
        ({"content_type": "image/png;x=\u00e9\u732b"}, "application/octet-stream", "attachment;"),
        ({"filename": "caf\udce9.png", "content_type": "image/png"}, "image/png", "inline;"),
        (
            {"filename": "\u732b" * 20000 + ".png", "content_type": "image/png"},
            "image/png",
            "inline;",
        ),
    ],
)
def test_stored_values_other_programs_wrote_are_served_by_gunicorn(
    tmp_path: Path, metadata: dict, content_type: str, disposition: str
) -> None:
    storage_path = tmp_path / "files"
    storage = LocalFileStorage(storage_path, fsync=False)
    file_id = storage.create(b"<script>alert(1)</script>", "x.bin")
    path = storage_path / file_id / "metadata.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **metadata}))
    with gunicorn(storage_path) as (port, _):
        for method in ("GET", "HEAD"):
            response, body = request(port, f"/depot/default/{file_id}", method=method)
            assert response.status == 200
            assert response.getheader("Content-Type") == content_type
            value = response.getheader("Content-Disposition")
            assert value.startswith(disposition) and len(value) < 1024
            assert body == (b"<script>alert(1)</script>" if method == "GET" else b"")
