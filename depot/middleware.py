"""DepotMiddleware: serves stored files under a URL of the application.

A file ``<depot name>/<file id>`` is served at ``<mountpoint>/<depot name>/<file id>``
(what :meth:`DepotManager.url_for` returns). Requests elsewhere, and methods
other than GET and HEAD, go to the wrapped application untouched.

Serving follows RFC 9110 (conditional requests, ranges, HEAD; see
``depot/_http.py``) and is safe by default against stored XSS: only types a
browser shows without running anything are served inline.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from webob import Request, Response

from depot._headers import (
    CONTROL_CHARS,
    DEFAULT_CONTENT_TYPE,
    DEFAULT_FILENAME,
    safe_content_type,
)
from depot._http import (
    DEFAULT_INLINE_TYPES,
    MultipartRanges,
    disposition_headers,
    etag_for,
    expires_in,
    header_date,
    http_date,
    max_age_seconds,
    precondition_status,
    requested_ranges,
)
from depot.exceptions import CorruptMetadataError, DepotError, InvalidFileIdError
from depot.io._chunks import BLOCK_SIZE
from depot.io.interfaces import is_size
from depot.manager import DepotManager

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from depot.io.interfaces import StoredFile

__all__ = ["DepotMiddleware", "FileServeApp"]

log = logging.getLogger(__name__)

#: filedepot's name for the block size.
_BLOCK_SIZE = BLOCK_SIZE

#: ``offload`` values and the header each sends to the front server.
OFFLOAD_HEADERS = {"x-accel-redirect": "X-Accel-Redirect", "x-sendfile": "X-Sendfile"}

# What may not appear as such in a URL sent in a header (Location,
# X-Accel-Redirect): it is percent-encoded, as a browser does with an IRI.
_NOT_URL_SAFE = re.compile(r"[^\x21-\x7e]")


class _FileIter:
    """Iterates a file in blocks and closes it when the server is done.

    :param first: the first block, already read (to know the file can be read
        before the status line is sent).
    :param length: the Content-Length sent: never more bytes than that are
        given, whatever the file holds (more would be read by the client as
        the start of the next answer on the connection).
    """

    def __init__(
        self, file: Any, block_size: int, first: bytes = b"", length: int | None = None
    ) -> None:
        self.file = file
        self.block_size = block_size
        self._first = first
        self._remaining = length

    def __iter__(self) -> _FileIter:
        return self

    def __next__(self) -> bytes:
        if self._first:
            data, self._first = self._first, b""
        else:
            data = self.file.read(self.block_size)
        if self._remaining is not None:
            data = data[: self._remaining]
            self._remaining -= len(data)
        if not data:
            raise StopIteration
        return data

    def close(self) -> None:
        self.file.close()


class _RangeIter:
    """Iterates the bytes ``[start, stop)`` of a stored file, reading only those.

    The range is opened, and its first block read, when this is made: a file
    that cannot be read fails before the status line is sent.
    """

    def __init__(self, stored: StoredFile, start: int, stop: int) -> None:
        self._stored = stored
        self._chunks = stored.iter_range(start, stop)
        self._first = next(self._chunks, b"")

    def __iter__(self) -> Iterator[bytes]:
        if self._first:
            yield self._first
        yield from self._chunks

    def close(self) -> None:
        self._stored.close()


class FileServeApp:
    """A WSGI application that answers one request for one stored file.

    :param storedfile: the file; it is closed once the answer is sent.
    :param cache_max_age: seconds browsers and proxies may cache the file.
    :param replace_wsgi_filewrapper: send the bytes with depot's own iterator
        instead of the server's ``wsgi.file_wrapper``.
    :param inline_types: content types served inline (``type/*`` for a family).
    :param offload: ``(header, value)`` telling the front server to send the
        bytes itself, e.g. ``('X-Accel-Redirect', '/_depot/default/<id>/file')``.

    .. versionchanged:: 1.0
       Ranges, If-Match / If-Unmodified-Since, safe Content-Disposition, offload.
    """

    def __init__(
        self,
        storedfile: StoredFile,
        cache_max_age: int,
        replace_wsgi_filewrapper: bool = False,
        inline_types: Iterable[str] = DEFAULT_INLINE_TYPES,
        offload: tuple[str, str] | None = None,
    ) -> None:
        self.file = storedfile
        # The headers below and the body must describe one version, even if
        # the file is replaced before the body is read.
        storedfile.hold_version()
        filename = storedfile.filename
        self.filename = filename if isinstance(filename, str) and filename else DEFAULT_FILENAME
        self.last_modified = _to_the_second(storedfile.last_modified)
        self.content_length = _content_length(storedfile)
        # The same rule as when storing: files written by other programs or
        # older versions may hold anything, and a CR or LF here would end the
        # headers and let the body render as HTML.
        self.content_type = safe_content_type(storedfile.content_type) or DEFAULT_CONTENT_TYPE
        self.cache_expires = max_age_seconds(cache_max_age)
        self.replace_wsgi_filewrapper = replace_wsgi_filewrapper
        self.inline_types = inline_types
        self.offload = offload
        self.etag = etag_for(storedfile)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        status = precondition_status(request, self.etag, self.last_modified)
        if status == 412:
            self.file.close()
            return _plain(
                environ, start_response, "412 Precondition Failed", "Precondition failed."
            )
        if status == 304:
            self.file.close()
            start_response("304 Not Modified", self._cache_headers())
            return []

        headers = self._cache_headers() + [
            ("Content-Type", self.content_type),
            *disposition_headers(self.content_type, self.filename, self.inline_types),
        ]
        if self.offload is not None and request.method == "GET":
            # The front server sends the bytes, and answers Range itself.
            self.file.close()
            start_response("200 OK", [*headers, self.offload])
            return []

        length = self.content_length
        ranges = requested_ranges(request, self.etag, self.last_modified, length)
        if ranges is not None and len(ranges) > 1 and not self.file.seekable():
            ranges = None  # cannot go back for the next range: send it whole
        headers.append(("Accept-Ranges", "bytes"))
        if ranges is not None and not ranges:
            self.file.close()
            return _plain(
                environ,
                start_response,
                "416 Range Not Satisfiable",
                "Range not satisfiable.",
                [("Content-Range", f"bytes */{length}")],
            )
        if ranges is None:
            status_line = "200 OK"
            headers.append(("Content-Length", str(length)))
        elif len(ranges) == 1:
            status_line = "206 Partial Content"
            start, stop = ranges[0]
            headers += [
                ("Content-Length", str(stop - start)),
                ("Content-Range", f"bytes {start}-{stop - 1}/{length}"),
            ]
        else:
            status_line = "206 Partial Content"
            boundary = uuid.uuid4().hex
            parts = MultipartRanges(self.file, ranges, self.content_type, boundary)
            headers = [(k, v) for k, v in headers if k != "Content-Type"] + [
                ("Content-Type", f"multipart/byteranges; boundary={boundary}"),
                ("Content-Length", str(parts.content_length)),
            ]
        # Open the bytes before the status line: once a Content-Length is
        # sent the body must follow, so a file that vanished since get() (or
        # a backend that fails) must be found out now, while a 404 or 503 can
        # still be answered. HEAD is answered as GET would be.
        body: Iterable[bytes] | None = None
        try:
            _check_size(self.file, length)
            if request.method == "HEAD":
                pass
            elif ranges is None:
                body = self._whole_file(environ)
            elif len(ranges) == 1:
                body = _RangeIter(self.file, *ranges[0])
            else:
                parts.open()
                body = parts
        except FileNotFoundError:
            self.file.close()
            return _not_found(environ, start_response)
        except (OSError, DepotError):
            log.exception("Could not read stored file %r", self.file.file_id)
            self.file.close()
            return _unavailable(environ, start_response)
        if body is None:  # HEAD: the same answer, no bytes read
            self.file.close()
            start_response(status_line, headers)
            return []
        start_response(status_line, headers)
        return body

    def parse_date(self, value: str) -> datetime | None:
        """The naive UTC time an HTTP-date names, or None if it names none.

        filedepot's helper, which applications' tests call; depot parses the
        request's dates with webob and uses this nowhere itself.

        .. versionchanged:: 1.0
           Returns None for a value that is not an HTTP-date (filedepot raised
           ``RuntimeError``, and ``OverflowError`` leaked for some).
        """
        moment = header_date(value)
        return None if moment is None else moment.astimezone(timezone.utc).replace(tzinfo=None)

    @classmethod
    def make_date(cls, d: datetime | float) -> str:
        """An HTTP-date for a naive UTC datetime or a POSIX timestamp (filedepot's helper)."""
        if not isinstance(d, datetime):
            d = datetime.fromtimestamp(d, timezone.utc).replace(tzinfo=None)
        elif d.tzinfo is not None:
            d = d.astimezone(timezone.utc).replace(tzinfo=None)
        return http_date(d)

    def _cache_headers(self) -> list[tuple[str, str]]:
        headers = [
            ("ETag", f'"{self.etag}"'),
            ("Cache-Control", f"public, max-age={self.cache_expires}"),
            ("Expires", expires_in(self.cache_expires)),
            ("X-Content-Type-Options", "nosniff"),
        ]
        if self.last_modified is not None:
            headers.append(("Last-Modified", http_date(self.last_modified)))
        return headers

    def _whole_file(self, environ: WSGIEnvironment) -> Iterable[bytes]:
        if self.replace_wsgi_filewrapper:
            environ["wsgi.file_wrapper"] = _FileIter
        wrapper = environ.get("wsgi.file_wrapper", _FileIter)
        if wrapper is not _FileIter and _has_descriptor(self.file):
            # A file with a real descriptor (a local file) is open already,
            # and servers that support it send it with sendfile() without
            # reading it: hand it over untouched (its size was checked).
            return wrapper(self.file, _BLOCK_SIZE)
        # Anything else is read by the server block by block anyway: read the
        # first block now, which opens the bytes before the status line.
        first = self.file.read(_BLOCK_SIZE)
        return _FileIter(self.file, _BLOCK_SIZE, first, self.content_length)


class DepotMiddleware:
    """WSGI middleware serving the files of every configured depot.

    Usually made with :meth:`DepotManager.make_middleware`. Files whose backend
    has a public URL of its own are redirected there (301), and files it offers a
    signed URL for (S3 with ``presign_ttl``) too, with 302 and
    ``Cache-Control: no-store``.

    :param app: the application to wrap.
    :param mountpoint: the URL path files are served under; must start with ``/``.
    :param cache_max_age: seconds browsers and proxies may cache a file.
    :param replace_wsgi_filewrapper: ignore the server's ``wsgi.file_wrapper``
        (for servers whose wrapper misbehaves).
    :param inline_types: content types served inline; the default is raster
        images, audio, video, PDF and plain text. Every other type is served as
        an attachment with ``Content-Security-Policy: sandbox``.
    :param offload: ``'x-accel-redirect'`` (nginx) or ``'x-sendfile'`` (Apache,
        lighttpd): local files are sent by the front server, which receives the
        headers from depot and the file's location in that header.
    :param offload_location: with ``x-accel-redirect``, the nginx ``internal``
        location that maps to the depots' storage paths; the file of
        ``default/<id>`` is at ``<offload_location>/default/<id>/file``.

    .. versionchanged:: 1.0
       ``inline_types``, ``offload`` and ``offload_location`` added.
    """

    def __init__(
        self,
        app: WSGIApplication,
        mountpoint: str = "/depot",
        cache_max_age: int = 3600 * 24 * 7,
        replace_wsgi_filewrapper: bool = False,
        inline_types: Iterable[str] | None = None,
        offload: str | None = None,
        offload_location: str = "/_depot",
    ) -> None:
        if not isinstance(mountpoint, str) or not mountpoint.startswith("/"):
            raise ValueError(
                f"DepotMiddleware mountpoint must be an absolute path starting with '/', "
                f"not {mountpoint!r}: for example '/depot'."
            )
        if offload is not None and offload.lower() not in OFFLOAD_HEADERS:
            raise ValueError(
                f"DepotMiddleware offload must be one of {', '.join(OFFLOAD_HEADERS)} "
                f"or None, not {offload!r}."
            )
        self.app = app
        self.mountpoint = mountpoint
        self.cache_max_age = max_age_seconds(cache_max_age)
        self.replace_wsgi_filewrapper = replace_wsgi_filewrapper
        self.inline_types = frozenset(
            t.lower() for t in (DEFAULT_INLINE_TYPES if inline_types is None else inline_types)
        )
        self.offload = offload.lower() if offload else None
        self.offload_location = offload_location.rstrip("/")
        self._prefix = mountpoint.rstrip("/") + "/"

    def url_for(self, path: str) -> str:
        """Return the URL of ``'<depot name>/<file id>'``."""
        return self._prefix + path

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = _request_path(environ.get("PATH_INFO", ""))
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD") or not (
            path.startswith(self._prefix) or path == self.mountpoint
        ):
            return self.app(environ, start_response)

        depot_name, _, file_id = path[len(self._prefix) :].partition("/")
        # An alias serves the files of the depot it stands for, under the
        # depot's own name (the one its offload location is configured for).
        real_name = DepotManager.resolve_alias(depot_name) if depot_name else None
        depot = DepotManager.get(real_name) if real_name else None
        if real_name is None or depot is None or not file_id or "/" in file_id:
            return _not_found(environ, start_response)
        try:
            stored = depot.get(file_id)
            redirect = stored.redirect_url()
            if redirect is None:
                app = FileServeApp(
                    stored,
                    self.cache_max_age,
                    self.replace_wsgi_filewrapper,
                    self.inline_types,
                    self._offload_header(real_name, stored),
                )
        except (FileNotFoundError, InvalidFileIdError):
            return _not_found(environ, start_response)
        except (OSError, DepotError):
            log.exception("Depot %r could not serve file %r", depot_name, file_id)
            return _unavailable(environ, start_response)

        if redirect is not None:
            stored.close()
            location, permanent = redirect
            # A backend builds the URL from its settings and the key: never let
            # a character that would break the header through.
            location = _url_for_header(location)
            if permanent:
                status, extra = "301 Moved Permanently", []
            else:  # a signed URL that expires: neither it nor the answer may be cached
                status, extra = "302 Found", [("Cache-Control", "no-store")]
            return _plain(
                environ,
                start_response,
                status,
                f"The file is at {location}",
                [("Location", location), *extra],
            )

        return app(environ, start_response)

    def _offload_header(self, depot_name: str, stored: StoredFile) -> tuple[str, str] | None:
        if self.offload is None:
            return None
        from depot.io.local import LocalStoredFile

        if not isinstance(stored, LocalStoredFile):
            return None  # only files on this disk can be sent by the front server
        if self.offload == "x-sendfile":
            # The path's bytes as they are on disk, one header character each.
            path = os.fsencode(os.path.abspath(stored._file_path)).decode("latin-1")
            if CONTROL_CHARS.search(path):
                return None  # no header can carry it: depot sends the file itself
            return OFFLOAD_HEADERS["x-sendfile"], path
        location = f"{self.offload_location}/{depot_name}/{stored.file_id}/file"
        return OFFLOAD_HEADERS["x-accel-redirect"], _url_for_header(location)


def _request_path(path_info: str) -> str:
    """The request's path as text, to compare with what :meth:`url_for` made.

    PEP 3333 gives PATH_INFO as bytes, one character each (latin-1); a link
    holding non-ASCII text (a mountpoint or depot name) is requested as its
    UTF-8 bytes. Bytes that are not UTF-8 become lone surrogates, which no
    mountpoint, depot name or file id holds. A path with characters above
    U+00FF was decoded already (not PEP 3333, some test clients) and is read
    as it is.
    """
    try:
        raw = path_info.encode("latin-1")
    except UnicodeEncodeError:
        return path_info
    return raw.decode("utf-8", "surrogateescape")


def _plain(
    environ: WSGIEnvironment,
    start_response: StartResponse,
    status: str,
    text: str,
    extra: list[tuple[str, str]] | None = None,
) -> Iterable[bytes]:
    """A short text answer (webob drops the body of a HEAD)."""
    response = Response(text, status=status, content_type="text/plain", charset="utf-8")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.update(extra or [])
    return response(environ, start_response)


def _not_found(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    return _plain(environ, start_response, "404 Not Found", "File not found.")


def _unavailable(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    return _plain(environ, start_response, "503 Service Unavailable", "File storage unavailable.")


def _has_descriptor(stored: StoredFile) -> bool:
    """Whether the file has an OS descriptor; errors opening it are the caller's to handle."""
    try:
        stored.fileno()
    except io.UnsupportedOperation:
        return False
    return True


def _to_the_second(value: object) -> datetime | None:
    """A stored time as HTTP sees it: naive UTC, without a fraction of a second.

    depot's backends store times so, but any StoredFile can be served: a
    fraction would make the file look newer than its own Last-Modified (412
    for If-Unmodified-Since, never 304 or 206 by date), and an aware time in
    another zone would be sent as if it were UTC.
    """
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.replace(microsecond=0)


def _check_size(stored: StoredFile, length: int) -> None:
    """Raise CorruptMetadataError if the file's descriptor shows other than ``length`` bytes.

    A server sends a whole file handed to ``wsgi.file_wrapper`` whatever the
    Content-Length said: bytes past it would be read, on a kept-alive
    connection, as the start of the next answer; and a shorter file breaks
    the connection after a 200. Files without a descriptor are given at most
    ``length`` bytes (:class:`_FileIter`).
    """
    try:
        described = os.fstat(stored.fileno())
    except io.UnsupportedOperation:
        return
    if stat.S_ISREG(described.st_mode) and described.st_size != length:
        raise CorruptMetadataError(
            f"Stored file {stored.file_id} holds {described.st_size} bytes but its metadata "
            f"says {length}: restore it from a backup or delete it."
        )


def _content_length(stored: StoredFile) -> int:
    length = stored.content_length
    if not is_size(length):
        # Sent as Content-Length and used to check ranges: a missing or
        # invalid one would mean a broken answer, so the file is not served.
        raise CorruptMetadataError(
            f"Stored file {stored.file_id} has an invalid content_length {length!r}: "
            "restore its metadata from a backup or delete it."
        )
    return length


def _url_for_header(url: str) -> str:
    """``url`` with every character a header cannot carry as such percent-encoded."""
    return _NOT_URL_SAFE.sub(lambda m: quote(m[0], safe="", errors="replace"), url)
