"""DepotMiddleware: serves stored files under a URL of the application.

A file ``<depot name>/<file id>`` is served at ``<mountpoint>/<depot name>/<file id>``
(what :meth:`DepotManager.url_for` returns). Requests elsewhere, and methods
other than GET and HEAD, go to the wrapped application untouched.

Serving follows RFC 9110 (conditional requests, ranges, HEAD; see
``depot/_http.py``) and is safe by default against stored XSS: only types a
browser shows without running anything are served inline.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from webob import Request, Response

from depot._http import (
    DEFAULT_INLINE_TYPES,
    MultipartRanges,
    disposition_headers,
    etag_for,
    expires_in,
    http_date,
    precondition_status,
    requested_ranges,
)
from depot.exceptions import DepotError, InvalidFileIdError
from depot.io._chunks import BLOCK_SIZE
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

# type/subtype with optional parameters; anything else (CR, LF, ...) in a
# stored content type is not sent.
_SAFE_CONTENT_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+(\s*;\s*[\w.+-]+=(\"[^\"\r\n]*\"|[\w.+-]+))*")


class _FileIter:
    """Iterates a file in blocks and closes it when the server is done."""

    def __init__(self, file: Any, block_size: int) -> None:
        self.file = file
        self.block_size = block_size

    def __iter__(self) -> _FileIter:
        return self

    def __next__(self) -> bytes:
        data: bytes = self.file.read(self.block_size)
        if not data:
            raise StopIteration
        return data

    def close(self) -> None:
        self.file.close()


class _RangeIter:
    """Iterates the bytes ``[start, stop)`` of a stored file, reading only those."""

    def __init__(self, stored: StoredFile, start: int, stop: int) -> None:
        self._stored = stored
        self._start = start
        self._stop = stop

    def __iter__(self) -> Iterator[bytes]:
        return self._stored.iter_range(self._start, self._stop)

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
        self.filename = storedfile.filename or "unnamed"
        self.last_modified = storedfile.last_modified
        self.content_length = storedfile.content_length or 0
        content_type = storedfile.content_type or ""
        if not _SAFE_CONTENT_TYPE.fullmatch(content_type):
            content_type = "application/octet-stream"
        self.content_type = content_type
        self.cache_expires = cache_max_age
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
        body: Iterable[bytes] | None = None  # None: the whole file
        if ranges is None:
            start_response("200 OK", [*headers, ("Content-Length", str(length))])
        elif not ranges:
            self.file.close()
            return _plain(
                environ,
                start_response,
                "416 Range Not Satisfiable",
                "Range not satisfiable.",
                [("Content-Range", f"bytes */{length}")],
            )
        elif len(ranges) == 1:
            start, stop = ranges[0]
            headers += [
                ("Content-Length", str(stop - start)),
                ("Content-Range", f"bytes {start}-{stop - 1}/{length}"),
            ]
            start_response("206 Partial Content", headers)
            body = _RangeIter(self.file, start, stop)
        else:
            boundary = uuid.uuid4().hex
            parts = MultipartRanges(self.file, ranges, self.content_type, boundary)
            headers = [(k, v) for k, v in headers if k != "Content-Type"] + [
                ("Content-Type", f"multipart/byteranges; boundary={boundary}"),
                ("Content-Length", str(parts.content_length)),
            ]
            start_response("206 Partial Content", headers)
            body = parts
        if request.method == "HEAD":
            self.file.close()
            return []
        return self._whole_file(environ) if body is None else body

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
        # A local file hands the server a real descriptor, so servers that
        # support it send the bytes with sendfile() without reading them.
        wrapper = environ.get("wsgi.file_wrapper", _FileIter)
        return wrapper(self.file, _BLOCK_SIZE)


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
        self.cache_max_age = int(cache_max_age)
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
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD") or not (
            path.startswith(self._prefix) or path == self.mountpoint
        ):
            return self.app(environ, start_response)

        depot_name, _, file_id = path[len(self._prefix) :].partition("/")
        depot = DepotManager.get(depot_name) if depot_name else None
        if depot is None or not file_id or "/" in file_id:
            return _not_found(environ, start_response)
        try:
            stored = depot.get(file_id)
            redirect = stored.redirect_url()
        except (FileNotFoundError, InvalidFileIdError):
            return _not_found(environ, start_response)
        except (OSError, DepotError):
            log.exception("Depot %r could not serve file %r", depot_name, file_id)
            return _plain(
                environ, start_response, "503 Service Unavailable", "File storage unavailable."
            )

        if redirect is not None:
            stored.close()
            location, permanent = redirect
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

        app = FileServeApp(
            stored,
            self.cache_max_age,
            self.replace_wsgi_filewrapper,
            self.inline_types,
            self._offload_header(depot_name, stored),
        )
        return app(environ, start_response)

    def _offload_header(self, depot_name: str, stored: StoredFile) -> tuple[str, str] | None:
        if self.offload is None:
            return None
        from depot.io.local import LocalStoredFile

        if not isinstance(stored, LocalStoredFile):
            return None  # only files on this disk can be sent by the front server
        if self.offload == "x-sendfile":
            return OFFLOAD_HEADERS["x-sendfile"], os.path.abspath(stored._file_path)
        location = f"{self.offload_location}/{depot_name}/{stored.file_id}/file"
        return OFFLOAD_HEADERS["x-accel-redirect"], location


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
