"""Hostile review of issue 12's HTTP fixes: what their own tests did not try.

FileServeApp serves any StoredFile (filedepot's public class, used by
applications with backends of their own), not only depot's, whose times are
stored to the second.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from webtest import TestApp

from depot.io.interfaces import StoredFile
from depot.middleware import FileServeApp


class _OwnStoredFile(StoredFile):
    """A third-party backend's file, whose time keeps its microseconds."""

    def __init__(self, data: bytes, last_modified: datetime) -> None:
        super().__init__(
            "own-id",
            filename="a.txt",
            content_type="text/plain",
            last_modified=last_modified,
            content_length=len(data),
        )
        self._io = io.BytesIO(data)

    def read(self, n: int | None = -1) -> bytes:
        return self._io.read(n)

    def close(self) -> None:
        self._io.close()

    @property
    def closed(self) -> bool:
        return self._io.closed

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._io.seek(offset, whence)

    def tell(self) -> int:
        return self._io.tell()


WHEN = datetime(2024, 5, 1, 12, 0, 0, 654321)


def _app() -> TestApp:
    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        return FileServeApp(_OwnStoredFile(b"hello world", WHEN), 60)(environ, start_response)

    return TestApp(wsgi)


@pytest.mark.parametrize(
    ("header", "status", "body"),
    [
        # The client sends back the Last-Modified it was given: the file has
        # not changed since that second (RFC 9110 §13.1.3/§13.1.4 compare
        # HTTP-dates, which have no fraction of a second).
        ("If-Unmodified-Since", 200, b"hello world"),
        ("If-Modified-Since", 304, b""),
        ("If-Range", 206, b"h"),
    ],
)
def test_validators_compare_the_time_to_the_second(header: str, status: int, body: bytes) -> None:
    app = _app()
    last_modified = app.get("/").headers["Last-Modified"]
    response = app.get(
        "/",
        headers={header: last_modified, "Range": "bytes=0-0"}
        if header == "If-Range"
        else {header: last_modified},
        expect_errors=True,
    )
    assert response.status_int == status, (header, response.status)
    assert response.body == body


def test_an_aware_time_is_sent_in_utc() -> None:
    zone = timezone(timedelta(hours=2))
    stored = _OwnStoredFile(b"x", datetime(2024, 5, 1, 14, 0, 0, 5, tzinfo=zone))
    app = TestApp(lambda environ, start_response: FileServeApp(stored, 60)(environ, start_response))
    assert app.get("/").headers["Last-Modified"] == "Wed, 01 May 2024 12:00:00 GMT"
