"""Both front ends behind one test client, so that one table of HTTP rules runs on each.

``front_end`` (a fixture, parametrised ``wsgi`` / ``asgi``) makes depot's
middleware of that kind around a small application answering
``b"the application"``, and a client with WebTest's synchronous API
(``get(url, headers=..., status=...)``, ``head``, ``post`` ...; responses with
``status_int``, ``headers``, ``headerlist``, ``body``):

- WSGI: WebTest's ``TestApp``, whose lint checks every answer against PEP 3333.
- ASGI: ``httpx.AsyncClient`` over ``httpx.ASGITransport``, each request run
  with anyio (asyncio). A checker between the two plays WebTest's lint: the
  ASGI messages come in a valid order, header names are lower-case tokens,
  values have no control characters, and the body has the length announced.
  The request path is sent as written (httpx would resolve ``..``, a raw
  client does not).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import httpx
import pytest
from webtest import TestApp

from depot.asgi import DepotASGIMiddleware
from depot.manager import DepotManager
from depot.middleware import DepotMiddleware

FRONT_ENDS = ["wsgi", "asgi"]
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The application depot's WSGI middleware wraps."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the application"]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The application depot's ASGI middleware wraps."""
    assert scope["type"] == "http"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"the application"})


class Response:
    """An answer as both clients give it (the part of WebTest's response the tests read)."""

    def __init__(self, status_int: int, headerlist: list[tuple[str, str]], body: bytes) -> None:
        self.status_int = status_int
        self.headerlist = headerlist
        self.headers = httpx.Headers(headerlist, encoding="latin-1")
        self.body = body

    def __repr__(self) -> str:
        return f"<Response {self.status_int} {len(self.body)} bytes>"


class Client:
    """WebTest's request methods over either front end."""

    def __init__(self, send: Callable[[str, str, dict[str, str]], Response]) -> None:
        self._send = send

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
        expect_errors: bool = False,
    ) -> Response:
        response = self._send(method, url, dict(headers or {}))
        if status is not None:
            assert response.status_int == status, (response, response.body[:200])
        elif not expect_errors:
            assert response.status_int < 400, (response, response.body[:200])
        return response

    def get(self, url: str, headers: Mapping[str, str] | None = None, **kw: Any) -> Response:
        return self.request("GET", url, headers, **kw)

    def head(self, url: str, headers: Mapping[str, str] | None = None, **kw: Any) -> Response:
        return self.request("HEAD", url, headers, **kw)

    def post(self, url: str, headers: Mapping[str, str] | None = None, **kw: Any) -> Response:
        return self.request("POST", url, headers, **kw)

    def put(self, url: str, headers: Mapping[str, str] | None = None, **kw: Any) -> Response:
        return self.request("PUT", url, headers, **kw)

    def delete(self, url: str, headers: Mapping[str, str] | None = None, **kw: Any) -> Response:
        return self.request("DELETE", url, headers, **kw)


def wsgi_client(middleware: Any, sendfile: bool = False) -> Client:
    """WebTest over a WSGI application; ``sendfile``: offer wsgiref's ``wsgi.file_wrapper``."""
    from wsgiref.util import FileWrapper

    test_app = TestApp(
        middleware, extra_environ={"wsgi.file_wrapper": FileWrapper} if sendfile else {}
    )

    def send(method: str, url: str, headers: dict[str, str]) -> Response:
        call = getattr(test_app, method.lower())
        response = call(url, headers=headers, expect_errors=True)
        return Response(response.status_int, list(response.headerlist), response.body)

    return Client(send)


def asgi_client(app: Any, sendfile: bool = False, root_path: str = "") -> Client:
    """httpx over an ASGI application; ``sendfile``: offer ``http.response.zerocopysend``."""

    def send(method: str, url: str, headers: dict[str, str]) -> Response:
        return anyio.run(_asgi_request, app, method, url, headers, sendfile, root_path)

    return Client(send)


async def _asgi_request(
    app: Any, method: str, url: str, headers: dict[str, str], sendfile: bool, root_path: str
) -> Response:
    checker = _Checker(app, method, url, sendfile)
    transport = httpx.ASGITransport(checker, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        raw_headers = {name: _header_bytes(value) for name, value in headers.items()}
        answer = await client.request(method, url, headers=raw_headers)
    checker.check(answer.content)
    headerlist = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.headers.raw]
    return Response(answer.status_code, headerlist, answer.content)


def _header_bytes(value: str) -> bytes:
    # What a client sends for a header: Latin-1 when it can, else UTF-8 (as
    # WebTest passes any str through to the environ).
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


class _Checker:
    """An ASGI server's part between httpx and depot: the scope as sent, messages checked."""

    def __init__(self, app: Any, method: str, url: str, sendfile: bool) -> None:
        self.app = app
        self.method = method
        self.raw_path = urlsplit(url).path.encode("latin-1")
        self.sendfile = sendfile
        self.messages: list[str] = []
        self.status: int | None = None
        self.length: int | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope = dict(scope)
        scope["path"] = scope["root_path"] + unquote(self.raw_path.decode("latin-1"))
        scope["raw_path"] = self.raw_path
        if self.sendfile:
            scope["extensions"] = {"http.response.zerocopysend": {}}

        async def checked_send(message: dict[str, Any]) -> None:
            await send(self._checked(message))

        await self.app(scope, receive, checked_send)

    def _checked(self, message: dict[str, Any]) -> dict[str, Any]:
        kind = message["type"]
        if kind == "http.response.start":
            assert not self.messages, self.messages
            self.status = message["status"]
            for name, value in message["headers"]:
                assert isinstance(name, bytes) and _TOKEN.fullmatch(name), name
                assert isinstance(value, bytes) and not _CONTROL.search(value), (name, value)
                if name == b"content-length":
                    self.length = int(value)
        else:
            last = self.messages[-1] if self.messages else "nothing"
            assert last == "http.response.start" or last.endswith(" more"), (self.messages, kind)
        more = kind != "http.response.start" and message.get("more_body", False)
        self.messages.append(kind + (" more" if more else ""))
        if kind == "http.response.zerocopysend":
            # What a server does with it: os.sendfile() from the descriptor.
            assert self.sendfile
            file = message["file"]
            count = message.get("count")
            data = os.pread(
                file.fileno(), count if count is not None else 1 << 40, message.get("offset", 0)
            )
            return {"type": "http.response.body", "body": data, "more_body": more}
        assert kind in ("http.response.start", "http.response.body"), kind
        return message

    def check(self, body: bytes) -> None:
        assert len(self.messages) > 1 and not self.messages[-1].endswith(" more"), self.messages
        if self.method == "HEAD" or self.status == 304:
            assert body == b""
        elif self.length is not None:
            assert len(body) == self.length, (len(body), self.length)


class FrontEnd:
    """depot's middleware of one kind (``wsgi`` or ``asgi``) and clients for it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<FrontEnd {self.name}>"

    @property
    def wrapped_app(self) -> Any:
        return wsgi_app if self.name == "wsgi" else asgi_app

    def middleware(self, **options: Any) -> Any:
        """depot's middleware of this kind around the small application."""
        if self.name == "wsgi":
            return DepotMiddleware(wsgi_app, **options)
        return DepotASGIMiddleware(asgi_app, **options)

    def make_middleware(self, **options: Any) -> Any:
        """The middleware, registered with DepotManager (what ``url_for`` uses)."""
        if self.name == "wsgi":
            return DepotManager.make_middleware(wsgi_app, **options)
        make = getattr(DepotManager, "make_asgi_middleware", None)
        if make is not None:
            return make(asgi_app, **options)
        middleware = DepotASGIMiddleware(asgi_app, **options)
        DepotManager.set_middleware(middleware)
        return middleware

    def client(self, middleware: Any = None, sendfile: bool = False, **options: Any) -> Client:
        """A client of ``middleware`` (by default one made with ``options``).

        :param sendfile: the server offers to send descriptors itself
            (``wsgi.file_wrapper``, ``http.response.zerocopysend``).
        """
        if middleware is None:
            middleware = self.middleware(**options)
        if self.name == "wsgi":
            return wsgi_client(middleware, sendfile)
        return asgi_client(middleware, sendfile)


@pytest.fixture(params=FRONT_ENDS)
def front_end(request: pytest.FixtureRequest) -> Iterator[FrontEnd]:
    """Each of depot's front ends in turn: WSGI, ASGI."""
    yield FrontEnd(request.param)
