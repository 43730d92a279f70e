"""A revalidation of a local file served before is answered from the metadata cache.

The local backend's :meth:`~depot.io.local.LocalFileStorage.peek` vouches for a
cached file's metadata with two ``lstat`` calls: a ``304`` (or ``412``) opens
nothing, and a file changed behind the cache is never answered under its old
headers. The cache's settle time is shortened here as in tests/io/test_local_cache.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from webtest import TestApp

from depot.io.local import LocalFileStorage, _MetadataCache
from depot.manager import DepotManager

SETTLE = 0.05


def wrapped_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the application"]


@pytest.fixture
def local(tmp_path: Path) -> LocalFileStorage:
    storage = DepotManager.configure("default", {"depot.storage_path": str(tmp_path / "files")})
    assert isinstance(storage, LocalFileStorage)
    storage._metadata_cache = _MetadataCache(settled_ns=int(SETTLE * 1e9))
    return storage


@pytest.fixture
def app() -> TestApp:
    return TestApp(DepotManager.make_middleware(wrapped_app))


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = os.open

    def counting(path: str, *args: object, **kwargs: object) -> int:
        seen.append(path)
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", counting)
    return seen


def served(local: LocalFileStorage, app: TestApp, data: bytes = b"old!") -> tuple[str, str]:
    """Store ``data``, let it settle and serve it once (which caches it): (url, ETag)."""
    file_id = local.create(data, filename="a.png", content_type="image/png")
    time.sleep(SETTLE * 2)
    url = f"/depot/default/{file_id}"
    response = app.get(url)
    assert response.body == data
    assert local.peek(file_id) is not None
    return url, response.headers["ETag"]


def test_a_304_of_a_cached_file_opens_nothing_and_carries_the_same_headers(
    local: LocalFileStorage, app: TestApp, opens: list[str], tmp_path: Path
) -> None:
    url, etag = served(local, app)
    opens.clear()
    fast = app.get(url, headers={"If-None-Match": etag}, status=304)
    assert opens == []
    # The same answer as from the opened file (a fresh storage has no cache).
    DepotManager.configure("fresh", {"depot.storage_path": local.storage_path})
    slow = app.get(url.replace("/default/", "/fresh/"), headers={"If-None-Match": etag}, status=304)
    assert opens != []
    # Expires is "now + max-age", to the second: the two may straddle one.
    assert [h for h in fast.headerlist if h[0] != "Expires"] == [
        h for h in slow.headerlist if h[0] != "Expires"
    ]
    assert "Expires" in fast.headers
    assert fast.body == b""


def test_a_412_of_a_cached_file_opens_nothing(
    local: LocalFileStorage, app: TestApp, opens: list[str]
) -> None:
    url, _ = served(local, app)
    opens.clear()
    app.get(url, headers={"If-Match": '"other"'}, status=412)
    assert opens == []


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_stale_etag_of_a_cached_file_is_answered_from_the_file(
    local: LocalFileStorage, app: TestApp, method: str
) -> None:
    url, _ = served(local, app)
    response = app.request(url, method=method, headers={"If-None-Match": '"stale"'})
    assert response.status_int == 200
    assert response.headers["Content-Length"] == "4"
    assert response.body == (b"old!" if method == "GET" else b"")


def test_a_file_replaced_by_another_process_is_never_a_304_under_old_headers(
    local: LocalFileStorage, app: TestApp
) -> None:
    url, etag = served(local, app)
    file_id = url.rsplit("/", 1)[1]
    LocalFileStorage(local.storage_path, fsync=False).replace(file_id, b"new!")
    response = app.get(url, headers={"If-None-Match": etag}, status=200)
    assert response.body == b"new!"
    assert response.headers["ETag"] != etag


def test_a_folder_swapped_for_a_link_is_not_vouched_for(
    local: LocalFileStorage, app: TestApp, tmp_path: Path
) -> None:
    url, etag = served(local, app)
    folder = Path(local.storage_path) / url.rsplit("/", 1)[1]
    outside = tmp_path / "outside"
    folder.rename(outside)
    folder.symlink_to(outside)
    app.get(url, headers={"If-None-Match": etag}, status=404)


def test_a_cached_file_truncated_in_place_is_a_503(local: LocalFileStorage, app: TestApp) -> None:
    url, _ = served(local, app, b"0123456789")
    with open(Path(local.storage_path) / url.rsplit("/", 1)[1] / "file", "r+b") as data:
        data.truncate(4)
    app.get(url, status=503)
    app.head(url, status=503)
