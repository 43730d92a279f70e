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
