"""One request for a depot URL, from routing to a body ready to send.

:func:`prepare` is the part both front ends share that touches storage
(blocking: WSGI calls it directly, ASGI in a worker thread). It finds the
depot and the file, asks :func:`~depot.http.answer.answer_file` what to answer,
and opens the bytes that follow before any status line is sent: a file that
vanished is a 404 and a failing backend a 503, decided while they can still
be answered.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote

from depot._headers import CONTROL_CHARS
from depot.exceptions import CorruptMetadataError, DepotError, InvalidFileIdError
from depot.http.access import check_access
from depot.http.answer import (
    STATUS_LINES,
    WHOLE,
    Answer,
    Multipart,
    answer_file,
    forbidden,
    not_found,
    redirect,
    unavailable,
)
from depot.http.body import FileIter, MultipartRanges, RangeIter
from depot.http.facts import FileFacts
from depot.http.options import OFFLOAD_HEADERS
from depot.http.rules import expires_in
from depot.manager import DepotManager

if TYPE_CHECKING:
    from depot.http.access import Access
    from depot.http.options import ServeOptions
    from depot.http.request import RequestFacts
    from depot.io.interfaces import FileStorage, StoredFile

__all__ = ["Prepared", "Route", "prepare", "prepare_file", "route"]

log = logging.getLogger("depot.middleware")

# What may not appear as such in a URL sent in a header (Location,
# X-Accel-Redirect): it is percent-encoded, as a browser does with an IRI.
_NOT_URL_SAFE = re.compile(r"[^\x21-\x7e]")


class Prepared:
    """An answer ready to send: status, headers, and the body opened.

    :ivar body: the bytes to send, first block read already; empty when none
        follow. Closing it (``close()``) closes the stored file.
    :ivar file: set instead of ``body`` when the whole file is to be sent and
        the front end said it can send a descriptor itself (``sendfile``): the
        stored file, its size checked against the Content-Length sent.

    Call :meth:`close` exactly once, whatever was sent: it closes the stored file.
    """

    __slots__ = ("body", "file", "headers", "status", "_stored")

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: Iterable[bytes] = (),
        file: StoredFile | None = None,
        stored: StoredFile | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.file = file
        self._stored = stored

    @classmethod
    def of(cls, answer: Answer) -> Prepared:
        """A short answer that sends no file."""
        return cls(answer.status, answer.headers, (answer.text,) if answer.text else ())

    @property
    def status_line(self) -> str:
        """The status as WSGI's ``start_response`` takes it: ``'200 OK'``."""
        return STATUS_LINES[self.status]

    def close(self) -> None:
        """Close the stored file (once; later calls do nothing)."""
        stored, self._stored = self._stored, None
        if stored is not None:
            stored.close()


class Route:
    """A depot URL's parts: the depot name as written, the depot it names, the file id."""

    __slots__ = ("depot", "depot_name", "file_id", "name", "policy")

    def __init__(self, depot_name: str, name: str, file_id: str) -> None:
        self.depot_name = depot_name
        self.name = name
        self.file_id = file_id
        self.depot = DepotManager.get(name)
        self.policy = DepotManager.serving_policy(name)


def route(request: RequestFacts, options: ServeOptions) -> Route | Answer | None:
    """Which file ``request`` asks for: a :class:`Route`, a 404, or None (not ours).

    Only GET and HEAD under the mountpoint are the middleware's; anything else
    goes to the wrapped application. No storage is touched.
    """
    if request.method not in ("GET", "HEAD"):
        return None
    parts = options.route(request.path)
    if parts is None:
        return None
    depot_name, file_id = parts
    # An alias serves the files of the depot it stands for, under the
    # depot's own name (the one its offload location is configured for).
    name = DepotManager.resolve_alias(depot_name) if depot_name else None
    if name is None or not file_id or "/" in file_id:
        return not_found(request.method)
    found = Route(depot_name, name, file_id)
    return not_found(request.method) if found.depot is None else found


def prepare(
    request: RequestFacts,
    found: Route,
    options: ServeOptions,
    sendfile: bool = False,
    authorized: bool | None = None,
) -> Prepared:
    """Check access, look the file up and open the answer (blocking: storage I/O).

    :param sendfile: the front end can send a file descriptor itself (a WSGI
        server's ``wsgi.file_wrapper``, an ASGI server's zero-copy send).
    :param authorized: what an ``async`` authorize said, awaited by the ASGI
        front end; None to call a plain ``authorize`` here, when needed.
    """
    method = request.method
    access = check_access(request, found, options, authorized)
    if not access.allowed:
        return Prepared.of(unavailable(method) if access.failed else forbidden(method))
    depot = found.depot
    assert depot is not None  # route() checked
    try:
        if _conditional(request):
            unopened = _answer_unopened(request, depot, found, access, options)
            if unopened is not None:
                return unopened
        stored = depot.get(found.file_id)
    except (FileNotFoundError, InvalidFileIdError):
        return Prepared.of(not_found(method))
    except OSError as exc:
        if _is_filedepot_not_found(exc):
            return Prepared.of(not_found(method))
        log.exception("Depot %r could not serve file %r", found.depot_name, found.file_id)
        return Prepared.of(unavailable(method))
    except DepotError:
        log.exception("Depot %r could not serve file %r", found.depot_name, found.file_id)
        return Prepared.of(unavailable(method))
    except ValueError:
        # A backend written for filedepot refuses a malformed id with a plain
        # ValueError (depot's raise InvalidFileIdError); filedepot answered 404.
        return Prepared.of(not_found(method))
    try:
        moved = stored.redirect_url()
        if moved is not None:
            stored.close()
            location, permanent = moved
            # A backend builds the URL from its settings and the key: never let
            # a character that would break the header through. Who may follow
            # it was decided for this request only: the redirect is not cached.
            permanent = permanent and not access.private
            return Prepared.of(redirect(url_for_header(location), permanent, method))
        stored.hold_version()
        facts = FileFacts.of(stored, options.inline_types)
        offload = _offload_header(options, found.name, stored)
        return prepare_file(
            request,
            stored,
            facts,
            access.cache_age(options.cache_max_age),
            offload,
            sendfile,
            private=access.private,
        )
    except FileNotFoundError:
        stored.close()
        return Prepared.of(not_found(method))
    except (OSError, DepotError):
        log.exception("Depot %r could not serve file %r", found.depot_name, found.file_id)
        stored.close()
        return Prepared.of(unavailable(method))


def _conditional(request: RequestFacts) -> bool:
    """Whether a header can make the answer one that sends no file (304, 412)."""
    if_match, if_unmodified_since, if_none_match, if_modified_since = request.preconditions()
    return bool(if_none_match or if_modified_since or if_match or if_unmodified_since)


def _answer_unopened(
    request: RequestFacts, depot: FileStorage, found: Route, access: Access, options: ServeOptions
) -> Prepared | None:
    """The 304 or 412 due, decided from :meth:`~FileStorage.peek`; None to open the file.

    A revalidation of a file served before needs only its current metadata:
    a backend that can vouch for it without opening the file (the local
    one's cache) saves the open. Any other answer is made from the opened
    file, as usual, so that its headers and bytes are of one version.
    """
    peeked = depot.peek(found.file_id)
    if peeked is None:
        return None
    try:
        if peeked.redirect_url() is not None:
            return None
        facts = FileFacts.of(peeked, options.inline_types)
    finally:
        peeked.close()
    age = access.cache_age(options.cache_max_age)
    answer = answer_file(request, facts, _cache_control(access.private, age), expires_in(age))
    if answer.status not in (304, 412):
        return None
    return Prepared(answer.status, answer.headers, (answer.text,) if answer.text else ())


def _cache_control(private: bool, max_age: int) -> str:
    return f"{'private' if private else 'public'}, max-age={max_age}"


def prepare_file(
    request: RequestFacts,
    stored: StoredFile,
    facts: FileFacts,
    cache_max_age: int,
    offload: tuple[str, str] | None = None,
    sendfile: bool = False,
    private: bool = False,
) -> Prepared:
    """The answer for one stored file, its body opened; the file is closed when it is.

    A file that cannot be read is a 404 (gone) or a logged 503 (anything else).

    :param private: the answer depended on who asked (``Cache-Control: private``).
    :param facts: the file's facts, taken after :meth:`~StoredFile.hold_version`
        (the headers and the body must describe one version, even if the file
        is replaced meanwhile).
    """
    try:
        answer = answer_file(
            request,
            facts,
            _cache_control(private, cache_max_age),
            expires_in(cache_max_age),
            offload,
        )
        body = answer.body
        if body is None:
            stored.close()
            return Prepared(answer.status, answer.headers, (answer.text,) if answer.text else ())
        _check_size(stored, facts.length)
        if request.method == "HEAD":  # the same answer as GET, no byte read
            stored.close()
            return Prepared(answer.status, answer.headers)
        if body is WHOLE:
            if sendfile and has_descriptor(stored):
                # A local file is open already, and the server sends it with
                # sendfile() without reading it: hand it over untouched.
                return Prepared(answer.status, answer.headers, file=stored, stored=stored)
            opened: Iterable[bytes] = FileIter.opened(stored, facts.length)
        elif isinstance(body, Multipart):
            opened = MultipartRanges(stored, body.parts, body.closing)
        else:
            opened = RangeIter(stored, *body)
    except FileNotFoundError:
        stored.close()
        return Prepared.of(not_found(request.method))
    except (OSError, DepotError):
        log.exception("Could not read stored file %r", stored.file_id)
        stored.close()
        return Prepared.of(unavailable(request.method))
    except BaseException:
        stored.close()
        raise
    return Prepared(answer.status, answer.headers, opened, stored=stored)


def has_descriptor(stored: StoredFile) -> bool:
    """Whether the file has an OS descriptor; errors opening it are the caller's to handle."""
    try:
        stored.fileno()
    except io.UnsupportedOperation:
        return False
    return True


def _check_size(stored: StoredFile, length: int) -> None:
    """Raise CorruptMetadataError if the file's descriptor shows other than ``length`` bytes.

    A server sends a whole file handed to ``sendfile`` whatever the
    Content-Length said: bytes past it would be read, on a kept-alive
    connection, as the start of the next answer; and a shorter file breaks
    the connection after a 200. Files without a descriptor are given at most
    ``length`` bytes (:class:`~depot.http.body.FileIter`).
    """
    size = stored.held_size
    if size is None:
        try:
            described = os.fstat(stored.fileno())
        except io.UnsupportedOperation:
            return
        if not stat.S_ISREG(described.st_mode):
            return
        size = described.st_size
    if size != length:
        raise CorruptMetadataError(
            f"Stored file {stored.file_id} holds {size} bytes but its metadata "
            f"says {length}: restore it from a backup or delete it."
        )


def _offload_header(
    options: ServeOptions, depot_name: str, stored: StoredFile
) -> tuple[str, str] | None:
    if options.offload is None:
        return None
    path = stored.local_path
    if path is None:
        return None  # only files on this disk can be sent by the front server
    if options.offload == "x-sendfile":
        # The path's bytes as they are on disk, one header character each.
        text = os.fsencode(os.path.abspath(path)).decode("latin-1")
        if CONTROL_CHARS.search(text):
            return None  # no header can carry it: depot sends the file itself
        return OFFLOAD_HEADERS["x-sendfile"], text
    location = f"{options.offload_location}/{depot_name}/{stored.file_id}/file"
    return OFFLOAD_HEADERS["x-accel-redirect"], url_for_header(location)


def _is_filedepot_not_found(exc: OSError) -> bool:
    """Whether ``exc`` is how a backend written for filedepot says a file is missing.

    filedepot's backends raise a bare ``IOError("File ... not existing")``, and
    its middleware answered 404. A failure of the system or of a library has
    an errno or a class of its own (a socket error, a timeout, depot's
    BackendUnavailableError), and stays a 503.
    """
    return type(exc) is OSError and exc.errno is None


def url_for_header(url: str) -> str:
    """``url`` with every character a header cannot carry as such percent-encoded."""
    return _NOT_URL_SAFE.sub(lambda m: quote(m[0], safe="", errors="replace"), url)
