"""Hostile review of issue 12's middleware: the URL paths a real server hands it.

PEP 3333 gives PATH_INFO as the request's bytes, percent-decoded, each byte one
character (latin-1). A browser sends a URL that ``url_for`` made with non-ASCII
text in it as UTF-8, so the middleware must read PATH_INFO as UTF-8 to find
its mountpoint, depot and file; bytes that are not UTF-8 find nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from webtest import TestApp

from depot.manager import DepotManager
from depot.middleware import DepotMiddleware


def _app_answer(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the application"]


@pytest.mark.parametrize(
    ("mountpoint", "depot_name"),
    [("/dépot", "default"), ("/depot", "fotos_é"), ("/файлы", "日本"), ("/depot", "default")],
)
def test_a_url_from_url_for_serves_its_file(mountpoint: str, depot_name: str) -> None:
    storage = DepotManager.configure(depot_name, {"depot.backend": "memory"})
    file_id = storage.create(b"hello", filename="a.txt", content_type="text/plain")
    middleware = DepotMiddleware(_app_answer, mountpoint=mountpoint)
    app = TestApp(middleware)
    url = middleware.url_for(f"{depot_name}/{file_id}")
    # What a browser requests for that link: the UTF-8 bytes, percent-encoded.
    for method in (app.get, app.head):
        response = method(quote(url), expect_errors=True)
        assert response.status_int == 200, (url, response.status)
    assert app.get(quote(url)).body == b"hello"


def test_bytes_that_are_not_utf8_find_nothing() -> None:
    storage = DepotManager.configure("default", {"depot.backend": "memory"})
    file_id = storage.create(b"hello", filename="a.txt")
    app = TestApp(DepotManager.make_middleware(_app_answer))
    # Latin-1 bytes: PATH_INFO holds "\xe9", which is no UTF-8.
    assert app.get(f"/depot/default/{file_id}%E9", expect_errors=True).status_int == 404
    assert app.get(f"/depot/d%E9fault/{file_id}", expect_errors=True).status_int == 404
    assert app.get(f"/d%E9pot/default/{file_id}").body == b"the application"
    assert app.get(f"/depot/default/{file_id}").body == b"hello"


def test_a_path_already_decoded_by_a_server_is_read_as_it_is() -> None:
    # Not PEP 3333 (a character above U+00FF), as some test clients give it.
    storage = DepotManager.configure("日本", {"depot.backend": "memory"})
    file_id = storage.create(b"hello", filename="a.txt")
    answered: list[str] = []
    middleware = DepotMiddleware(_app_answer)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": f"/depot/日本/{file_id}",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
    }
    body = b"".join(middleware(environ, lambda status, headers, exc=None: answered.append(status)))
    assert answered == ["200 OK"]
    assert body == b"hello"
