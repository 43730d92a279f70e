"""Smoke tests of the two small examples: plain WSGI (webob only) and Pyramid.

Both reuse the Flask app's models (examples/filebox) and answer the same URLs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from tests.examples.apps import EXAMPLES, make_jpeg

SMALL_APPS = ["wsgi_app", "pyramid_app"]


def make_app(module: str, settings: Any) -> TestApp:
    if module == "pyramid_app":
        pytest.importorskip("pyramid", reason="Pyramid is not installed: pip install -e '.[test]'")
    app_module = __import__(module)
    return TestApp(app_module.make_app(settings))


@pytest.mark.parametrize("module", SMALL_APPS)
def test_is_under_100_lines(module: str) -> None:
    assert len((EXAMPLES / f"{module}.py").read_text().splitlines()) < 100


@pytest.mark.parametrize("module", SMALL_APPS)
def test_upload_list_serve_delete(module: str, settings: Any) -> None:
    app = make_app(module, settings)
    storage = Path(settings.depot["depot.storage_path"])
    assert app.get("/").html.select("tr[data-id]") == []

    photo = make_jpeg()
    files = [("files", "photo.jpg", photo), ("files", "notes.txt", b"notes\n")]
    app.post("/", upload_files=files, status=303)
    rows = {row.a.text: row for row in app.get("/").html.select("tr[data-id]")}
    assert set(rows) == {"photo.jpg", "notes.txt"}
    assert app.get(rows["photo.jpg"].a["href"]).body == photo
    thumb = app.get(rows["photo.jpg"].img["src"])
    assert thumb.content_type == "image/png"
    ranged = app.get(rows["notes.txt"].a["href"], headers={"Range": "bytes=1-2"}, status=206)
    assert ranged.body == b"ot"
    assert len(list(storage.iterdir())) == 3

    app.post(f"/delete/{rows['photo.jpg']['data-id']}", status=303)
    assert [row.a.text for row in app.get("/").html.select("tr[data-id]")] == ["notes.txt"]
    assert len(list(storage.iterdir())) == 1
    assert app.post("/", upload_files=[("files", "", b"")], status=400).html.select(".error")


@pytest.mark.parametrize("module", SMALL_APPS)
def test_a_damaged_image_is_refused_and_the_rest_stored(module: str, settings: Any) -> None:
    app = make_app(module, settings)
    files = [("files", "cut.jpg", make_jpeg((600, 400))[:1500]), ("files", "notes.txt", b"notes\n")]
    response = app.post("/", upload_files=files, status=422)
    assert response.html.select_one(".error").text.startswith(
        "cut.jpg was not stored: This image is damaged or incomplete"
    )
    assert [row.a.text for row in response.html.select("tr[data-id]")] == ["notes.txt"]
    assert len(list(Path(settings.depot["depot.storage_path"]).iterdir())) == 1


@pytest.mark.parametrize("module", SMALL_APPS)
@pytest.mark.parametrize("size", [1024 * 1024 + 1, 3 * 1024 * 1024])
def test_an_upload_over_the_limit_gets_the_page_with_it(
    module: str, size: int, data_dir: Path
) -> None:
    from filebox.settings import from_env

    settings = from_env({"FILEBOX_DATA": str(data_dir), "FILEBOX_MAX_UPLOAD_MB": "1"})
    app = make_app(module, settings)
    response = app.post("/", upload_files=[("files", "big.bin", b"x" * size)], status=413)
    assert response.html.select_one(".error").text == (
        "This upload is larger than the 1.0 MiB accepted at once. Upload fewer or smaller files."
    )
    assert response.html.select("tr[data-id]") == []


@pytest.mark.parametrize("module", SMALL_APPS)
def test_the_favicon_is_served(module: str, settings: Any) -> None:
    app = make_app(module, settings)
    response = app.get("/favicon.ico")
    assert response.content_type == "image/vnd.microsoft.icon"
    assert response.body == (EXAMPLES / "filebox" / "static" / "favicon.ico").read_bytes()
    assert app.get("/").html.select_one("link[rel=icon]")["href"] == "/favicon.ico"
