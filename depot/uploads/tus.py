"""A tus 1.0 server (https://tus.io/protocols/resumable-upload) over a depot's chunked uploads.

:class:`TusServer` decides every answer from the request's method, path and
headers and its body, and does the work through the depot's chunked upload
API (:mod:`depot.uploads.chunked`), so uploads live in the storage: any worker
process or host takes any request of an upload, and one killed between two
requests loses nothing acknowledged. :class:`TusWSGIApp` and
:class:`TusASGIApp` only carry its answers out.

Supported: the core protocol and the extensions ``creation``,
``creation-with-upload``, ``termination``, ``checksum`` (``sha1``, ``sha256``,
``md5``) and ``expiration``. Not supported: ``creation-defer-length`` and
``concatenation``.

.. versionadded:: 1.0
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from depot.exceptions import (
    BackendUnavailableError,
    ContentTypeNotAllowedError,
    FileTooLargeError,
    InvalidChunk,
    UploadNotFound,
    ValidationError,
)
from depot.http.request import RequestFacts
from depot.http.rules import http_date
from depot.http.serve import url_for_header
from depot.io._chunks import BLOCK_SIZE
from depot.io._fileinfo import SupportsRead
from depot.io.interfaces import is_size
from depot.uploads.chunked import UploadStatus

if TYPE_CHECKING:
    from depot.io.interfaces import FileStorage, StoredFile
    from depot.validators import FileValidator

__all__ = ["TusASGIApp", "TusAnswer", "TusServer", "TusWSGIApp"]

log = logging.getLogger("depot.uploads.tus")

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"
#: What ``Upload-Checksum`` may name (the checksum extension).
CHECKSUMS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "md5": hashlib.md5,
}
CHUNK_TYPE = "application/offset+octet-stream"
#: The status the checksum extension names for a chunk that does not match.
CHECKSUM_MISMATCH = 460

_REQUEST_HEADERS = (
    "Authorization, Content-Type, Origin, Tus-Resumable, Upload-Checksum, Upload-Concat, "
    "Upload-Defer-Length, Upload-Length, Upload-Metadata, Upload-Offset, X-HTTP-Method-Override, "
    "X-Requested-With"
)
_EXPOSED_HEADERS = (
    "Location, Tus-Checksum-Algorithm, Tus-Extension, Tus-Max-Size, Tus-Resumable, "
    "Tus-Version, Upload-Expires, Upload-Length, Upload-Metadata, Upload-Offset"
)
# Header values the protocol reads are digits; more than this is no size.
_MAX_DIGITS = 19
#: What a checksummed chunk is held in memory up to, before a temporary file.
_SPOOL = 1 << 20

CompletionCallback = Callable[["StoredFile", UploadStatus, RequestFacts], None]


@dataclass
class TusAnswer:
    """What to send back: a status, headers, and a short body (an error's message)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def status_line(self) -> str:
        """The WSGI status line; 460 has no phrase in the HTTP registry, tus names it."""
        if self.status == CHECKSUM_MISMATCH:
            return "460 Checksum Mismatch"
        return f"{self.status} {HTTPStatus(self.status).phrase}"


class TusServer:
    """The tus protocol over one depot, for the front ends to mount at ``mountpoint``.

    :param depot: the storage, or the name of a configured depot (looked up
        per request, so it may be configured after the server is made).
    :param mountpoint: where the uploads are, under the application's mount:
        ``POST <mountpoint>`` creates one, ``<mountpoint>/<id>`` is each.
    :param max_size: the largest upload accepted (``Tus-Max-Size``), in bytes;
        the depot's own ``max_size`` applies too.
    :param cors_origins: origins allowed to upload from a browser (``*`` for
        any); none by default.
    :param on_complete: called with the stored file, the upload's status and
        the request that finished it, once the last byte is in and the file is
        stored: where the application attaches the file to its model.
    :param validators: a field's checks, run before the file is stored.
    """

    def __init__(
        self,
        depot: str | FileStorage,
        mountpoint: str = "/uploads",
        max_size: int | None = None,
        cors_origins: Sequence[str] = (),
        on_complete: CompletionCallback | None = None,
        validators: Iterable[FileValidator] = (),
    ) -> None:
        if not mountpoint.startswith("/"):
            raise ValueError(f"mountpoint must start with '/', not {mountpoint!r}.")
        self._depot = depot
        self.mountpoint = mountpoint.rstrip("/")
        self.max_size = max_size
        self.cors_origins = tuple(cors_origins)
        self.on_complete = on_complete
        self.validators = list(validators)

    @property
    def depot(self) -> FileStorage:
        """The storage the uploads go to."""
        if isinstance(self._depot, str):
            from depot.manager import DepotManager

            storage = DepotManager.get(self._depot)
            if storage is None:
                raise BackendUnavailableError(f"The depot {self._depot!r} is not configured.")
            return storage
        return self._depot

    def handles(self, path: str) -> bool:
        """Whether ``path`` is the server's (its mountpoint, or an upload under it)."""
        return path == self.mountpoint or path.startswith(self.mountpoint + "/")

    def handle(self, request: RequestFacts, body: SupportsRead) -> TusAnswer:
        """The answer to ``request``, whose body is read from ``body``."""
        method = request.method.upper()
        override = request.headers.get("x-http-method-override")
        if method == "POST" and override:
            method = override.strip().upper()
        answer = self._answer(method, request, body)
        answer.headers.append(("Tus-Resumable", TUS_VERSION))
        answer.headers.append(("Cache-Control", "no-store"))
        answer.headers.extend(self._cors(request, method))
        return answer

    def _answer(self, method: str, request: RequestFacts, body: SupportsRead) -> TusAnswer:
        path = request.path
        if not self.handles(path):
            return _error(404, "Not a tus endpoint.")
        upload_id = path[len(self.mountpoint) + 1 :] or None
        if upload_id is not None and "/" in upload_id:
            return _error(404, "No such upload.")
        if method != "OPTIONS" and request.headers.get("tus-resumable", "").strip() != TUS_VERSION:
            answer = _error(412, f"This server speaks tus {TUS_VERSION}: send Tus-Resumable.")
            answer.headers.append(("Tus-Version", TUS_VERSION))
            return answer
        try:
            if method == "OPTIONS":
                return self._options()
            if upload_id is None:
                if method != "POST":
                    return _not_allowed("POST, OPTIONS")
                return self._create(request, body)
            if method == "HEAD":
                return self._head(upload_id, request)
            if method == "PATCH":
                return self._patch(upload_id, request, body)
            if method == "DELETE":
                self.depot.abort(upload_id)
                return TusAnswer(204)
            return _not_allowed("HEAD, PATCH, DELETE, OPTIONS")
        except ClientGone:
            return _error(400, "The request's body ended before its Content-Length.")
        except UploadNotFound:
            return _error(404, "No such upload: it was never created, or expired, or was deleted.")
        except FileTooLargeError as exc:
            return _error(413, str(exc))
        except ContentTypeNotAllowedError as exc:
            return _error(415, str(exc))
        except InvalidChunk as exc:
            return _error(409, str(exc))
        except ValidationError as exc:
            return _error(400, str(exc))
        except (BackendUnavailableError, OSError):
            log.exception("tus: the depot failed on %s %s", method, request.path)
            return _error(503, "The storage is unavailable; try again later.")
        except NotImplementedError:
            # The application mounted tus over a depot that keeps no uploads (S3, GCS, SQL).
            log.exception("tus: the depot takes no chunked uploads")
            return _error(501, "This server cannot take resumable uploads.")

    def _options(self) -> TusAnswer:
        headers = [
            ("Tus-Version", TUS_VERSION),
            ("Tus-Extension", EXTENSIONS),
            ("Tus-Checksum-Algorithm", ",".join(CHECKSUMS)),
        ]
        limit = self._limit()
        if limit is not None:
            headers.append(("Tus-Max-Size", str(limit)))
        return TusAnswer(204, headers)

    def _limit(self) -> int | None:
        limits = [c.max_size for c in self.depot.policy if c.max_size is not None]
        if self.max_size is not None:
            limits.append(self.max_size)
        limits += [v.max_size for v in self.validators if v.max_size is not None]
        return min(limits) if limits else None

    def _create(self, request: RequestFacts, body: SupportsRead) -> TusAnswer:
        headers = request.headers
        if headers.get("upload-defer-length") is not None:
            return _error(400, "Upload-Defer-Length is not supported: send Upload-Length.")
        if headers.get("upload-concat") is not None:
            return _error(400, "The concatenation extension is not supported.")
        size = _number(headers.get("upload-length"))
        # 19 digits may still exceed what a file can hold (2**63 - 1): reserve()
        # would raise ValueError, a 500; it is a bad header like any other.
        if size is None or not is_size(size):
            return _error(400, "Send Upload-Length: the upload's size in bytes, as digits.")
        limit = self._limit()
        if limit is not None and size > limit:
            return _error(413, f"The upload is too large: at most {limit} bytes are accepted.")
        metadata = _metadata(headers.get("upload-metadata"))
        if metadata is None:
            return _error(
                400, "Upload-Metadata is a comma-separated list of keys and base64 values."
            )
        filename = metadata.get("filename") or metadata.get("name")
        content_type = metadata.get("filetype") or metadata.get("type")
        depot = self.depot
        upload_id = depot.reserve(size, None, content_type, filename, metadata)
        location = f"{request.script_name}{self.mountpoint}/{upload_id}"
        answer = TusAnswer(201, [("Location", url_for_header(location))])
        if _has_body(request):
            if headers.get("content-type", "").split(";")[0].strip().lower() != CHUNK_TYPE:
                depot.abort(upload_id)
                return _error(415, f"An upload's bytes are sent as {CHUNK_TYPE}.")
            done = self._write(upload_id, 0, request, body, size)
            if isinstance(done, TusAnswer):
                depot.abort(upload_id)
                return done
            answer.headers.append(("Upload-Offset", str(done.offset)))
        status = depot.status(upload_id)
        if status.complete and status.file_id is None:
            # An empty upload is whole once created: clients send no PATCH for it
            # (tus-js-client reports success on the 201), so it is stored now.
            status = self._finish(upload_id, request)
        answer.headers.append(("Upload-Expires", _expires(status)))
        return answer

    def _head(self, upload_id: str, request: RequestFacts) -> TusAnswer:
        status = self.depot.status(upload_id)
        if status.complete and status.file_id is None:
            # The request that sent the last bytes died before storing the file
            # (or the storage failed then): its client, told the offset is the
            # length, sends nothing more, and the upload would never be stored.
            status = self._finish(upload_id, request)
        headers = [
            ("Upload-Offset", str(status.offset)),
            ("Upload-Length", str(status.size)),
            ("Upload-Expires", _expires(status)),
        ]
        if status.metadata:
            headers.append(("Upload-Metadata", _encode_metadata(status.metadata)))
        return TusAnswer(200, headers)

    def _patch(self, upload_id: str, request: RequestFacts, body: SupportsRead) -> TusAnswer:
        headers = request.headers
        if headers.get("content-type", "").split(";")[0].strip().lower() != CHUNK_TYPE:
            return _error(415, f"PATCH sends the upload's bytes as {CHUNK_TYPE}.")
        offset = _number(headers.get("upload-offset"))
        if offset is None:
            return _error(400, "Send Upload-Offset: where these bytes go, as digits.")
        status = self.depot.status(upload_id)
        if offset != status.offset:
            answer = _error(409, f"The upload is at offset {status.offset}, not {offset}.")
            answer.headers.append(("Upload-Offset", str(status.offset)))
            return answer
        length = _number(headers.get("content-length"))
        if length is not None and offset + length > status.size:
            return _error(413, f"These bytes go past the upload's length ({status.size} bytes).")
        if status.file_id is not None:
            # Stored already (an empty upload, at its creation): nothing is left to take.
            return TusAnswer(
                204, [("Upload-Offset", str(status.offset)), ("Upload-Expires", _expires(status))]
            )
        done = self._write(upload_id, offset, request, body, status.size - offset)
        if isinstance(done, TusAnswer):
            return done
        return TusAnswer(
            204, [("Upload-Offset", str(done.offset)), ("Upload-Expires", _expires(done))]
        )

    def _write(
        self, upload_id: str, offset: int, request: RequestFacts, body: SupportsRead, left: int
    ) -> UploadStatus | TusAnswer:
        """Store the request's bytes at ``offset``; finish the upload if they were the last."""
        depot = self.depot
        checksum = request.headers.get("upload-checksum")
        if checksum is None:
            status = depot.write_chunk(upload_id, offset, body)
        else:
            parsed = _parse_checksum(checksum)
            if isinstance(parsed, TusAnswer):
                return parsed
            algorithm, expected = parsed
            # The chunk is checked before it is stored: held aside while it arrives.
            with tempfile.SpooledTemporaryFile(_SPOOL) as held:
                found = CHECKSUMS[algorithm]()
                while block := body.read(BLOCK_SIZE):
                    found.update(block)
                    held.write(block)
                    if held.tell() > left:
                        # Held before the size is checked by write_chunk(): a body
                        # without Content-Length (chunked) would fill the disk.
                        return _error(
                            413, f"These bytes go past the upload's length ({left} left)."
                        )
                if found.digest() != expected:
                    return _error(
                        CHECKSUM_MISMATCH,
                        f"The bytes sent do not have the {algorithm} of Upload-Checksum; "
                        "send them again.",
                    )
                held.seek(0)
                status = depot.write_chunk(upload_id, offset, held)
        if status.complete and status.file_id is None:
            status = self._finish(upload_id, request)
        return status

    def _finish(self, upload_id: str, request: RequestFacts) -> UploadStatus:
        """Store the complete upload as a file, and tell ``on_complete``."""
        depot = self.depot
        try:
            file_id, made = depot._finalize(upload_id, self.validators)
        except UploadNotFound:
            # Another request is finalizing it (and calls on_complete): not a 404,
            # which would tell this client its upload is gone.
            return depot.status(upload_id)
        except ValidationError:
            # Refused as it is: sending it again cannot help, so nothing is kept.
            depot.abort(upload_id)
            raise
        status = depot.status(upload_id)
        # Not when another request had finished it meanwhile: it told on_complete.
        if made and self.on_complete is not None:
            self.on_complete(depot.get(file_id), status, request)
        return status

    def _cors(self, request: RequestFacts, method: str) -> list[tuple[str, str]]:
        origin = request.headers.get("origin")
        if not origin or not self.cors_origins:
            return []
        if "*" not in self.cors_origins and origin not in self.cors_origins:
            return []
        # Only a configured origin is sent back, never the request's text as such.
        allowed = "*" if "*" in self.cors_origins else origin
        headers = [
            ("Access-Control-Allow-Origin", allowed),
            ("Access-Control-Expose-Headers", _EXPOSED_HEADERS),
            ("Vary", "Origin"),
        ]
        if method == "OPTIONS":
            headers += [
                ("Access-Control-Allow-Methods", "POST, HEAD, PATCH, DELETE, OPTIONS"),
                ("Access-Control-Allow-Headers", _REQUEST_HEADERS),
                ("Access-Control-Max-Age", "86400"),
            ]
        return headers


def _error(status: int, message: str) -> TusAnswer:
    body = message.encode("utf-8")
    return TusAnswer(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        body,
    )


def _not_allowed(allowed: str) -> TusAnswer:
    answer = _error(405, f"Allowed here: {allowed}.")
    answer.headers.append(("Allow", allowed))
    return answer


def _number(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > _MAX_DIGITS:
        return None
    return int(value)


def _has_body(request: RequestFacts) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return (_number(length) or 0) > 0
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


def _metadata(value: str | None) -> dict[str, str] | None:
    """``Upload-Metadata`` as a dict, or ``None`` if it is malformed.

    Values that are not UTF-8 text are dropped: depot keeps text metadata.
    """
    found: dict[str, str] = {}
    if value is None or not value.strip():
        return found
    for pair in value.split(","):
        parts = pair.strip().split(" ")
        if not parts[0] or len(parts) > 2 or not parts[0].isascii() or parts[0] in found:
            return None
        raw = b""
        if len(parts) == 2:
            try:
                raw = base64.b64decode(parts[1], validate=True)
            except (binascii.Error, ValueError):
                return None
        try:
            found[parts[0]] = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return found


def _encode_metadata(metadata: dict[str, str]) -> str:
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}" if value else key
        for key, value in metadata.items()
        if key.isascii() and key.isprintable() and " " not in key and "," not in key
    )


def _parse_checksum(value: str) -> tuple[str, bytes] | TusAnswer:
    algorithm, _, encoded = value.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUMS:
        return _error(400, f"Upload-Checksum: use one of {', '.join(CHECKSUMS)}.")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != CHECKSUMS[algorithm]().digest_size:
        return _error(400, f"Upload-Checksum: the {algorithm} digest, in base64, after the name.")
    return algorithm, digest


def _expires(status: UploadStatus) -> str:
    return http_date(datetime.fromtimestamp(status.expires_at, timezone.utc))


# The front ends.


class ClientGone(Exception):
    """The client stopped sending a request body (it disconnected)."""


class _LimitedInput:
    """A WSGI input read up to its Content-Length (servers need not end it there).

    A read the server fails (the client went away) raises :class:`ClientGone`,
    so that the chunk being written is dropped and not taken for a storage fault.
    """

    def __init__(self, stream: Any, length: int | None) -> None:
        self._stream = stream
        self._left = length

    def read(self, n: int = -1) -> bytes:
        if self._left is not None and self._left <= 0:
            return b""
        want = (
            n if self._left is None else (self._left if n is None or n < 0 else min(n, self._left))
        )
        try:
            data: bytes = self._stream.read(want)
        except (OSError, ValueError) as exc:  # gunicorn's NoMoreData is an IOError
            raise ClientGone() from exc
        if self._left is not None:
            if not data:
                raise ClientGone()
            self._left -= len(data)
        return data


class TusWSGIApp:
    """The tus server as a WSGI application; other paths get ``fallback``, else 404.

    :param server: the :class:`TusServer`, or the keyword arguments to make one.
    """

    def __init__(
        self, server: TusServer | None = None, fallback: Any = None, **options: Any
    ) -> None:
        self.server = server if server is not None else TusServer(**options)
        self.fallback = fallback

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        from depot.http.wsgi import request_facts

        request = request_facts(environ)
        if not self.server.handles(request.path) and self.fallback is not None:
            result: Iterable[bytes] = self.fallback(environ, start_response)
            return result
        length = _number(environ.get("CONTENT_LENGTH") or None)
        if length is None and not environ.get("wsgi.input_terminated"):
            length = 0  # no length and no end: nothing is read (RFC 9112 §6.3)
        body = _LimitedInput(environ.get("wsgi.input"), length)
        answer = self.server.handle(request, body)
        start_response(answer.status_line, answer.headers)
        return [answer.body]


class TusASGIApp:
    """The tus server as an ASGI application; other paths get ``fallback``, else 404.

    The protocol's work (storage included) runs in a worker thread; the body
    is read from the event loop as the storage takes it, a block at a time.
    """

    def __init__(
        self, server: TusServer | None = None, fallback: Any = None, **options: Any
    ) -> None:
        self.server = server if server is not None else TusServer(**options)
        self.fallback = fallback

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from depot.http.asgi import request_facts
        from depot.io._async import _anyio, blocking_content

        if scope["type"] != "http":
            if self.fallback is not None:
                await self.fallback(scope, receive, send)
            return
        request = request_facts(scope)
        if not self.server.handles(request.path) and self.fallback is not None:
            await self.fallback(scope, receive, send)
            return
        anyio = _anyio("TusASGIApp")

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone()
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return

        async with blocking_content("TusASGIApp", body()) as stream:
            answer = await anyio.to_thread.run_sync(self.server.handle, request, stream)
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in answer.headers
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})
