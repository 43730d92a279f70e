"""Resumable uploads in the Flask example: tus-js-client from npm, depot's tus server.

In Chromium: a file sent in chunks survives a reload of the page and a
restart of the server, and arrives whole. Without the script (no registry,
nothing cached) the page says why and its plain form works. Beside the
browser: how :mod:`filebox.assets` fetches, checks and caches the script,
against a registry on 127.0.0.1, and what the app's tus endpoint does with
what it receives.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import json
import os
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.examples.apps import (
    EXAMPLES,
    RunningApp,
    app_environment,
    example_command,
    make_jpeg,
    serving,
)
from tests.examples.test_browser import rows, shown_error, stored_files, wait

MiB = 1024 * 1024
#: Big enough to be interrupted twice at the throttled speed, small enough to be quick.
FILE_SIZE = 24 * MiB
CHUNK_SIZE = 1 * MiB
THROTTLED_BYTES_PER_SECOND = 8 * MiB
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def tarball() -> bytes:
    """tus-js-client's published tarball: from the cache the apps share, else from npm."""
    with pytest.MonkeyPatch.context() as patch:
        # Module-scoped: before conftest's fixture puts examples/ on the path.
        patch.syspath_prepend(str(EXAMPLES))
        from filebox import assets
        from filebox.settings import from_env

    settings = from_env(os.environ)
    try:
        assets.load(settings.cache_dir, settings.npm_registry)
    except assets.AssetUnavailable as exc:
        pytest.skip(f"the npm registry is unreachable and nothing is cached: {exc}")
    return (settings.cache_dir / assets.tarball_name()).read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def progress(driver: Any) -> tuple[float, str]:
    """The bytes the progress bar shows, and its label."""
    value, label = driver.execute_script(
        "const box = document.getElementById('progress');"
        "return [box.querySelector('progress').value, box.querySelector('.label').textContent];"
    )
    return value, label


def choose_and_send(driver: Any, path: Path) -> None:
    from selenium.webdriver.common.by import By

    # Small chunks, so that an interruption lands between many of them.
    driver.execute_script(
        "document.getElementById('upload').dataset.chunkSize = arguments[0];", CHUNK_SIZE
    )
    driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(path))
    driver.find_element(By.CSS_SELECTOR, "#upload button").click()


def throttle(driver: Any, upload: int) -> None:
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": upload},
    )


def test_an_upload_survives_a_reload_and_a_server_restart_in_chromium(
    chromium: Any, tarball: bytes, tmp_path: Path, data_dir: Path
) -> None:
    driver = chromium
    big = tmp_path / "survey.bin"
    data = os.urandom(FILE_SIZE)
    big.write_bytes(data)
    log = tmp_path / "flask_app.log"
    env = app_environment(data_dir)
    storage = RunningApp("", data_dir).storage

    with contextlib.ExitStack() as first_run:
        url = first_run.enter_context(serving(example_command("flask_app.py"), env, log))
        driver.get(url)
        assert driver.execute_script("return typeof tus.Upload;") == "function"
        notice = driver.execute_script("return document.getElementById('resumable').textContent;")
        assert "tus-js-client" in notice and "8.0 MiB" in notice
        throttle(driver, THROTTLED_BYTES_PER_SECOND)
        choose_and_send(driver, big)
        wait(driver, lambda d: progress(d)[0] > FILE_SIZE * 0.25, "a quarter sent")

        # 1. The page is left mid-way: the chunk in flight is lost, not the others.
        stored_before = driver.execute_script(
            "return document.querySelector('#progress progress').value;"
        )
        driver.get(url)
        assert "survey.bin" not in rows(driver)
        choose_and_send(driver, big)
        wait(driver, lambda d: progress(d)[1].startswith("Resuming survey.bin"), "resuming")
        resumed_at = wait(driver, lambda d: progress(d)[0] or None, "progress after resuming")
        # It went on from what the server had, not from the start.
        assert resumed_at >= stored_before - 2 * CHUNK_SIZE, (resumed_at, stored_before)
        wait(driver, lambda d: progress(d)[0] > FILE_SIZE * 0.6, "60% sent")

        # 2. The server stops (killed, SIGTERM is not handled): the client retries.
        port = url.rstrip("/").rsplit(":", 1)[1]
        first_run.close()
    wait(driver, lambda d: "trying again" in progress(d)[1], "the client retrying", timeout=10)

    restarted = app_environment(data_dir, FILEBOX_PORT=port)
    with serving(example_command("flask_app.py"), restarted, tmp_path / "again.log") as again:
        assert again == url
        wait(driver, lambda d: "survey.bin" in rows(d), "the file listed", timeout=30)
        throttle(driver, -1)
        size = rows(driver)["survey.bin"].find_element("css selector", "td.size").text
        assert size == "24.0 MiB"
        href = rows(driver)["survey.bin"].find_element("css selector", "a.open")
        with urllib.request.urlopen(href.get_attribute("href")) as response:
            assert sha256(response.read()) == sha256(data)
    # One upload was made, and resumed; the row's file is the only one stored
    # (the column keeps its copy, the tus server's is deleted).
    assert len(list((storage / ".depot-uploads").iterdir())) == 1
    assert [p.name for p in stored_files(storage)] == [href.get_attribute("href").rsplit("/", 1)[1]]
    assert shown_error(driver) == ""


def test_without_the_script_the_page_says_why_and_the_form_uploads_in_chromium(
    chromium: Any, tmp_path: Path, data_dir: Path, closed_port: int
) -> None:
    from selenium.webdriver.common.by import By

    cache = tmp_path / "empty-cache"
    env = app_environment(
        data_dir,
        FILEBOX_CACHE=str(cache),
        FILEBOX_NPM_REGISTRY=f"http://127.0.0.1:{closed_port}",
    )
    note = tmp_path / "note.txt"
    note.write_text("sent in one request\n")
    with serving(example_command("flask_app.py"), env, tmp_path / "flask_app.log") as url:
        driver = chromium
        driver.get(url)
        notice = driver.find_element(By.ID, "resumable").text
        assert notice.startswith("Resumable uploads are off, files are sent in one request:")
        assert f"127.0.0.1:{closed_port}" in notice and "npm pack tus-js-client@" in notice
        assert driver.execute_script("return typeof window.tus;") == "undefined"
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(note))
        driver.find_element(By.CSS_SELECTOR, "#upload button").click()
        wait(driver, lambda d: "note.txt" in rows(d), "the file listed")
    assert "Resumable uploads are off" in (tmp_path / "flask_app.log").read_text()
    assert not cache.exists() or not list(cache.iterdir())


# filebox.assets, against a registry on 127.0.0.1.


@pytest.fixture(autouse=True)
def _every_fetch_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each failure here is fresh: none is held from another test (see RETRY_AFTER)."""
    from filebox import assets

    monkeypatch.setattr(assets, "RETRY_AFTER", 0.0)


@pytest.fixture
def closed_port() -> int:
    """A port of 127.0.0.1 nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Registry:
    """What the fake registry answers: the package document and the tarball."""

    def __init__(self, tarball: bytes) -> None:
        from filebox import assets

        self.tarball = tarball
        self.integrity = assets.INTEGRITY
        self.requests: list[str] = []
        self.url = ""

    def document(self) -> bytes:
        from filebox import assets

        return json.dumps(
            {
                "name": assets.PACKAGE,
                "version": assets.VERSION,
                "dist": {"integrity": self.integrity, "tarball": f"{self.url}/the.tgz"},
            }
        ).encode()


@pytest.fixture
def registry(tarball: bytes) -> Iterator[Registry]:
    from filebox import assets

    state = Registry(tarball)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            state.requests.append(self.path)
            if self.path == f"/{assets.PACKAGE}/{assets.VERSION}":
                body = state.document()
            elif self.path == "/the.tgz":
                body = state.tarball
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_the_script_is_fetched_checked_cached_and_then_read_from_the_cache(
    registry: Registry, tmp_path: Path
) -> None:
    from filebox import assets

    bundle = assets.load(tmp_path / "cache", registry.url + "/")
    assert bundle.files["tus.min.js"].startswith(b"!function(")
    assert b"MIT License" in bundle.files["LICENSE"]
    assert json.loads(bundle.files["tus.min.js.map"])["version"] == 3
    assert bundle.cached == tmp_path / "cache" / assets.tarball_name()
    assert bundle.cached.read_bytes() == registry.tarball
    assert len(registry.requests) == 2
    # Next start: from the cache, no request.
    assert assets.load(tmp_path / "cache", registry.url).files == bundle.files
    assert len(registry.requests) == 2
    # A cached tarball cut short is fetched again and replaced.
    bundle.cached.write_bytes(registry.tarball[:1000])
    assert assets.load(tmp_path / "cache", registry.url).files == bundle.files
    assert bundle.cached.read_bytes() == registry.tarball
    assert [p.name for p in bundle.cached.parent.iterdir()] == [assets.tarball_name()]
    # A cache that cannot be written: served from memory all the same.
    (tmp_path / "a-file").write_text("not a directory")
    unwritable = assets.load(tmp_path / "a-file" / "cache", registry.url)
    assert (unwritable.files, unwritable.cached) == (bundle.files, None)


def test_bytes_other_than_the_published_ones_are_never_served(
    registry: Registry, tmp_path: Path
) -> None:
    from filebox import assets

    cache = tmp_path / "cache"
    # A registry that says the package has other bytes (republished, tampered with).
    registry.integrity = "sha512-" + base64.b64encode(b"x" * 64).decode()
    with pytest.raises(assets.AssetUnavailable, match="lists the integrity 'sha512-eH"):
        assets.load(cache, registry.url)
    # One that lists the right hash and sends other bytes.
    registry.integrity = assets.INTEGRITY
    registry.tarball = registry.tarball[:-1] + bytes([registry.tarball[-1] ^ 1])
    with pytest.raises(assets.AssetUnavailable, match="does not have the published integrity"):
        assets.load(cache, registry.url)
    # A tarball put in the cache by hand is checked the same way.
    cache.mkdir(exist_ok=True)
    (cache / assets.tarball_name()).write_bytes(registry.tarball)
    with pytest.raises(assets.AssetUnavailable, match="does not have the published integrity"):
        assets.load(cache, registry.url)


def test_an_unreachable_or_odd_registry_is_a_sentence(tmp_path: Path, closed_port: int) -> None:
    from filebox import assets

    cache = tmp_path / "cache"
    with pytest.raises(assets.AssetUnavailable) as error:
        assets.load(cache, f"http://127.0.0.1:{closed_port}", timeout=5)
    message = str(error.value)
    assert message.startswith(f"Could not fetch tus-js-client {assets.VERSION} from http://127.0")
    assert "cannot be reached" in message
    assert f"npm pack tus-js-client@{assets.VERSION}) at {cache / assets.tarball_name()}" in message
    with pytest.raises(assets.AssetUnavailable, match="must be an http"):
        assets.load(cache, "file:///etc")
    assert not cache.exists()


def test_a_failed_fetch_is_not_tried_again_for_a_minute(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from filebox import assets

    monkeypatch.setattr(assets, "RETRY_AFTER", 60.0)
    registry.integrity = "sha512-other"
    with pytest.raises(assets.AssetUnavailable) as first:
        assets.load(tmp_path, registry.url)
    with pytest.raises(assets.AssetUnavailable) as again:
        assets.load(tmp_path, registry.url)
    assert again.value is first.value and len(registry.requests) == 1
    # Once the minute is over, it is asked again.
    registry.integrity = assets.INTEGRITY
    monkeypatch.setattr(assets, "RETRY_AFTER", 0.0)
    assert assets.load(tmp_path, registry.url).files["tus.min.js"]
    assert len(registry.requests) == 3


def test_a_registry_answering_nonsense_or_too_much_is_refused(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from filebox import assets

    with monkeypatch.context() as patch:
        patch.setattr(registry, "document", lambda: b"<html>a captive portal</html>")
        with pytest.raises(assets.AssetUnavailable, match="does not describe the package"):
            assets.load(tmp_path, registry.url)
    registry.tarball = bytes(assets.MAX_TARBALL + 10)
    with pytest.raises(assets.AssetUnavailable, match="sent more than"):
        assets.load(tmp_path, registry.url)


# The app's tus endpoint, through WSGI.


@pytest.fixture
def app(tarball: bytes, data_dir: Path) -> Any:
    from filebox.settings import from_env
    from flask_app import create_app
    from webtest import TestApp

    return TestApp(create_app(from_env({"FILEBOX_DATA": str(data_dir)})))


def tus_upload(app: Any, name: str, data: bytes, status: int = 204) -> Any:
    """Send ``data`` as one tus upload in two PATCHes; return the last answer."""
    metadata = f"filename {base64.b64encode(name.encode()).decode()}"
    created = app.post(
        "/uploads",
        headers={**TUS, "Upload-Length": str(len(data)), "Upload-Metadata": metadata},
    )
    assert created.status_int == 201
    location = created.headers["Location"]
    half = len(data) // 2
    answer = None
    for offset, piece in ((0, data[:half]), (half, data[half:])):
        answer = app.patch(
            location,
            piece,
            headers={
                **TUS,
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": str(offset),
            },
            expect_errors=True,
        )
    assert answer is not None and answer.status_int == status, answer
    answer.location = location
    return answer


def test_the_tus_endpoint_makes_documents_as_the_form_does(app: Any, data_dir: Path) -> None:
    photo = make_jpeg((600, 400))
    tus_upload(app, "bay.jpg", photo)
    tus_upload(app, "Überblick ☃.txt", b"hello\n")
    page = app.get("/")
    names = [a.text for a in page.html.select("#files a.open")]
    assert names == ["Überblick ☃.txt", "bay.jpg"]
    assert page.html.select("#files img.thumb")  # the photo got its thumbnail
    text_url = page.html.select("#files a.open")[0]["href"]
    assert app.get(text_url).body == b"hello\n"
    # Stored: the text, the photo and its thumbnail; the tus server's copies are gone.
    assert len(stored_files(data_dir / "files")) == 3


def test_a_damaged_image_sent_by_tus_is_refused_and_forgotten(app: Any, data_dir: Path) -> None:
    answer = tus_upload(app, "cut.jpg", make_jpeg((600, 400))[:1500], status=400)
    assert answer.text.startswith("cut.jpg was not stored: This image is damaged")
    assert app.get("/").html.select("#files") == []
    assert stored_files(data_dir / "files") == []
    # Resuming it finds nothing: the client starts again, rather than call it done.
    assert app.head(answer.location, headers=TUS, expect_errors=True).status_int == 404


def test_a_file_no_row_could_take_is_sent_again_not_lost(app: Any, data_dir: Path) -> None:
    import sqlite3

    import sqlalchemy.exc
    import sqlalchemy.orm

    with contextlib.closing(sqlite3.connect(data_dir / "filebox.sqlite")) as database:
        database.execute("DROP TABLE documents")
    created = app.post("/uploads", headers={**TUS, "Upload-Length": "5"})
    location = created.headers["Location"]
    patch = {**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    with pytest.raises(sqlalchemy.exc.OperationalError, match="no such table: documents"):
        app.patch(location, b"hello", headers=patch)
    # Forgotten, so the client's retry sends the file again: not told by HEAD
    # that it is done, with no row to show for it.
    assert app.head(location, headers=TUS, expect_errors=True).status_int == 404
    # The tus server's copy is gone, and the column's goes with the object that
    # no row took: depot's tracking deletes the files of a dropped object at the
    # end of the next transaction. Here, while the depot is configured, not in
    # whichever later test collects it (which then logged an error).
    gc.collect()
    with sqlalchemy.orm.Session(sqlalchemy.create_engine("sqlite://")) as session:
        session.execute(sqlalchemy.text("SELECT 1"))
        session.commit()  # any session's transaction end deletes what dropped objects left
    assert stored_files(data_dir / "files") == []


def test_an_empty_file_by_tus_is_a_document(app: Any) -> None:
    headers = {**TUS, "Upload-Length": "0", "Upload-Metadata": "filename ZW1wdHkudHh0"}
    assert app.post("/uploads", headers=headers).status_int == 201
    page = app.get("/")
    assert [a.text for a in page.html.select("#files a.open")] == ["empty.txt"]
    assert page.html.select_one("#files td.size").text == "0 bytes"


def test_the_script_is_served_for_good_and_nothing_else_under_assets(app: Any) -> None:
    from filebox import assets

    url = assets.Bundle.url("tus.min.js")
    answer = app.get(url)
    assert answer.content_type == "text/javascript"
    assert "immutable" in answer.headers["Cache-Control"]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert app.get(url, headers={"If-None-Match": answer.headers["ETag"]}).status_int == 304
    assert app.get(assets.Bundle.url("LICENSE")).content_type == "text/plain"
    for other in ("package.json", "..%2F..%2Fsettings.py", "tus.js"):
        assert app.get(assets.Bundle.url(other), expect_errors=True).status_int == 404
    assert app.get("/assets/tus-js-client-0.1/tus.min.js", expect_errors=True).status_int == 404
    assert 'id="resumable" class="notice"' in app.get("/").text


def test_on_s3_the_tus_endpoint_stores_in_the_bucket(
    tarball: bytes,
    data_dir: Path,
    s3_endpoint: dict[str, str],
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from filebox.settings import from_env
    from flask_app import create_app
    from webtest import TestApp

    from tests.backends.s3 import remove_bucket

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_endpoint["access_key_id"] or "anonymous")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_endpoint["secret_access_key"] or "anonymous")
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_endpoint["region_name"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint["endpoint_url"])
    env = {"FILEBOX_DATA": str(data_dir), "DEPOT_BACKEND": "s3", "DEPOT_S3_BUCKET": "filebox-tus"}
    try:
        app = TestApp(create_app(from_env(env)))
        page = app.get("/")
        assert page.html.select_one("#resumable").text.startswith("Files are sent in pieces")
        assert "data-tus-endpoint" in page.text and "tus.min.js" in page.text
        tus_upload(app, "notes.txt", b"kept in the bucket\n")
        page = app.get("/")
        link = page.html.select_one("#files a.open")
        assert link.text == "notes.txt"
        assert app.get(link["href"]).body == b"kept in the bucket\n"
    finally:
        remove_bucket(s3_client, "filebox-tus")
