"""The HTTP rules of both front ends, per backend: routing, HTTP semantics, safe defaults.

Each rule runs on the WSGI middleware (through WebTest) and on the ASGI
middleware (through httpx), the ``front_end`` fixture of tests/frontends.py;
what only WSGI has (``wsgi.file_wrapper``, FileServeApp) is tested on it alone.
"""

from __future__ import annotations

import email.utils
import io
import json
import logging
import os
import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from depot.exceptions import BackendUnavailableError, StoredFileNotFoundError
from depot.io.interfaces import FileStorage
from depot.io.local import LocalFileStorage
from depot.io.memory import MemoryFileStorage, MemoryStoredFile
from depot.manager import DepotManager
from depot.middleware import DepotMiddleware, FileServeApp, _FileIter
from tests import frontends
from tests.frontends import Client, FrontEnd

DATA = bytes(range(256)) * 40  # 10,240 bytes
MISSING = "00000000-0000-4000-8000-000000000000"

front_end = frontends.front_end  # the fixture: every rule on WSGI and on ASGI


def wrapped_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the application"]


@pytest.fixture
def app(front_end: FrontEnd, default_depot: FileStorage) -> Client:
    return front_end.client(front_end.make_middleware())


@pytest.fixture
def stored(default_depot: FileStorage) -> Any:
    return default_depot.get(
        default_depot.create(DATA, filename="data.bin", content_type="image/png")
    )


@pytest.fixture
def url(stored: Any) -> str:
    return f"/depot/default/{stored.file_id}"


def http_date(dt) -> str:
    return email.utils.format_datetime(
        dt.replace(tzinfo=__import__("datetime").timezone.utc), usegmt=True
    )


# --- routing ---------------------------------------------------------------------


def test_url_for_is_filedepots(front_end: FrontEnd, app: Client, stored: Any) -> None:
    assert DepotManager.url_for(f"default/{stored.file_id}") == f"/depot/default/{stored.file_id}"
    assert front_end.middleware(mountpoint="/files/").url_for("a/b") == "/files/a/b"


def test_get_serves_the_file_with_its_headers(app: Client, stored: Any, url: str) -> None:
    response = app.get(url)
    assert response.status_int == 200
    assert response.body == DATA
    h = response.headers
    assert h["Content-Type"] == "image/png"
    assert h["Content-Length"] == str(len(DATA))
    assert re.fullmatch(r'"[0-9a-f]{32}"', h["ETag"])
    assert h["Last-Modified"] == http_date(stored.last_modified)
    assert h["Cache-Control"] == "public, max-age=604800"
    expires = email.utils.parsedate_to_datetime(h["Expires"])
    assert expires - email.utils.parsedate_to_datetime(h["Last-Modified"]) >= timedelta(days=6)
    assert h["Accept-Ranges"] == "bytes"
    assert h["X-Content-Type-Options"] == "nosniff"
    # filedepot's exact header for a file it served inline
    assert h["Content-Disposition"] == "inline;filename=\"data.bin\";filename*=utf-8''data.bin"
    assert "Content-Security-Policy" not in h


def test_etag_is_stable_and_changes_with_the_content(
    app: Client, default_depot, stored, url
) -> None:
    etag = app.get(url).headers["ETag"]
    assert app.get(url).headers["ETag"] == etag
    default_depot.replace(stored.file_id, b"other bytes")
    assert app.get(url).headers["ETag"] != etag


@pytest.mark.parametrize("path", ["/", "/other", "/depotx/default/x", "/static/depot"])
def test_requests_outside_the_mountpoint_reach_the_app(app: Client, path: str) -> None:
    assert app.get(path).body == b"the application"


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_other_methods_reach_the_app(app: Client, url: str, method: str) -> None:
    assert getattr(app, method)(url).body == b"the application"


def test_mountpoint_must_be_absolute(front_end: FrontEnd) -> None:
    with pytest.raises(ValueError, match="must be an absolute path starting with '/'"):
        front_end.middleware(mountpoint="depot")


@pytest.mark.parametrize(
    "path",
    [
        "/depot",
        "/depot/",
        "/depot/default",
        "/depot/default/",
        "/depot/nodepot/" + MISSING,
        "/depot/default/" + MISSING,
        "/depot/default/not-an-id",
        "/depot/default/..%2F..%2Fetc",
        "/depot/default/../../etc/passwd",
        "/depot/default/" + MISSING + "/extra",
    ],
)
def test_not_found_is_a_short_plain_404(app: Client, stored: Any, path: str) -> None:
    response = app.get(path, status=404)
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.body == b"File not found."
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_backend_failure_is_a_logged_503(
    front_end: FrontEnd, caplog: pytest.LogCaptureFixture
) -> None:
    class DownStorage(MemoryFileStorage):
        def get(self, file_or_id):
            raise ConnectionRefusedError("storage server down")

    DepotManager._depots["down"] = DownStorage()
    app = front_end.client()
    with caplog.at_level(logging.ERROR, logger="depot.middleware"):
        response = app.get(f"/depot/down/{MISSING}", status=503)
    assert response.body == b"File storage unavailable."
    assert "down" in caplog.text and MISSING in caplog.text


def test_public_url_redirects(front_end: FrontEnd) -> None:
    class PublicFile(MemoryStoredFile):
        public_url = "https://cdn.example.com/x.png"

    class PublicStorage(MemoryFileStorage):
        def get(self, file_or_id):
            plain = super().get(file_or_id)
            return PublicFile(self.files, plain.file_id, self.files[plain.file_id])

    storage = PublicStorage()
    DepotManager._depots["cdn"] = storage
    file_id = storage.create(b"x")
    response = front_end.client().get(f"/depot/cdn/{file_id}", status=301)
    assert response.headers["Location"] == "https://cdn.example.com/x.png"


def test_temporary_redirect_is_a_302_never_cached(front_end: FrontEnd) -> None:
    signed = "https://bucket.example.com/x.png?X-Amz-Expires=60&X-Amz-Signature=abc"

    class SignedFile(MemoryStoredFile):
        def redirect_url(self):
            return signed, False

    class SigningStorage(MemoryFileStorage):
        def get(self, file_or_id):
            plain = super().get(file_or_id)
            return SignedFile(self.files, plain.file_id, self.files[plain.file_id])

    storage = SigningStorage()
    DepotManager._depots["signed"] = storage
    file_id = storage.create(b"x")
    app = front_end.client()
    for method in (app.get, app.head):
        response = method(f"/depot/signed/{file_id}", status=302)
        assert response.headers["Location"] == signed
        assert response.headers["Cache-Control"] == "no-store"


# --- conditional requests ---------------------------------------------------------


def test_if_none_match(app: Client, url: str) -> None:
    etag = app.get(url).headers["ETag"]
    for value in [etag, f'"x", {etag}', "*", f"W/{etag}"]:
        response = app.get(url, headers={"If-None-Match": value}, status=304)
        assert response.body == b""
        for header in ("ETag", "Cache-Control", "Expires", "Last-Modified"):
            assert header in response.headers, header
        assert "Content-Length" not in response.headers or response.headers["Content-Length"] == "0"
    assert app.get(url, headers={"If-None-Match": '"other"'}).status_int == 200


def test_if_modified_since(app: Client, stored: Any, url: str) -> None:
    same = http_date(stored.last_modified)
    later = http_date(stored.last_modified + timedelta(hours=1))
    earlier = http_date(stored.last_modified - timedelta(hours=1))
    assert app.get(url, headers={"If-Modified-Since": same}).status_int == 304
    assert app.get(url, headers={"If-Modified-Since": later}).status_int == 304
    assert app.get(url, headers={"If-Modified-Since": earlier}).status_int == 200


def test_malformed_date_is_ignored_not_a_400(app: Client, url: str) -> None:
    # filedepot answered 400; RFC 9110 §13.1.3 says ignore it.
    assert app.get(url, headers={"If-Modified-Since": "yesterday"}).body == DATA


def test_if_none_match_takes_precedence(app: Client, stored: Any, url: str) -> None:
    later = http_date(stored.last_modified + timedelta(hours=1))
    headers = {"If-None-Match": '"other"', "If-Modified-Since": later}
    assert app.get(url, headers=headers).status_int == 200


def test_if_match(app: Client, url: str) -> None:
    etag = app.get(url).headers["ETag"]
    assert app.get(url, headers={"If-Match": etag}).status_int == 200
    assert app.get(url, headers={"If-Match": f'"a", {etag}'}).status_int == 200
    assert app.get(url, headers={"If-Match": "*"}).status_int == 200
    assert app.get(url, headers={"If-Match": '"other"'}, status=412).body == b"Precondition failed."
    # If-Match compares strongly: a weak tag never matches.
    assert app.get(url, headers={"If-Match": f"W/{etag}"}, status=412)


def test_if_unmodified_since(app: Client, stored: Any, url: str) -> None:
    earlier = http_date(stored.last_modified - timedelta(hours=1))
    later = http_date(stored.last_modified + timedelta(hours=1))
    assert app.get(url, headers={"If-Unmodified-Since": later}).status_int == 200
    assert app.get(url, headers={"If-Unmodified-Since": earlier}, status=412)
    assert app.get(url, headers={"If-Unmodified-Since": "garbage"}).status_int == 200
    # With If-Match, If-Unmodified-Since is not evaluated.
    etag = app.get(url).headers["ETag"]
    assert (
        app.get(url, headers={"If-Match": etag, "If-Unmodified-Since": earlier}).status_int == 200
    )


def test_412_comes_before_304(app: Client, url: str) -> None:
    etag = app.get(url).headers["ETag"]
    app.get(url, headers={"If-Match": '"other"', "If-None-Match": etag}, status=412)


# --- ranges ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=100-", 100, len(DATA)),
        ("bytes=-10", len(DATA) - 10, len(DATA)),
        ("bytes=10000-99999", 10000, len(DATA)),
        ("bytes= 5 - 9", 5, 10),
        ("bytes=-99999", 0, len(DATA)),
    ],
)
def test_single_range(app: Client, url: str, header: str, start: int, stop: int) -> None:
    response = app.get(url, headers={"Range": header}, status=206)
    assert response.body == DATA[start:stop]
    assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{len(DATA)}"
    assert response.headers["Content-Length"] == str(stop - start)
    assert response.headers["Content-Type"] == "image/png"


@pytest.mark.parametrize("header", ["bytes=20000-", "bytes=10240-10300", "bytes=-0"])
def test_unsatisfiable_range(app: Client, url: str, header: str) -> None:
    response = app.get(url, headers={"Range": header}, status=416)
    assert response.headers["Content-Range"] == f"bytes */{len(DATA)}"


@pytest.mark.parametrize(
    "header",
    [
        "bytes=5-4",
        "bytes=abc",
        "items=0-1",
        "bytes=0-1x",
        "bytes=",
        "bytes=-",
        "0-1",
        "bytes=" + ",".join(f"{i}-{i}" for i in range(101)),
        "bytes=0-,0-,0-",
        "bytes=0-9000,100-5000",
    ],
)
def test_ignored_range_sends_the_whole_file(app: Client, url: str, header: str) -> None:
    response = app.get(url, headers={"Range": header}, status=200)
    assert response.body == DATA


def test_several_ranges_are_multipart(app: Client, url: str) -> None:
    response = app.get(url, headers={"Range": "bytes=0-9,100-109,-5"}, status=206)
    content_type = response.headers["Content-Type"]
    boundary = re.fullmatch(r"multipart/byteranges; boundary=(\w+)", content_type).group(1)
    assert "Content-Range" not in response.headers
    assert response.headers["Content-Length"] == str(len(response.body))
    parts = response.body.split(f"--{boundary}".encode())
    assert parts[0] == b"" and parts[-1] == b"--\r\n"
    expected = [(0, 10), (100, 110), (len(DATA) - 5, len(DATA))]
    for part, (start, stop) in zip(parts[1:-1], expected, strict=True):
        head, body = part.split(b"\r\n\r\n", 1)
        assert b"Content-Type: image/png" in head
        assert f"Content-Range: bytes {start}-{stop - 1}/{len(DATA)}".encode() in head
        assert body == DATA[start:stop] + b"\r\n"


def test_one_satisfiable_range_among_several_is_a_plain_206(app: Client, url: str) -> None:
    response = app.get(url, headers={"Range": "bytes=0-9,99999-"}, status=206)
    assert response.headers["Content-Range"] == f"bytes 0-9/{len(DATA)}"


def test_if_range(app: Client, stored: Any, url: str) -> None:
    etag = app.get(url).headers["ETag"]
    last_modified = http_date(stored.last_modified)
    for validator, status in [
        (etag, 206),
        ('"stale"', 200),
        (f"W/{etag}", 200),
        (last_modified, 206),
        (http_date(stored.last_modified - timedelta(hours=1)), 200),
    ]:
        response = app.get(url, headers={"Range": "bytes=0-9", "If-Range": validator})
        assert response.status_int == status, validator


# --- HEAD --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 200),
        ({"Range": "bytes=0-9"}, 206),
        ({"Range": "bytes=0-1,5-6"}, 206),
        ({"Range": "bytes=99999-"}, 416),
    ],
)
def test_head_answers_like_get_without_reading(
    app: Client, url: str, stored: Any, monkeypatch: pytest.MonkeyPatch, headers: dict, status: int
) -> None:
    get = app.get(url, headers=headers, status=status)
    monkeypatch.setattr(type(stored), "read", lambda *a: pytest.fail("HEAD read the file"))
    head = app.head(url, headers=headers, status=status)
    assert head.body == b""
    ignore = {"expires", "content-type", "content-length"}  # time; boundary; 416 text
    assert {k: v for k, v in head.headers.items() if k.lower() not in ignore} == {
        k: v for k, v in get.headers.items() if k.lower() not in ignore
    }
    if status != 416:
        assert head.headers.get("Content-Length") == get.headers.get("Content-Length") or (
            "multipart" in get.headers["Content-Type"]
        )


def test_head_304(app: Client, url: str) -> None:
    etag = app.get(url).headers["ETag"]
    assert app.head(url, headers={"If-None-Match": etag}).status_int == 304


# --- safe by default ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "application/javascript",
        "text/javascript",
        "application/x-unknown",
        "application/octet-stream",
        "text/html; charset=utf-8",
    ],
)
def test_dangerous_types_are_attachments(app: Client, default_depot, content_type: str) -> None:
    file_id = default_depot.create(b"<script>alert(1)</script>", "x.html", content_type)
    response = app.get(f"/depot/default/{file_id}")
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Content-Security-Policy"] == "sandbox"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "content_type",
    [
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "video/mp4",
        "audio/mpeg",
        "application/pdf",
        "text/plain",
        "text/plain; charset=utf-8",
    ],
)
def test_harmless_types_stay_inline(app: Client, default_depot, content_type: str) -> None:
    file_id = default_depot.create(b"x", "x", content_type)
    response = app.get(f"/depot/default/{file_id}")
    assert response.headers["Content-Disposition"].startswith("inline;")
    assert "Content-Security-Policy" not in response.headers


def test_inline_types_is_an_option(front_end: FrontEnd, default_depot) -> None:
    app = front_end.client(inline_types=["text/html", "image/*"])
    html = default_depot.create(b"<p>", "p.html")
    png = default_depot.create(b"x", "p.png")
    pdf = default_depot.create(b"x", "p.pdf")
    assert app.get(f"/depot/default/{html}").headers["Content-Disposition"].startswith("inline")
    assert app.get(f"/depot/default/{png}").headers["Content-Disposition"].startswith("inline")
    assert app.get(f"/depot/default/{pdf}").headers["Content-Disposition"].startswith("attachment")


@pytest.mark.parametrize(
    "name",
    ["a\r\nSet-Cookie: x=1.png", 'q".png', "back\\slash.png", "\u043a\u043e\u0442 \U0001f408.png"],
)
def test_filenames_cannot_inject_headers(app: Client, default_depot, name: str) -> None:
    file_id = default_depot.create(b"x", name, "image/png")
    response = app.get(f"/depot/default/{file_id}")  # WebTest's lint rejects bad headers
    assert "Set-Cookie" not in response.headers
    value = response.headers["Content-Disposition"]
    assert re.fullmatch(
        r'inline;filename="(?:[^"\\\x00-\x1f]|\\.)*";filename\*=utf-8\'\'[^\s"]+', value
    ), value


def test_stored_content_type_cannot_inject_headers(app: Client, default_depot) -> None:
    file_id = default_depot.create(b"x", "x", "text/plain\r\nSet-Cookie: a=b")
    response = app.get(f"/depot/default/{file_id}")
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert "Set-Cookie" not in response.headers


# --- streaming --------------------------------------------------------------------------


def call(middleware, path: str, **environ: Any):
    from webob import Request

    request = Request.blank(path, environ=environ)
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"] = status

    return middleware(request.environ, start_response), captured


def test_file_goes_to_the_servers_file_wrapper(default_depot, stored, url) -> None:
    seen = []

    def file_wrapper(filelike, block_size):
        seen.append(filelike)
        return iter([filelike.read()])

    body, _ = call(DepotMiddleware(wrapped_app), url, **{"wsgi.file_wrapper": file_wrapper})
    assert b"".join(body) == DATA
    if isinstance(default_depot, LocalFileStorage):  # a real descriptor: servers can sendfile() it
        import os

        assert os.fstat(seen[0].fileno()).st_size == len(DATA)
    else:
        # No descriptor: the server's wrapper would only read() it; depot reads
        # the first block itself before answering, so the answer cannot break.
        assert seen == []
        assert isinstance(body, _FileIter)


def test_replace_wsgi_filewrapper(default_depot, url) -> None:
    def refuse(*args):
        pytest.fail("the server's wrapper was used")

    middleware = DepotMiddleware(wrapped_app, replace_wsgi_filewrapper=True)
    body, _ = call(middleware, url, **{"wsgi.file_wrapper": refuse})
    assert isinstance(body, _FileIter)
    assert b"".join(body) == DATA


@pytest.mark.parametrize(
    "headers", [{}, {"HTTP_RANGE": "bytes=0-5000"}, {"HTTP_RANGE": "bytes=0-1,5-6"}]
)
def test_closing_the_body_closes_the_file(default_depot, stored, url, monkeypatch, headers) -> None:
    opened = []
    original_get = type(default_depot).get
    monkeypatch.setattr(
        type(default_depot),
        "get",
        lambda self, fid: opened.append(original_get(self, fid)) or opened[-1],
    )
    body, _ = call(DepotMiddleware(wrapped_app), url, **headers)
    next(iter(body))  # the client went away after the first block
    body.close()
    assert opened[0].closed


# --- offload to the front server -----------------------------------------------------


@pytest.mark.parametrize("offload", ["x-accel-redirect", "x-sendfile"])
def test_offload_headers(front_end: FrontEnd, tmp_path, offload: str) -> None:
    local = DepotManager.configure("default", {"depot.storage_path": str(tmp_path / "f")})
    memory = DepotManager.configure("mem", {"depot.backend": "memory"})
    app = front_end.client(offload=offload, offload_location="/_internal/")
    file_id = local.create(b"abc", "a.txt")
    response = app.get(f"/depot/default/{file_id}")
    assert response.body == b""
    if offload == "x-accel-redirect":
        assert response.headers["X-Accel-Redirect"] == f"/_internal/default/{file_id}/file"
    else:
        assert response.headers["X-Sendfile"] == str(tmp_path / "f" / file_id / "file")
    assert response.headers["Content-Disposition"].startswith("inline;")
    etag = response.headers["ETag"]
    assert app.get(f"/depot/default/{file_id}", headers={"If-None-Match": etag}).status_int == 304
    # Files not on this disk are served by depot itself.
    mem_id = memory.create(b"abc")
    served = app.get(f"/depot/mem/{mem_id}")
    assert served.body == b"abc"
    assert "X-Accel-Redirect" not in served.headers and "X-Sendfile" not in served.headers


def test_offload_must_be_known(front_end: FrontEnd) -> None:
    with pytest.raises(ValueError, match="offload must be one of x-accel-redirect, x-sendfile"):
        front_end.middleware(offload="x-lighttpd")


# --- stored values written by other programs (issue 12) -----------------------------------


def plant(storage: FileStorage, file_id: str, **metadata: Any) -> None:
    """Overwrite stored metadata directly, as another program (or an older version) could."""
    if isinstance(storage, MemoryFileStorage):
        storage.files[file_id]["metadata"].update(metadata)
        return
    assert isinstance(storage, LocalFileStorage), storage
    path = os.path.join(storage.storage_path, file_id, "metadata.json")
    with open(path) as f:
        stored = json.load(f)
    stored.update(metadata)
    with open(path, "w") as f:
        json.dump(stored, f)


@pytest.fixture(params=["memory", "local"])
def writable(request: pytest.FixtureRequest, tmp_path) -> FileStorage:
    """A depot 'default' whose metadata the test can overwrite (memory or local)."""
    if request.param == "memory":
        return DepotManager.configure("default", {"depot.backend": "memory"})
    return DepotManager.configure(
        "default", {"depot.storage_path": str(tmp_path / "files"), "depot.fsync": "false"}
    )


def assert_pep3333_headers(headers: list[tuple[str, str]]) -> None:
    for name, value in headers:
        assert re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name), name
        value.encode("latin-1")
        assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value), (name, value)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html\r\n\r\n;x=y",
        "text/html\n;x=y",
        "text/html\x0b;x=y",
        "text/html\x1c;x=y",
        "text/html;\x1fx=y",
        "text/html;\x85x=y",
        "text/html;\u2028x=y",
        "text/html;x=\u00e9",
        "t\u0435xt/html",  # a Cyrillic e
        "text/html;x=\U0001f408",
        "text/\u00a0html",
    ],
)
def test_unsafe_stored_content_type_is_never_sent(
    front_end: FrontEnd, writable, content_type: str
) -> None:
    file_id = writable.create(b"<script>alert(1)</script>", "x.html", "text/plain")
    plant(writable, file_id, content_type=content_type)
    response = front_end.client().get(f"/depot/default/{file_id}")
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Content-Security-Policy"] == "sandbox"
    assert response.body == b"<script>alert(1)</script>"
    assert_pep3333_headers(response.headerlist)


@pytest.mark.parametrize(
    "name", ["caf\udce9.txt", "\udcff", "\udc80\udc80.png", "a\udce9\r\n\x00\x7f.pdf"]
)
def test_lone_surrogate_filename_is_served(front_end: FrontEnd, writable, name: str) -> None:
    # Names os.fsdecode() makes of bytes that are not UTF-8, stored before
    # store-side normalisation existed.
    file_id = writable.create(b"bytes", "x.txt", "text/plain")
    plant(writable, file_id, filename=name)
    app = front_end.client()
    response = app.get(f"/depot/default/{file_id}")
    assert response.body == b"bytes"
    assert "%EF%BF%BD" in response.headers["Content-Disposition"]
    assert_pep3333_headers(response.headerlist)
    assert app.head(f"/depot/default/{file_id}").status_int == 200


@pytest.mark.parametrize(
    ("name", "extension"),
    [
        ("a" * 20000 + ".pdf", ".pdf"),
        ("\u732b" * 20000 + ".png", ".png"),
        ("\U0001f408" * 300 + ".tar.gz", ".gz"),
        ('"\\' * 10000 + ".txt", ".txt"),
        ("\x01" * 20000, ""),
    ],
)
def test_long_filename_gives_a_bounded_header_keeping_the_extension(
    front_end: FrontEnd, writable, name: str, extension: str
) -> None:
    file_id = writable.create(b"x", "x", "image/png")
    plant(writable, file_id, filename=name)  # as stored before names were bounded
    response = front_end.client().get(f"/depot/default/{file_id}")
    value = response.headers["Content-Disposition"]
    assert len(value) < 1024, len(value)
    fallback, encoded = re.fullmatch(
        r'\w+;filename="(.*)";filename\*=utf-8\'\'(.*)', value
    ).groups()
    assert fallback.endswith(extension) and encoded.endswith(extension)
    assert_pep3333_headers(response.headerlist)


# A checksum that is no string at all is corrupt metadata (a 503), tested with
# the storage contract.
@pytest.mark.parametrize(
    "checksum", ['sha256:"\r\nSet-Cookie: a=b', "sha256:\u00e9\u00e9", "sha256:", "md5"]
)
def test_etag_from_an_unusable_checksum_falls_back_to_time_and_size(
    front_end: FrontEnd, writable, checksum
) -> None:
    file_id = writable.create(b"abc", "a.txt")
    if isinstance(writable, LocalFileStorage):
        with open(os.path.join(writable.storage_path, file_id, "checksum"), "w") as f:
            f.write(str(checksum))
    else:
        plant(writable, file_id, checksum=checksum)
    response = front_end.client().get(f"/depot/default/{file_id}")
    assert re.fullmatch(r'"\d+-3"', response.headers["ETag"]), response.headers["ETag"]
    assert_pep3333_headers(response.headerlist)


@pytest.mark.parametrize("length", [-5, "10", 2.5, True, None, 10**30])
def test_invalid_stored_length(
    front_end: FrontEnd,
    caplog: pytest.LogCaptureFixture,
    length: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    memory = DepotManager.configure("default", {"depot.backend": "memory"})
    file_id = memory.create(b"abc", "a.txt")
    plant(memory, file_id, content_length=length)
    app = front_end.client()
    with caplog.at_level(logging.ERROR, logger="depot.middleware"):
        response = app.get(f"/depot/default/{file_id}", expect_errors=True)
    # Sent as Content-Length and used for ranges: not served rather than
    # answered with a body that does not match it.
    assert response.status_int == 503
    assert file_id in caplog.text


# --- client headers that cannot be converted (issue 12) -----------------------------------

HUGE = "9" * 5000  # more digits than int() converts by default


@pytest.mark.parametrize(
    ("header", "status", "body"),
    [
        (f"bytes=0-{HUGE}", 206, DATA),
        (f"bytes={HUGE}-", 416, None),
        (f"bytes={HUGE}-{HUGE}9", 416, None),
        (f"bytes=-{HUGE}", 206, DATA),
        (f"bytes={'0' * 5000}1-{'0' * 5000}2", 206, DATA[1:3]),
        (f"bytes=0-0,{HUGE}-", 206, DATA[:1]),
        (f"bytes={HUGE}-1", 200, DATA),  # inverted: malformed, ignored
        ("bytes=\u0661-\u0662", 200, DATA),  # Arabic-Indic digits are not digits here
        ("bytes=1-2\u00a0", 200, DATA),
        ("bytes=1-2\x0b", 200, DATA),
    ],
)
def test_absurd_range_numbers(app: Client, url: str, header: str, status: int, body) -> None:
    response = app.get(url, headers={"Range": header}, status=status)
    if body is not None:
        assert response.body == body
    else:
        assert response.headers["Content-Range"] == f"bytes */{len(DATA)}"


UNCONVERTIBLE_DATES = [
    "Fri, 01 Jan 10000 00:00:00 GMT",
    "Mon, 01 Jan 99999999999999999999 00:00:00 GMT",
    "Mon, 01 Jan 2024 00:00:00 +99999999999",
    "Mon, 01 Jan 2024 99999999999:00:00 GMT",
]


@pytest.mark.parametrize("date", UNCONVERTIBLE_DATES)
@pytest.mark.parametrize("header", ["If-Modified-Since", "If-Unmodified-Since"])
def test_unconvertible_dates_are_ignored(app: Client, url: str, header: str, date: str) -> None:
    assert app.get(url, headers={header: date}, status=200).body == DATA
    assert app.head(url, headers={header: date}, status=200).body == b""


@pytest.mark.parametrize("date", UNCONVERTIBLE_DATES)
def test_unconvertible_if_range_date_sends_the_whole_file(app: Client, url: str, date) -> None:
    response = app.get(url, headers={"Range": "bytes=0-9", "If-Range": date}, status=200)
    assert response.body == DATA


def test_if_range_needs_one_strong_validator(app: Client, url: str) -> None:
    etag = app.get(url).headers["ETag"]
    assert app.get(url, headers={"Range": "bytes=0-9", "If-Range": etag}).status_int == 206
    for value in [f"{etag}, {etag}", f'"x", {etag}', f"{etag}, *", "*", f" {etag}x", etag[:-1]]:
        response = app.get(url, headers={"Range": "bytes=0-9", "If-Range": value}, status=200)
        assert response.body == DATA, value


# --- empty files (issue 12) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("bytes=-5", 200),  # RFC 9110 §14.1.2: satisfiable, yet no Content-Range fits
        ("bytes=-1,-2", 200),
        ("bytes=0-0,-5", 200),
        ("bytes=0-0", 416),
        ("bytes=0-", 416),
        ("bytes=-0", 416),
    ],
)
def test_ranges_on_an_empty_file(app: Client, default_depot, header: str, status: int) -> None:
    file_id = default_depot.create(b"", "empty.txt", "text/plain")
    for method in (app.get, app.head):
        response = method(f"/depot/default/{file_id}", headers={"Range": header}, status=status)
        if status == 200:
            assert response.body == b""
            assert "Content-Range" not in response.headers
            assert response.headers["Content-Length"] == "0"
        else:
            assert response.headers["Content-Range"] == "bytes */0"


# --- the bytes vanish or fail after get() (issue 12) ----------------------------------------


class FailingFile(MemoryStoredFile):
    """A file whose bytes cannot be read, though its metadata could."""

    error: BaseException = FileNotFoundError("gone")

    def read(self, n: int = -1) -> bytes:
        raise self.error

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        raise self.error


class FailingStorage(MemoryFileStorage):
    def get(self, file_or_id):
        plain = super().get(file_or_id)
        return FailingFile(self.files, plain.file_id, self.files[plain.file_id])


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (FileNotFoundError("deleted meanwhile"), 404),
        (IsADirectoryError("is a directory"), 503),
        (ConnectionResetError("storage server went away"), 503),
        (BackendUnavailableError("throttled"), 503),
        (StoredFileNotFoundError(MISSING, "here"), 404),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"Range": "bytes=0-1"}, {"Range": "bytes=0-1,3-4"}])
def test_unreadable_bytes_answer_404_or_503_before_the_status_line(
    front_end: FrontEnd, monkeypatch, caplog, error: BaseException, status: int, headers: dict
) -> None:
    monkeypatch.setattr(FailingFile, "error", error)
    storage = DepotManager._depots["default"] = FailingStorage()
    file_id = storage.create(b"hello world", "a.txt")
    app = front_end.client()
    url = f"/depot/default/{file_id}"
    with caplog.at_level(logging.ERROR, logger="depot.middleware"):
        response = app.get(url, headers=headers, status=status)
    assert response.body in (b"File not found.", b"File storage unavailable.")
    if status == 503:
        assert file_id in caplog.text
    # Neither HEAD nor a 304 reads the bytes.
    assert app.head(url, headers=headers).status_int in (200, 206)
    etag = app.head(url).headers["ETag"]
    assert app.get(url, headers={"If-None-Match": etag}).status_int == 304


@pytest.mark.parametrize("headers", [{}, {"Range": "bytes=0-1"}, {"Range": "bytes=0-1,3-4"}])
@pytest.mark.parametrize("how", ["deleted", "directory"])
def test_data_file_gone_after_get(
    front_end: FrontEnd, tmp_path, monkeypatch, headers: dict, how: str
) -> None:
    storage = DepotManager.configure("default", {"depot.storage_path": str(tmp_path / "f")})
    original_get = LocalFileStorage.get

    def get_then_lose_the_data(self, file_or_id):
        stored = original_get(self, file_or_id)
        os.remove(stored._file_path)  # a concurrent delete, between get() and the body
        if how == "directory":
            os.mkdir(stored._file_path)
        return stored

    monkeypatch.setattr(LocalFileStorage, "get", get_then_lose_the_data)
    for sendfile in (False, True):  # wsgi.file_wrapper / http.response.zerocopysend
        file_id = storage.create(b"hello world", "a.txt")
        response = front_end.client(sendfile=sendfile).get(
            f"/depot/default/{file_id}", headers=headers, expect_errors=True
        )
        # get() holds the data open: the version it opened is served, whole,
        # whatever happened to the path since (the 404/503 path for backends
        # that open later is test_unreadable_bytes_answer_404_or_503_...).
        if "Range" not in headers:
            assert (response.status_int, response.body) == (200, b"hello world")
        elif "," not in headers["Range"]:
            assert (response.status_int, response.body) == (206, b"he")
        else:
            assert response.status_int == 206
            assert b"\r\n\r\nhe\r\n" in response.body and b"\r\n\r\nlo\r\n" in response.body
        assert response.headers["Content-Length"] == str(len(response.body))


# --- aliases, redirects and offload headers (issue 12) -------------------------------------


def test_x_accel_redirect_through_an_alias_names_the_depot(front_end: FrontEnd, tmp_path) -> None:
    local = DepotManager.configure("default", {"depot.storage_path": str(tmp_path / "f")})
    DepotManager.alias("legacy", "default")
    file_id = local.create(b"abc", "a.txt")
    app = front_end.client(offload="x-accel-redirect")
    response = app.get(f"/depot/legacy/{file_id}")
    assert response.headers["X-Accel-Redirect"] == f"/_depot/default/{file_id}/file"


def test_x_sendfile_path_a_header_cannot_carry_is_served_by_depot(
    front_end: FrontEnd, tmp_path
) -> None:
    storage_path = tmp_path / "odd\r\nname"
    local = DepotManager.configure("default", {"depot.storage_path": str(storage_path)})
    file_id = local.create(b"abc", "a.txt")
    response = front_end.client(offload="x-sendfile").get(f"/depot/default/{file_id}")
    assert "X-Sendfile" not in response.headers
    assert response.body == b"abc"
    assert_pep3333_headers(response.headerlist)


def test_x_sendfile_non_ascii_path_is_sent_as_its_bytes(front_end: FrontEnd, tmp_path) -> None:
    storage_path = tmp_path / "m\u00e9dias"
    local = DepotManager.configure("default", {"depot.storage_path": str(storage_path)})
    file_id = local.create(b"abc", "a.txt")
    response = front_end.client(offload="x-sendfile").get(f"/depot/default/{file_id}")
    sent = response.headers["X-Sendfile"].encode("latin-1")
    assert sent == os.fsencode(storage_path / file_id / "file")


@pytest.mark.parametrize(
    ("location", "sent"),
    [
        ("https://cdn.example.com/x.png", "https://cdn.example.com/x.png"),
        ("https://cdn.example.com/caf\u00e9 x.png", "https://cdn.example.com/caf%C3%A9%20x.png"),
        (
            "https://cdn.example.com/x\r\nSet-Cookie: a=b",
            "https://cdn.example.com/x%0D%0ASet-Cookie:%20a=b",
        ),
        ("https://cdn.example.com/\udcff", "https://cdn.example.com/%3F"),
    ],
)
def test_redirect_location_is_a_valid_header(front_end: FrontEnd, location: str, sent: str) -> None:
    class OddFile(MemoryStoredFile):
        def redirect_url(self):
            return location, False

    class OddStorage(MemoryFileStorage):
        def get(self, file_or_id):
            plain = super().get(file_or_id)
            return OddFile(self.files, plain.file_id, self.files[plain.file_id])

    storage = DepotManager._depots["odd"] = OddStorage()
    file_id = storage.create(b"x")
    response = front_end.client().get(f"/depot/odd/{file_id}", status=302)
    assert response.headers["Location"] == sent
    assert "Set-Cookie" not in response.headers
    assert_pep3333_headers(response.headerlist)


def _serve_app() -> FileServeApp:
    storage = DepotManager.configure("dates", {"depot.backend": "memory"})
    return FileServeApp(storage.get(storage.create(b"x")), 60)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Sun, 06 Nov 1994 08:49:37 GMT", datetime(1994, 11, 6, 8, 49, 37)),
        ("Sun, 06 Nov 1994 10:49:37 +0200", datetime(1994, 11, 6, 8, 49, 37)),
        ("not a date", None),
        ("", None),
        ("Sun, 06 Nov 99999 08:49:37 GMT", None),
    ],
)
def test_filedepots_parse_date_gives_naive_utc_or_none(
    value: str, expected: datetime | None
) -> None:
    assert _serve_app().parse_date(value) == expected


def test_filedepots_make_date_formats_datetimes_and_timestamps() -> None:
    assert FileServeApp.make_date(datetime(1994, 11, 6, 8, 49, 37)) == (
        "Sun, 06 Nov 1994 08:49:37 GMT"
    )
    assert FileServeApp.make_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
