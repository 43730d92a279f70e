"""gcp-storage-emulator behind a proxy that enforces ``ifGenerationMatch``, as GCS does.

The emulator ignores preconditions, so a write racing another would always
win there. The proxy, on 127.0.0.1, forwards every request to the emulator,
and answers 412 itself when a request's ``ifGenerationMatch`` or
``ifMetagenerationMatch`` (``ifSource...`` of a rewrite's source, the
``objectPreconditions`` of a compose's sources) is not the object's (asked
from the emulator; ``0``: no object). The check
and the forward happen under one lock, so no other request comes between. A
resumable upload's precondition is kept from the request that opens its
session and checked at the chunk that completes it, where GCS checks it.

Only what depot's tests need: the JSON API's object paths, uploads, rewrites
and composes.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

_Condition = tuple[str, str, str, str]
_REWRITE = re.compile(r"^/storage/v1/b/([^/]+)/o/([^/]+)/rewriteTo/b/([^/]+)/o/([^/]+)$")
_COMPOSE = re.compile(r"^/storage/v1/b/([^/]+)/o/([^/]+)/compose$")
_OBJECT = re.compile(r"^(?:/upload|/download)?/storage/v1/b/([^/]+)/o(?:/(.+))?$")
_FINAL = re.compile(r"^bytes (?:\*|(\d+)-(\d+))/(\d+)$")
_NAME = re.compile(rb'"name":\s*("(?:[^"\\]|\\.)*")')
_HOP_BY_HOP = {"connection", "transfer-encoding", "keep-alive"}


class PreconditionProxy(ThreadingHTTPServer):
    """The proxy server; ``url`` is its address, for ``STORAGE_EMULATOR_HOST``."""

    daemon_threads = True

    def __init__(self, emulator: str) -> None:
        target = urlsplit(emulator)
        self.emulator = (target.hostname or "127.0.0.1", target.port or 80)
        self.lock = threading.Lock()
        #: upload_id -> (bucket, name, expected generation) of an open resumable session.
        self.sessions: dict[str, tuple[str, str, str]] = {}
        #: How many requests it refused with 412.
        self.refused = 0
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that closed its kept-alive connection: nothing to report

    def current(self, bucket: str, name: str, field: str = "generation") -> str:
        """The object's ``generation`` (or ``metageneration``) at the emulator; ``"0"``
        if there is no object."""
        status, _, body = self.forward("GET", f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}")
        return str(json.loads(body)[field]) if status == 200 else "0"

    def forward(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.emulator, timeout=60)
        try:
            connection.request(method, path, body=body or None, headers=headers or {})
            answer = connection.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            connection.close()


class _Handler(BaseHTTPRequestHandler):
    server: PreconditionProxy
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        proxy = self.server
        with proxy.lock:
            conditions = self._conditions(url.path, query, body)
            if any(proxy.current(b, n, field) != value for b, n, field, value in conditions):
                proxy.refused += 1
                self._answer(412, [("Content-Type", "application/json")], _REFUSAL)
                return
            status, answer_headers, answer = proxy.forward(self.command, self.path, headers, body)
            if self.command == "POST" and query.get("uploadType") == "resumable":
                location = dict((k.lower(), v) for k, v in answer_headers).get("location", "")
                upload_id = parse_qs(urlsplit(location).query).get("upload_id")
                match = _OBJECT.match(url.path)
                if upload_id and match and "ifGenerationMatch" in query:
                    name = query.get("name") or _name_in(body)
                    proxy.sessions[upload_id[0]] = (
                        match.group(1),
                        name,
                        query["ifGenerationMatch"],
                    )
        self._answer(status, answer_headers, answer)

    def _conditions(self, path: str, query: dict[str, str], body: bytes) -> list[_Condition]:
        """What this request is conditional on: (bucket, object, field, value) each."""
        if "upload_id" in query:
            session = self.server.sessions.get(query["upload_id"])
            final = _FINAL.match(self.headers.get("Content-Range", ""))
            if session is None or final is None:
                return []
            start, end, total = final.groups()
            if end is not None and int(end) + 1 != int(total):
                return []  # GCS checks when the upload completes
            return [(session[0], session[1], "generation", session[2])]
        found: list[_Condition] = []
        rewrite = _REWRITE.match(path)
        compose = _COMPOSE.match(path)
        if rewrite:
            source = (rewrite.group(1), unquote(rewrite.group(2)))
            target = (rewrite.group(3), unquote(rewrite.group(4)))
            found += _from_query(source, query, "ifSource")
            found += _from_query(target, query, "if")
        elif compose:
            target = (compose.group(1), unquote(compose.group(2)))
            found += _from_query(target, query, "if")
            for item in json.loads(body or b"{}").get("sourceObjects", []):
                wanted = (item.get("objectPreconditions") or {}).get("ifGenerationMatch")
                if wanted is not None:
                    found.append((target[0], item["name"], "generation", str(wanted)))
        else:
            match = _OBJECT.match(path)
            if match is not None:
                name = unquote(match.group(2)) if match.group(2) else None
                name = name or query.get("name") or _name_in(body)
                found += _from_query((match.group(1), name), query, "if")
        return found

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, *args: Any) -> None:
        pass


def _from_query(obj: tuple[str, str], query: dict[str, str], prefix: str) -> list[_Condition]:
    """The ``<prefix>GenerationMatch`` and ``<prefix>MetagenerationMatch`` of a request."""
    return [
        (obj[0], obj[1], field.lower(), query[f"{prefix}{field}Match"])
        for field in ("Generation", "Metageneration")
        if f"{prefix}{field}Match" in query
    ]


def _name_in(body: bytes) -> str:
    """The object name in an upload's JSON metadata (a multipart body's first part)."""
    found = _NAME.search(body)
    return str(json.loads(found.group(1))) if found else ""


_REFUSAL = json.dumps(
    {
        "error": {
            "code": 412,
            "message": "At least one of the pre-conditions you specified did not hold.",
            "errors": [{"reason": "conditionNotMet", "location": "If-Match"}],
        }
    }
).encode()


@contextlib.contextmanager
def precondition_proxy(emulator: str) -> Iterator[PreconditionProxy]:
    """A running :class:`PreconditionProxy` in front of ``emulator``."""
    proxy = PreconditionProxy(emulator)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
