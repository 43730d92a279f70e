"""What only the ASGI front end has: mounts, scopes, threads, disconnects, server extensions.

The HTTP rules themselves run on both front ends in tests/test_middleware.py.
Here requests are played by hand (a scope, a scripted ``receive``, the
messages ``send`` gets) where the order of events matters, and through
Starlette, FastAPI and a2wsgi where mounting does.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from a2wsgi import WSGIMiddleware as A2WSGIMiddleware
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from depot.asgi import DepotASGIApp, DepotASGIMiddleware
from depot.http.asgi import request_facts
from depot.http.body import BLOCK_SIZE
from depot.io.interfaces import FileStorage
from depot.io.memory import MemoryFileStorage, MemoryStoredFile
from depot.manager import DepotManager
from tests.frontends import asgi_app, wsgi_app

pytestmark = pytest.mark.anyio

BIG = os.urandom(4 * BLOCK_SIZE + 1000)  # five blocks


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def memory() -> FileStorage:
    return DepotManager.configure("default", {"depot.backend": "memory"})


@pytest.fixture
def local(tmp_path) -> FileStorage:
    return DepotManager.configure(
        "default", {"depot.storage_path": str(tmp_path / "files"), "depot.fsync": "false"}
    )


def http_scope(
    path: str,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    root_path: str = "",
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": root_path,
        "headers": headers or [],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }
    if extensions is not None:
        scope["extensions"] = extensions
    return scope


class Exchange:
    """One request played by hand: a scripted ``receive`` and the messages sent.

    ``receive`` gives the (empty) request body, then ``http.disconnect`` once
    :meth:`hang_up` is called (never, unless it is).
    """

    def __init__(
        self, on_send: Callable[[Exchange, dict[str, Any]], Awaitable[None]] | None = None
    ):
        self.messages: list[dict[str, Any]] = []
        self._body_given = False
        self._hung_up = anyio.Event()
        self._on_send = on_send

    def hang_up(self) -> None:
        self._hung_up.set()

    async def receive(self) -> dict[str, Any]:
        if not self._body_given:
            self._body_given = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._hung_up.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if self._on_send is not None:
            await self._on_send(self, message)

    @property
    def io(self) -> tuple[Any, Any]:
        return self.receive, self.send

    @property
    def status(self) -> int:
        assert self.messages[0]["type"] == "http.response.start"
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == "http.response.body"]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.bodies)


class Tracked:
    """Every file the depot 'default' opens (its get() wrapped), to check each is closed."""

    def __init__(self, storage: FileStorage, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened: list[Any] = []
        self.reads = 0
        original = type(storage).get
        tracked = self

        def get(self: Any, file_or_id: Any) -> Any:
            stored = original(self, file_or_id)
            tracked.opened.append(stored)
            original_read = stored.read

            def read(*args: Any) -> bytes:
                tracked.reads += 1
                return original_read(*args)

            stored.read = read
            return stored

        monkeypatch.setattr(type(storage), "get", get)

    @property
    def all_closed(self) -> bool:
        return bool(self.opened) and all(stored.closed for stored in self.opened)


async def fetch(app: Any, url: str, **kw: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get(url, **kw)


# --- the request as the core sees it ---------------------------------------------------


def test_request_facts_from_the_scope() -> None:
    scope = http_scope(
        "/files/depot/default/x",
        headers=[
            (b"accept", b"text/plain"),
            (b"Range", b"bytes=0-1"),
            (b"accept", b"image/png"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
            (b"x-name", "caf\u00e9".encode("latin-1")),
        ],
        root_path="/files",
    )
    scope["query_string"] = b"v=\xe9"
    request = request_facts(scope)
    assert (request.method, request.path, request.script_name) == (
        "GET",
        "/depot/default/x",
        "/files",
    )
    assert request.query_string == "v=\u00e9"
    assert dict(request.headers) == {
        "accept": "text/plain, image/png",  # RFC 9110 §5.3
        "range": "bytes=0-1",
        "cookie": "a=1; b=2",  # RFC 9113 §8.2.3
        "x-name": "caf\u00e9",
    }
    assert request.raw is scope


@pytest.mark.parametrize(
    ("path", "root_path", "path_seen"),
    [
        ("/files/depot/default/x", "/files", "/depot/default/x"),  # ASGI: root_path in path
        ("/depot/default/x", "/files", "/depot/default/x"),  # servers that leave it out
        ("/filesx/depot/default/x", "/files", "/filesx/depot/default/x"),  # not under /files
        ("/files", "/files", ""),
        ("/depot/default/x", "", "/depot/default/x"),
    ],
)
def test_the_path_under_the_mount(path: str, root_path: str, path_seen: str) -> None:
    assert request_facts(http_scope(path, root_path=root_path)).path == path_seen


@pytest.mark.parametrize("path", ["/files/depot/default/{id}", "/depot/default/{id}"])
async def test_served_under_a_mount_whether_the_path_holds_it_or_not(memory, path: str) -> None:
    file_id = memory.create(b"hello", "a.txt")
    exchange = Exchange()
    middleware = DepotASGIMiddleware(asgi_app)
    scope = http_scope(path.format(id=file_id), root_path="/files")
    await middleware(scope, exchange.receive, exchange.send)
    assert (exchange.status, exchange.body) == (200, b"hello")


# --- url_for ----------------------------------------------------------------------------


async def test_url_for_inside_a_request_starts_with_its_root_path(memory) -> None:
    seen = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(DepotManager.url_for("default/x"))
        await asgi_app(scope, receive, send)

    middleware = DepotASGIMiddleware(app, root_path="/elsewhere")
    DepotManager.set_middleware(middleware)
    for root_path in ("/sub", "/sub/", ""):
        await middleware(http_scope(root_path + "/page", root_path=root_path), *Exchange().io)
    assert seen == ["/sub/depot/default/x", "/sub/depot/default/x", "/depot/default/x"]
    # Outside a request: the root_path option.
    assert DepotManager.url_for("default/x") == "/elsewhere/depot/default/x"
    assert DepotASGIMiddleware(app).url_for("default/x") == "/depot/default/x"
    assert DepotASGIMiddleware(app, mountpoint="/f/").url_for("default/x") == "/f/default/x"


def test_the_apps_url_for_uses_its_root_path_option() -> None:
    assert DepotASGIApp(root_path="/files").url_for("default/x") == "/files/depot/default/x"
    assert DepotASGIApp(mountpoint="/").url_for("default/x") == "/default/x"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mountpoint": "depot"}, "DepotASGIMiddleware mountpoint must be an absolute path"),
        ({"offload": "x-lighttpd"}, "DepotASGIMiddleware offload must be one of"),
        ({"root_path": "files"}, "DepotASGIMiddleware root_path must be '' or start with '/'"),
        ({"cache_max_age": -1}, "cache_max_age must be a number of seconds"),
    ],
)
def test_options_are_checked_when_made(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DepotASGIMiddleware(asgi_app, **options)
    with pytest.raises(ValueError, match=message):
        DepotASGIApp(**options)


# --- other scopes -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
async def test_lifespan_and_websocket_go_to_the_app_untouched(kind: str) -> None:
    calls = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append((scope, receive, send, DepotManager.url_for("default/x")))

    middleware = DepotASGIMiddleware(app, mountpoint="/depot")
    DepotManager.set_middleware(middleware)
    scope = {"type": kind, "asgi": {"version": "3.0"}, "state": {}}
    if kind == "websocket":
        scope.update(path="/depot/default/x", root_path="/ws", headers=[])
    exchange = Exchange()
    await middleware(scope, exchange.receive, exchange.send)
    [(seen, receive, send, url)] = calls
    assert seen is scope and receive == exchange.receive and send == exchange.send
    assert url == ("/ws/depot/default/x" if kind == "websocket" else "/depot/default/x")
    assert exchange.messages == []


async def test_the_app_answers_lifespan_itself() -> None:
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await DepotASGIApp()({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_the_app_closes_websockets() -> None:
    sent = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/depot/default/x", "root_path": "", "headers": []}
    await DepotASGIApp()(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1000}]  # before accept: a 403


@pytest.mark.parametrize(("method", "path"), [("GET", "/other"), ("POST", "/depot/default/x")])
async def test_the_app_answers_404_to_what_is_not_a_depot_url(memory, method, path) -> None:
    exchange = Exchange()
    await DepotASGIApp()(http_scope(path, method=method), exchange.receive, exchange.send)
    assert (exchange.status, exchange.body) == (404, b"File not found.")


# --- storage in worker threads ----------------------------------------------------------


class SlowFile(MemoryStoredFile):
    read_threads: list[int] = []

    def read(self, n: int | None = -1) -> bytes:
        SlowFile.read_threads.append(threading.get_ident())
        return super().read(n)


class SlowStorage(MemoryFileStorage):
    """get() returns only once the event loop has run a task meanwhile."""

    entered = threading.Event()
    released = threading.Event()

    def get(self, file_or_id: Any) -> SlowFile:
        SlowStorage.entered.set()
        # Blocking the event loop here would keep the task that releases it
        # from running: the wait would run out and the request fail.
        if not SlowStorage.released.wait(timeout=30):
            raise AssertionError("get() blocked the event loop")
        plain = super().get(file_or_id)
        return SlowFile(self.files, plain.file_id, self.files[plain.file_id])


async def test_storage_never_runs_in_the_event_loop(monkeypatch) -> None:
    monkeypatch.setattr(SlowStorage, "entered", threading.Event())
    monkeypatch.setattr(SlowStorage, "released", threading.Event())
    monkeypatch.setattr(SlowFile, "read_threads", [])
    storage = DepotManager._depots["default"] = SlowStorage()
    SlowStorage.released.set()
    file_id = storage.create(BIG, "big.bin")
    SlowStorage.released.clear()
    loop_thread = threading.get_ident()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while not SlowStorage.entered.is_set():
            await anyio.sleep(0.001)
        ticks += 1  # the loop ran while get() waited
        SlowStorage.released.set()

    exchange = Exchange()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await DepotASGIMiddleware(asgi_app)(
            http_scope(f"/depot/default/{file_id}"), exchange.receive, exchange.send
        )
    assert (exchange.status, exchange.body) == (200, BIG)
    assert ticks == 1
    assert len(SlowFile.read_threads) >= 5  # a read per block
    assert loop_thread not in SlowFile.read_threads


@pytest.mark.parametrize(
    ("size", "hops"), [(1024, 1), (64 * 1024, 1), (BLOCK_SIZE, 1), (len(BIG), 5)]
)
async def test_thread_hops_per_request(memory, monkeypatch, size: int, hops: int) -> None:
    # A small file costs one: lookup, answer, its bytes and closing it.
    tracked = Tracked(memory, monkeypatch)
    file_id = memory.create(BIG[:size], "a.bin")
    calls = []
    run_sync = anyio.to_thread.run_sync

    async def counting(function: Any, *args: Any, **kw: Any) -> Any:
        calls.append(function)
        return await run_sync(function, *args, **kw)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    exchange = Exchange()
    await DepotASGIMiddleware(asgi_app)(
        http_scope(f"/depot/default/{file_id}"), exchange.receive, exchange.send
    )
    assert exchange.body == BIG[:size]
    assert len(calls) == hops
    assert len(exchange.bodies) == hops  # one message per block
    assert tracked.all_closed


# --- the client goes away ----------------------------------------------------------------


async def test_disconnect_mid_body_stops_reading_and_closes_the_file(memory, monkeypatch) -> None:
    tracked = Tracked(memory, monkeypatch)
    file_id = memory.create(BIG * 4, "big.bin")  # twenty blocks

    async def hang_up_after_the_first_block(exchange: Exchange, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            exchange.hang_up()

    exchange = Exchange(hang_up_after_the_first_block)
    await DepotASGIMiddleware(asgi_app)(
        http_scope(f"/depot/default/{file_id}"), exchange.receive, exchange.send
    )
    assert exchange.status == 200
    assert 1 <= len(exchange.bodies) <= 3
    assert tracked.reads <= 3  # of twenty
    assert tracked.all_closed


@pytest.mark.parametrize("error", [OSError("the client is gone"), ConnectionResetError("reset")])
async def test_send_raising_oserror_stops_and_closes_the_file(memory, monkeypatch, error) -> None:
    tracked = Tracked(memory, monkeypatch)
    file_id = memory.create(BIG, "big.bin")

    async def fail_on_the_second_block(exchange: Exchange, message: dict[str, Any]) -> None:
        if len(exchange.bodies) == 2:
            raise error  # what ASGI 2.4 servers (uvicorn's ClientDisconnected) do

    exchange = Exchange(fail_on_the_second_block)
    await DepotASGIMiddleware(asgi_app)(
        http_scope(f"/depot/default/{file_id}"), exchange.receive, exchange.send
    )
    assert len(exchange.bodies) == 2
    assert tracked.reads <= 3
    assert tracked.all_closed


async def test_cancelled_mid_body_closes_the_file(memory, monkeypatch) -> None:
    tracked = Tracked(memory, monkeypatch)
    file_id = memory.create(BIG, "big.bin")
    scope_holder: list[anyio.CancelScope] = []

    async def cancel_after_the_first_block(exchange: Exchange, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            scope_holder[0].cancel()  # the server shuts down

    exchange = Exchange(cancel_after_the_first_block)
    with anyio.CancelScope() as scope:
        scope_holder.append(scope)
        await DepotASGIMiddleware(asgi_app)(
            http_scope(f"/depot/default/{file_id}"), exchange.receive, exchange.send
        )
    assert scope.cancelled_caught
    assert len(exchange.bodies) == 1
    assert tracked.all_closed


async def test_a_block_failing_mid_body_is_raised_as_it_is(memory, monkeypatch) -> None:
    tracked = Tracked(memory, monkeypatch)
    file_id = memory.create(BIG, "big.bin")
    original = MemoryStoredFile.read
    reads = []

    def read(self: Any, n: int | None = -1) -> bytes:
        reads.append(n)
        if len(reads) == 2:
            raise ConnectionResetError("the storage server went away")
        return original(self, n)

    monkeypatch.setattr(MemoryStoredFile, "read", read)
    exchange = Exchange()
    # The status line is out: the server must break the connection, and
    # logs the storage's own error (not an ExceptionGroup around it).
    with pytest.raises(ConnectionResetError, match="went away"):
        await DepotASGIMiddleware(asgi_app)(
            http_scope(f"/depot/default/{file_id}"), exchange.receive, exchange.send
        )
    assert exchange.status == 200 and len(exchange.bodies) == 1
    assert tracked.all_closed


# --- server extensions --------------------------------------------------------------------


async def test_zerocopysend_is_given_the_descriptor_of_a_local_file(local, monkeypatch) -> None:
    tracked = Tracked(local, monkeypatch)
    file_id = local.create(BIG, "big.bin")
    received = []

    async def server_sends_the_file(exchange: Exchange, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.zerocopysend":
            # What the server does with it before send() returns: os.sendfile().
            file = message["file"]
            received.append(os.pread(file.fileno(), message["count"], message["offset"]))

    exchange = Exchange(server_sends_the_file)
    scope = http_scope(f"/depot/default/{file_id}", extensions={"http.response.zerocopysend": {}})
    await DepotASGIMiddleware(asgi_app)(scope, exchange.receive, exchange.send)
    assert [m["type"] for m in exchange.messages] == [
        "http.response.start",
        "http.response.zerocopysend",
    ]
    assert exchange.messages[1]["count"] == len(BIG)
    assert exchange.headers[b"content-length"] == str(len(BIG)).encode()
    assert received == [BIG]
    assert tracked.reads == 0  # depot read none of it
    assert tracked.all_closed


@pytest.mark.parametrize(
    ("headers", "method"),
    [([(b"range", b"bytes=0-9")], "GET"), ([], "HEAD")],
)
async def test_zerocopysend_is_for_whole_files(local, headers, method) -> None:
    file_id = local.create(BIG, "big.bin")
    exchange = Exchange()
    scope = http_scope(
        f"/depot/default/{file_id}",
        method=method,
        headers=headers,
        extensions={"http.response.zerocopysend": {}},
    )
    await DepotASGIMiddleware(asgi_app)(scope, exchange.receive, exchange.send)
    assert [m["type"] for m in exchange.messages[1:]] == ["http.response.body"]
    assert exchange.body == (BIG[:10] if method == "GET" else b"")


async def test_zerocopysend_is_not_used_without_a_descriptor(memory) -> None:
    file_id = memory.create(BIG, "big.bin")
    exchange = Exchange()
    scope = http_scope(f"/depot/default/{file_id}", extensions={"http.response.zerocopysend": {}})
    await DepotASGIMiddleware(asgi_app)(scope, exchange.receive, exchange.send)
    assert {m["type"] for m in exchange.messages[1:]} == {"http.response.body"}
    assert exchange.body == BIG


async def test_pathsend_is_not_used(local, monkeypatch) -> None:
    # granian, the server that offers it, opens the path in a task of its
    # own after send() returns: the local path could name another version by
    # then, and /proc/self/fd/<n> another file once depot closes <n>. The
    # bytes are sent from the descriptor depot holds instead.
    tracked = Tracked(local, monkeypatch)
    file_id = local.create(BIG, "big.bin")
    exchange = Exchange()
    scope = http_scope(f"/depot/default/{file_id}", extensions={"http.response.pathsend": {}})
    await DepotASGIMiddleware(asgi_app)(scope, exchange.receive, exchange.send)
    assert {m["type"] for m in exchange.messages[1:]} == {"http.response.body"}
    assert exchange.body == BIG
    assert tracked.all_closed


# --- authorize ------------------------------------------------------------------------------


@pytest.mark.parametrize("allowed", [True, False])
async def test_async_authorize_is_awaited_before_the_lookup(memory, monkeypatch, allowed) -> None:
    tracked = Tracked(memory, monkeypatch)
    file_id = memory.create(b"secret", "a.txt")
    calls = []
    loop_thread = threading.get_ident()

    async def authorize(request: Any, depot_name: str, file_id: str) -> bool:
        calls.append((request.path, request.raw["type"], depot_name, file_id))
        assert threading.get_ident() == loop_thread  # awaited in the event loop
        await anyio.sleep(0)
        return allowed

    DepotManager.alias("legacy", "default")
    middleware = DepotASGIMiddleware(asgi_app, authorize=authorize)
    response = await fetch(middleware, f"/depot/legacy/{file_id}")
    assert calls == [(f"/depot/legacy/{file_id}", "http", "default", file_id)]
    if allowed:
        assert (response.status_code, response.content) == (200, b"secret")
    else:
        assert (response.status_code, response.content) == (403, b"Forbidden.")
        assert response.headers["cache-control"] == "private, no-store"
        assert tracked.opened == []  # no hint whether the file exists


# --- frameworks -----------------------------------------------------------------------------


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("url " + DepotManager.url_for("default/x"))


async def test_starlette_mounts_the_app(memory) -> None:
    file_id = memory.create(b"hello", "a.txt")
    app = Starlette(
        routes=[Route("/", hello), Mount("/files", app=DepotASGIApp(root_path="/files"))]
    )
    DepotManager.set_middleware(app.routes[1].app)
    response = await fetch(app, f"/files/depot/default/{file_id}")
    assert (response.status_code, response.content) == (200, b"hello")
    assert (await fetch(app, "/files/elsewhere")).status_code == 404
    assert (await fetch(app, f"/depot/default/{file_id}")).status_code == 404
    assert (await fetch(app, "/")).text == "url /files/depot/default/x"


async def test_starlette_middleware_list(memory) -> None:
    file_id = memory.create(b"hello", "a.txt")
    app = Starlette(
        routes=[Route("/", hello)],
        middleware=[Middleware(make_asgi_middleware, mountpoint="/media")],
    )
    response = await fetch(app, f"/media/default/{file_id}")
    assert (response.status_code, response.content) == (200, b"hello")
    assert (await fetch(app, "/")).text == "url /media/default/x"


def make_asgi_middleware(app: Any, **options: Any) -> Any:
    """DepotManager.make_asgi_middleware, or what it does (it lands in another branch)."""
    make = getattr(DepotManager, "make_asgi_middleware", None)
    if make is not None:
        return make(app, **options)
    middleware = DepotASGIMiddleware(app, **options)
    DepotManager.set_middleware(middleware)
    return middleware


def fastapi_app() -> FastAPI:
    api = FastAPI()

    @api.get("/link", response_class=PlainTextResponse)
    async def link() -> str:
        return DepotManager.url_for("default/x")

    return api


async def test_fastapi_add_middleware_under_a_mount(memory) -> None:
    file_id = memory.create(b"hello", "a.txt")
    api = fastapi_app()
    # DepotManager's factory, so that url_for knows the middleware Starlette makes.
    api.add_middleware(make_asgi_middleware)
    site = Starlette(routes=[Mount("/api", app=api)])
    response = await fetch(site, f"/api/depot/default/{file_id}")
    assert (response.status_code, response.content) == (200, b"hello")
    assert response.headers["etag"]
    assert (await fetch(site, "/api/link")).text == "/api/depot/default/x"


async def test_fastapi_wrapped(memory) -> None:
    file_id = memory.create(b"hello", "a.txt")
    app = make_asgi_middleware(fastapi_app())
    response = await fetch(app, f"/depot/default/{file_id}", headers={"Range": "bytes=1-2"})
    assert (response.status_code, response.content) == (206, b"el")
    assert (await fetch(app, "/link")).text == "/depot/default/x"


def starlette_wsgi_middleware() -> Any:
    with warnings.catch_warnings():
        # Deprecated for a2wsgi, and still what many applications mount.
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from starlette.middleware.wsgi import WSGIMiddleware

    return WSGIMiddleware


@pytest.mark.parametrize("bridge", ["a2wsgi", "starlette"])
async def test_the_wsgi_middleware_through_an_asgi_bridge_at_a_mount(memory, bridge) -> None:
    # Issue 14 saw a 404 here; a2wsgi 1.10 and Starlette 1.x give the WSGI
    # application the mount as SCRIPT_NAME and the rest as PATH_INFO.
    file_id = memory.create(b"hello", "a.txt")
    wrapper = A2WSGIMiddleware if bridge == "a2wsgi" else starlette_wsgi_middleware()
    seen = []

    def page(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append(DepotManager.url_for("default/x"))
        return wsgi_app(environ, start_response)

    app = DepotManager.make_middleware(page, mount_in_urls=True)
    site = Starlette(routes=[Mount("/files", app=wrapper(app))])
    response = await fetch(site, f"/files/depot/default/{file_id}")
    assert (response.status_code, response.content) == (200, b"hello")
    assert (await fetch(site, "/files/page")).content == b"the application"
    assert seen == ["/files/depot/default/x"]
