"""The answer to one request for one stored file, decided without any I/O.

:func:`answer_file` is the HTTP core: from the request's method and headers
and the file's facts it decides the status, every header, and which bytes of
the file follow (none, all, one range, several), in the order of RFC 9110
§13.2.2: 412, then 304, then 206 / 416 / 200. Both front ends (WSGI in
:mod:`depot.http.wsgi`, ASGI in :mod:`depot.asgi`) only carry it out. The
short answers that need no file (404, 403, 503, redirects) are made here too,
so that every front end sends the same bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Literal

from depot.http.rules import preconditions_status, requested_ranges

if TYPE_CHECKING:
    from depot.http.facts import FileFacts
    from depot.http.request import RequestFacts

__all__ = [
    "WHOLE",
    "Answer",
    "Multipart",
    "answer_file",
    "forbidden",
    "not_found",
    "plain",
    "redirect",
    "unavailable",
]

Headers = list[tuple[str, str]]

#: The body of an answer that sends the whole file.
WHOLE: Literal["whole"] = "whole"

#: ``"200 OK"`` and the like, for WSGI's status line.
STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class Multipart:
    """The plan of a ``multipart/byteranges`` body: each part's head and range."""

    __slots__ = ("boundary", "closing", "content_length", "parts")

    def __init__(
        self, ranges: Sequence[tuple[int, int]], content_type: str, length: int, boundary: str
    ) -> None:
        self.boundary = boundary
        self.parts = [
            (
                (
                    f"--{boundary}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Range: bytes {start}-{stop - 1}/{length}\r\n\r\n"
                ).encode("latin-1"),
                start,
                stop,
            )
            for start, stop in ranges
        ]
        self.closing = f"--{boundary}--\r\n".encode("latin-1")
        self.content_length = len(self.closing) + sum(
            len(head) + stop - start + 2 for head, start, stop in self.parts
        )


#: What follows the headers: nothing from the file (``None``), the whole file,
#: one range ``(start, stop)``, or several.
Body = None | Literal["whole"] | tuple[int, int] | Multipart


class Answer:
    """Status, headers, and what body follows.

    :ivar text: the body of a short answer that is not the file (empty for HEAD).
    :ivar body: which bytes of the file a GET gets (see :data:`Body`); ``None``
        when none do (a 304, an offloaded file, a short answer). A HEAD has the
        same, and sends none of them.
    """

    __slots__ = ("body", "headers", "status", "text")

    def __init__(self, status: int, headers: Headers, text: bytes = b"", body: Body = None):
        self.status = status
        self.headers = headers
        self.text = text
        self.body = body

    @property
    def status_line(self) -> str:
        """The status as WSGI's ``start_response`` takes it: ``'200 OK'``."""
        return STATUS_LINES[self.status]

    def __repr__(self) -> str:
        return f"<Answer {self.status} body={self.body!r}>"


def answer_file(
    request: RequestFacts,
    file: FileFacts,
    cache_control: str,
    expires: str,
    offload: tuple[str, str] | None = None,
) -> Answer:
    """Decide the answer to ``request`` for the file ``file`` describes.

    :param cache_control: the Cache-Control value (public or private, max-age).
    :param expires: the matching Expires date.
    :param offload: the header that lets the front server send the bytes
        (``X-Accel-Redirect``, ``X-Sendfile``), for a GET.
    """
    method = request.method
    headers = request.headers
    status = preconditions_status(request.preconditions(), method, file.etag, file.last_modified)
    if status == 412:
        return plain(412, "Precondition failed.", method)
    # The same for every request of a second (Expires): made once, copied.
    made = file.answered
    if made is None or made[0] != cache_control or made[1] != expires:
        made = file.answered = (cache_control, expires, *_heads(file, cache_control, expires))
    if status == 304:
        return Answer(304, list(made[2]))
    if offload is None and not headers.get("range"):
        return Answer(200, list(made[3]), body=WHOLE)
    described = list(made[2]) + list(file.headers[2 if file.last_modified is not None else 1 :])
    if offload is not None and method == "GET":
        # The front server sends the bytes, and answers Range itself.
        return Answer(200, [*described, offload])

    length = file.length
    ranges = requested_ranges(headers, method, file.etag, file.last_modified, length)
    if ranges is not None and len(ranges) > 1 and not file.seekable:
        ranges = None  # cannot go back for the next range: send it whole
    described.append(("Accept-Ranges", "bytes"))
    if ranges is None:
        described.append(("Content-Length", str(length)))
        return Answer(200, described, body=WHOLE)
    if not ranges:
        return plain(
            416, "Range not satisfiable.", method, [("Content-Range", f"bytes */{length}")]
        )
    if len(ranges) == 1:
        start, stop = ranges[0]
        described += [
            ("Content-Length", str(stop - start)),
            ("Content-Range", f"bytes {start}-{stop - 1}/{length}"),
        ]
        return Answer(206, described, body=(start, stop))
    parts = Multipart(ranges, file.content_type, length, uuid.uuid4().hex)
    described = [(k, v) for k, v in described if k != "Content-Type"] + [
        ("Content-Type", f"multipart/byteranges; boundary={parts.boundary}"),
        ("Content-Length", str(parts.content_length)),
    ]
    return Answer(206, described, body=parts)


def _heads(
    file: FileFacts, cache_control: str, expires: str
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """The headers of a 304 and of a 200 with the whole file."""
    # A 304 carries the validators and caching headers of the 200 (RFC 9110 §15.4.5).
    cached = [
        file.headers[0],
        ("Cache-Control", cache_control),
        ("Expires", expires),
        ("X-Content-Type-Options", "nosniff"),
    ]
    if file.last_modified is not None:
        cached.append(file.headers[1])
    whole = [
        *cached,
        *file.headers[2 if file.last_modified is not None else 1 :],
        ("Accept-Ranges", "bytes"),
        ("Content-Length", str(file.length)),
    ]
    return tuple(cached), tuple(whole)


def plain(status: int, text: str, method: str, extra: Headers | None = None) -> Answer:
    """A short plain-text answer; HEAD gets its headers without the text."""
    data = text.encode("utf-8")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(data))),
        ("X-Content-Type-Options", "nosniff"),
        *(extra or ()),
    ]
    return Answer(status, headers, b"" if method == "HEAD" else data)


def not_found(method: str) -> Answer:
    """The 404 of a file that does not exist, or of a URL that names none."""
    return plain(404, "File not found.", method)


def unavailable(method: str) -> Answer:
    """The 503 of a backend that failed (the failure is logged, not shown)."""
    return plain(503, "File storage unavailable.", method)


def forbidden(method: str) -> Answer:
    """The 403 of a request the depot's policy or ``authorize`` refuses.

    The same whether the file exists or not: it is decided before any lookup.
    """
    return plain(403, "Forbidden.", method, [("Cache-Control", "private, no-store")])


def redirect(location: str, permanent: bool, method: str) -> Answer:
    """Send the client to where the backend serves the file.

    A temporary URL (signed, expiring) must be cached by nobody, the answer
    included: 302 with ``Cache-Control: no-store``. A permanent one is a 301.
    """
    if permanent:
        return plain(301, f"The file is at {location}", method, [("Location", location)])
    return plain(
        302,
        f"The file is at {location}",
        method,
        [("Location", location), ("Cache-Control", "no-store")],
    )
