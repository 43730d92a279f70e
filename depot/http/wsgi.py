"""The WSGI front end: :class:`DepotMiddleware` and :class:`FileServeApp`.

Thin glue over the HTTP core (:mod:`depot.http.serve`, :mod:`depot.http.answer`):
it turns the environ into :class:`~depot.http.request.RequestFacts`, lets the
core decide and open the answer, and hands the body to the server, through
its ``wsgi.file_wrapper`` (``sendfile()``) for a local file sent whole.
filedepot's import path, :mod:`depot.middleware`, re-exports both classes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from depot.http.answer import STATUS_LINES, Answer
from depot.http.body import BLOCK_SIZE, FileIter
from depot.http.facts import FileFacts
from depot.http.options import ServeOptions
from depot.http.request import EnvironHeaders, RequestFacts, current_mount, request_path
from depot.http.rules import DEFAULT_INLINE_TYPES, header_date, http_date, max_age_seconds
from depot.http.serve import Prepared, prepare, prepare_file, route

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from depot.http.options import Authorize
    from depot.io.interfaces import StoredFile

__all__ = ["DepotMiddleware", "FileServeApp"]


def request_facts(environ: WSGIEnvironment) -> RequestFacts:
    """What the HTTP core reads of a WSGI request."""
    return RequestFacts(
        environ.get("REQUEST_METHOD", "GET"),
        request_path(environ.get("PATH_INFO", "")),
        environ.get("QUERY_STRING", ""),
        EnvironHeaders(environ),
        environ.get("SCRIPT_NAME", ""),
        environ,
    )


def send(
    prepared: Prepared,
    environ: WSGIEnvironment,
    start_response: StartResponse,
    replace_wsgi_filewrapper: bool = False,
) -> Iterable[bytes]:
    """Start the answer and give the server its body; the one way a file leaves here."""
    file = prepared.file
    if file is None:
        start_response(STATUS_LINES[prepared.status], prepared.headers)
        if prepared._stored is None:  # a short answer (a 304): nothing to close
            return prepared.body
        return prepared.body if hasattr(prepared.body, "close") else _Closing(prepared)
    # A local file is open already, and a server that supports it sends it with
    # sendfile() without reading it: hand it over untouched (its size was checked).
    wrapper = None if replace_wsgi_filewrapper else environ.get("wsgi.file_wrapper")
    if wrapper is None:
        body: Iterable[bytes] = FileIter.opened(file, _length(prepared))
    else:
        body = wrapper(file, BLOCK_SIZE)
    start_response(STATUS_LINES[prepared.status], prepared.headers)
    return body


class _Closing:
    """A short body that closes what :class:`Prepared` holds when the server closes it."""

    __slots__ = ("_prepared",)

    def __init__(self, prepared: Prepared) -> None:
        self._prepared = prepared

    def __iter__(self) -> Any:
        return iter(self._prepared.body)

    def close(self) -> None:
        self._prepared.close()


def _length(prepared: Prepared) -> int:
    for name, value in prepared.headers:
        if name == "Content-Length":
            return int(value)
    raise AssertionError("a whole-file answer always has a Content-Length")


def _sendfile(environ: WSGIEnvironment, replace_wsgi_filewrapper: bool) -> bool:
    # depot's own FileIter as the wrapper (replace_wsgi_filewrapper) reads
    # the file like any other: only a server's wrapper can sendfile().
    return not replace_wsgi_filewrapper and environ.get("wsgi.file_wrapper") not in (
        None,
        FileIter,
    )


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
        self.inline_types = frozenset(t.lower() for t in inline_types)
        self._facts = FileFacts.of(storedfile, self.inline_types)
        self.filename = storedfile.filename or "unnamed"
        self.last_modified = self._facts.last_modified
        self.content_length = self._facts.length
        self.content_type = self._facts.content_type
        self.etag = self._facts.etag
        self.cache_expires = max_age_seconds(cache_max_age)
        self.replace_wsgi_filewrapper = replace_wsgi_filewrapper
        self.offload = offload

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        prepared = prepare_file(
            request_facts(environ),
            self.file,
            self._facts,
            self.cache_expires,
            self.offload,
            _sendfile(environ, self.replace_wsgi_filewrapper),
        )
        return send(prepared, environ, start_response, self.replace_wsgi_filewrapper)

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
    :param authorize: ``authorize(request, depot_name, file_id) -> bool``, called
        before any file is looked up; False answers 403
        (:class:`~depot.http.request.RequestFacts` is what it receives).
    :param mount_in_urls: :meth:`url_for` puts the ``SCRIPT_NAME`` of the
        request being served in front of the URL. Off by default, as in
        filedepot, whose users add it themselves (TurboGears' ``tg.url()``).

    .. versionchanged:: 1.0
       ``inline_types``, ``offload``, ``offload_location``, ``authorize`` and
       ``mount_in_urls`` added.
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
        authorize: Authorize | None = None,
        mount_in_urls: bool = False,
    ) -> None:
        self.options = ServeOptions(
            mountpoint, cache_max_age, inline_types, offload, offload_location, authorize
        )
        self.app = app
        self.mountpoint = mountpoint
        self.cache_max_age = self.options.cache_max_age
        self.replace_wsgi_filewrapper = replace_wsgi_filewrapper
        self.inline_types = self.options.inline_types
        self.offload = self.options.offload
        self.offload_location = self.options.offload_location
        self.mount_in_urls = mount_in_urls

    def url_for(self, path: str) -> str:
        """Return the URL of ``'<depot name>/<file id>'``."""
        url = self.options.prefix + path
        if self.mount_in_urls:
            url = (current_mount.get() or "").rstrip("/") + url
        return url

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = request_facts(environ)
        found = route(request, self.options)
        if found is None:
            token = current_mount.set(request.script_name)
            try:
                return self.app(environ, start_response)
            finally:
                current_mount.reset(token)
        if isinstance(found, Answer):
            return send(Prepared.of(found), environ, start_response)
        prepared = prepare(
            request,
            found,
            self.options,
            _sendfile(environ, self.replace_wsgi_filewrapper),
        )
        return send(prepared, environ, start_response, self.replace_wsgi_filewrapper)
