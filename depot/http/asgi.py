"""The ASGI front end: :class:`DepotASGIMiddleware` and :class:`DepotASGIApp`.

The twin of :mod:`depot.http.wsgi`, as thin, over the same HTTP core
(:mod:`depot.http.serve`, :mod:`depot.http.answer`): the scope becomes
:class:`~depot.http.request.RequestFacts`, the core decides and opens the
answer, and this module only sends it. Storage is touched in worker threads
only, never in the event loop: the lookup, the answer and the first block in
one hop (a small file needs no other), each later block in one more.

The public import path is :mod:`depot.asgi`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any

try:
    import anyio
    import anyio.to_thread
except ModuleNotFoundError as exc:  # pragma: no cover (anyio comes with every ASGI framework)
    from depot._settings import missing_dependency_message

    raise ImportError(missing_dependency_message("depot.asgi", "anyio")) from exc

from depot.http.access import needs_authorize
from depot.http.answer import Answer, not_found, unavailable
from depot.http.body import BLOCK_SIZE
from depot.http.options import ServeOptions
from depot.http.request import RequestFacts, current_mount
from depot.http.serve import Prepared, Route, prepare, route

__all__ = ["DepotASGIApp", "DepotASGIMiddleware", "request_facts"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("depot.middleware")

#: Response header names as ASGI sends them (lower-case bytes), made once:
#: the core sends a small fixed set of names.
_NAMES: dict[str, bytes] = {}


def request_facts(scope: Scope) -> RequestFacts:
    """What the HTTP core reads of an ASGI ``http`` request.

    The path is the one under the application's mount: ASGI servers (and
    Starlette's ``Mount``) put ``root_path`` in front of ``path``, older ones
    do not; both are read alike.

    .. versionadded:: 1.0
    """
    root_path: str = scope.get("root_path", "")
    path: str = scope["path"]
    if root_path and path.startswith(root_path):
        under = path[len(root_path) :]
        if not under or under[0] == "/":  # "/filesx" is not under "/files"
            path = under
    return RequestFacts(
        scope["method"],
        path,
        scope.get("query_string", b"").decode("latin-1"),
        _headers(scope.get("headers", ())),
        root_path,
        scope,
    )


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in headers:
            # One field of several lines (RFC 9110 §5.3); cookies are the
            # exception, and HTTP/2 sends each as its own (RFC 9113 §8.2.3).
            headers[name] += ("; " if name == "cookie" else ", ") + value
        else:
            headers[name] = value
    return headers


def _start(status: int, headers: list[tuple[str, str]]) -> tuple[Message, int | None]:
    """The ``http.response.start`` message, and the Content-Length it announces."""
    encoded = []
    length = None
    for name, value in headers:
        raw_name = _NAMES.get(name)
        if raw_name is None:
            raw_name = name.lower().encode("latin-1")
            if len(_NAMES) < 256:
                _NAMES[name] = raw_name
        if raw_name == b"content-length":
            length = int(value)
        # Latin-1: the core builds every value from checked parts (HTTP.md).
        encoded.append((raw_name, value.encode("latin-1")))
    return {"type": "http.response.start", "status": status, "headers": encoded}, length


class _Sending:
    """The body of one answer on its way out, and the one place its file is closed.

    Made in the event loop; :meth:`open` and :meth:`pull` run in worker
    threads. Whatever happens (the client leaves, a task is cancelled, a
    block fails), the front end calls :meth:`close`, which closes the stored
    file once.
    """

    __slots__ = ("_chunks", "_prepared", "_remaining", "file", "length")

    def __init__(self) -> None:
        self._prepared: Prepared | None = None
        self._chunks: Iterator[bytes] = iter(())
        self._remaining: int | None = None
        self.file: Any = None
        self.length: int | None = None

    def open(
        self,
        request: RequestFacts,
        found: Route,
        options: ServeOptions,
        zerocopy: bool,
        authorized: bool | None,
    ) -> tuple[Message, bytes, bool]:
        """Look the file up, open the answer, read up to a block (blocking).

        :returns: the start message, the first bytes of the body, and whether
            they are all of it (then the file is closed already).
        """
        prepared = prepare(request, found, options, zerocopy, authorized)
        self._prepared = prepared
        start, self.length = _start(prepared.status, prepared.headers)
        if prepared.file is not None:
            self.file = prepared.file
            return start, b"", False
        self._chunks = iter(prepared.body)
        self._remaining = self.length
        first, done = self.pull()
        return start, first, done

    def pull(self) -> tuple[bytes, bool]:
        """The next bytes of the body, about a block, and whether it is over (blocking).

        The body ends with the bytes the Content-Length announced (no read
        more to find out), or when the core's body does; more than announced
        is never sent (the client would read it as the next answer).
        """
        chunks = []
        size = 0
        remaining = self._remaining
        done = False
        while size < BLOCK_SIZE:
            if remaining is not None and remaining <= 0:
                done = True
                break
            chunk = next(self._chunks, None)
            if chunk is None:
                done = True
                break
            if remaining is not None:
                if len(chunk) > remaining:
                    chunk = chunk[:remaining]
                remaining -= len(chunk)
            chunks.append(chunk)
            size += len(chunk)
        else:
            done = remaining is not None and remaining <= 0
        self._remaining = remaining
        if done:
            self.close()
        return b"".join(chunks), done

    @property
    def is_open(self) -> bool:
        return self._prepared is not None

    def close(self) -> None:
        """Close the stored file (once; later calls do nothing)."""
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            prepared.close()


class _ASGIFrontEnd:
    """What the ASGI app and middleware share: the options, url_for, and answering."""

    def __init__(
        self,
        mountpoint: str = "/depot",
        cache_max_age: int = 3600 * 24 * 7,
        inline_types: Iterable[str] | None = None,
        offload: str | None = None,
        offload_location: str = "/_depot",
        authorize: Callable[..., Any] | None = None,
        root_path: str = "",
    ) -> None:
        self.options = ServeOptions(
            mountpoint,
            cache_max_age,
            inline_types,
            offload,
            offload_location,
            authorize,
            root_path,
            front_end="ASGI",
        )
        self.mountpoint = mountpoint
        self.cache_max_age = self.options.cache_max_age
        self.inline_types = self.options.inline_types
        self.offload = self.options.offload
        self.offload_location = self.options.offload_location
        self.root_path = self.options.root_path

    def _mount(self) -> str:
        return self.options.root_path

    def url_for(self, path: str) -> str:
        """Return the URL of ``'<depot name>/<file id>'``, where it is mounted."""
        return self._mount() + self.options.prefix + path

    async def _answer(
        self,
        found: Route | Answer,
        request: RequestFacts,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        if isinstance(found, Answer):
            start, _ = _start(found.status, found.headers)
            if await _deliver(send, start):
                await _deliver(send, {"type": "http.response.body", "body": found.text})
            return
        options = self.options
        authorized = None
        if options.authorize_is_async and needs_authorize(request, found, options):
            assert options.authorize is not None
            # Awaited here, in the event loop, before the file is looked up;
            # a plain authorize is called by the core, in the worker thread.
            try:
                authorized = bool(await options.authorize(request, found.name, found.file_id))
            except Exception:  # the application's code: fail closed, and say why in the log
                log.exception("authorize(%r, %r) failed", found.name, found.file_id)
                await self._answer(unavailable(request.method), request, scope, receive, send)
                return
        zerocopy = "http.response.zerocopysend" in (scope.get("extensions") or ())
        sending = _Sending()
        try:
            start, first, done = await anyio.to_thread.run_sync(
                sending.open, request, found, options, zerocopy, authorized
            )
            if not await _deliver(send, start):
                return
            if done:
                await _deliver(send, {"type": "http.response.body", "body": first})
            elif sending.file is not None:
                # The server sends the descriptor itself (os.sendfile); the
                # file's size was checked against the Content-Length sent.
                await _deliver(
                    send,
                    {
                        "type": "http.response.zerocopysend",
                        "file": sending.file,
                        "offset": 0,
                        "count": sending.length,
                    },
                )
            else:
                await _stream(sending, first, receive, send)
        finally:
            if sending.is_open:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(sending.close)


async def _deliver(send: Send, message: Message) -> bool:
    """Send ``message``; False if the client is gone (ASGI 2.4 servers raise OSError)."""
    try:
        await send(message)
    except OSError:
        return False
    return True


async def _stream(sending: _Sending, first: bytes, receive: Receive, send: Send) -> None:
    """Send a body of several blocks, reading each in a worker thread.

    A client that hangs up stops it: most servers (ASGI before 2.4) ignore
    what is sent after a disconnect, so ``http.disconnect`` is listened for
    meanwhile, and reading stops after the block being read. A block that
    cannot be read raises (the server breaks the connection: the status
    line is out).
    """
    failure: Exception | None = None
    async with anyio.create_task_group() as watching:
        watching.start_soon(_until_disconnect, receive, watching.cancel_scope)
        try:
            await _send_blocks(sending, first, send)
        except Exception as exc:  # raised as it is, not in an ExceptionGroup
            failure = exc
        watching.cancel_scope.cancel()
    if failure is not None:
        raise failure


async def _send_blocks(sending: _Sending, chunk: bytes, send: Send) -> None:
    done = False
    while not done:
        if not await _deliver(
            send, {"type": "http.response.body", "body": chunk, "more_body": True}
        ):
            return
        chunk, done = await anyio.to_thread.run_sync(sending.pull)
    await _deliver(send, {"type": "http.response.body", "body": chunk})


async def _until_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


class DepotASGIMiddleware(_ASGIFrontEnd):
    """ASGI middleware serving the files of every configured depot.

    The same options and answers as :class:`~depot.middleware.DepotMiddleware`:
    a file ``<depot name>/<file id>`` is served at
    ``<mountpoint>/<depot name>/<file id>`` under wherever the application is
    mounted; other paths, other methods, ``websocket`` and ``lifespan`` scopes
    go to ``app`` untouched. Usually made with
    :meth:`DepotManager.make_asgi_middleware`.

    Storage is read in worker threads (``anyio.to_thread``), never in the
    event loop; a server offering ``http.response.zerocopysend`` is given a
    local file's descriptor to send itself.

    :param app: the ASGI application to wrap.
    :param mountpoint: the URL path files are served under; must start with ``/``.
    :param cache_max_age: seconds browsers and proxies may cache a file.
    :param inline_types: content types served inline; the default is raster
        images, audio, video, PDF and plain text. Every other type is served as
        an attachment with ``Content-Security-Policy: sandbox``.
    :param offload: ``'x-accel-redirect'`` (nginx) or ``'x-sendfile'``: local
        files are sent by the front server.
    :param offload_location: with ``x-accel-redirect``, the nginx ``internal``
        location that maps to the depots' storage paths.
    :param authorize: ``authorize(request, depot_name, file_id) -> bool``, a
        plain or an ``async def`` function, called before any file is looked
        up; False answers 403. A plain one runs in a worker thread.
    :param root_path: where the application is mounted, for :meth:`url_for`
        called outside a request (inside one, the request's ``root_path``).

    .. versionadded:: 1.0
    """

    def __init__(
        self,
        app: ASGIApp,
        mountpoint: str = "/depot",
        cache_max_age: int = 3600 * 24 * 7,
        inline_types: Iterable[str] | None = None,
        offload: str | None = None,
        offload_location: str = "/_depot",
        authorize: Callable[..., Any] | None = None,
        root_path: str = "",
    ) -> None:
        super().__init__(
            mountpoint, cache_max_age, inline_types, offload, offload_location, authorize, root_path
        )
        self.app = app

    def _mount(self) -> str:
        mount = current_mount.get()
        return self.options.root_path if mount is None else mount.rstrip("/")

    def url_for(self, path: str) -> str:
        """Return the URL of ``'<depot name>/<file id>'``.

        Called while the wrapped application handles a request, the URL starts
        with that request's ``root_path``; otherwise with the ``root_path`` option.
        """
        return super().url_for(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            request = request_facts(scope)
            found = route(request, self.options)
            if found is not None:
                await self._answer(found, request, scope, receive, send)
                return
        elif kind != "websocket":
            await self.app(scope, receive, send)  # lifespan, and types to come
            return
        token = current_mount.set(scope.get("root_path", ""))
        try:
            await self.app(scope, receive, send)
        finally:
            current_mount.reset(token)


class DepotASGIApp(_ASGIFrontEnd):
    """An ASGI application serving the files of every configured depot, and nothing else.

    For mounting in a framework's routes (Starlette's
    ``Mount('/files', app=DepotASGIApp())``): a file ``<depot name>/<file id>``
    is at ``<mountpoint>/<depot name>/<file id>`` under the mount; any other
    request is a 404. It answers ``lifespan`` itself and closes websockets.
    The options are :class:`DepotASGIMiddleware`'s; :meth:`url_for` builds
    URLs with the ``root_path`` option (where the app is mounted).

    .. versionadded:: 1.0
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            request = request_facts(scope)
            found = route(request, self.options)
            await self._answer(
                not_found(request.method) if found is None else found,
                request,
                scope,
                receive,
                send,
            )
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1000})  # before accept: a 403
