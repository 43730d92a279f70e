"""gcp-storage-emulator behind a proxy that enforces ``ifGenerationMatch``, as GCS does.

The emulator ignores preconditions, so a write racing another would always
win there. The proxy, on 127.0.0.1, forwards every request to the emulator,
and answers 412 itself when a request's ``ifGenerationMatch`` is not the
object's generation (asked from the emulator; ``0``: no object). The check
and the forward happen under one lock, so no other request comes between. A
resumable upload's precondition is kept from the request that opens its
session and checked at the chunk that completes it, where GCS checks it.

Only what depot's tests need: the JSON API's object paths and uploads.
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

_OBJECT = re.compile(r"^(?:/upload|/download)?/storage/v1/b/([^/]+)/o(?:/([^/]+))?$")
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

    def generation(self, bucket: str, name: str) -> str:
        """The object's current generation at the emulator, ``"0"`` if there is none."""
        status, _, body = self.forward("GET", f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}")
        return str(json.loads(body)["generation"]) if status == 200 else "0"

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
            condition = self._condition(url.path, query, body)
            if condition is not None and proxy.generation(*condition[:2]) != condition[2]:
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

    def _condition(
        self, path: str, query: dict[str, str], body: bytes
    ) -> tuple[str, str, str] | None:
        """(bucket, object, generation) this request is conditional on, if any."""
        if "upload_id" in query:
            session = self.server.sessions.get(query["upload_id"])
            final = _FINAL.match(self.headers.get("Content-Range", ""))
            if session is None or final is None:
                return None
            start, end, total = final.groups()
            return session if end is None or int(end) + 1 == int(total) else None
        match = _OBJECT.match(path)
        if match is None or "ifGenerationMatch" not in query:
            return None
        name = unquote(match.group(2)) if match.group(2) else query.get("name") or _name_in(body)
        return match.group(1), name, query["ifGenerationMatch"]

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
